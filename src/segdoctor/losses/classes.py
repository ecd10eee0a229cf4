"""The Keras loss classes: configuration plus a call to the pure function of each loss.

Each class is registered with Keras under ``segdoctor>ClassName`` (the name saved models store),
so ``keras.models.load_model`` restores it once :mod:`segdoctor.losses` is imported.

Example:
    >>> import numpy as np
    >>> loss = DiceLoss(mode="binary")
    >>> y = np.ones((2, 4, 4, 1), "float32")
    >>> float(loss(y, y))
    0.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import keras

from segdoctor.errors import ConfigError, check_choice
from segdoctor.losses.checks import is_eager
from segdoctor.losses.functional import (
    check_tversky,
    dice_ce_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    log_cosh_dice_loss,
    soft_dice_loss,
    tversky_loss,
)
from segdoctor.losses.options import (
    PER_IMAGE,
    VALIDATE_POLICIES,
    WEIGHT_TYPES,
    Tensor,
    as_float,
    make_options,
)

__all__ = [
    "DiceCELoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "LogCoshDiceLoss",
    "TverskyLoss",
]


class _SegmentationLoss(keras.losses.Loss):
    """Shared configuration of the segdoctor losses (not registered; use a subclass).

    Besides the options of :func:`soft_dice_loss`, every class takes ``validate``: when the
    value checks (label range, 0/1 masks, probabilities vs logits) run. ``"first"`` (default)
    checks the first call made in eager execution, which catches the systematic mistakes (0/255
    masks, logits passed as probabilities, too few output channels) without a per-step cost;
    ``"always"`` checks every eager call; ``"never"`` skips them. Shape checks always run.
    """

    _function: Callable[..., Tensor]  # the pure function, set by each subclass

    def __init__(
        self,
        *,
        mode: str = "binary",
        from_logits: bool = False,
        per_image: bool = PER_IMAGE,
        include_background: bool = False,
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
        smooth: float = 1.0,
        squared_denominator: bool = False,
        num_classes: int | None = None,
        validate: str = "first",
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
    ) -> None:
        super().__init__(name=name, reduction=reduction)
        self.options = make_options(
            mode=mode,
            from_logits=from_logits,
            per_image=per_image,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            smooth=smooth,
            squared_denominator=squared_denominator,
            num_classes=num_classes,
        )
        self.validate = check_choice("validate", validate, VALIDATE_POLICIES)
        self._validated = False
        self._shared: dict[str, Any] | None = None

    # The shared options, readable as attributes (``loss.from_logits``), never reassigned.
    mode = property(lambda self: self.options.mode)
    from_logits = property(lambda self: self.options.from_logits)
    per_image = property(lambda self: self.options.per_image)
    include_background = property(lambda self: self.options.include_background)
    class_weights = property(lambda self: self.options.class_weights)
    ignore_index = property(lambda self: self.options.ignore_index)
    smooth = property(lambda self: self.options.smooth)
    squared_denominator = property(lambda self: self.options.squared_denominator)
    num_classes = property(lambda self: self.options.num_classes)

    def _extra_options(self) -> dict[str, Any]:
        """Keywords of the subclass' own loss (alpha, gamma, ...)."""
        return {}

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        check = self.validate == "always" or (self.validate == "first" and not self._validated)
        if self._shared is None:  # the options are frozen; asdict costs ~0.1 ms per call
            self._shared = asdict(self.options)
        options = {**self._shared, "validate": check, **self._extra_options()}
        value = type(self)._function(y_true, y_pred, **options)
        if check and is_eager(y_pred):
            self._validated = True  # reached only when the checks passed
        return value

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **self.options.config(),
            **self._extra_options(),
            "validate": self.validate,
        }


@keras.saving.register_keras_serializable(package="segdoctor")
class DiceLoss(_SegmentationLoss):
    """Soft Dice loss. See :func:`soft_dice_loss` and the module docstring for the semantics.

    Example:
        >>> model.compile(optimizer="adam", loss=DiceLoss(mode="binary"))  # doctest: +SKIP
    """

    _function = staticmethod(soft_dice_loss)


@keras.saving.register_keras_serializable(package="segdoctor")
class TverskyLoss(_SegmentationLoss):
    """Tversky loss; ``alpha`` weights false positives, ``beta`` false negatives.

    Example:
        >>> loss = TverskyLoss(alpha=0.3, beta=0.7)   # penalise misses more than false alarms
    """

    _function = staticmethod(tversky_loss)

    def __init__(self, *, alpha: float = 0.3, beta: float = 0.7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha, self.beta = check_tversky(alpha, beta, self.options.squared_denominator)

    def _extra_options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="segdoctor")
class FocalTverskyLoss(TverskyLoss):
    """Focal Tversky loss ``(1 - TI) ** gamma``, averaged over classes.

    Example:
        >>> loss = FocalTverskyLoss(alpha=0.3, beta=0.7, gamma=0.75)
    """

    _function = staticmethod(focal_tversky_loss)

    def __init__(self, *, gamma: float = 0.75, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = as_float("gamma", gamma, positive=True)

    def _extra_options(self) -> dict[str, Any]:
        return {**super()._extra_options(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="segdoctor")
class GeneralizedDiceLoss(_SegmentationLoss):
    """Generalized Dice loss (Sudre et al. 2017), see :func:`generalized_dice_loss`.

    Example:
        >>> loss = GeneralizedDiceLoss(mode="multiclass", weight_type="square")
    """

    _function = staticmethod(generalized_dice_loss)

    def __init__(self, *, weight_type: str = "square", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight_type = check_choice("weight_type", weight_type, WEIGHT_TYPES)

    def _extra_options(self) -> dict[str, Any]:
        return {"weight_type": self.weight_type}


@keras.saving.register_keras_serializable(package="segdoctor")
class LogCoshDiceLoss(_SegmentationLoss):
    """``log(cosh(Dice loss))``, see :func:`log_cosh_dice_loss`.

    Example:
        >>> loss = LogCoshDiceLoss(mode="binary", from_logits=True)
    """

    _function = staticmethod(log_cosh_dice_loss)


@keras.saving.register_keras_serializable(package="segdoctor")
class DiceCELoss(_SegmentationLoss):
    """Dice plus cross-entropy: segdoctor's recommended default (and nnU-Net's).

    Example:
        >>> binary = DiceCELoss(mode="binary")                      # sigmoid (B, H, W, 1)
        >>> multi = DiceCELoss(mode="multiclass", ignore_index=11)  # softmax (B, H, W, C)
    """

    _function = staticmethod(dice_ce_loss)

    def __init__(self, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lambda_dice = as_float("lambda_dice", lambda_dice)
        self.lambda_ce = as_float("lambda_ce", lambda_ce)
        if self.lambda_dice + self.lambda_ce == 0:
            raise ConfigError("lambda_dice and lambda_ce cannot both be 0", fix="use 1.0 and 1.0.")

    def _extra_options(self) -> dict[str, Any]:
        return {"lambda_dice": self.lambda_dice, "lambda_ce": self.lambda_ce}
