"""Step 1 of every loss: labels aligned with a ``(B, *spatial, C)`` prediction.

Labels are sparse class indices ``(B, H, W)`` / ``(B, H, W, 1)`` or dense ``(B, H, W, C)``; the
result is a float32 one-hot (multiclass) or 0/1 target of the prediction's shape and, with
``ignore_index``, a mask of the pixels that count.

Example:
    >>> import numpy as np
    >>> t = prepare_targets(np.array([[[0, 1]]]), np.zeros((1, 1, 2, 2)), mode="multiclass")
    >>> tuple(t.target.shape), t.valid is None
    ((1, 1, 2, 2), True)
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from segdoctor.errors import ConfigError, DataError, check_choice
from segdoctor.losses.checks import check_label_values
from segdoctor.losses.options import MODES, Tensor

__all__ = ["Targets", "prepare_targets", "static_channels"]


class Targets(NamedTuple):
    """Labels aligned with a ``(B, *spatial, C)`` prediction.

    Attributes:
        target: float32 ``(B, *spatial, C)``; one-hot (multiclass) or 0/1 masks, 0 where ignored.
        valid: float32 mask, 1 where a pixel counts, broadcastable to ``target``
            (``(B, *spatial, 1)``, or ``(B, *spatial, C)`` in multilabel mode); ``None`` when
            ``ignore_index`` is not set.
    """

    target: Tensor
    valid: Tensor | None
    one_hot: bool = False  # built from sparse labels: every row is exactly one-hot (or all zero)


def static_channels(y_pred: Tensor) -> int:
    """The channel count ``C`` of a ``(B, *spatial, C)`` prediction; DataError without one.

    Example:
        >>> import numpy as np
        >>> static_channels(np.zeros((2, 4, 4, 3)))
        3
    """
    shape = tuple(y_pred.shape)
    if len(shape) < 3:
        raise DataError(
            "y_pred must have a batch axis, spatial axes and a channel axis",
            expected="(batch, height, width, channels)",
            received=f"shape {shape}",
            fix="keep the channel axis, even for a single-channel (sigmoid) output.",
        )
    channels = shape[-1]
    if channels is None:
        raise DataError("The channel axis of y_pred must have a known size", received=str(shape))
    return int(channels)


def _check_channels(mode: str, channels: int, num_classes: int | None) -> None:
    if (
        num_classes is not None
        and num_classes != channels
        and not (mode == "binary" and num_classes in (1, 2))
    ):
        raise ConfigError(
            f"num_classes={num_classes} does not match the {channels} channels of y_pred",
            fix="pass num_classes equal to the number of output channels, or leave it unset.",
        )
    if mode == "binary" and channels != 1:
        raise ConfigError(
            f'mode="binary" expects one output channel (a sigmoid), got {channels}',
            expected="y_pred of shape (B, H, W, 1)",
            received=f"{channels} channels",
            fix='use mode="multiclass" for a softmax over classes, or mode="multilabel" for one '
            "sigmoid per channel.",
        )
    if mode == "multiclass" and channels < 2:
        raise ConfigError(
            'mode="multiclass" needs one output channel per class (at least 2)',
            received="1 channel",
            fix='use mode="binary" for a single sigmoid output, or give the model C channels '
            "with a softmax.",
        )


def _check_label_shape(true_shape: tuple, pred_shape: tuple, mode: str, channels: int) -> bool:
    """Whether ``(B, *spatial, 1 or C)`` labels are sparse; DataError when they do not fit."""
    rank = len(pred_shape)
    spatial_mismatch = any(
        a is not None and b is not None and a != b
        for a, b in zip(true_shape[:-1], pred_shape[:-1], strict=False)
    )
    label_channels = true_shape[-1] if len(true_shape) == rank else -1
    sparse = mode == "multiclass" and label_channels == 1
    if len(true_shape) != rank or spatial_mismatch or not (sparse or label_channels == channels):
        expected = {
            "binary": "(B, H, W) or (B, H, W, 1)",
            "multiclass": f"(B, H, W), (B, H, W, 1) or one-hot (B, H, W, {channels})",
            "multilabel": f"(B, H, W, {channels}), one 0/1 mask per channel",
        }[mode]
        raise DataError(
            "Labels and predictions have incompatible shapes",
            expected=f"labels {expected} for predictions {pred_shape}",
            received=f"labels {true_shape}",
            fix="resize masks with nearest-neighbour interpolation to the prediction size and "
            "check the label layout for this mode.",
        )
    return sparse


def _one_hot(y_true: Tensor, channels: int) -> Tensor:
    """``(B, *spatial, 1)`` float class indices -> float32 one-hot ``(B, *spatial, C)``."""
    if keras.backend.backend() == "tensorflow":
        # one kernel (tf.one_hot) instead of three graph ops; out-of-range labels give zeros
        return ops.one_hot(ops.cast(ops.squeeze(y_true, -1), "int32"), channels)
    # fused by XLA on JAX; torch's one_hot rejects out-of-range labels
    classes = ops.arange(channels, dtype="float32")  # (C,)
    return ops.cast(ops.equal(y_true, classes), "float32")  # (B, *spatial, C)


def prepare_targets(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    mode: str = "binary",
    ignore_index: int | None = None,
    num_classes: int | None = None,
    validate: bool = True,
) -> Targets:
    """Align labels with predictions: validate shapes and values, one-hot, ignore mask.

    Shapes are always checked. Value checks (labels in range, 0/1 masks) need concrete values:
    they run in eager execution when ``validate=True`` and are skipped while a backend traces a
    compiled step; out-of-range sparse labels then match no class.

    Args:
        y_true: ``(B, *spatial)`` or ``(B, *spatial, 1)`` sparse labels, or ``(B, *spatial, C)``.
        y_pred: ``(B, *spatial, C)`` predictions (only the shape is used here).
        mode: "binary", "multiclass" or "multilabel".
        ignore_index: label value of pixels that count nowhere.
        num_classes: optional check against ``C``.
        validate: run the value checks (eager execution only).

    Returns:
        Targets(target, valid).

    Example:
        >>> import numpy as np
        >>> t = prepare_targets(np.array([[[0, 2]]]), np.zeros((1, 1, 2, 3)), mode="multiclass")
        >>> ops.convert_to_numpy(t.target)[0, 0].tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    mode = check_choice("mode", mode, MODES)
    y_pred = ops.convert_to_tensor(y_pred)
    channels = static_channels(y_pred)
    _check_channels(mode, channels, num_classes)

    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)  # (B, *spatial) -> (B, *spatial, 1)
    true_shape = tuple(y_true.shape)
    sparse = _check_label_shape(true_shape, tuple(y_pred.shape), mode, channels)

    y_true = ops.cast(y_true, "float32")
    keep = _keep_mask(y_true, ignore_index, mode=mode, sparse=sparse)  # None or bool
    if validate:
        check_label_values(y_true, keep, mode=mode, sparse=sparse, channels=channels)
    return _aligned_targets(y_true, keep, sparse=sparse, channels=channels)


def _keep_mask(
    y_true: Tensor, ignore_index: int | None, *, mode: str, sparse: bool
) -> Tensor | None:
    """Bool mask of the labels that count (not ``ignore_index``), or None without one.

    Args:
        y_true: float32 ``(B, *spatial, 1)`` sparse or ``(B, *spatial, C)`` dense labels.
        ignore_index: label value of pixels that count nowhere.
        mode: "binary", "multiclass" or "multilabel".
        sparse: ``y_true`` holds class indices (multiclass).

    Returns:
        bool, the shape of ``y_true``: ``(B, *spatial, 1 or C)``.

    Raises:
        ConfigError: ``ignore_index`` with one-hot labels in multiclass mode.

    Example:
        >>> import numpy as np
        >>> keep = _keep_mask(np.array([[[[0.0], [11.0]]]]), 11, mode="multiclass", sparse=True)
        >>> ops.convert_to_numpy(keep)[0, 0, :, 0].tolist()
        [True, False]
    """
    if ignore_index is None:
        return None
    if mode == "multiclass" and not sparse:
        raise ConfigError(
            "ignore_index needs sparse labels in multiclass mode",
            received=f"one-hot labels of shape {tuple(y_true.shape)}",
            fix="pass class-index masks (B, H, W) with the ignore label, not one-hot labels.",
        )
    return ops.not_equal(y_true, float(ignore_index))  # (B, *spatial, 1 or C)


def _aligned_targets(
    y_true: Tensor, keep: Tensor | None, *, sparse: bool, channels: int
) -> Targets:
    """The :class:`Targets` of checked float32 labels: one-hot when sparse, 0 where ignored.

    Args:
        y_true: float32 ``(B, *spatial, 1)`` sparse or ``(B, *spatial, C)`` dense labels.
        keep: bool mask of the labels that count (:func:`_keep_mask`), or None.
        sparse: ``y_true`` holds class indices to one-hot encode.
        channels: ``C``, the prediction's channel count.

    Example:
        >>> import numpy as np
        >>> t = _aligned_targets(ops.convert_to_tensor([[[[1.0]]]]), None, sparse=True, channels=3)
        >>> ops.convert_to_numpy(t.target).tolist(), t.valid, t.one_hot
        ([[[[0.0, 1.0, 0.0]]]], None, True)
    """
    valid = None if keep is None else ops.cast(keep, "float32")
    if sparse:
        target = _one_hot(y_true, channels)  # (B, *spatial, C)
        if valid is not None:
            target = target * valid
        return Targets(target, valid, one_hot=True)
    target = y_true if keep is None else ops.where(keep, y_true, 0.0)
    return Targets(target, valid)
