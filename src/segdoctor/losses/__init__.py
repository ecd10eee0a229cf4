"""Dice-family losses for semantic segmentation, native on every Keras 3 backend.

Every loss is a pure ``keras.ops`` function plus a thin, serializable ``keras.losses.Loss`` class
that stores its configuration. All of them follow the same steps and take the same keywords:

1. **Targets.** Labels are sparse class indices ``(B, H, W)`` / ``(B, H, W, 1)`` or dense
   ``(B, H, W, C)`` (one-hot for ``mode="multiclass"``, one 0/1 mask per channel for
   ``mode="multilabel"``); predictions are ``(B, H, W, C)``. Any number of spatial axes works
   (volumes are ``(B, D, H, W, C)``). Pixels labelled ``ignore_index`` count nowhere.
2. **Statistics.** Soft true positives, false positives and false negatives per image and class,
   ``tp = sum(p * t)``, ``fp = sum(p * (1 - t))``, ``fn = sum((1 - p) * t)``, summed in float32
   even when the model computes in float16 or bfloat16.
3. **Scores.** ``per_image=True`` (default, :data:`PER_IMAGE`) scores each image and averages the
   losses; ``per_image=False`` first sums the statistics over the batch (one pooled score per
   class, like nnU-Net's "batch Dice"). Then background is dropped (``mode="multiclass"`` with
   ``include_background=False``, the default) and classes are averaged with ``class_weights``
   normalized to sum to one.

Smoothed Dice is ``(2 tp + smooth) / (2 tp + fp + fn + smooth)``. ``smooth`` (default 1, in units
of pixels) is what defines the empty-mask behaviour: an image (or class) with an empty truth and an
empty prediction scores 1 (loss 0); with predicted mass ``fp`` it scores ``smooth / (fp + smooth)``,
so false positives on empty images are penalised and the gradient ``smooth / (fp + smooth)**2`` is
finite and non-zero. ``smooth`` must be > 0. Large values reward empty predictions on small
objects: a missed object of ``n`` pixels still scores ``smooth / (n + smooth)``.
See ``docs/losses-and-metrics.md`` for each choice side by side with other libraries.

Modules, bottom to top: ``options`` (the shared keywords, :data:`MODES`, :data:`PER_IMAGE`),
``checks`` (eager value checks), ``targets`` (step 1), ``statistics`` (step 2 and the class
reductions), ``functional`` (the losses as pure functions), ``classes`` (the Keras ``Loss``
classes), ``registry`` (``register_loss``, ``list_losses``, ``create_loss``) and ``classic`` (the
classic Keras 2 ``dice_coef`` / ``dice_loss`` / ``weighted_dice_loss``). Everything public is
importable from ``segdoctor.losses``.

Example:
    >>> import numpy as np
    >>> from segdoctor.losses import DiceCELoss
    >>> loss = DiceCELoss(mode="multiclass")          # softmax output, sparse integer masks
    >>> y_true = np.zeros((2, 8, 8, 1), "int32")
    >>> y_pred = np.full((2, 8, 8, 3), 1 / 3, "float32")
    >>> float(loss(y_true, y_pred)) > 0
    True
"""

from __future__ import annotations

from segdoctor.losses.checks import check_probabilities
from segdoctor.losses.classes import (
    DiceCELoss,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    LogCoshDiceLoss,
    TverskyLoss,
)
from segdoctor.losses.classic import dice_coef, dice_loss, weighted_dice_loss
from segdoctor.losses.functional import (
    dice_ce_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    log_cosh_dice_loss,
    soft_dice_loss,
    tversky_loss,
)
from segdoctor.losses.options import MODES, VALIDATE_POLICIES
from segdoctor.losses.options import PER_IMAGE as PER_IMAGE  # public, outside __all__ as before
from segdoctor.losses.options import WEIGHT_TYPES as WEIGHT_TYPES
from segdoctor.losses.options import Tensor as Tensor
from segdoctor.losses.registry import create_loss, list_losses, register_loss
from segdoctor.losses.statistics import Confusion, confusion_terms, soft_confusion
from segdoctor.losses.targets import Targets, prepare_targets

__all__ = [
    "MODES",
    "VALIDATE_POLICIES",
    "Confusion",
    "DiceCELoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "LogCoshDiceLoss",
    "Targets",
    "TverskyLoss",
    "check_probabilities",
    "confusion_terms",
    "create_loss",
    "dice_ce_loss",
    "dice_coef",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "list_losses",
    "log_cosh_dice_loss",
    "prepare_targets",
    "register_loss",
    "soft_confusion",
    "soft_dice_loss",
    "tversky_loss",
    "weighted_dice_loss",
]
