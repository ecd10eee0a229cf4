"""Step 2 of every loss: soft tp, fp, fn per image (or pooled) and class, and their reductions.

``tp = sum(p * t)``, ``fp = sum(p * (1 - t))``, ``fn = sum((1 - p) * t)``, summed in float32 even
when the model computes in float16 or bfloat16. Every Dice-family loss is a function of three sums
per image and class (``sum(p t)``, the predicted and the true mass); :func:`masses` computes them
in the layout that is fast on each backend.

Example:
    >>> import numpy as np
    >>> tp, fp, fn = soft_confusion(np.ones((1, 2, 2, 1)), np.full((1, 2, 2, 1), 0.5))
    >>> float(tp[0, 0]), float(fp[0, 0]), float(fn[0, 0])
    (2.0, 0.0, 2.0)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from segdoctor.errors import ConfigError
from segdoctor.losses.checks import as_float32, check_probabilities
from segdoctor.losses.options import Options, Tensor, make_options
from segdoctor.losses.targets import Targets, prepare_targets, static_channels

if keras.backend.backend() == "torch":  # the closed-form backward imports torch: torch only
    from segdoctor import _torch_sums
else:
    _torch_sums = None

__all__ = [
    "CUSTOM_GRADIENT",
    "REDUCE_ROW",
    "Confusion",
    "Prepared",
    "average_classes",
    "class_statistics",
    "class_weights",
    "confusion_terms",
    "finish",
    "masses",
    "prepare",
    "soft_confusion",
]

REDUCE_ROW = 64
"""Floats per row of the first reduction in :func:`masses` (1: no regrouping, for ablations)."""

CUSTOM_GRADIENT = True
"""On torch, use the closed-form backward of :mod:`segdoctor._torch_sums`; False differentiates
the sums automatically (the reference the tests compare against)."""


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
    probs, target = as_float32(probs), as_float32(target)
    if valid is not None:
        probs = probs * valid
    tp, pred_mass, true_mass = masses(probs, target, squared, pooled)
    return Confusion(tp, pred_mass - tp, true_mass - tp)


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
    while 1 < channels and group * channels < REDUCE_ROW and pixels % (2 * group) == 0:
        group *= 2
    return (-1, pixels // group, group * channels), group


def masses(probs: Tensor, target: Tensor, squared: bool, pooled: bool) -> list[Tensor]:
    """``[sum(p t), sum(p) or sum(p**2), sum(t) or sum(t**2)]`` per image (or pooled) and class.

    Every Dice-family loss is a function of these three sums. On torch they come with a
    closed-form backward (:mod:`segdoctor._torch_sums`); the XLA backends fuse the automatic one.

    Args:
        probs, target: float32 ``(B, *spatial, C)``.
        squared: sums of squares for the two masses.
        pooled: sum over the batch too.

    Returns:
        Three ``(B, C)`` tensors, ``(1, C)`` when pooled.

    Example:
        >>> ones = ops.ones((1, 2, 2, 1))  # backend tensors, as confusion_terms passes them
        >>> [float(x[0, 0]) for x in masses(ones, ones, squared=False, pooled=False)]
        [4.0, 4.0, 4.0]
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
        if CUSTOM_GRADIENT and _torch_sums is not None:
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


class Prepared(NamedTuple):
    """A loss' inputs after step 1: float32 outputs, probabilities and aligned targets."""

    logits: Tensor  # float32 (B, *spatial, C): y_pred as given
    probs: Tensor  # float32 (B, *spatial, C)
    log_probs: Tensor | None  # multiclass from logits only: log_softmax
    targets: Targets
    channels: int


def prepare(y_true: Tensor, y_pred: Tensor, opts: Options) -> Prepared:
    """Targets, float32 outputs and probabilities (sigmoid/softmax when ``from_logits``)."""
    y_pred = ops.convert_to_tensor(y_pred)
    targets = prepare_targets(
        y_true,
        y_pred,
        mode=opts.mode,
        ignore_index=opts.ignore_index,
        num_classes=opts.num_classes,
        validate=opts.validate,
    )
    raw = as_float32(y_pred)  # sums and scores in float32 under mixed precision
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
    return Prepared(raw, probs, log_probs, targets, static_channels(y_pred))


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
    opts = make_options(
        mode=mode,
        from_logits=from_logits,
        ignore_index=ignore_index,
        num_classes=num_classes,
        squared_denominator=squared_denominator,
    )
    prep = prepare(y_true, y_pred, opts)
    return confusion_terms(
        prep.probs, prep.targets.target, prep.targets.valid, squared=squared_denominator
    )


# --------------------------------------------------------------------------------------------
# Reductions: which rows and classes are scored, and how classes are averaged.
# --------------------------------------------------------------------------------------------


def class_statistics(prep: Prepared, opts: Options) -> Confusion:
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


def class_weights(opts: Options, channels: int) -> np.ndarray:
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


def average_classes(per_class: Tensor, weights: np.ndarray) -> Tensor:
    """Weighted mean over classes: ``(N, C')`` -> ``(N,)``."""
    if len(weights) == 1:
        return per_class[:, 0]
    return ops.sum(per_class * ops.convert_to_tensor(weights), axis=-1)


def finish(per_row: Tensor, per_image: bool) -> Tensor:
    """Per-image losses ``(B,)``, or the pooled loss as a scalar."""
    return per_row if per_image else per_row[0]
