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

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import ops

from segdoctor.errors import ConfigError, DataError, check_choice, did_you_mean

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

MODES: tuple[str, ...] = ("binary", "multiclass", "multilabel")
PER_IMAGE = True
"""The default reduction of every loss: one Dice per image, then the mean (``per_image=True``).

The same default as the metrics (``DiceScore``), the recipe and the doctor, which warns
(``dice-batch-pooled``) when a loss pools the batch: pooled, a missed small object next to a large
one barely counts. Pass ``per_image=False`` for nnU-Net's "batch Dice"."""
VALIDATE_POLICIES: tuple[str, ...] = ("first", "always", "never")  # when value checks run
WEIGHT_TYPES: tuple[str, ...] = ("square", "simple", "uniform")
_EPS = 1e-7  # clip for log(p) and the focal Tversky base
_PROB_TOLERANCE = 1e-3  # probabilities may overshoot [0, 1] by rounding (bfloat16 softmax)

Tensor = Any  # a backend tensor (torch.Tensor, jax.Array, tf.Tensor) or array-like


# --------------------------------------------------------------------------------------------
# Options: validated once, in plain Python, with errors that say how to fix them.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """The keywords shared by every loss, validated."""

    mode: str = "binary"
    from_logits: bool = False
    per_image: bool = PER_IMAGE
    include_background: bool = False
    class_weights: tuple[float, ...] | None = None
    ignore_index: int | None = None
    smooth: float = 1.0
    squared_denominator: bool = False
    num_classes: int | None = None
    validate: bool = True  # run the eager value checks (a per-call switch, not configuration)

    def config(self) -> dict[str, Any]:
        out = asdict(self)
        del out["validate"]
        if self.class_weights is not None:
            out["class_weights"] = list(self.class_weights)
        return out


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigError(
        f"{name} must be True or False",
        expected="a bool",
        received=repr(value),
        fix=f"pass {name}=True or {name}=False.",
    )


def _as_int(name: str, value: object, minimum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer", received=repr(value))
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}", received=repr(value))
    return int(value)


def _as_float(name: str, value: object, *, positive: bool = False) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number", received=repr(value)) from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ConfigError(
            f"{name} must be a finite number {'> 0' if positive else '>= 0'}",
            received=repr(value),
        )
    return number


def _make_options(
    mode: str = "binary",
    from_logits: bool = False,
    per_image: bool = PER_IMAGE,
    include_background: bool = False,
    class_weights: Sequence[float] | None = None,
    ignore_index: int | None = None,
    smooth: float = 1.0,
    squared_denominator: bool = False,
    num_classes: int | None = None,
    validate: bool = True,
) -> _Options:
    mode = check_choice("mode", mode, MODES)
    include_background = _as_bool("include_background", include_background)
    if include_background and mode != "multiclass":
        raise ConfigError(
            f'include_background=True has no meaning in mode="{mode}"',
            expected='include_background=True only with mode="multiclass" (channel 0 = background)',
            received=f'mode="{mode}", whose channels are all foreground',
            fix="drop include_background, or use a softmax output with one channel per class "
            'including background and mode="multiclass".',
        )
    smooth_value = _as_float("smooth", smooth)
    if smooth_value == 0:
        raise ConfigError(
            "smooth must be > 0",
            expected="a positive number, for example 1.0",
            received="smooth=0",
            fix="with smooth=0 an empty mask scores 0/0 and false positives on empty images get no "
            "gradient; use a small positive value (1.0 is the default).",
        )
    weights = None
    if class_weights is not None:
        if isinstance(class_weights, (str, bytes)) or not hasattr(class_weights, "__len__"):
            raise ConfigError(
                "class_weights must be a sequence with one weight per class",
                received=repr(class_weights),
            )
        weights = tuple(_as_float("class_weights entry", w) for w in class_weights)
        if not any(w > 0 for w in weights):
            raise ConfigError(
                "class_weights must contain a positive weight", received=repr(weights)
            )
    return _Options(
        mode=mode,
        from_logits=_as_bool("from_logits", from_logits),
        per_image=_as_bool("per_image", per_image),
        include_background=include_background,
        class_weights=weights,
        ignore_index=None if ignore_index is None else _as_int("ignore_index", ignore_index),
        smooth=smooth_value,
        squared_denominator=_as_bool("squared_denominator", squared_denominator),
        num_classes=None if num_classes is None else _as_int("num_classes", num_classes, 1),
        validate=_as_bool("validate", validate),
    )


# --------------------------------------------------------------------------------------------
# Eager-only value checks (skipped while a backend traces or compiles the computation).
# --------------------------------------------------------------------------------------------


def _float32(x: Tensor) -> Tensor:
    """``x`` as a float32 tensor; no cast op when it already is one (each Keras op dispatch costs
    tens of microseconds on an eager backend, more than a small loss's arithmetic)."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and keras.backend.standardize_dtype(dtype) == "float32":
        return x
    return ops.cast(x, "float32")


def _is_eager(x: Tensor) -> bool:
    """True when ``x`` holds concrete values that can be inspected without breaking a trace."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.executing_eagerly())
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def _minmax(x: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum and maximum of ``x`` (one pass over memory on torch)."""
    x = ops.convert_to_tensor(x)
    if keras.backend.backend() == "torch":
        import torch

        result = torch.aminmax(x)
        return result.min, result.max
    return ops.min(x), ops.max(x)


def _scalars(*values: Tensor) -> list[float] | None:
    """Fetch several scalar tensors to the host in one transfer; None while tracing.

    Inside ``jax.jit`` even reductions of concrete arrays are staged out as tracers, so the result
    is what tells whether values can be read.
    """
    stacked = ops.stack(list(values))
    if not _is_eager(stacked):
        return None
    return [float(v) for v in ops.convert_to_numpy(stacked)]


def _check_label_values(
    labels: Tensor, valid: Tensor | None, *, mode: str, sparse: bool, channels: int
) -> None:
    """Raise DataError for label values the mode cannot mean. Eager execution only."""
    if not _is_eager(labels):
        return
    kept = labels if valid is None else ops.where(valid, labels, 0.0)
    if sparse:
        found = _scalars(*_minmax(kept), ops.max(ops.abs(kept - ops.round(kept))))
        if found is None:
            return
        lo, hi, frac = found
        if frac > 0:
            raise DataError(
                "Sparse class labels must be whole numbers",
                received=f"a label with fractional part {frac:g}",
                fix="pass integer class indices (or one-hot labels with one channel per class).",
            )
        if lo < 0 or hi >= channels:
            raise DataError(
                f"Class labels must lie in [0, {channels}) for a {channels}-channel output",
                expected=f"integers 0..{channels - 1}, plus ignore_index if set",
                received=f"labels from {lo:g} to {hi:g}",
                fix="give the model one output channel per class, or pass ignore_index=<label> "
                "for a void/ignore label.",
            )
        return
    found = _scalars(*_minmax(kept))
    if found is None:
        return
    lo, hi = found
    if lo < 0 or hi > 1:
        hint = (
            "masks stored as 0/255 must be divided by 255 (segdoctor.data.normalize_mask does it)"
            if hi == 255
            else "class indices need mode='multiclass'"
        )
        raise DataError(
            f'Labels must be 0/1 masks in mode="{mode}" (soft labels in [0, 1] are allowed)',
            received=f"values from {lo:g} to {hi:g}",
            fix=f"{hint}; if {hi:g} marks pixels to ignore, pass ignore_index={hi:g}.",
        )


def check_probabilities(y_pred: Tensor, mode: str) -> None:
    """Raise ConfigError when y_pred, said to hold probabilities, is clearly logits.

    Runs in eager execution only (a no-op while a backend traces a compiled step).

    Example:
        >>> check_probabilities(np.array([0.2, 0.9]), "binary")   # fine: nothing happens
    """
    if not _is_eager(y_pred):
        return
    found = _scalars(*_minmax(y_pred))
    if found is None:
        return
    lo, hi = found
    if lo < -_PROB_TOLERANCE or hi > 1 + _PROB_TOLERANCE:
        activation = "softmax" if mode == "multiclass" else "sigmoid"
        raise ConfigError(
            "from_logits=False but y_pred has values outside [0, 1]",
            expected="probabilities in [0, 1]",
            received=f"values from {lo:.4g} to {hi:.4g} (these look like logits)",
            fix=f"pass from_logits=True, or end the model with a {activation} activation.",
        )


# --------------------------------------------------------------------------------------------
# Step 1: targets.
# --------------------------------------------------------------------------------------------


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


def _static_channels(y_pred: Tensor) -> int:
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
    channels = _static_channels(y_pred)
    _check_channels(mode, channels, num_classes)
    rank = len(y_pred.shape)

    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == rank - 1:
        y_true = ops.expand_dims(y_true, -1)  # (B, *spatial) -> (B, *spatial, 1)
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
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

    y_true = ops.cast(y_true, "float32")
    keep = None
    if ignore_index is not None:
        if mode == "multiclass" and not sparse:
            raise ConfigError(
                "ignore_index needs sparse labels in multiclass mode",
                received=f"one-hot labels of shape {true_shape}",
                fix="pass class-index masks (B, H, W) with the ignore label, not one-hot labels.",
            )
        keep = ops.not_equal(y_true, float(ignore_index))  # (B, *spatial, 1 or C)
    if validate:
        _check_label_values(y_true, keep, mode=mode, sparse=sparse, channels=channels)

    valid = None if keep is None else ops.cast(keep, "float32")
    if sparse:
        if keras.backend.backend() == "tensorflow":
            # one kernel (tf.one_hot) instead of three graph ops; out-of-range labels give zeros
            target = ops.one_hot(ops.cast(ops.squeeze(y_true, -1), "int32"), channels)
        else:  # fused by XLA on JAX; torch's one_hot rejects out-of-range labels
            classes = ops.arange(channels, dtype="float32")  # (C,)
            target = ops.cast(ops.equal(y_true, classes), "float32")  # (B, *spatial, C)
        if valid is not None:
            target = target * valid
        return Targets(target, valid, one_hot=True)
    target = y_true if keep is None else ops.where(keep, y_true, 0.0)
    return Targets(target, valid)


# --------------------------------------------------------------------------------------------
# Step 2: statistics.
# --------------------------------------------------------------------------------------------


class Confusion(NamedTuple):
    """Soft confusion statistics, float32 tensors of shape ``(B, C)`` (or ``(1, C)`` pooled)."""

    tp: Tensor
    fp: Tensor
    fn: Tensor


def confusion_terms(
    probs: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    *,
    squared: bool = False,
    pooled: bool = False,
) -> Confusion:
    """Soft tp, fp, fn per image and class from probabilities and aligned targets.

    With ``squared=True`` (V-Net) predicted and true mass are sums of squares, so
    ``2 tp + fp + fn = sum(p**2) + sum(t**2)``; ``fp`` and ``fn`` are then mass differences and may
    be slightly negative.

    Args:
        probs: ``(B, *spatial, C)`` probabilities (hard 0/1 predictions give exact counts).
        target: ``(B, *spatial, C)`` targets, 0 at ignored pixels.
        valid: optional mask broadcastable to ``probs``, 1 where a pixel counts.
        squared: use squared masses.
        pooled: sum over the batch too: one row ``(1, C)``.

    Returns:
        Confusion(tp, fp, fn), each float32 ``(B, C)`` (``(1, C)`` pooled).

    Example:
        >>> import numpy as np
        >>> p = np.array([[[[0.5], [1.0]]]], "float32"); t = np.array([[[[1.0], [0.0]]]], "float32")
        >>> [float(x[0, 0]) for x in confusion_terms(p, t)]
        [0.5, 1.0, 0.5]
    """
    probs, target = _float32(probs), _float32(target)
    if valid is not None:
        probs = probs * valid
    tp, pred_mass, true_mass = _masses(probs, target, squared, pooled)
    return Confusion(tp, pred_mass - tp, true_mass - tp)


_REDUCE_ROW = 64
"""Floats per row of the first reduction in :func:`_row_layout`."""

_CUSTOM_GRADIENT = True
"""On torch, use the closed-form backward of :mod:`segdoctor._torch_sums`; False differentiates
the sums automatically (the reference the tests compare against)."""


def _row_layout(x: Tensor) -> tuple[tuple[int, int, int], int] | None:
    """The shape ``(B, n / g, g * C)`` in which to sum ``x`` over its ``n`` pixels, and ``g``.

    A reduction over non-minor axes with a narrow minor axis (``C`` of 2-4 floats) is slow on CPU
    on every backend: the pixels are regrouped so that the large reduction runs over rows of at
    least 64 floats, then the ``g`` partial sums of each class are added. Forward + backward of the
    4-class Dice on 8x256x256x4 took about 38% less time on each backend (benchmarks/RESULTS.md,
    losses, ablation rows). One channel needs no regrouping (its pixels are contiguous). The rows
    stay per image even when the score pools the batch: JAX compiled the three sums of a single
    ``(1, n B / g, g C)`` block into a loop about ten times slower (32 vs 3 ms, a one-off
    measurement). None when a spatial size is unknown while tracing.
    """
    _, *spatial, channels = x.shape
    if channels is None or any(d is None for d in spatial):
        return None
    pixels = math.prod(spatial)
    group = 1
    while 1 < channels and group * channels < _REDUCE_ROW and pixels % (2 * group) == 0:
        group *= 2
    return (-1, pixels // group, group * channels), group


def _masses(probs: Tensor, target: Tensor, squared: bool, pooled: bool) -> list[Tensor]:
    """``[sum(p t), sum(p) or sum(p**2), sum(t) or sum(t**2)]`` per image (or pooled) and class.

    Every Dice-family loss is a function of these three sums. On torch they come with a
    closed-form backward (:mod:`segdoctor._torch_sums`); the XLA backends fuse the automatic one.
    Returns three ``(B, C)`` tensors, ``(1, C)`` when pooled.
    """
    channels = probs.shape[-1]
    layout = _row_layout(probs)
    if layout is None:  # dynamic spatial size (TensorFlow's validation pipeline): plain sums
        p, t = probs, target
        axes = tuple(range(1, len(probs.shape) - 1))

        def class_sums(x: Tensor) -> Tensor:  # (B, *spatial, C) -> (B, C)
            return ops.sum(x, axis=axes)

    else:
        shape, group = layout
        if _CUSTOM_GRADIENT and keras.backend.backend() == "torch":
            from segdoctor import _torch_sums

            return list(_torch_sums.masses(probs, target, shape, group, squared, pooled))
        p, t = ops.reshape(probs, shape), ops.reshape(target, shape)  # (B, n / g, g * C)

        def class_sums(x: Tensor) -> Tensor:  # (B, n / g, g * C) -> (B, C)
            rows = ops.sum(x, axis=1)
            return ops.sum(ops.reshape(rows, (-1, group, channels)), axis=1)

    sums = [
        class_sums(p * t),
        class_sums(ops.square(p) if squared else p),
        class_sums(ops.square(t) if squared else t),
    ]
    return [ops.sum(x, axis=0, keepdims=True) for x in sums] if pooled else sums


class _Prepared(NamedTuple):
    logits: Tensor  # float32 (B, *spatial, C): y_pred as given
    probs: Tensor  # float32 (B, *spatial, C)
    log_probs: Tensor | None  # multiclass from logits only: log_softmax
    targets: Targets
    channels: int


def _prepare(y_true: Tensor, y_pred: Tensor, opts: _Options) -> _Prepared:
    y_pred = ops.convert_to_tensor(y_pred)
    targets = prepare_targets(
        y_true,
        y_pred,
        mode=opts.mode,
        ignore_index=opts.ignore_index,
        num_classes=opts.num_classes,
        validate=opts.validate,
    )
    raw = _float32(y_pred)  # sums and scores in float32 under mixed precision
    log_probs = None
    if not opts.from_logits:
        if opts.validate:
            check_probabilities(raw, opts.mode)
        probs = raw
    elif opts.mode == "multiclass":
        log_probs = ops.log_softmax(raw, axis=-1)
        probs = ops.exp(log_probs)
    else:
        probs = ops.sigmoid(raw)
    return _Prepared(raw, probs, log_probs, targets, _static_channels(y_pred))


def soft_confusion(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    mode: str = "binary",
    from_logits: bool = False,
    ignore_index: int | None = None,
    num_classes: int | None = None,
    squared_denominator: bool = False,
) -> Confusion:
    """Soft tp, fp, fn per image and class, straight from labels and model outputs.

    Example:
        >>> import numpy as np
        >>> tp, fp, fn = soft_confusion(np.ones((1, 2, 2, 1)), np.full((1, 2, 2, 1), 0.5))
        >>> float(tp[0, 0]), float(fn[0, 0])
        (2.0, 2.0)
    """
    opts = _make_options(
        mode=mode,
        from_logits=from_logits,
        ignore_index=ignore_index,
        num_classes=num_classes,
        squared_denominator=squared_denominator,
    )
    prep = _prepare(y_true, y_pred, opts)
    return confusion_terms(
        prep.probs, prep.targets.target, prep.targets.valid, squared=squared_denominator
    )


# --------------------------------------------------------------------------------------------
# Step 3: reductions and scores.
# --------------------------------------------------------------------------------------------


def _statistics(prep: _Prepared, opts: _Options) -> Confusion:
    """Confusion per image (or pooled over the batch), background dropped: ``(N, C')``."""
    stats = confusion_terms(
        prep.probs,
        prep.targets.target,
        prep.targets.valid,
        squared=opts.squared_denominator,
        pooled=not opts.per_image,
    )
    if opts.mode == "multiclass" and not opts.include_background:
        stats = Confusion(*(x[:, 1:] for x in stats))  # (N, C - 1)
    return stats


def _class_weights(opts: _Options, channels: int) -> np.ndarray:
    """Normalized weights of the classes that are scored, float32 ``(C',)``."""
    first = 1 if opts.mode == "multiclass" and not opts.include_background else 0
    if opts.class_weights is None:
        weights = np.ones(channels - first)
    else:
        if len(opts.class_weights) != channels:
            raise ConfigError(
                f"class_weights has {len(opts.class_weights)} entries for {channels} classes",
                expected=f"one weight per output channel ({channels}); the background weight is "
                "ignored when include_background=False",
                received=repr(list(opts.class_weights)),
            )
        weights = np.asarray(opts.class_weights[first:], dtype="float64")
        if weights.sum() <= 0:
            raise ConfigError(
                "class_weights of the scored classes sum to zero",
                received=repr(list(opts.class_weights)),
                fix="give at least one foreground class a positive weight.",
            )
    return (weights / weights.sum()).astype("float32")


def _average_classes(per_class: Tensor, weights: np.ndarray) -> Tensor:
    """Weighted mean over classes: ``(N, C')`` -> ``(N,)``."""
    if len(weights) == 1:
        return per_class[:, 0]
    return ops.sum(per_class * ops.convert_to_tensor(weights), axis=-1)


def _finish(per_row: Tensor, per_image: bool) -> Tensor:
    """Per-image losses ``(B,)``, or the pooled loss as a scalar."""
    return per_row if per_image else per_row[0]


def _dice_score(stats: Confusion, smooth: float) -> Tensor:
    two_tp = 2.0 * stats.tp
    return (two_tp + smooth) / (two_tp + stats.fp + stats.fn + smooth)


def _tversky_score(stats: Confusion, alpha: float, beta: float, smooth: float) -> Tensor:
    # Written on the Dice scale so that alpha = beta = 0.5 is exactly Dice with the same smooth:
    # (2 tp + s) / (2 tp + 2 alpha fp + 2 beta fn + s) == (tp + s/2) / (tp + alpha fp + beta fn + s/2)
    two_tp = 2.0 * stats.tp
    return (two_tp + smooth) / (two_tp + 2.0 * alpha * stats.fp + 2.0 * beta * stats.fn + smooth)


def _dice_per_row(prep: _Prepared, opts: _Options) -> Tensor:
    """Dice loss per image (or pooled), classes averaged: ``(N,)``."""
    per_class = 1.0 - _dice_score(_statistics(prep, opts), opts.smooth)  # (N, C')
    return _average_classes(per_class, _class_weights(opts, prep.channels))


def _check_tversky(alpha: float, beta: float, squared_denominator: bool) -> tuple[float, float]:
    a, b = _as_float("alpha", alpha), _as_float("beta", beta)
    if a + b == 0:
        raise ConfigError("alpha and beta cannot both be 0", fix="use alpha=0.3, beta=0.7.")
    if squared_denominator:
        raise ConfigError(
            "squared_denominator=True is not defined for the Tversky losses",
            fix="use DiceLoss(squared_denominator=True) for the V-Net form, or drop the option.",
        )
    return a, b


# --------------------------------------------------------------------------------------------
# Pure functions.
# --------------------------------------------------------------------------------------------


def soft_dice_loss(y_true: Tensor, y_pred: Tensor, **options: Any) -> Tensor:
    """Soft Dice loss ``1 - (2 tp + s) / (2 tp + fp + fn + s)``, averaged over classes.

    The other losses take the same keyword options.

    Args:
        y_true: labels: sparse ``(B, H, W)`` / ``(B, H, W, 1)``, or dense ``(B, H, W, C)``.
        y_pred: ``(B, H, W, C)`` probabilities, or logits with ``from_logits=True``.
        **options: ``mode`` ("binary": one sigmoid channel; "multiclass": softmax over C
            channels; "multilabel": one independent sigmoid per channel), ``from_logits``
            (apply sigmoid/softmax first), ``per_image`` (score each image; otherwise pool the
            statistics over the batch), ``include_background`` (multiclass: also score channel
            0), ``class_weights`` (one per channel, normalized over the scored classes),
            ``ignore_index`` (label whose pixels count nowhere), ``smooth`` (> 0, added to
            numerator and denominator), ``squared_denominator`` (V-Net: ``sum(p**2) +
            sum(t**2)``), ``num_classes`` (checked against the channels of ``y_pred``),
            ``validate`` (run the eager value checks, default True).

    Returns:
        ``(B,)`` per-image losses when ``per_image=True``, else a scalar.

    Example:
        >>> import numpy as np
        >>> y = np.ones((1, 4, 4, 1), "float32")
        >>> float(soft_dice_loss(y, y))
        0.0
    """
    opts = _make_options(**options)
    prep = _prepare(y_true, y_pred, opts)
    return _finish(_dice_per_row(prep, opts), opts.per_image)


def tversky_loss(
    y_true: Tensor, y_pred: Tensor, *, alpha: float = 0.3, beta: float = 0.7, **options: Any
) -> Tensor:
    """Tversky loss: ``alpha`` weights false positives, ``beta`` false negatives.

    ``1 - (2 tp + s) / (2 tp + 2 alpha fp + 2 beta fn + s)``: with ``alpha = beta = 0.5`` this is
    exactly :func:`soft_dice_loss`. ``beta > alpha`` favours recall (Salehi et al. 2017).

    Example:
        >>> import numpy as np
        >>> y = np.array([[[[1.0], [0.0]]]], "float32"); p = np.array([[[[1.0], [1.0]]]], "float32")
        >>> round(float(tversky_loss(y, p, alpha=0.5, beta=0.5)), 4)   # one tp, one fp
        0.25
    """
    a, b = _check_tversky(alpha, beta, options.get("squared_denominator", False))
    opts = _make_options(**options)
    prep = _prepare(y_true, y_pred, opts)
    per_class = 1.0 - _tversky_score(_statistics(prep, opts), a, b, opts.smooth)
    return _finish(_average_classes(per_class, _class_weights(opts, prep.channels)), opts.per_image)


def focal_tversky_loss(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    **options: Any,
) -> Tensor:
    """Focal Tversky loss ``(1 - TI) ** gamma`` per class (Abraham & Khan 2019).

    ``gamma`` is the exponent itself: the paper's recommended ``1/γ`` with ``γ = 4/3`` is
    ``gamma=0.75``. The base is clipped at 1e-7 so the gradient stays finite at a perfect score.

    Example:
        >>> import numpy as np
        >>> y = np.ones((1, 2, 2, 1), "float32")
        >>> float(focal_tversky_loss(y, y)) < 1e-4
        True
    """
    a, b = _check_tversky(alpha, beta, options.get("squared_denominator", False))
    g = _as_float("gamma", gamma, positive=True)
    opts = _make_options(**options)
    prep = _prepare(y_true, y_pred, opts)
    base = ops.maximum(1.0 - _tversky_score(_statistics(prep, opts), a, b, opts.smooth), _EPS)
    per_class = ops.power(base, g)  # (N, C')
    return _finish(_average_classes(per_class, _class_weights(opts, prep.channels)), opts.per_image)


def generalized_dice_loss(
    y_true: Tensor, y_pred: Tensor, *, weight_type: str = "square", **options: Any
) -> Tensor:
    """Generalized Dice loss (Sudre et al. 2017): classes weighted by their reference volume.

    ``1 - (2 sum_c w_c tp_c + s) / (sum_c w_c (2 tp_c + fp_c + fn_c) + s)`` with
    ``w_c = 1 / r_c**2`` ("square"), ``1 / r_c`` ("simple") or ``1`` ("uniform"), where ``r_c`` is the
    (soft) number of pixels of class ``c`` in the truth, per image or pooled. A class absent from
    the truth gets the largest weight of the present classes (its false positives still count; no
    infinite weight), and weight 1 when every class is absent. Weights (times ``class_weights``)
    are normalized to sum to 1, so ``smooth`` keeps its pixel scale; they carry no gradient.

    Example:
        >>> import numpy as np
        >>> y = np.array([[[0, 1], [1, 1]]]); p = np.eye(2, dtype="float32")[y]
        >>> float(generalized_dice_loss(y, p, mode="multiclass", include_background=True))
        0.0
    """
    weight_type = check_choice("weight_type", weight_type, WEIGHT_TYPES)
    opts = _make_options(**options)
    prep = _prepare(y_true, y_pred, opts)
    stats = _statistics(prep, opts)  # (N, C')
    reference = stats.tp + stats.fn  # (N, C') soft truth volume
    present = ops.greater(reference, 0.0)
    if weight_type == "uniform":
        volume_weights = ops.ones_like(reference)
    else:
        power = 2.0 if weight_type == "square" else 1.0
        safe = ops.where(present, reference, 1.0)
        inverse = ops.where(present, 1.0 / ops.power(safe, power), 0.0)
        fill = ops.max(inverse, axis=-1, keepdims=True)  # (N, 1): largest weight of present
        fill = ops.where(ops.greater(fill, 0.0), fill, 1.0)
        volume_weights = ops.where(present, inverse, fill)
    weights = volume_weights * ops.convert_to_tensor(_class_weights(opts, prep.channels))
    weights = ops.stop_gradient(weights / ops.sum(weights, axis=-1, keepdims=True))
    numerator = ops.sum(weights * 2.0 * stats.tp, axis=-1) + opts.smooth  # (N,)
    denominator = ops.sum(weights * (2.0 * stats.tp + stats.fp + stats.fn), axis=-1) + opts.smooth
    return _finish(1.0 - numerator / denominator, opts.per_image)


def log_cosh_dice_loss(y_true: Tensor, y_pred: Tensor, **options: Any) -> Tensor:
    """``log(cosh(dice_loss))`` per image (or pooled) (Jadon 2020): a smoother Dice loss.

    Example:
        >>> import numpy as np
        >>> y = np.ones((1, 2, 2, 1), "float32")
        >>> float(log_cosh_dice_loss(y, y))
        0.0
    """
    opts = _make_options(**options)
    prep = _prepare(y_true, y_pred, opts)
    return _finish(ops.log(ops.cosh(_dice_per_row(prep, opts))), opts.per_image)


def _cross_entropy_per_row(prep: _Prepared, opts: _Options) -> Tensor:
    """Mean cross-entropy over counted pixels, per image ``(B,)`` or pooled ``(1,)``.

    Computed here rather than with ``keras.losses``: sparse categorical cross-entropy on softmax
    probabilities fails on the torch backend ("grad_input must be contiguous", Keras 3.15.1).
    Multiclass: ``-sum(t * log p) / sum(t)``; ignored pixels have an all-zero target row, so they
    drop out of both sums. Binary and multilabel: the mean binary cross-entropy over counted
    entries (one per pixel and channel).
    """
    target, valid = prep.targets.target, prep.targets.valid
    axes = tuple(range(1, len(target.shape)))  # spatial and channel axes
    if opts.mode == "multiclass":
        log_probs = prep.log_probs
        if log_probs is None and prep.targets.one_hot:
            # Exactly one-hot rows: -sum_c t_c log p_c = -log(sum_c t_c p_c), so take one
            # logarithm per pixel instead of one per pixel and class (C times fewer; measured in
            # benchmarks/bench_losses.py). Ignored pixels have p_true = 0 and weight 0.
            p_true = ops.sum(target * prep.probs, axis=-1)  # (B, *spatial)
            log_true = ops.log(ops.clip(p_true, _EPS, 1.0))
            pixel_axes = tuple(range(1, len(p_true.shape)))
            if valid is None:  # every image has the same number of pixels: a mean of means
                per_image = -ops.mean(log_true, axis=pixel_axes)  # (B,)
                return per_image if opts.per_image else ops.mean(per_image, keepdims=True)
            else:
                counted = ops.sum(target, axis=-1)  # 1 where a class is set, 0 where ignored
                total = -ops.sum(counted * log_true, axis=pixel_axes)
                count = ops.sum(counted, axis=pixel_axes)
        else:
            if log_probs is None:
                log_probs = ops.log(ops.clip(prep.probs, _EPS, 1.0))
            total = -ops.sum(target * log_probs, axis=axes)  # (B,)
            count = ops.sum(target, axis=axes)  # (B,) pixels with a class
    else:
        if opts.from_logits:  # stable: max(x, 0) - x t + log(1 + exp(-|x|))
            x = prep.logits
            entry = ops.relu(x) - x * target + ops.softplus(-ops.abs(x))
        else:  # -(t log q + (1 - t) log(1 - q)), arranged to cost one multiply
            q = ops.clip(prep.probs, _EPS, 1.0 - _EPS)
            log_not_q = ops.log(1.0 - q)
            entry = -(log_not_q + target * (ops.log(q) - log_not_q))
        if valid is None:  # every image has the same number of entries: a mean of means
            per_image = ops.mean(entry, axis=axes)  # (B,)
            return per_image if opts.per_image else ops.mean(per_image, keepdims=True)
        weight = ops.broadcast_to(valid, ops.shape(entry))
        total = ops.sum(entry * weight, axis=axes)  # (B,)
        count = ops.sum(weight, axis=axes)
    if not opts.per_image:
        total, count = ops.sum(total, keepdims=True), ops.sum(count, keepdims=True)  # (1,)
    return total / ops.maximum(count, 1.0)


def dice_ce_loss(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    **options: Any,
) -> Tensor:
    """``lambda_dice * Dice loss + lambda_ce * cross-entropy`` (nnU-Net's default objective).

    Cross-entropy is categorical in multiclass mode and binary otherwise, the mean over counted
    pixels (per image with ``per_image=True``). It is unweighted and covers every class, background
    included: it gives each pixel its own gradient, which the Dice term lacks on empty images.

    Example:
        >>> import numpy as np
        >>> y = np.array([[[0, 1]]]); p = np.full((1, 1, 2, 2), 0.5, "float32")
        >>> round(float(dice_ce_loss(y, p, mode="multiclass")), 4)  # (1 - 2/3) + ln 2
        1.0265
    """
    w_dice = _as_float("lambda_dice", lambda_dice)
    w_ce = _as_float("lambda_ce", lambda_ce)
    if w_dice + w_ce == 0:
        raise ConfigError("lambda_dice and lambda_ce cannot both be 0", fix="use 1.0 and 1.0.")
    opts = _make_options(**options)
    prep = _prepare(y_true, y_pred, opts)
    per_row = w_dice * _dice_per_row(prep, opts) + w_ce * _cross_entropy_per_row(prep, opts)
    return _finish(per_row, opts.per_image)


# --------------------------------------------------------------------------------------------
# Loss classes: configuration + a call to the pure function.
# --------------------------------------------------------------------------------------------


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
        self.options = _make_options(
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
        if check and _is_eager(y_pred):
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
        self.alpha, self.beta = _check_tversky(alpha, beta, self.options.squared_denominator)

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
        self.gamma = _as_float("gamma", gamma, positive=True)

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
        self.lambda_dice = _as_float("lambda_dice", lambda_dice)
        self.lambda_ce = _as_float("lambda_ce", lambda_ce)
        if self.lambda_dice + self.lambda_ce == 0:
            raise ConfigError("lambda_dice and lambda_ce cannot both be 0", fix="use 1.0 and 1.0.")

    def _extra_options(self) -> dict[str, Any]:
        return {"lambda_dice": self.lambda_dice, "lambda_ce": self.lambda_ce}


# --------------------------------------------------------------------------------------------
# The loss registry: the names ``train.loss`` accepts (like segdoctor.models' model registry).
# --------------------------------------------------------------------------------------------

_LOSS_REGISTRY: dict[str, Callable[..., keras.losses.Loss]] = {}


def register_loss(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a loss class (or a function returning a Loss) under ``name``.

    Example:
        >>> @register_loss("my_dice")  # doctest: +SKIP
        ... class MyDice(DiceLoss): ...
    """

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _LOSS_REGISTRY:
            raise ConfigError(
                f"A loss named {name!r} is already registered", fix="pick another name."
            )
        _LOSS_REGISTRY[name] = factory
        return factory

    return decorate


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss` (and ``train.loss``), the recipe's default first.

    Example:
        >>> list_losses()[:2]
        ['dice_ce', 'dice']
    """
    return list(_LOSS_REGISTRY)


def create_loss(name: str, **kwargs: Any) -> keras.losses.Loss:
    """Build a registered loss by name; keyword arguments go to its class.

    Example:
        >>> create_loss("tversky", mode="binary").name
        'tversky_loss'
    """
    if name not in _LOSS_REGISTRY:
        raise ConfigError(
            f"Unknown loss {name!r}",
            expected="one of " + ", ".join(_LOSS_REGISTRY),
            received=repr(name),
            fix=f"pass a registered name.{did_you_mean(name, _LOSS_REGISTRY)}",
        )
    return _LOSS_REGISTRY[name](**kwargs)


# The recipe's losses, in the order the configuration lists them. LogCoshDiceLoss is left out:
# the recipe has never offered it (register it to make it a train.loss choice).
for _name, _cls in (
    ("dice_ce", DiceCELoss),
    ("dice", DiceLoss),
    ("tversky", TverskyLoss),
    ("focal_tversky", FocalTverskyLoss),
    ("generalized_dice", GeneralizedDiceLoss),
):
    register_loss(_name)(_cls)
del _name, _cls


# --------------------------------------------------------------------------------------------
# The classic Keras 2 recipe, working on Keras 3.
# --------------------------------------------------------------------------------------------


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
    weights = _make_options(class_weights=class_weights, smooth=smooth).class_weights

    def weighted_dice_loss_fn(y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        channels = _static_channels(y_pred)
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
