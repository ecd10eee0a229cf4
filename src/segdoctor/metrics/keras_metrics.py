"""Stateful Keras metrics :class:`DiceScore` and :class:`IoUScore`, accumulated over an epoch.

They declare that higher is better (``_direction = "up"``), so callbacks with ``mode="auto"``
(ReduceLROnPlateau, EarlyStopping, ModelCheckpoint) maximise them, and they are registered with
Keras under ``segdoctor>DiceScore`` / ``segdoctor>IoUScore`` (the names saved models store).

Example:
    >>> import numpy as np
    >>> m = DiceScore(mode="multiclass", num_classes=3)
    >>> m.update_state(np.array([[[0, 1, 2]]]), np.eye(3)[np.array([[[0, 1, 1]]])])
    >>> round(float(m.result()), 3)
    0.333
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from segdoctor.errors import ConfigError, check_choice
from segdoctor.losses import (
    MODES,
    VALIDATE_POLICIES,
    check_probabilities,
    confusion_terms,
    prepare_targets,
)
from segdoctor.losses.checks import is_eager
from segdoctor.metrics.evaluation import EMPTY_FILL, EMPTY_POLICIES, check_threshold

__all__ = ["DiceScore", "IoUScore"]


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
        self.threshold = check_threshold(threshold)
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
        if check and is_eager(y_pred):
            self._validated = True  # reached only when the checks passed
        tp, fp, fn = confusion_terms(hard, targets.target, targets.valid)  # (B, C) exact counts
        numerator = 2.0 * tp if self._dice else tp
        denominator = numerator + fp + fn
        is_empty = ops.equal(denominator, 0.0)
        fill = 0.0 if self.empty == "skip" else EMPTY_FILL[self.empty]  # skipped scores weigh 0
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
        return ops.where(denominator > 0, ratio, EMPTY_FILL[self.empty])

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
