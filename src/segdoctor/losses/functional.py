"""Step 3: the Dice-family losses as pure ``keras.ops`` functions (soft_dice_loss and friends).

Each takes ``(y_true, y_pred)`` and the keyword options of :func:`soft_dice_loss`, and returns one
loss per image ``(B,)`` (``per_image=True``, the default) or the pooled loss as a scalar.

Example:
    >>> import numpy as np
    >>> y = np.ones((2, 4, 4, 1), "float32")
    >>> tuple(soft_dice_loss(y, y).shape)
    (2,)
"""

from __future__ import annotations

from typing import Any

from keras import ops

from segdoctor.errors import ConfigError, check_choice
from segdoctor.losses.options import WEIGHT_TYPES, Options, Tensor, as_float, make_options
from segdoctor.losses.statistics import (
    Confusion,
    Prepared,
    average_classes,
    class_statistics,
    class_weights,
    finish,
    prepare,
)

__all__ = [
    "check_tversky",
    "dice_ce_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "log_cosh_dice_loss",
    "soft_dice_loss",
    "tversky_loss",
]

_EPS = 1e-7  # clip for log(p) and the focal Tversky base


def _dice_score(stats: Confusion, smooth: float) -> Tensor:
    two_tp = 2.0 * stats.tp
    return (two_tp + smooth) / (two_tp + stats.fp + stats.fn + smooth)


def _tversky_score(stats: Confusion, alpha: float, beta: float, smooth: float) -> Tensor:
    # Written on the Dice scale so that alpha = beta = 0.5 is exactly Dice with the same smooth:
    # (2 tp + s) / (2 tp + 2 alpha fp + 2 beta fn + s) == (tp + s/2) / (tp + alpha fp + beta fn + s/2)
    two_tp = 2.0 * stats.tp
    return (two_tp + smooth) / (two_tp + 2.0 * alpha * stats.fp + 2.0 * beta * stats.fn + smooth)


def _dice_per_row(prep: Prepared, opts: Options) -> Tensor:
    """Dice loss per image (or pooled), classes averaged: ``(N,)``."""
    per_class = 1.0 - _dice_score(class_statistics(prep, opts), opts.smooth)  # (N, C')
    return average_classes(per_class, class_weights(opts, prep.channels))


def check_tversky(alpha: float, beta: float, squared_denominator: bool) -> tuple[float, float]:
    """Validated ``(alpha, beta)`` of the Tversky losses (ConfigError for what they cannot mean).

    Example:
        >>> check_tversky(0.3, 0.7, False)
        (0.3, 0.7)
    """
    a, b = as_float("alpha", alpha), as_float("beta", beta)
    if a + b == 0:
        raise ConfigError("alpha and beta cannot both be 0", fix="use alpha=0.3, beta=0.7.")
    if squared_denominator:
        raise ConfigError(
            "squared_denominator=True is not defined for the Tversky losses",
            fix="use DiceLoss(squared_denominator=True) for the V-Net form, or drop the option.",
        )
    return a, b


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
    opts = make_options(**options)
    prep = prepare(y_true, y_pred, opts)
    return finish(_dice_per_row(prep, opts), opts.per_image)


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
    a, b = check_tversky(alpha, beta, options.get("squared_denominator", False))
    opts = make_options(**options)
    prep = prepare(y_true, y_pred, opts)
    per_class = 1.0 - _tversky_score(class_statistics(prep, opts), a, b, opts.smooth)
    return finish(average_classes(per_class, class_weights(opts, prep.channels)), opts.per_image)


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
    a, b = check_tversky(alpha, beta, options.get("squared_denominator", False))
    g = as_float("gamma", gamma, positive=True)
    opts = make_options(**options)
    prep = prepare(y_true, y_pred, opts)
    base = ops.maximum(1.0 - _tversky_score(class_statistics(prep, opts), a, b, opts.smooth), _EPS)
    per_class = ops.power(base, g)  # (N, C')
    return finish(average_classes(per_class, class_weights(opts, prep.channels)), opts.per_image)


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
    opts = make_options(**options)
    prep = prepare(y_true, y_pred, opts)
    stats = class_statistics(prep, opts)  # (N, C')
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
    weights = volume_weights * ops.convert_to_tensor(class_weights(opts, prep.channels))
    weights = ops.stop_gradient(weights / ops.sum(weights, axis=-1, keepdims=True))
    numerator = ops.sum(weights * 2.0 * stats.tp, axis=-1) + opts.smooth  # (N,)
    denominator = ops.sum(weights * (2.0 * stats.tp + stats.fp + stats.fn), axis=-1) + opts.smooth
    return finish(1.0 - numerator / denominator, opts.per_image)


def log_cosh_dice_loss(y_true: Tensor, y_pred: Tensor, **options: Any) -> Tensor:
    """``log(cosh(dice_loss))`` per image (or pooled) (Jadon 2020): a smoother Dice loss.

    Example:
        >>> import numpy as np
        >>> y = np.ones((1, 2, 2, 1), "float32")
        >>> float(log_cosh_dice_loss(y, y))
        0.0
    """
    opts = make_options(**options)
    prep = prepare(y_true, y_pred, opts)
    return finish(ops.log(ops.cosh(_dice_per_row(prep, opts))), opts.per_image)


def _cross_entropy_per_row(prep: Prepared, opts: Options) -> Tensor:
    """Mean cross-entropy over counted pixels, per image ``(B,)`` or pooled ``(1,)``.

    Computed here rather than with ``keras.losses``: sparse categorical cross-entropy on softmax
    probabilities fails on the torch backend ("grad_input must be contiguous", Keras 3.15.1).
    Multiclass: ``-sum(t * log p) / sum(t)``; ignored pixels have an all-zero target row, so they
    drop out of both sums. Binary and multilabel: the mean binary cross-entropy over counted
    entries (one per pixel and channel).
    """
    if opts.mode == "multiclass":
        return _categorical_cross_entropy(prep, opts.per_image)
    return _binary_cross_entropy(prep, opts.from_logits, opts.per_image)


def _mean_of_means(per_image: Tensor, keep_rows: bool) -> Tensor:
    """Every image counts the same number of entries: ``(B,)``, or their mean ``(1,)``."""
    return per_image if keep_rows else ops.mean(per_image, keepdims=True)


def _ratio(total: Tensor, count: Tensor, keep_rows: bool) -> Tensor:
    """``total / count`` per image ``(B,)``, or of the batch sums ``(1,)``."""
    if not keep_rows:
        total, count = ops.sum(total, keepdims=True), ops.sum(count, keepdims=True)  # (1,)
    return total / ops.maximum(count, 1.0)


def _categorical_cross_entropy(prep: Prepared, per_image: bool) -> Tensor:
    """``-sum(t * log p) / sum(t)`` per image ``(B,)`` or pooled ``(1,)``."""
    target, valid = prep.targets.target, prep.targets.valid
    log_probs = prep.log_probs
    if log_probs is None and prep.targets.one_hot:
        # Exactly one-hot rows: -sum_c t_c log p_c = -log(sum_c t_c p_c), so take one
        # logarithm per pixel instead of one per pixel and class (C times fewer; measured in
        # benchmarks/bench_losses.py). Ignored pixels have p_true = 0 and weight 0.
        p_true = ops.sum(target * prep.probs, axis=-1)  # (B, *spatial)
        log_true = ops.log(ops.clip(p_true, _EPS, 1.0))
        pixel_axes = tuple(range(1, len(p_true.shape)))
        if valid is None:  # every image has the same number of pixels: a mean of means
            return _mean_of_means(-ops.mean(log_true, axis=pixel_axes), per_image)  # (B,)
        counted = ops.sum(target, axis=-1)  # 1 where a class is set, 0 where ignored
        total = -ops.sum(counted * log_true, axis=pixel_axes)
        return _ratio(total, ops.sum(counted, axis=pixel_axes), per_image)
    if log_probs is None:
        log_probs = ops.log(ops.clip(prep.probs, _EPS, 1.0))
    axes = tuple(range(1, len(target.shape)))  # spatial and channel axes
    total = -ops.sum(target * log_probs, axis=axes)  # (B,)
    return _ratio(total, ops.sum(target, axis=axes), per_image)  # count: pixels with a class


def _binary_cross_entropy(prep: Prepared, from_logits: bool, per_image: bool) -> Tensor:
    """Mean binary cross-entropy over counted entries, per image ``(B,)`` or pooled ``(1,)``."""
    target, valid = prep.targets.target, prep.targets.valid
    axes = tuple(range(1, len(target.shape)))  # spatial and channel axes
    if from_logits:  # stable: max(x, 0) - x t + log(1 + exp(-|x|))
        x = prep.logits
        entry = ops.relu(x) - x * target + ops.softplus(-ops.abs(x))
    else:  # -(t log q + (1 - t) log(1 - q)), arranged to cost one multiply
        q = ops.clip(prep.probs, _EPS, 1.0 - _EPS)
        log_not_q = ops.log(1.0 - q)
        entry = -(log_not_q + target * (ops.log(q) - log_not_q))
    if valid is None:  # every image has the same number of entries: a mean of means
        return _mean_of_means(ops.mean(entry, axis=axes), per_image)  # (B,)
    weight = ops.broadcast_to(valid, ops.shape(entry))
    return _ratio(ops.sum(entry * weight, axis=axes), ops.sum(weight, axis=axes), per_image)


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
    w_dice = as_float("lambda_dice", lambda_dice)
    w_ce = as_float("lambda_ce", lambda_ce)
    if w_dice + w_ce == 0:
        raise ConfigError("lambda_dice and lambda_ce cannot both be 0", fix="use 1.0 and 1.0.")
    opts = make_options(**options)
    prep = prepare(y_true, y_pred, opts)
    per_row = w_dice * _dice_per_row(prep, opts) + w_ce * _cross_entropy_per_row(prep, opts)
    return finish(per_row, opts.per_image)
