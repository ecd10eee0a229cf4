"""Dice and IoU scores: confusion statistics first, scores second.

Two forms with the same semantics:

* **numpy functions** for evaluation on label maps: :func:`confusion_stats` (tp, fp, fn per image
  and class), then :func:`dice_from_stats` / :func:`iou_from_stats`, and the convenience
  :func:`per_image_scores`;
* **Keras metrics** :class:`DiceScore` and :class:`IoUScore`, accumulated over an epoch, which
  declare that higher is better (``_direction = "up"``), so callbacks with ``mode="auto"``
  (ReduceLROnPlateau, EarlyStopping, ModelCheckpoint) maximise them.

Semantics:

* Predictions are made hard first: ``probability > threshold`` (binary, multilabel; after a
  sigmoid when ``from_logits=True``) or the arg-max channel (multiclass). Scores are unsmoothed:
  ``Dice = 2 tp / (2 tp + fp + fn)`` and ``IoU = tp / (tp + fp + fn)``.
* ``empty`` decides what an image (and class) scores when truth and prediction are *both* empty
  (``tp + fp + fn = 0``): ``"skip"`` (the default: NaN, left out of every mean), ``"one"`` or
  ``"zero"``. An empty truth with a predicted object has ``fp > 0`` and scores 0.
* ``per_image=True`` (default): for each class, the mean over images of the per-image score;
  ``per_image=False``: one dataset-level score per class from tp, fp, fn summed over all images.
  Either way the result is then the mean over the scored classes that have a value (background
  left out in multiclass mode unless ``include_background=True``).
* Pixels whose label equals ``ignore_index`` count nowhere.

Modules: ``evaluation`` (the numpy functions), ``keras_metrics`` (``DiceScore``, ``IoUScore``) and
``paired`` (``paired_difference``, a per-image comparison of two runs). Everything public is
importable from ``segdoctor.metrics``.

Example:
    >>> import numpy as np
    >>> truth = np.array([[[0, 1], [1, 1]]]); pred = np.array([[[0, 1], [0, 1]]])
    >>> tp, fp, fn = confusion_stats(truth, pred, num_classes=2)
    >>> dice_from_stats(tp, fp, fn)[:, 1].round(3).tolist()
    [0.8]
"""

from __future__ import annotations

from segdoctor.losses import MODES as MODES  # one owner: the losses define the modes
from segdoctor.metrics.evaluation import (
    EMPTY_POLICIES,
    ImageScores,
    confusion_stats,
    dice_from_stats,
    iou_from_stats,
    multilabel_confusion_stats,
    per_image_scores,
    predictions_to_labels,
)
from segdoctor.metrics.keras_metrics import DiceScore, IoUScore
from segdoctor.metrics.paired import BOOTSTRAP_ROUNDS as BOOTSTRAP_ROUNDS
from segdoctor.metrics.paired import paired_difference

__all__ = [
    "EMPTY_POLICIES",
    "DiceScore",
    "ImageScores",
    "IoUScore",
    "confusion_stats",
    "dice_from_stats",
    "iou_from_stats",
    "multilabel_confusion_stats",
    "paired_difference",
    "per_image_scores",
    "predictions_to_labels",
]
