"""Prescriptions: which finding gets which fix, and how the fault is reproduced without it.

:func:`prescribe` turns a report's errors and warnings into
:class:`~segdoctor.cli.verify.results.Prescription` (measurable with segdoctor's recipe) or
:class:`~segdoctor.cli.verify.results.Unverified` (with why not). The fixes to the data are in
:mod:`segdoctor.cli.verify.data_fixes`, those to the user's model in
:mod:`segdoctor.cli.verify.user_model`.

Example:
    >>> sorted(PRESCRIBERS)[:3]
    ['batchnorm-small-batch', 'class-imbalance', 'dropout-high']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segdoctor.cli.verify.data_fixes import (
    RESPLIT_IDS,
    _invalid_values,
    _leak,
    _mask_instances,
    _mask_scale_255,
    _overlap,
    _repair,
    _resplit,
    _snap_masks,
    _unreadable,
)
from segdoctor.cli.verify.plan import DataPlan
from segdoctor.cli.verify.results import Prescription, Unverified
from segdoctor.cli.verify.user_model import LOGIT_FIXES, from_logits_fix, user_learning_rate
from segdoctor.doctor import Finding, Report
from segdoctor.doctor.update_ratio import TARGET_UPDATE

RECIPE_FIXES_IT: dict[str, str] = {
    "input-not-normalized": "segdoctor's recipe z-scores every image itself and has no setting "
    "to train on raw 0..255 inputs, so the fault cannot be reproduced with it; your own pipeline "
    "must scale the inputs as the finding's fix says.",
    "monitor-mode": "segdoctor's recipe always watches val_dice with mode='max'; the fault "
    "lives in your callbacks and cannot be reproduced with it.",
    "lr-reduced-while-improving": "segdoctor's recipe always watches val_dice with mode='max'; "
    "the fault lives in your callbacks and cannot be reproduced with it.",
    "pair-missing": "files without a counterpart hold no pair to train on: both runs would see "
    "the same pairs, so there is nothing to compare (segdoctor skips them when told to).",
}
NEEDS_YOUR_MODEL = (
    "not verifiable yet: the fix changes your model or its compile call, and --verify trains "
    "segdoctor's own U-Net, whose output activation and loss always match."
)
NEEDS_LOSS_SETTING = (
    "not verifiable yet: segdoctor's recipe has no setting for this part of the loss (it trains "
    "a per-image Dice + cross-entropy with its own defaults), so the as-diagnosed run cannot be "
    "reproduced with it."
)
MEASUREMENT_ONLY = (
    "not verifiable: the fix changes what is measured (whole validation images instead of "
    "crops), not what is learned, and the whole validation images are not in the data, so "
    "there is no second training to run and no common images to compare."
)
EXPLAINED_BY_CROPS = (
    "skipped: the empty masks are the validation crops' (split-image-size); neither a re-split "
    "nor oversampling the training crops changes the crops, so the comparison would measure "
    "noise. Validate on whole images first."
)
NOT_VERIFIABLE: dict[str, str] = {
    "split-image-size": MEASUREMENT_ONLY,
    **dict.fromkeys(
        (
            "activation-loss-mismatch",
            "softmax-single-channel",
            "output-classes-mismatch",
        ),
        NEEDS_YOUR_MODEL,
    ),
    **dict.fromkeys(
        (
            "dice-smooth-large",
            "dice-batch-pooled",
            "dice-empty-penalized",
            "dice-includes-background",
            "loss-background-dominated",
        ),
        NEEDS_LOSS_SETTING,
    ),
}


def _oversample(f: Finding, plan: DataPlan, model: Any = None) -> Prescription:
    return Prescription(
        f.id,
        "draw a third of the training crops around foreground (the recipe's default)",
        "crops drawn uniformly at random, as a plain pipeline does",
        {"data.foreground_oversample": "0"},
        {"data.foreground_oversample": "0.33"},
        note="`segdoctor train` oversamples foreground by itself (a third of the crops); both "
        "runs train the recipe's per-image Dice + cross-entropy.",
    )


def learning_rates(f: Finding) -> tuple[float, float, str] | None:
    """``(your rate, the fixed rate, why)`` from an lr finding's evidence; None: none usable.

    The fixed rate is the range test's suggestion (a tenth of its steepest descent) or, for
    ``lr-too-high`` found from the first updates, the rate scaled to a relative update of
    :data:`~segdoctor.doctor.update_ratio.TARGET_UPDATE` per step.
    """
    ev = f.evidence
    lr, steepest = ev.get("configured_lr"), ev.get("steepest_lr")
    ratio = ev.get("relative_update_per_step")
    if steepest and lr:
        fixed, why = float(steepest) / 10, "a tenth of the steepest descent"
    elif ev.get("learning_rate") and ratio:  # update-ratio evidence (segdoctor.doctor.update_ratio)
        lr = ev["learning_rate"]
        fixed = float(lr) * TARGET_UPDATE / float(ratio)
        why = (
            f"weights moved by {float(ratio):.2g} of their size a step; aimed at {TARGET_UPDATE:g}"
        )
    else:
        return None
    if not 0 < float(lr) < 10 or not 0 < fixed < 10:
        return None
    return float(lr), fixed, why


def _learning_rate(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    """The learning-rate fix: on the user's model and optimizer when they are given and can be
    copied (:func:`~segdoctor.cli.verify.user_model.user_learning_rate`), else on segdoctor's
    U-Net at the two rates."""
    rates = learning_rates(f)
    if rates is None:
        return Unverified(f.id, "not-verifiable", "the finding names no usable learning rates.")
    on_yours = user_learning_rate(f, model, rates)
    if on_yours is not None:
        return on_yours
    lr, fixed, why = rates
    return Prescription(
        f.id,
        f"learning rate {fixed:.3g} ({why})",
        f"your learning rate {lr:.3g}",
        {"train.lr": f"{lr:.6g}"},
        {"train.lr": f"{fixed:.6g}"},
        note="measured on segdoctor's U-Net with these learning rates, not on your model "
        "(pass your compiled model to verify on it).",
    )


def _dropout(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    rates = [float(r) for r in f.evidence.get("rates") or [] if 0 < float(r) < 1]
    if not rates:
        return Unverified(f.id, "not-verifiable", "the finding names no dropout rate below 1.")
    return Prescription(
        f.id,
        "no dropout",
        f"dropout {max(rates):g}",
        {"model.dropout": f"{max(rates):g}"},
        {"model.dropout": "0"},
        note="in segdoctor's U-Net, not in your layers.",
    )


def _weight_decay(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    wd = f.evidence.get("optimizer_weight_decay")
    if wd is None:
        return Unverified(
            f.id,
            "not-verifiable",
            "not verifiable yet: the recipe has no setting for L2 regularizers on layers.",
        )
    return Prescription(
        f.id,
        "weight decay 1e-4 (the recipe's default)",
        f"weight decay {float(wd):g}",
        {"train.weight_decay": f"{float(wd):g}"},
        {"train.weight_decay": "0.0001"},
        note="AdamW's decoupled weight decay in segdoctor's recipe.",
    )


def _batchnorm(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    batch = int(f.evidence.get("batch_size") or 0)
    if batch < 1:
        return Unverified(f.id, "not-verifiable", "the finding names no batch size.")
    return Prescription(
        f.id,
        "GroupNormalization instead of BatchNorm",
        f"BatchNorm with batches of {batch}",
        {"data.batch_size": str(batch), "model.norm": "batch"},
        {"data.batch_size": str(batch), "model.norm": "group"},
        note="in segdoctor's U-Net, not in your model.",
    )


Prescriber = Callable[[Finding, DataPlan, Any], Prescription | Unverified]
"""``(finding, plan, the user's model or None) -> Prescription | Unverified``."""

PRESCRIBERS: dict[str, Prescriber] = {
    "mask-scale-255": _mask_scale_255,
    "mask-instance-labels": _mask_instances,
    "mask-fractional": _snap_masks,
    "mask-lossy-format": _snap_masks,
    "mask-invalid-values": _invalid_values,
    "pair-misaligned": _repair,
    "split-class-absent": _resplit,
    "split-empty-masks": _resplit,
    "split-object-size": _resplit,
    "split-intensity-shift": _resplit,
    "duplicate-across-splits": _leak,
    "overlap-across-splits": _overlap,
    "unreadable-file": _unreadable,
    "class-imbalance": _oversample,
    "empty-masks": _oversample,
    "lr-too-high": _learning_rate,
    "lr-too-low": _learning_rate,
    "dropout-high": _dropout,
    "weight-decay-high": _weight_decay,
    "batchnorm-small-batch": _batchnorm,
    **dict.fromkeys(LOGIT_FIXES, from_logits_fix),
}
"""Finding ids whose fix segdoctor can apply and reproduce the fault for: in its own recipe, or
in a fresh copy of the user's model. Every prescriber gets the finding, the data plan and the
user's model (None when not given); most use only the first two."""


def prescribe(
    report: Report, plan: DataPlan, model: Any = None
) -> tuple[list[Prescription], list[Unverified]]:
    """The verifiable prescriptions of a report's errors and warnings, in rank order.

    Every other error or warning is listed as :class:`Unverified`: ``recipe-fixes-it`` (the
    recipe does it already and cannot reproduce the fault), or ``not-verifiable`` (with why).
    Info findings are left out.
    """
    found: list[Prescription] = []
    other: list[Unverified] = []
    seen: set[str] = set()
    cropped = _empties_from_crops(report)
    for f in report.findings:
        if f.severity == "info" or f.id in seen:
            continue
        seen.add(f.id)
        if cropped and f.id in ("empty-masks", "split-empty-masks"):
            other.append(Unverified(f.id, "skipped", EXPLAINED_BY_CROPS))
        elif f.id in RECIPE_FIXES_IT:
            other.append(Unverified(f.id, "recipe-fixes-it", RECIPE_FIXES_IT[f.id]))
        elif f.id in PRESCRIBERS:
            made = _prescription(f, plan, model, found)
            (other if isinstance(made, Unverified) else found).append(made)  # type: ignore[arg-type]
        else:
            reason = NOT_VERIFIABLE.get(
                f.id,
                "not verifiable yet: its fix is not a setting of segdoctor's recipe (see the "
                "finding's fix).",
            )
            other.append(Unverified(f.id, "not-verifiable", reason))
    return found, other


def _empties_from_crops(report: Report) -> bool:
    """Whether the validation crops (``split-image-size``) hold more empty masks than training.

    Example:
        >>> from segdoctor.doctor import make_finding
        >>> crops = make_finding("split-image-size", {"cropped_split": "val"})
        >>> rates = make_finding("split-empty-masks", {"empty_rate": {"train": 0.0, "val": 0.6}})
        >>> _empties_from_crops(Report([crops, rates])), _empties_from_crops(Report([rates]))
        (True, False)
    """
    by_id = {f.id: f for f in report.findings}
    crops, empties = by_id.get("split-image-size"), by_id.get("split-empty-masks")
    if crops is None or empties is None:
        return False
    rates = empties.evidence.get("empty_rate") or {}
    cropped = rates.get(crops.evidence.get("cropped_split"))
    others = [r for name, r in rates.items() if name != crops.evidence.get("cropped_split")]
    return cropped is not None and bool(others) and cropped > max(others)


def _prescription(
    f: Finding, plan: DataPlan, model: Any, found: list[Prescription]
) -> Prescription | Unverified:
    """The finding's prescription, or "skipped" when one already found makes the same runs."""
    resplit = next((p for p in found if {p.finding_id, f.id} <= set(RESPLIT_IDS)), None)
    if resplit is not None:
        why = f"the same fix (a re-split) as {resplit.finding_id}: see there."
        return Unverified(f.id, "skipped", why)
    made = PRESCRIBERS[f.id](f, plan, model)
    same = next((p for p in found if _same_runs(p, made)), None)
    if same is not None:
        return Unverified(f.id, "skipped", f"the same fix as {same.finding_id}: see there.")
    return made


def _same_runs(a: Prescription, b: Prescription | Unverified) -> bool:
    if isinstance(b, Unverified):
        return False
    keys = (
        "diagnosed",
        "fixed",
        "drop_train",
        "extra_train",
        "from_logits",
        "learning_rate",
        "data",
    )
    return all(a.to_dict().get(k) == b.to_dict().get(k) for k in keys)
