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

Example:
    >>> import numpy as np
    >>> truth = np.array([[[0, 1], [1, 1]]]); pred = np.array([[[0, 1], [0, 1]]])
    >>> tp, fp, fn = confusion_stats(truth, pred, num_classes=2)
    >>> dice_from_stats(tp, fp, fn)[:, 1].round(3).tolist()
    [0.8]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from segdoctor.errors import ConfigError, DataError, check_choice
from segdoctor.losses import (
    MODES,
    VALIDATE_POLICIES,
    _is_eager,
    check_probabilities,
    confusion_terms,
    prepare_targets,
)

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

EMPTY_POLICIES: tuple[str, ...] = ("skip", "one", "zero")
_FILL = {"skip": np.nan, "one": 1.0, "zero": 0.0}


# --------------------------------------------------------------------------------------------
# numpy: statistics
# --------------------------------------------------------------------------------------------


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
    return (probs > y_pred.dtype.type(_check_threshold(threshold))).astype(np.int32)


# --------------------------------------------------------------------------------------------
# numpy: scores
# --------------------------------------------------------------------------------------------


def _score(numerator: np.ndarray, denominator: np.ndarray, empty: str) -> np.ndarray:
    empty = check_choice("empty", empty, EMPTY_POLICIES)
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, _FILL[empty])
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


# --------------------------------------------------------------------------------------------
# Keras metrics
# --------------------------------------------------------------------------------------------


def _check_threshold(threshold: object) -> float:
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


class _OverlapScore(keras.metrics.Metric):
    """Shared machinery of DiceScore and IoUScore (not registered; use a subclass)."""

    _direction = "up"  # Keras callbacks with mode="auto" maximise this metric
    _dice: bool = True
    _default_name: str = "dice"

    def __init__(
        self,
        *,
        mode: str = "binary",
        num_classes: int | None = None,
        threshold: float = 0.5,
        from_logits: bool = False,
        per_image: bool = True,
        include_background: bool = False,
        ignore_index: int | None = None,
        empty: str = "skip",
        class_id: int | None = None,
        validate: str = "first",
        name: str | None = None,
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name or self._default_name, dtype=dtype)
        self.mode = check_choice("mode", mode, MODES)
        self.validate = check_choice("validate", validate, VALIDATE_POLICIES)
        self._validated = False
        self.empty = check_choice("empty", empty, EMPTY_POLICIES)
        self.threshold = _check_threshold(threshold)
        for flag, value in (
            ("from_logits", from_logits),
            ("per_image", per_image),
            ("include_background", include_background),
        ):
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"{flag} must be True or False", received=repr(value))
        self.from_logits, self.per_image = bool(from_logits), bool(per_image)
        self.include_background = bool(include_background)
        if self.include_background and self.mode != "multiclass":
            raise ConfigError(
                f'include_background=True has no meaning in mode="{self.mode}"',
                fix='drop it; only mode="multiclass" has a background channel (0).',
            )
        self.num_classes = num_classes
        self._channels = self._resolve_channels(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        if class_id is not None and not 0 <= int(class_id) < self._channels:
            raise ConfigError(
                f"class_id must lie in [0, {self._channels})", received=repr(class_id)
            )
        self.class_id = None if class_id is None else int(class_id)
        shape = (self._channels,)
        self.score_sum = self.add_variable(shape, "zeros", dtype="float32", name="score_sum")
        self.score_count = self.add_variable(shape, "zeros", dtype="float32", name="score_count")
        self.tp = self.add_variable(shape, "zeros", dtype="float32", name="tp")
        self.fp = self.add_variable(shape, "zeros", dtype="float32", name="fp")
        self.fn = self.add_variable(shape, "zeros", dtype="float32", name="fn")

    def _resolve_channels(self, num_classes: int | None) -> int:
        if self.mode == "binary":
            if num_classes not in (None, 1, 2):
                raise ConfigError(
                    'mode="binary" scores one foreground channel',
                    received=f"num_classes={num_classes!r}",
                    fix='leave num_classes unset, or use mode="multiclass".',
                )
            return 1
        minimum = 2 if self.mode == "multiclass" else 1
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise ConfigError(
                f'mode="{self.mode}" needs num_classes (the number of output channels)',
                received=repr(num_classes),
                fix=f"pass num_classes=<channels of the model output>, e.g. "
                f'{type(self).__name__}(mode="{self.mode}", num_classes=4).',
            )
        if num_classes < minimum:
            raise ConfigError(f"num_classes must be at least {minimum}", received=repr(num_classes))
        return int(num_classes)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate hard statistics and per-image scores of one batch."""
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")  # (B, *spatial, C)
        check = self.validate == "always" or (self.validate == "first" and not self._validated)
        targets = prepare_targets(
            y_true,
            y_pred,
            mode=self.mode,
            ignore_index=self.ignore_index,
            num_classes=None if self.mode == "binary" else self._channels,
            validate=check,
        )
        if self.mode == "multiclass":
            hard = ops.one_hot(ops.argmax(y_pred, axis=-1), self._channels, dtype="float32")
        else:
            if self.from_logits:
                y_pred = ops.sigmoid(y_pred)
            elif check:
                check_probabilities(y_pred, self.mode)
            hard = ops.cast(ops.greater(y_pred, self.threshold), "float32")
        if check and _is_eager(y_pred):
            self._validated = True  # reached only when the checks passed
        tp, fp, fn = confusion_terms(hard, targets.target, targets.valid)  # (B, C) exact counts
        numerator = 2.0 * tp if self._dice else tp
        denominator = numerator + fp + fn
        is_empty = ops.equal(denominator, 0.0)
        fill = 0.0 if self.empty == "skip" else _FILL[self.empty]  # skipped scores weigh 0
        scores = ops.where(is_empty, fill, numerator / ops.maximum(denominator, 1.0))  # (B, C)
        counted = ops.where(is_empty, 0.0, 1.0) if self.empty == "skip" else ops.ones_like(tp)
        if sample_weight is not None:
            weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            if len(weight.shape) > 2:
                raise ConfigError(
                    f"{type(self).__name__} takes one sample weight per image",
                    received=f"sample_weight of shape {tuple(weight.shape)}",
                    fix="pixel weights have no meaning for an overlap score; use ignore_index to "
                    "leave pixels out.",
                )
            weight = ops.reshape(weight, (-1, 1))  # (B, 1)
            counted, tp, fp, fn = counted * weight, tp * weight, fp * weight, fn * weight
        self.score_sum.assign_add(ops.sum(scores * counted, axis=0))
        self.score_count.assign_add(ops.sum(counted, axis=0))
        self.tp.assign_add(ops.sum(tp, axis=0))
        self.fp.assign_add(ops.sum(fp, axis=0))
        self.fn.assign_add(ops.sum(fn, axis=0))

    def _per_class(self) -> Any:
        """``(C,)`` score of every class, NaN where nothing was scored."""
        nan = float("nan")
        if self.per_image:
            count = self.score_count
            return ops.where(count > 0, self.score_sum / ops.maximum(count, 1e-12), nan)
        numerator = 2.0 * self.tp if self._dice else self.tp
        denominator = numerator + self.fp + self.fn
        ratio = numerator / ops.maximum(denominator, 1e-12)
        return ops.where(denominator > 0, ratio, _FILL[self.empty])

    def result(self) -> Any:
        per_class = self._per_class()
        if self.class_id is not None:
            return per_class[self.class_id]
        first = 1 if self.mode == "multiclass" and not self.include_background else 0
        scored = per_class[first:]
        has_value = ops.logical_not(ops.isnan(scored))
        count = ops.sum(ops.cast(has_value, "float32"))
        total = ops.sum(ops.where(has_value, scored, 0.0))
        return ops.where(count > 0, total / ops.maximum(count, 1.0), float("nan"))

    def per_class_result(self) -> np.ndarray:
        """The score of every channel/class as a numpy array ``(C,)`` (NaN: nothing scored).

        Example:
            >>> m = DiceScore(mode="multiclass", num_classes=3)
            >>> m.update_state(np.array([[[0, 1, 2]]]), np.eye(3)[np.array([[[0, 1, 1]]])])
            >>> m.per_class_result().round(3).tolist()
            [1.0, 0.667, 0.0]
        """
        return np.asarray(ops.convert_to_numpy(self._per_class()), dtype=np.float64)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "mode": self.mode,
            "num_classes": self.num_classes,
            "threshold": self.threshold,
            "from_logits": self.from_logits,
            "per_image": self.per_image,
            "include_background": self.include_background,
            "ignore_index": self.ignore_index,
            "empty": self.empty,
            "class_id": self.class_id,
            "validate": self.validate,
        }


@keras.saving.register_keras_serializable(package="segdoctor")
class DiceScore(_OverlapScore):
    """Dice score accumulated over an epoch; higher is better. History keys "dice"/"val_dice".

    Args:
        mode: "binary" (one sigmoid channel), "multiclass" (arg-max) or "multilabel".
        num_classes: output channels; required for multiclass and multilabel.
        threshold: probability threshold (binary, multilabel), strictly greater counts.
        from_logits: the model outputs logits: a sigmoid comes before the threshold.
        per_image: mean of per-image scores (default) or one dataset-level score per class.
        include_background: multiclass only: also average class 0.
        ignore_index: label whose pixels count nowhere.
        empty: "skip" | "one" | "zero" when truth and prediction are both empty.
        class_id: report this class only (``per_class_result()`` gives all of them).
        validate: when label/probability value checks run: "first" eager update (default),
            "always", or "never". Shapes are always checked.
        name: defaults to "dice".

    Example:
        >>> model.compile("adam", loss=DiceCELoss(), metrics=[DiceScore()])  # doctest: +SKIP
        >>> # EarlyStopping(monitor="val_dice", mode="auto") now maximises val_dice.
    """


@keras.saving.register_keras_serializable(package="segdoctor")
class IoUScore(_OverlapScore):
    """IoU (Jaccard) score accumulated over an epoch; higher is better. Keys "iou"/"val_iou".

    Takes the same arguments as :class:`DiceScore`; ``name`` defaults to "iou".

    Example:
        >>> metric = IoUScore(mode="multiclass", num_classes=12, ignore_index=11)
    """

    _dice = False
    _default_name = "iou"


BOOTSTRAP_ROUNDS = 10_000  # resamples of the paired comparison


def paired_difference(
    fixed: Mapping[str, float],
    diagnosed: Mapping[str, float],
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-image paired comparison: mean of ``fixed - diagnosed`` with a bootstrap 95% interval.

    The method of benchmarks/bench_quality.py: images scored by only one side (NaN, e.g. empty
    truth and empty prediction under the skip policy) are left out; the interval is the 2.5 and
    97.5 percentiles of the means of ``rounds`` resamples of the images; the p-value is a
    two-sided sign-flip permutation test.

    Args:
        fixed, diagnosed: Dice per image name.
        rounds: Bootstrap and permutation rounds.
        seed: Seed of the resampling.

    Returns:
        ``images``, ``mean_difference``, ``median_difference``, ``ci95`` ([low, high]), ``wins``,
        ``losses``, ``p_value`` (``images`` 0 and no other keys when nothing is paired).

    Example:
        >>> r = paired_difference({"a": 1.0, "b": 0.5}, {"a": 0.5, "b": 0.5})
        >>> r["mean_difference"], r["wins"], r["losses"]
        (0.25, 1, 0)
    """
    names = sorted(
        n
        for n in set(fixed) & set(diagnosed)
        if np.isfinite(fixed[n]) and np.isfinite(diagnosed[n])
    )
    d = np.array([fixed[n] - diagnosed[n] for n in names], dtype=float)  # (N,)
    if not len(d):
        return {"images": 0}
    rng = np.random.default_rng(seed)
    boot = np.concatenate(
        [
            d[rng.integers(0, len(d), (chunk, len(d)))].mean(axis=1)  # (chunk,)
            for chunk in _chunks(rounds)
        ]
    )
    flips = rng.choice([-1.0, 1.0], size=(rounds, len(d)))  # (rounds, N)
    null = np.abs((flips * d).mean(axis=1))
    return {
        "images": len(d),
        "mean_difference": float(d.mean()),
        "median_difference": float(np.median(d)),
        "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "wins": int((d > 1e-4).sum()),
        "losses": int((d < -1e-4).sum()),
        "p_value": float((1 + (null >= abs(d.mean()) - 1e-12).sum()) / (rounds + 1)),
    }


def _chunks(rounds: int, size: int = 1000) -> list[int]:
    return [min(size, rounds - start) for start in range(0, rounds, size)]
