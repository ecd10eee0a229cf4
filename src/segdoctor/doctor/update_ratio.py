"""``lr-too-high`` from what the optimizer does to the weights in the first steps of the run.

The size of an update relative to the weight it changes, ``|w_after - w_before| / |w_before|`` per
kernel, is the learning rate as the network feels it. A healthy run moves a kernel by about a
thousandth of its size per step (the "update/weight ratio ~1e-3" rule of thumb of practitioners,
e.g. CS231n's notes on babysitting training). Adam-family optimizers make it a pure function of the
learning rate: their first step moves every weight by ``lr`` whatever the gradient, so Adam at 0.1
(a rate copied from an SGD recipe) rewrites He-initialised 3x3 kernels (RMS 0.1-0.2) almost
entirely at every step. An LR range test on one small batch can call that rate safe (the loss of
one batch still falls); the weights say otherwise.

The ratio is the median over kernels (weights with 2 or more dimensions: convolutions and dense
layers, not biases or normalization scales) of the mean over the first :data:`UPDATE_STEPS` steps.
Measured (small U-Net of the fault benchmark, 8-16 filters, BatchNorm, DiceCE, 8 nuclei crops of
64x64, Adam): 0.52 at LR 0.1, 0.18 at 0.03, 0.067 at 0.01, 0.023 at 3e-3, 0.008 at 1e-3.

Example:
    >>> before = [np.ones((3, 3, 1, 4))]
    >>> relative_update(before, [np.full((3, 3, 1, 4), 1.5)])
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

from segdoctor.doctor._probe_model import clone
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

UPDATE_STEPS = 3
"""Steps whose updates are measured (Adam's first step is exactly ``lr`` per weight; the next ones
are smaller as its second-moment estimate settles)."""
UPDATE_WARN = 0.25
"""Median relative update per step from which ``lr-too-high`` is a warning: 250x the ~1e-3 rule of
thumb, above Adam 1e-3 on deep kernels (fan-in 4608: RMS 0.021, ratio 0.05) by 5x."""
UPDATE_ERROR = 0.5
"""... and an error: each step moves the weights by half their size."""
MAX_KERNELS = 16
"""Kernels measured at most (evenly spread over the network): bounded memory for large models."""


def kernel_indices(model) -> list[int]:
    """Positions in ``model.trainable_weights`` of up to :data:`MAX_KERNELS` kernels (ndim >= 2)."""
    kernels = [i for i, w in enumerate(model.trainable_weights) if len(w.shape) >= 2]
    if len(kernels) <= MAX_KERNELS:
        return kernels
    picks = np.linspace(0, len(kernels) - 1, MAX_KERNELS).round().astype(int)
    return [kernels[i] for i in sorted(set(picks.tolist()))]


def snapshot(model, indices: Sequence[int]) -> list[np.ndarray]:
    """Copies of the chosen weights (float64)."""
    weights = model.trainable_weights
    return [np.array(keras.ops.convert_to_numpy(weights[i]), dtype="float64") for i in indices]


def relative_update(before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> float:
    """Median over kernels of ``|after - before| / |before|`` (kernels of norm 0 skipped)."""
    ratios = [
        float(np.linalg.norm(a - b) / np.linalg.norm(b))
        for b, a in zip(before, after, strict=True)
        if np.linalg.norm(b) > 0
    ]
    return float(np.median(ratios)) if ratios else math.nan


def update_findings(
    ratios: Sequence[float], learning_rate: float | None, optimizer: str, where: str
) -> list[Finding]:
    """``lr-too-high`` from the relative updates of the first steps (see the module docstring)."""
    finite = [r for r in ratios if math.isfinite(r)]
    if not finite:
        return []
    ratio = float(np.mean(finite))
    if ratio < UPDATE_WARN:
        return []
    # Adam-like steps scale with the LR: aim at a ratio of ~0.01 (a healthy 1e-3..1e-2).
    target = learning_rate * 0.01 / ratio if learning_rate else None
    return [
        make_finding(
            "lr-too-high",
            {
                "learning_rate": learning_rate,
                "optimizer": optimizer,
                "relative_update_per_step": round(ratio, 4),
                "steps": len(finite),
                "warn_from": UPDATE_WARN,
                "where": where,
            },
            variant="update-ratio" if target else "update-ratio-no-rate",
            ratio=ratio,
            target_lr=target,
            severity="error" if ratio >= UPDATE_ERROR else "warning",
        )
    ]


def optimizer_state(model) -> tuple[float | None, str]:
    """The optimizer's current learning rate (None for a schedule it cannot read) and class name."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None, "optimizer"
    try:
        lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        lr = None
    return lr, type(optimizer).__name__


def probe_update_ratio(model, x: np.ndarray, y: np.ndarray) -> list[Finding]:
    """``lr-too-high``: :data:`UPDATE_STEPS` steps of a copy of the model with its own optimizer.

    Example:
        >>> probe_update_ratio(model, x, y)  # doctest: +SKIP
        []
    """
    if getattr(model, "optimizer", None) is None:
        return []
    lr, name = optimizer_state(model)
    copy = clone(model)  # same optimizer class and configuration, fresh state
    indices = kernel_indices(copy)
    ratios = []
    before = snapshot(copy, indices)
    for _ in range(UPDATE_STEPS):
        copy.train_on_batch(x, y)
        after = snapshot(copy, indices)
        ratios.append(relative_update(before, after))
        before = after
    return update_findings(ratios, lr, name, "probe batch, a copy of the model")
