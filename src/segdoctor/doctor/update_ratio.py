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
from dataclasses import replace

import keras
import numpy as np

from segdoctor.doctor._probe_model import clone
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding
from segdoctor.lr_range import initial_lr

UPDATE_STEPS = 3
"""Steps whose updates are measured (Adam's first step is exactly ``lr`` per weight; the next ones
are smaller as its second-moment estimate settles)."""
UPDATE_WARN = 0.25
"""Median relative update per step from which ``lr-too-high`` is a warning: 250x the ~1e-3 rule of
thumb, above Adam 1e-3 on deep kernels (fan-in 4608: RMS 0.021, ratio 0.05) by 5x."""
UPDATE_ERROR = 0.5
"""... and an error: each step moves the weights by half their size."""
UPDATE_LOW = 3e-4
"""Relative update per step (median over kernels, mean over the probe's steps) below which an LR
range test's ``lr-too-low`` stands. A range test on one batch puts its steepest descent anywhere
from 0.02 to above 1 from one seed to the next (the fault benchmark's healthy twin, Adam 1e-3:
1.08 with seed 0, so ``lr-too-low`` fired), while the weights say directly whether training
moves. Measured on tests/test_doctor_faults_lr.py's two-layer network (8 real nuclei crops,
Adam): 6.2e-3 per step at 1e-3, 6.3e-4 at 1e-4, 6.3e-5 at 1e-5, 6e-6 at 1e-6; the U-Net of the table above moves 8e-3 at 1e-3. So Adam 1e-4 and up stay
above this floor and 1e-5 and below fall under it, the range the sweep's rule was meant for.
Above the floor the finding is kept as info, with the measured update."""
TARGET_UPDATE = 0.01
"""The relative update per step that ``lr-too-high``'s suggested rate aims at (Adam-like steps
scale with the rate): the upper end of a healthy 1e-3..1e-2."""
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
    # Adam-like steps scale with the LR: aim at a ratio of TARGET_UPDATE.
    target = learning_rate * TARGET_UPDATE / ratio if learning_rate else None
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


LOW_TARGET = 3e-3
"""The relative update per step the suggested rate of ``lr-too-low`` (variant ``update-ratio``)
aims at: the middle of a healthy 1e-3..1e-2."""


def low_update_findings(
    ratios: Sequence[float],
    learning_rate: float | None,
    optimizer: str,
    where: str,
    never_learned: Sequence[str],
) -> list[Finding]:
    """``lr-too-low`` from the first updates, when they stayed under :data:`UPDATE_LOW` and the
    run's history says nothing was learned (``never_learned``: those findings' ids).

    Small first steps alone are no fault (momentum builds up, warm-up starts low); with a run
    that learned nothing they are the cause (sixth blind test, F3: SGD at 1e-3 without momentum,
    the rate of the Adam recipe it replaced, moved the weights 1.9e-4 of their size per step,
    against 9.7e-3 for Adam at 1e-3; the callback said only that nothing was learned).

    Example:
        >>> [f.id for f in low_update_findings([2e-4] * 3, 1e-3, "SGD", "first steps", ["metric-constant"])]
        ['lr-too-low']
        >>> low_update_findings([2e-4] * 3, 1e-3, "SGD", "first steps", [])
        []
    """
    finite = [r for r in ratios if math.isfinite(r) and r > 0]
    if not finite or not never_learned:
        return []
    ratio = float(np.mean(finite))
    if ratio >= UPDATE_LOW:
        return []
    target = learning_rate * LOW_TARGET / ratio if learning_rate else None
    evidence = {
        "learning_rate": learning_rate,
        "optimizer": optimizer,
        "relative_update_per_step": float(f"{ratio:.3g}"),
        "steps": len(finite),
        "low_below": UPDATE_LOW,
        "where": where,
        "history": sorted(set(never_learned)),
    }
    return [
        make_finding(
            "lr-too-low",
            evidence,
            variant="update-ratio" if target else "update-ratio-no-rate",
            ratio=ratio,
            target_lr=target,
        )
    ]


def optimizer_state(model) -> tuple[float | None, str]:
    """The learning rate the optimizer starts with (a schedule's value at step 0: the first
    updates, of the run or of a fresh copy, are made near it; None when unreadable) and the
    optimizer's class name."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None, "optimizer"
    return initial_lr(optimizer), type(optimizer).__name__


PROBE_WHERE = "probe batch, a copy of the model"


def measure_update_ratios(model, x: np.ndarray, y: np.ndarray) -> list[float]:
    """The relative updates of :data:`UPDATE_STEPS` steps of a copy of the model (its optimizer's
    class and configuration, fresh state); empty for a model without an optimizer."""
    if getattr(model, "optimizer", None) is None:
        return []
    copy = clone(model)
    indices = kernel_indices(copy)
    ratios = []
    before = snapshot(copy, indices)
    for _ in range(UPDATE_STEPS):
        copy.train_on_batch(x, y)
        after = snapshot(copy, indices)
        ratios.append(relative_update(before, after))
        before = after
    return ratios


def probe_update_ratio(
    model, x: np.ndarray, y: np.ndarray, found: Sequence[Finding] = ()
) -> list[Finding]:
    """``lr-too-high`` from the first updates; ``found``'s ``lr-too-low``, checked against them.

    Returns the new ``lr-too-high`` finding (unless ``found`` has one already) and ``found``'s
    ``lr-too-low``, confirmed by updates below :data:`UPDATE_LOW` or demoted to info above it.
    Nothing is measured when neither is needed.

    Example:
        >>> probe_update_ratio(model, x, y)  # doctest: +SKIP
        []
    """
    ids = {f.id for f in found}
    low = [f for f in found if f.id == "lr-too-low"]
    if "lr-too-high" in ids and not low:
        return []
    ratios = measure_update_ratios(model, x, y)
    lr, name = optimizer_state(model)
    new = [] if "lr-too-high" in ids else update_findings(ratios, lr, name, PROBE_WHERE)
    return new + [confirm_lr_too_low(f, ratios) for f in low]


def confirm_lr_too_low(finding: Finding, ratios: Sequence[float]) -> Finding:
    """``lr-too-low`` as the range test found it, or as info when the weights move healthily.

    Example:
        >>> low = make_finding("lr-too-low", {"configured_lr": 1e-3, "steepest_lr": 1.1},
        ...                    suggested_lr=0.1)
        >>> confirm_lr_too_low(low, [0.008, 0.006, 0.005]).severity
        'info'
    """
    finite = [r for r in ratios if math.isfinite(r)]
    if not finite:
        return finding
    ratio = float(np.mean(finite))
    evidence = {**finding.evidence, "relative_update_per_step": round(ratio, 6)}
    if ratio < UPDATE_LOW:
        return replace(finding, evidence=evidence)
    evidence["update_low"] = UPDATE_LOW
    lr, steepest = finding.evidence.get("configured_lr"), finding.evidence.get("steepest_lr")
    fix = (
        f"The range test on one batch fell fastest at {steepest:.1e}, but at {lr:.1e} each step "
        f"already moves the weights by {ratio:.1e} of their size (healthy: about 1e-3). Keep the "
        "rate, or run the range test over more batches: `segdoctor lr-find DATA`."
        if lr and steepest
        else finding.fix
    )
    return replace(
        finding,
        severity="info",
        title="A one-batch LR range test points higher; the weights move at a healthy rate",
        evidence=evidence,
        fix=fix,
        confidence=0.3,
    )
