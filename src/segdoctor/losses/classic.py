"""The classic Keras 2 Dice recipe (``dice_coef``, ``dice_loss``, ``weighted_dice_loss``) on Keras 3.

Kept for reproducing old results: ``dice_coef`` pools every pixel, class and image of the batch into
one score. :class:`segdoctor.losses.DiceLoss` and :class:`segdoctor.metrics.DiceScore` say what
they average.

Example:
    >>> import numpy as np
    >>> float(dice_loss(np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1))))
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
from keras import ops

from segdoctor.errors import DataError
from segdoctor.losses.functional import soft_dice_loss
from segdoctor.losses.options import Tensor, make_options
from segdoctor.losses.targets import static_channels

__all__ = ["dice_coef", "dice_loss", "weighted_dice_loss"]


def _check_same_size(y_true: Tensor, y_pred: Tensor) -> None:
    sizes = [math.prod(s) if None not in s else None for s in (y_true.shape, y_pred.shape)]
    if None not in sizes and sizes[0] != sizes[1]:
        raise DataError(
            "dice_coef flattens labels and predictions, which must have the same number of values",
            received=f"labels {tuple(y_true.shape)}, predictions {tuple(y_pred.shape)}",
            fix="use DiceLoss(mode='multiclass'), which accepts sparse labels for a softmax output.",
        )


@keras.saving.register_keras_serializable(package="segdoctor")
def dice_coef(y_true: Tensor, y_pred: Tensor, smooth: float = 1.0) -> Tensor:
    """The classic Keras 2 ``dice_coef``, on Keras 3 (no ``keras.backend.flatten``/``sum`` there).

    ``(2 * sum(t * p) + smooth) / (sum(t) + sum(p) + smooth)`` over *everything* flattened: one score
    pooled over batch, pixels and channels. Kept for reproducing old results;
    :class:`segdoctor.metrics.DiceScore` and :class:`DiceLoss` say what they average.

    Example:
        >>> import numpy as np
        >>> float(dice_coef(np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1))))
        1.0
    """
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    _check_same_size(y_true, y_pred)
    t = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    p = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    intersection = ops.sum(t * p)
    return (2.0 * intersection + smooth) / (ops.sum(t) + ops.sum(p) + smooth)


@keras.saving.register_keras_serializable(package="segdoctor")
def dice_loss(y_true: Tensor, y_pred: Tensor, smooth: float = 1.0) -> Tensor:
    """The classic ``1 - dice_coef(y_true, y_pred)``.

    Example:
        >>> import numpy as np
        >>> float(dice_loss(np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1))))
        0.0
    """
    return 1.0 - dice_coef(y_true, y_pred, smooth=smooth)


def weighted_dice_loss(
    class_weights: Sequence[float], smooth: float = 1.0
) -> Callable[[Tensor, Tensor], Tensor]:
    """The classic class-weighted Dice loss, fixed: per-class pooled Dice, weighted mean.

    The well-known version broadcast the weights over a flattened tensor (mixing classes) and used
    an undefined ``smooth``. Here each class gets its own Dice over the batch, and the result is
    ``1 - sum_c w_c dice_c`` with ``w`` normalized; the background is included (give it weight 0 to
    leave it out). Labels may be one-hot ``(B, H, W, C)`` or sparse. The returned function is not
    serializable; for saved models use
    ``DiceLoss(class_weights=..., include_background=True, per_image=False)``.

    Example:
        >>> import numpy as np
        >>> loss_fn = weighted_dice_loss([0.0, 1.0, 2.0])
        >>> y = np.eye(3, dtype="float32")[np.array([[[0, 1, 2]]])]
        >>> float(loss_fn(y, y))
        0.0
    """
    weights = make_options(class_weights=class_weights, smooth=smooth).class_weights

    def weighted_dice_loss_fn(y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        channels = static_channels(y_pred)
        dense = len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == channels
        if channels == 1:
            mode, background = "binary", False
        else:
            mode, background = ("multilabel", False) if dense else ("multiclass", True)
        return soft_dice_loss(
            y_true,
            y_pred,
            mode=mode,
            include_background=background,
            class_weights=weights,
            smooth=smooth,
            per_image=False,  # the classic loss pools the batch
        )

    weighted_dice_loss_fn.__name__ = "weighted_dice_loss"
    return weighted_dice_loss_fn
