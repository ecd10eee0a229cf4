"""The overfit probe: can a copy of the model fit a handful of samples at all?

A model that cannot fit 4-8 training samples within a few dozen steps will not fit the dataset:
the masks do not belong to their images (pairing, augmentation applied to one side), the loss gives
no usable gradient, or the output cannot express the target. The probe trains a copy of the model,
with its own loss but Adam at :data:`OVERFIT_LR` (the configured optimizer and learning rate are
probed apart), for :data:`OVERFIT_STEPS` steps on one batch and measures the foreground Dice of the
training-mode prediction (dropout off, best threshold) on that same batch.

When the fit fails, a control run on the same images with the masks rotated by one sample (every
image paired with another image's mask) shows whether the given pairing carries more signal than a
wrong one: if not, the masks do not match their images.

Measured (nuclei sample, 4-8 crops of 64x64, U-Net depth 2 with 8 filters and BatchNorm, Dice+CE,
40 steps): correctly paired 0.95-0.98 Dice on torch and JAX; masks of other images 0.12-0.29 on
torch but 0.72-0.86 on JAX, which memorises them: mispairing is caught reliably on torch only.
A Dice coefficient passed as the loss (minimised: it unlearns) fires on every backend.

A failed fit is not yet a verdict. When the loss ended above where it started, Adam at
:data:`OVERFIT_LR` threw the copy out of its minimum: the fit is repeated at
:data:`RETRY_LR`. When the control fits the wrong masks (to the bar) while the given ones do not,
the model, loss and data can be fitted and the failure is the probe's own: no verdict. Both came
from the blind test of 2026-12-07: healthy trained user U-Nets (8 filters, batch norm, 64-pixel
crops) rose from loss 0.2 to 1.7 at 1e-2 and fitted at 1e-3 (loss 0.009); one reached Dice 0.00 on
its own masks and 0.64 on the control, and was told its pairs were wrong.
"""

from __future__ import annotations

import math
import time

import numpy as np

from segdoctor.doctor._probe_model import (
    clone,
    foreground,
    foreground_dice,
    no_dropout,
    probabilities,
)
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

OVERFIT_STEPS = 40
OVERFIT_LR = 1e-2
"""Adam at this LR: fast enough to fit one batch in ``OVERFIT_STEPS`` steps, with or without BN."""
RETRY_LR = 1e-3
"""The fit again at this LR when the first one ended with a loss above its first."""
FIT_DICE = 0.5
"""``cannot-overfit`` when the Dice on the fitted batch (:func:`fit_dice`) stays below this, or
below the Dice of one class predicted everywhere + 0.2 when that is higher (at most
:data:`MAX_FIT_BAR`)."""
MAX_FIT_BAR = 0.9
"""The bar never asks more than this (a bar above 1 can never be passed)."""
MIN_CLASS_SHARE = 0.01
"""Several channels: classes under this share of the batch's pixels are left out of the probe's
Dice (40 steps do not fit poles and signs; CamVid, 12 classes, 8 scenes, small U-Net: the mean
over all classes 0.46-0.47, over the classes above 1% 0.69-0.70)."""
MIN_FOREGROUND_PIXELS = 20
"""Below this many foreground pixels in the batch, the Dice says nothing: no verdict."""


def train_steps(model, x, y, steps: int, deadline: float | None = None) -> list[float]:
    """``train_on_batch`` on one batch; stops at a non-finite loss or past ``deadline``."""
    losses: list[float] = []
    for _ in range(steps):
        logs = model.train_on_batch(x, y, return_dict=True)
        losses.append(float(logs["loss"]))
        if not math.isfinite(losses[-1]) or (deadline is not None and time.monotonic() > deadline):
            break
    return losses


def _labels(t: np.ndarray, channels: int) -> np.ndarray:
    """Class labels ``(B, H, W)`` of a target: sparse ``(B, H, W, 1)`` with ``channels`` > 1
    classes, one-hot (argmax), or one channel of 0/1 (> 0.5)."""
    t = np.asarray(t)
    if t.shape[-1] > 1:
        return t.argmax(-1)
    return np.rint(t[..., 0]).astype(np.int64) if channels > 1 else (t[..., 0] > 0.5).astype(int)


def _macro_dice(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(mean Dice over the classes covering :data:`MIN_CLASS_SHARE` of ``truth``, the same for
    the majority class predicted everywhere)."""
    classes, counts = np.unique(truth, return_counts=True)
    keep = counts >= MIN_CLASS_SHARE * truth.size
    scores = []
    for c in classes[keep]:
        p, t = pred == c, truth == c
        scores.append(2.0 * float(np.logical_and(p, t).sum()) / (int(p.sum()) + int(t.sum())))
    top = float(counts.max()) / truth.size
    return float(np.mean(scores)), (2 * top / (1 + top)) / int(keep.sum())


def fit_dice(model, x, y) -> tuple[float, float]:
    """(Dice of the fitted batch, Dice of predicting one class everywhere) for ``(x, y)``.

    The training-mode prediction (dropout off) is scored. A one-channel output: the Dice of the
    rarer class, at the best threshold in 0.05..0.95 (the question is whether the model separates
    the objects at all; calibration is the loss's business, and early in a fit with rare
    foreground, probabilities often stay under 0.5 while already ranking well). When the
    foreground covers most pixels, the background (then the rarer class) is scored instead, so
    that predicting one class everywhere never scores well. Several channels: the mean Dice over
    the classes covering :data:`MIN_CLASS_SHARE` of the batch, against the majority class
    predicted everywhere. (Until
    2026-12-07 the foreground against class 0 was scored, with a bar of that one-class Dice + 0.2:
    on street scenes, where class 0 is a minority, the bar exceeded 1 and every run "could not
    overfit", healthy ones included; blind test, CamVid.)
    """
    with no_dropout(model):
        p = probabilities(model, x, training=True)  # (B, H, W, K)
    if p.shape[-1] > 1:
        return _macro_dice(p.argmax(-1), _labels(y, p.shape[-1]))
    y = np.asarray(y, "float32")
    share = float(foreground(y).mean())
    if share > 0.5:
        p, y = 1.0 - p, 1.0 - (y > 0.5)
    share = min(share, 1 - share)
    best = max(foreground_dice((p > t).astype("float32"), y) for t in np.linspace(0.05, 0.95, 19))
    return best, 2 * share / (1 + share)


def probe_overfit(
    model, x, y, *, steps: int = OVERFIT_STEPS, budget_s: float | None = None
) -> tuple[list[Finding], list[float]]:
    """``nan-loss`` and ``cannot-overfit`` from a short run on one batch.

    Args:
        model: the user's compiled model (not changed).
        x: ``(B, H, W, C)`` float32 inputs.
        y: targets as the loss expects them.
        steps: training steps.
        budget_s: stop early past this many seconds; ``cannot-overfit`` then needs all steps.

    Returns:
        The findings and the loss of every step.
    """
    start = time.monotonic()
    deadline = None if budget_s is None else start + budget_s
    lr = OVERFIT_LR
    copy = clone(model, learning_rate=lr, optimizer="adam")
    losses = train_steps(copy, x, y, steps, deadline)
    if len(losses) == steps and math.isfinite(losses[-1]) and losses[-1] > losses[0]:
        lr = RETRY_LR  # diverged: thrown out of its minimum, not unable to fit
        copy = clone(model, learning_rate=lr, optimizer="adam")
        losses = train_steps(copy, x, y, steps, deadline)
    if losses and not math.isfinite(losses[-1]):
        return [
            make_finding(
                "nan-loss",
                {"step": len(losses), "losses_before": losses[-4:-1]},
                variant="probe",
            )
        ], losses
    if len(losses) < steps or int(foreground(y).sum()) < MIN_FOREGROUND_PIXELS:
        return [], losses  # out of time, or nothing to fit: no verdict
    dice, trivial = fit_dice(copy, x, y)
    threshold = min(max(FIT_DICE, trivial + 0.2), MAX_FIT_BAR)
    if dice >= threshold:
        return [], losses
    # A trained model may fit these samples already and be thrown out of its minimum by the
    # probe's fresh Adam even at RETRY_LR (fourth blind test: a CamVid model at loss 0.11 went
    # to 0.48 in 40 steps at 1e-3): what it fitted before the probe counts too.
    dice = max(dice, fit_dice(clone(model, learning_rate=lr, optimizer="adam"), x, y)[0])
    if dice >= threshold:
        return [], losses
    control = clone(model, learning_rate=lr, optimizer="adam")
    wrong = np.roll(y, 1, axis=0)  # every image with another image's mask
    train_steps(control, x, wrong, steps)
    control_dice, _ = fit_dice(control, x, wrong)
    if control_dice >= threshold:
        return [], losses  # the wrong masks fit and the right ones did not: the probe's failure
    pairing = dice < control_dice + 0.2
    evidence = {
        "samples": len(x),
        "steps": len(losses),
        "fitted_foreground_dice": dice,
        "threshold": threshold,
        "one_class_everywhere_dice": trivial,
        "loss_first_last": [losses[0], losses[-1]],
        "learning_rate": lr,
        "control_dice_with_other_images_masks": control_dice,
        "fits_no_better_than_other_masks": bool(pairing),
    }
    return [
        make_finding(
            "cannot-overfit",
            evidence,
            variant="pairing" if pairing else None,
            optimizer_lr=lr,
            confidence=0.9 if pairing else 0.7,
        )
    ], losses
