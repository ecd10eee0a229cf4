"""Dice and IoU on label maps with numpy: confusion statistics first, scores second.

:func:`confusion_stats` (hard tp, fp, fn per image and class), then :func:`dice_from_stats` /
:func:`iou_from_stats`, and the convenience :func:`per_image_scores`. The semantics are those of
:mod:`segdoctor.metrics` (unsmoothed scores, an explicit ``empty`` policy, ``ignore_index``).

Example:
    >>> import numpy as np
    >>> truth = np.array([[[0, 1], [1, 1]]]); pred = np.array([[[0, 1], [0, 1]]])
    >>> tp, fp, fn = confusion_stats(truth, pred, num_classes=2)
    >>> dice_from_stats(tp, fp, fn)[:, 1].round(3).tolist()
    [0.8]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segdoctor.errors import ConfigError, DataError, check_choice

__all__ = [
    "EMPTY_FILL",
    "EMPTY_POLICIES",
    "ImageScores",
    "check_threshold",
    "confusion_stats",
    "dice_from_stats",
    "iou_from_stats",
    "multilabel_confusion_stats",
    "per_image_scores",
    "predictions_to_labels",
]

EMPTY_POLICIES: tuple[str, ...] = ("skip", "one", "zero")
EMPTY_FILL = {"skip": np.nan, "one": 1.0, "zero": 0.0}
"""The score of an image and class with empty truth and prediction, per ``empty`` policy."""


def check_threshold(threshold: object) -> float:
    """``threshold`` as a float strictly between 0 and 1; ConfigError otherwise.

    Example:
        >>> check_threshold("0.5")
        0.5
    """
    try:
        value = float(threshold)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError("threshold must be a number", received=repr(threshold)) from None
    if not 0.0 < value < 1.0:
        raise ConfigError(
            "threshold must lie strictly between 0 and 1",
            received=repr(threshold),
            fix="it applies to probabilities (after the sigmoid when from_logits=True); 0.5 is usual.",
        )
    return value


def _as_label_maps(labels: np.ndarray | Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    """A batch ``(N, *spatial)`` array (a 2-D array is one image), or a sequence of maps."""
    if isinstance(labels, np.ndarray):
        if labels.ndim < 2:
            raise DataError(f"{what} must be label maps", received=f"shape {labels.shape}")
        return [labels] if labels.ndim == 2 else list(labels)
    return [np.asarray(m) for m in labels]


def _check_labels(labels: np.ndarray, valid: np.ndarray, num_classes: int, what: str) -> None:
    kept = labels[valid]
    if kept.size == 0:
        return
    if not np.issubdtype(kept.dtype, np.integer) and np.any(kept != np.round(kept)):
        raise DataError(f"{what} must hold whole class indices", received=f"dtype {kept.dtype}")
    lo, hi = kept.min(), kept.max()
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"{what} must lie in [0, {num_classes})",
            received=f"values from {lo} to {hi}",
            fix="pass the right num_classes, or ignore_index=<label> for a void label.",
        )


def confusion_stats(
    y_true: np.ndarray | Sequence[np.ndarray],
    y_pred: np.ndarray | Sequence[np.ndarray],
    num_classes: int,
    ignore_index: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard tp, fp, fn per image and class from label maps.

    Args:
        y_true: true label maps: an ``(N, *spatial)`` array, a single 2-D map, or a sequence of
            maps (images may differ in size).
        y_pred: predicted label maps, same layout and sizes (see :func:`predictions_to_labels`).
        num_classes: number of classes ``C`` (2 for binary: background and foreground).
        ignore_index: true label whose pixels count nowhere.

    Returns:
        ``(tp, fp, fn)``, int64 arrays of shape ``(N, C)``.

    Example:
        >>> tp, fp, fn = confusion_stats(np.array([[1, 1, 0]]), np.array([[1, 0, 1]]), 2)
        >>> tp.tolist(), fp.tolist(), fn.tolist()
        ([[0, 1]], [[1, 1]], [[1, 1]])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ConfigError("num_classes must be an integer", received=repr(num_classes))
    if num_classes < 1:
        raise ConfigError("num_classes must be at least 1", received=repr(num_classes))
    truths, preds = _as_label_maps(y_true, "y_true"), _as_label_maps(y_pred, "y_pred")
    if len(truths) != len(preds):
        raise DataError(
            "y_true and y_pred hold different numbers of images",
            received=f"{len(truths)} and {len(preds)}",
        )
    c = int(num_classes)
    tp, fp, fn = (np.zeros((len(truths), c), dtype=np.int64) for _ in range(3))
    for i, (truth, pred) in enumerate(zip(truths, preds, strict=True)):
        if truth.shape != pred.shape:
            raise DataError(
                f"Label maps of image {i} differ in shape",
                received=f"truth {truth.shape}, prediction {pred.shape}",
                fix="resize predictions (nearest neighbour) to the mask size before scoring.",
            )
        valid = np.ones(truth.shape, bool) if ignore_index is None else truth != ignore_index
        _check_labels(truth, valid, c, "y_true")
        _check_labels(pred, valid, c, "y_pred")
        pairs = truth[valid].astype(np.int64) * c + pred[valid].astype(np.int64)
        matrix = np.bincount(pairs, minlength=c * c).reshape(c, c)  # rows truth, columns pred
        tp[i] = np.diag(matrix)
        fn[i] = matrix.sum(axis=1) - tp[i]
        fp[i] = matrix.sum(axis=0) - tp[i]
    return tp, fp, fn


def multilabel_confusion_stats(
    y_true: np.ndarray, y_pred: np.ndarray, ignore_index: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard tp, fp, fn per image and channel from 0/1 masks ``(N, *spatial, C)``.

    Example:
        >>> t = np.array([[[[1, 0], [1, 1]]]]); p = np.array([[[[1, 1], [0, 1]]]])
        >>> [x.tolist() for x in multilabel_confusion_stats(t, p)]
        [[[1, 1]], [[0, 1]], [[1, 0]]]
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim < 3:
        raise DataError(
            "Multilabel masks must have the same shape (N, *spatial, C)",
            received=f"truth {y_true.shape}, prediction {y_pred.shape}",
        )
    valid = np.ones(y_true.shape, bool) if ignore_index is None else y_true != ignore_index
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        kept = values[valid]
        if kept.size and (kept.min() < 0 or kept.max() > 1):
            raise DataError(f"{name} must hold 0/1 masks", received=f"max {kept.max()}")
    truth, pred = (y_true == 1) & valid, (y_pred == 1) & valid
    axes = tuple(range(1, y_true.ndim - 1))
    tp = np.sum(truth & pred, axis=axes, dtype=np.int64)
    fp = np.sum(~truth & pred, axis=axes, dtype=np.int64)
    fn = np.sum(truth & ~pred, axis=axes, dtype=np.int64)
    return tp, fp, fn


def predictions_to_labels(
    y_pred: np.ndarray, mode: str = "binary", threshold: float = 0.5, from_logits: bool = False
) -> np.ndarray:
    """Model outputs ``(N, *spatial, C)`` to int32 label maps ``(N, *spatial)``.

    Binary: ``probability > threshold`` (after a sigmoid with ``from_logits=True``); multiclass:
    the arg-max channel. Multilabel outputs are not label maps: threshold them per channel and use
    :func:`multilabel_confusion_stats`.

    Example:
        >>> predictions_to_labels(np.array([[[[0.2], [0.7]]]])).tolist()
        [[[0, 1]]]
    """
    mode = check_choice("mode", mode, ("binary", "multiclass"))
    y_pred = np.asarray(y_pred)
    if y_pred.dtype.kind != "f":
        y_pred = y_pred.astype(np.float64)
    # compared in the outputs' own precision, as DiceScore does: a float32 0.4 is not above 0.4
    if mode == "multiclass":
        return np.argmax(y_pred, axis=-1).astype(np.int32)
    if y_pred.shape[-1] != 1:
        raise ConfigError(
            'mode="binary" expects one output channel',
            received=f"shape {y_pred.shape}",
            fix='use mode="multiclass" for a softmax output.',
        )
    probs = 1.0 / (1.0 + np.exp(-y_pred[..., 0])) if from_logits else y_pred[..., 0]
    return (probs > y_pred.dtype.type(check_threshold(threshold))).astype(np.int32)


def _score(numerator: np.ndarray, denominator: np.ndarray, empty: str) -> np.ndarray:
    empty = check_choice("empty", empty, EMPTY_POLICIES)
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, EMPTY_FILL[empty])
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def dice_from_stats(tp: Any, fp: Any, fn: Any, empty: str = "skip") -> np.ndarray:
    """Dice ``2 tp / (2 tp + fp + fn)``; where ``tp + fp + fn = 0`` the ``empty`` policy decides.

    Example:
        >>> dice_from_stats([3, 0, 0], [1, 0, 2], [0, 0, 0], empty="one").round(3).tolist()
        [0.857, 1.0, 0.0]
    """
    tp = np.asarray(tp)
    return _score(2 * tp, 2 * tp + np.asarray(fp) + np.asarray(fn), empty)


def iou_from_stats(tp: Any, fp: Any, fn: Any, empty: str = "skip") -> np.ndarray:
    """IoU (Jaccard) ``tp / (tp + fp + fn)``; ``empty`` as in :func:`dice_from_stats`.

    Example:
        >>> iou_from_stats([3], [1], [0]).tolist()
        [0.75]
    """
    tp = np.asarray(tp)
    return _score(tp, tp + np.asarray(fp) + np.asarray(fn), empty)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` ignoring NaN; NaN where nothing is left (no RuntimeWarning)."""
    kept = ~np.isnan(values)
    count = kept.sum(axis=axis)
    total = np.where(kept, values, 0.0).sum(axis=axis)
    out = np.full(np.shape(total), np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


@dataclass(frozen=True)
class ImageScores:
    """Per-image, per-class statistics and scores (see :func:`per_image_scores`).

    Attributes:
        tp, fp, fn: int64 ``(N, C)``.
        dice, iou: float64 ``(N, C)`` per class, NaN where skipped.
        classes: the class ids that are scored (background left out unless included).
        empty: the empty policy used.
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    dice: np.ndarray
    iou: np.ndarray
    classes: tuple[int, ...]
    empty: str

    @property
    def image_dice(self) -> np.ndarray:
        """``(N,)`` mean Dice of each image over the scored classes (NaN if all skipped)."""
        return _nanmean(self.dice[:, list(self.classes)], axis=1)

    @property
    def image_iou(self) -> np.ndarray:
        """``(N,)`` mean IoU of each image over the scored classes (NaN if all skipped)."""
        return _nanmean(self.iou[:, list(self.classes)], axis=1)

    def mean(self) -> dict[str, float]:
        """Per class the mean over images, then the mean over classes (what DiceScore reports).

        Example:
            >>> s = per_image_scores(np.array([[[1, 1]], [[0, 0]]]), np.array([[[1, 0]], [[0, 0]]]), 2)
            >>> round(s.mean()["dice"], 3)   # the empty-empty image is skipped
            0.667
        """
        cls = list(self.classes)
        return {
            name: float(_nanmean(_nanmean(scores[:, cls], axis=0), axis=0))
            for name, scores in (("dice", self.dice), ("iou", self.iou))
        }

    def dataset(self) -> dict[str, float]:
        """Dataset-level scores: statistics summed over images, then the mean over classes."""
        tp, fp, fn = (x.sum(axis=0) for x in (self.tp, self.fp, self.fn))
        cls = list(self.classes)
        return {
            "dice": float(_nanmean(dice_from_stats(tp, fp, fn, self.empty)[cls], axis=0)),
            "iou": float(_nanmean(iou_from_stats(tp, fp, fn, self.empty)[cls], axis=0)),
        }


def per_image_scores(
    y_true: np.ndarray | Sequence[np.ndarray],
    y_pred: np.ndarray | Sequence[np.ndarray],
    num_classes: int,
    *,
    ignore_index: int | None = None,
    include_background: bool = False,
    empty: str = "skip",
) -> ImageScores:
    """Statistics and Dice/IoU of every image and class from label maps.

    Args:
        y_true, y_pred: label maps, as for :func:`confusion_stats`.
        num_classes: ``C`` (2 for binary masks).
        ignore_index: true label whose pixels count nowhere.
        include_background: also score class 0.
        empty: "skip" | "one" | "zero" for an image and class with empty truth and prediction.

    Returns:
        ImageScores; ``.image_dice`` gives one number per image (for worst-case lists),
        ``.mean()`` and ``.dataset()`` the two aggregations.

    Example:
        >>> truth = np.array([[[0, 1, 1]], [[0, 0, 0]]]); pred = np.array([[[0, 1, 0]], [[0, 1, 0]]])
        >>> per_image_scores(truth, pred, num_classes=2).image_dice.round(3).tolist()
        [0.667, 0.0]
    """
    empty = check_choice("empty", empty, EMPTY_POLICIES)
    tp, fp, fn = confusion_stats(y_true, y_pred, num_classes, ignore_index=ignore_index)
    first = 0 if include_background or num_classes == 1 else 1
    return ImageScores(
        tp=tp,
        fp=fp,
        fn=fn,
        dice=dice_from_stats(tp, fp, fn, empty),
        iou=iou_from_stats(tp, fp, fn, empty),
        classes=tuple(range(first, num_classes)),
        empty=empty,
    )
