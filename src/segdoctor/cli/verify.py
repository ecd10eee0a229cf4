"""Proven prescriptions: train twice, as diagnosed and with the fix, and measure the difference.

``segdoctor diagnose DATA --verify`` (or :func:`verify` from Python) takes every error or warning
finding whose fix segdoctor can apply itself and runs the same short training of segdoctor's
recipe twice on the user's data: once reproducing the fault ("as diagnosed") and once with the
fix. Both runs share the seed, the split, the number of epochs and every other setting. Each
run's best model is scored on the same validation images at full size, and the per-image Dice
differences (fix minus diagnosed) give the mean change with a bootstrap 95% interval over the
images. When that interval includes 0 the result says so: "the short run cannot tell the two
apart". The user's files are never changed; ``write_fixed_copy`` writes a corrected copy.

This module sits above ``train`` and ``doctor`` (it needs the doctor's findings and the
recipe's training run); neither of them imports it.

Example:
    >>> from segdoctor.metrics import paired_difference
    >>> paired_difference({"a": 0.9, "b": 0.8, "c": 0.7}, {"a": 0.5, "b": 0.6, "c": 0.4})["images"]
    3
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
from PIL import Image

from segdoctor import data as sd
from segdoctor._io import check_writable
from segdoctor.cli import STARTED
from segdoctor.data.io import file_extension
from segdoctor.doctor import Finding, Report, diagnose
from segdoctor.errors import ConfigError, SegdoctorError
from segdoctor.metrics import paired_difference
from segdoctor.runfiles import load_model
from segdoctor.train.config import RunConfig, resolve_config
from segdoctor.train.data import PreparedData, prepare_data
from segdoctor.train.evaluate import predict_image, score_images
from segdoctor.train.inference import to_labels
from segdoctor.train.recipe import train_run

Log = Callable[[str], None]

SHORT_RUN: dict[str, str] = {
    "train.lr": "0.001",  # fixed (no LR range test per run), inside the recipe's Adam band
    # a warm-up and decay planned over a minute or two barely leave the warm-up: constant rate
    "train.schedule": "constant",
    "train.warmup_epochs": "0",
    "train.doctor": "false",
    "train.early_stopping_patience": "",  # both runs train every planned epoch
    "model.base_filters": "16",
    "data.patch_size": "64",
}
"""The recipe's settings for both runs of a comparison (``settings=`` overrides them)."""
VAL_FRACTION = 0.2
"""Share of the pairs held out for validation when the data has no split of its own."""
MIN_RUN_MINUTES = 0.5
"""The shortest time budget a run is given; fewer comparisons are made to keep it."""
MAX_EPOCHS = 200
"""Epoch limit of the first run of a comparison (its time budget ends it sooner)."""
FIRST_RUN_SHARE = 0.45
"""Share of a comparison's time the first run (as diagnosed) is given; the second run (with
the fix) trains the same number of epochs within what is left of the comparison's time (at
least :data:`MIN_RUN_MINUTES`), the rest goes to scoring."""
PAIR_FILL = 0.8
"""Share of a comparison's time its two runs may use (the rest: scoring, files)."""
SECOND_RUN_SLACK = 1.25
"""The second run may take this many times the first run's time, whatever is left."""
MIN_IMAGES = 3
"""Fewer validation images scored by both runs than this: no interval, no verdict."""


DATA_FIXES = ("mask-scale-255", "duplicate-across-splits", "unreadable-file")
"""Finding ids whose fix ``--write-fixed`` applies to a copy of the data."""
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
NOT_VERIFIABLE: dict[str, str] = {
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
    "mask-fractional": "not verifiable: segdoctor's recipe refuses fractional masks, so there is "
    "no as-diagnosed run to compare with; re-export the masks as the fix says.",
}


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Prescription:
    """A fix segdoctor can apply to its own recipe, and how to reproduce the fault without it.

    Attributes:
        finding_id: The finding it answers.
        change: The fix in plain words.
        diagnosed_as: How the as-diagnosed run reproduces the fault.
        diagnosed: Config overrides (``section.key``) of the as-diagnosed run.
        fixed: Config overrides of the run with the fix.
        drop_train: Training pairs the fix removes (leaked copies of validation images).
        extra_train: Training pairs only the as-diagnosed run gets (unreadable pairs).
        foreground: Maps stored mask values and the as-diagnosed run's predicted labels to the
            true foreground (0/1) when that run reads the masks differently; None: both runs are
            scored by their own evaluation.
        expect: "up" when the fix should raise the Dice; "down" when it removes an inflation.
        note: What the comparison can and cannot show.
        from_logits: ``(diagnosed, fixed)`` settings of the user's loss when the fix is to the
            user's model (then ``model`` is that model and both runs train a fresh copy of it).

    Example:
        >>> p = Prescription("dropout-high", "dropout 0", "dropout 0.5", {"model.dropout": "0.5"},
        ...                  {"model.dropout": "0"})
        >>> p.to_dict()["fixed"]
        {'model.dropout': '0'}
    """

    finding_id: str
    change: str
    diagnosed_as: str
    diagnosed: Mapping[str, str]
    fixed: Mapping[str, str]
    drop_train: tuple[str, ...] = ()
    extra_train: tuple[str, ...] = ()
    foreground: Callable[[np.ndarray], np.ndarray] | None = None
    expect: str = "up"
    note: str = ""
    from_logits: tuple[bool, bool] | None = None
    model: Any = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "finding": self.finding_id,
            "change": self.change,
            "diagnosed_as": self.diagnosed_as,
            "diagnosed": dict(self.diagnosed),
            "fixed": dict(self.fixed),
            "drop_train": list(self.drop_train),
            "extra_train": list(self.extra_train),
            "expect": self.expect,
        }
        if self.from_logits is not None:
            out["from_logits"] = {"diagnosed": self.from_logits[0], "fixed": self.from_logits[1]}
        return {**out, "note": self.note} if self.note else out


@dataclass(frozen=True)
class Unverified:
    """A finding that --verify does not measure, and why (``status``: see :func:`prescribe`)."""

    finding_id: str
    status: str  # "not-verifiable" | "recipe-fixes-it" | "skipped"
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"finding": self.finding_id, "status": self.status, "reason": self.reason}


@dataclass
class RunScore:
    """One short training run and its per-image validation Dice."""

    label: str
    status: str
    epochs: int = 0
    seconds: float = 0.0
    per_image: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def dice_mean(self) -> float | None:
        """Mean per-image Dice (images skipped by the empty policy left out); None: no scores."""
        values = [v for v in self.per_image.values() if np.isfinite(v)]
        return float(np.mean(values)) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "status": self.status,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 1),
            "dice_mean": self.dice_mean,
            "images": len(self.per_image),
            "error": self.error,
            # NaN (skipped by the empty policy) as null: the JSON stays strict
            "per_image": {k: (v if np.isfinite(v) else None) for k, v in self.per_image.items()},
        }


@dataclass
class Verification:
    """The two runs of one prescription, their paired comparison and the verdict."""

    prescription: Prescription
    diagnosed: RunScore
    fixed: RunScore
    comparison: dict[str, Any]
    verdict: str

    @property
    def improved(self) -> bool:
        """Whether the fix raised validation Dice measurably (interval above 0)."""
        ci = self.comparison.get("ci95")
        return bool(ci and ci[0] > 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.prescription.to_dict(),
            "as_diagnosed": self.diagnosed.to_dict(),
            "with_fix": self.fixed.to_dict(),
            "comparison": self.comparison,
            "verdict": self.verdict,
            "improved": self.improved,
        }


@dataclass
class VerifyResult:
    """Everything --verify measured, and what it could not measure.

    ``to_dict()`` is the JSON form (``summary["verify"]`` of ``diagnose --verify --json``);
    ``to_text()`` the terminal form.
    """

    data: str
    verified: list[Verification] = field(default_factory=list)
    unverified: list[Unverified] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    written: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "settings": self.settings,
            "seconds": round(self.seconds, 1),
            "verified": [v.to_dict() for v in self.verified],
            "unverified": [u.to_dict() for u in self.unverified],
            "written_fixed_copy": self.written,
        }

    def to_text(self) -> str:
        """Plain text for a terminal: one block per prescription, then what was not measured."""
        s = self.settings
        lines = [
            f"Verifying prescriptions on {self.data}: {len(self.verified)} measured, "
            f"{len(self.unverified)} not measured ({self.seconds:.0f} s).",
        ]
        if s:
            lines.append(
                f"Each pair of runs: segdoctor's recipe, the same seed ({s['seed']}), epochs and "
                f"{s['val_images']} validation images ({s['train_images']} for training); "
                f"{', '.join(f'{k}={v}' for k, v in s['recipe'].items())}."
            )
        if not self.verified and not self.unverified:
            lines.append("Nothing to verify: the diagnosis has no error or warning finding.")
        for v in self.verified:
            lines.extend(_verification_lines(v))
        for u in self.unverified:
            lines.append(f"- {u.finding_id}: {u.status}: {u.reason}")
        if self.written:
            lines.append(f"Corrected copy of the data written to {self.written}.")
        return "\n".join(lines)


def _fmt_dice(run: RunScore) -> str:
    if run.dice_mean is None:
        why = run.error or f"no scores ({run.status})"
        return f"no Dice: {why}"
    return f"Dice {run.dice_mean:.4f} ({run.epochs} epochs, {run.seconds:.0f} s)"


def _verification_lines(v: Verification) -> list[str]:
    p = v.prescription
    lines = [
        f"* {p.finding_id}: {p.change}",
        f"    as diagnosed ({p.diagnosed_as}): {_fmt_dice(v.diagnosed)}",
        f"    with the fix: {_fmt_dice(v.fixed)}",
    ]
    c = v.comparison
    if c.get("images", 0) >= MIN_IMAGES:
        lo, hi = c["ci95"]
        lines.append(
            f"    difference {c['mean_difference']:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}] "
            f"over {c['images']} images ({c['wins']} better, {c['losses']} worse)"
        )
    if v.diagnosed.epochs and v.fixed.epochs and v.diagnosed.epochs != v.fixed.epochs:
        lines.append(
            f"    (the as-diagnosed run trained {v.diagnosed.epochs} epochs, the run with the fix "
            f"{v.fixed.epochs} in its time limit)"
        )
    lines.append(f"    {v.verdict}")
    if p.note:
        lines.append(f"    note: {p.note}")
    return lines


# ----------------------------------------------------------------------------------------------
# Statistics


def verdict(comparison: Mapping[str, Any], expect: str = "up") -> str:
    """One sentence on what the paired comparison shows.

    Example:
        >>> verdict({"images": 8, "mean_difference": 0.01, "ci95": [-0.02, 0.04]})[:39]
        'The short run cannot tell the two apart'
    """
    n = int(comparison.get("images", 0))
    if n < MIN_IMAGES:
        return (
            f"The short run cannot tell the two apart: only {n} validation image(s) were scored "
            f"by both runs (at least {MIN_IMAGES} are needed for an interval)."
        )
    mean = comparison["mean_difference"]
    lo, hi = comparison["ci95"]
    if lo <= 0 <= hi:
        return (
            f"The short run cannot tell the two apart: the difference {mean:+.4f} has a 95% "
            f"interval [{lo:+.4f}, {hi:+.4f}] that includes 0. A longer run (more --max-minutes) "
            "or more validation images may."
        )
    if lo > 0:
        return f"The fix raised the validation Dice by {mean:+.4f} (95% interval above 0)."
    if expect == "down":
        return (
            f"Without the fault the validation Dice is {-mean:.4f} lower (95% interval below 0): "
            "the as-diagnosed number was inflated, the fixed one is the honest estimate."
        )
    return f"The fix lowered the validation Dice by {-mean:.4f} (95% interval below 0)."


def _failed_verdict(diagnosed: RunScore, fixed: RunScore) -> str:
    for run in (fixed, diagnosed):
        if run.dice_mean is None and run.error is None:  # trained, but no epoch scored
            return (
                f"Not verified: the run {run.label} finished without a scored epoch "
                f"({run.status}); give it more --max-minutes."
            )
    if fixed.dice_mean is None:
        return f"Not verified: the run with the fix failed ({fixed.error})."
    return (
        f"As diagnosed, segdoctor's recipe cannot train ({diagnosed.error or diagnosed.status}); "
        f"with the fix it reaches Dice {fixed.dice_mean:.4f}."
    )


# ----------------------------------------------------------------------------------------------
# The data both runs see


@dataclass
class DataPlan:
    """The pairs, split once for every run (the data's own split when it has one).

    Attributes:
        root: The data folder (or CSV).
        train, val: The split (``split_pairs`` with :data:`VAL_FRACTION` and the seed).
        unreadable: Pairs whose image or mask cannot be read (only looked for on request).
        has_splits: Whether the data came with its own train/val split.
    """

    root: Path
    train: list[sd.Pair]
    val: list[sd.Pair]
    unreadable: list[sd.Pair] = field(default_factory=list)
    has_splits: bool = False


def _readable(pair: sd.Pair) -> bool:
    try:
        sd.read_pair(pair)
    except (SegdoctorError, OSError, ValueError):
        return False
    return True


def plan_data(data: str | Path, seed: int = 0, check_readable: bool = False) -> DataPlan:
    """Discover the pairs (leniently, as the doctor does) and split them once.

    Raises:
        ConfigError: 3D volumes or multi-file (nnU-Net multi-channel) images, which the
            verifying runs cannot list yet.
    """
    root = Path(data)
    index = sd.discover_pairs(root, on_unpaired="skip", strict=False)
    special = [p.name for p in index.pairs if p.slice_index is not None or p.channels]
    if special:
        raise ConfigError(
            "--verify cannot use 3D volumes or multi-file images yet",
            expected="2D image files (one file per image and per mask)",
            received=f"{len(special)} such pairs, e.g. {special[0]}",
            fix="run `segdoctor diagnose` without --verify, and apply the fixes by hand.",
        )
    bad = [p for p in index.pairs if not _readable(p)] if check_readable else []
    good = [p for p in index.pairs if p not in bad]
    has_splits = bool(good) and all(p.split in ("train", "val") for p in good)
    train, val = sd.split_pairs(good, VAL_FRACTION, seed=seed)
    return DataPlan(root, train, val, bad, has_splits and bool(train) and bool(val))


def _write_csv(path: Path, pairs: Sequence[sd.Pair]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask"])
        writer.writerows([[str(p.image.resolve()), str(p.mask.resolve())] for p in pairs])
    return path


# ----------------------------------------------------------------------------------------------
# Prescriptions: finding -> (as diagnosed, with the fix)


def _equals(value: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda labels: np.asarray(labels) == value


def _positive(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels) > 0


def _mask_scale_255(f: Finding, plan: DataPlan) -> Prescription:
    top = int(max(f.evidence.get("values") or [255]))
    return Prescription(
        f.id,
        f"read the masks as {{0, 1}} ({top} -> 1)",
        f"stored values taken as class indices, {top + 1} classes, as a pipeline that sets "
        "num_classes = mask.max() + 1",
        {"data.mask_policy": "multiclass"},
        {"data.mask_policy": "auto"},
        foreground=_equals(top),
        note=f"`segdoctor train` reads 0/{top} masks right by itself (mask_policy auto): the "
        "comparison shows what the fault costs a pipeline that takes the values as classes; one "
        f"that feeds 0/{top} to a sigmoid loss fails worse, and the recipe cannot be told to do "
        "that. Both runs are scored against the true foreground.",
    )


def _mask_instances(f: Finding, plan: DataPlan) -> Prescription | Unverified:
    top = int(f.evidence.get("max_label") or 0)
    if top > 255:
        return Unverified(
            f.id,
            "not-verifiable",
            f"as diagnosed the network would need {top + 1} output channels (one per instance "
            "label): too large for a short run.",
        )
    return Prescription(
        f.id,
        "read the masks as a binary foreground (label > 0)",
        f"instance labels taken as class indices, {top + 1} classes",
        {"data.mask_policy": "multiclass"},
        {"data.mask_policy": "instance"},
        foreground=_positive,
        note="`segdoctor train` converts instance labels to a foreground by itself (mask_policy "
        "auto): the comparison shows what the fault costs a pipeline that takes the labels as "
        "classes. Both runs are scored against the foreground (label > 0).",
    )


def _leak(f: Finding, plan: DataPlan) -> Prescription | Unverified:
    pairs = sd.cross_split_duplicates(plan.train, plan.val)
    if not pairs:
        return Unverified(
            f.id,
            "not-verifiable",
            "no image is on both sides of the split used here (the copies are within one side), "
            "so dropping them cannot change what validation measures.",
        )
    drop = tuple(sorted({train for train, _ in pairs}))
    return Prescription(
        f.id,
        f"drop the {len(drop)} training copies of validation images",
        f"{len(pairs)} validation image(s) also in training",
        {},
        {},
        drop_train=drop,
        expect="down",
        note="removing a leak should LOWER the validation Dice: the as-diagnosed number measures "
        "memory, not how the model does on new images.",
    )


def _unreadable(f: Finding, plan: DataPlan) -> Prescription | Unverified:
    if not plan.unreadable:
        return Unverified(
            f.id,
            "not-verifiable",
            "the unreadable files are not part of any image/mask pair: no run would read them.",
        )
    names = tuple(p.name for p in plan.unreadable)
    return Prescription(
        f.id,
        f"drop the {len(names)} unreadable pair(s)",
        "the unreadable pairs kept in training (segdoctor train without data.skip_bad_files)",
        {},
        {},
        extra_train=names,
    )


def _oversample(f: Finding, plan: DataPlan) -> Prescription:
    return Prescription(
        f.id,
        "draw a third of the training crops around foreground (the recipe's default)",
        "crops drawn uniformly at random, as a plain pipeline does",
        {"data.foreground_oversample": "0"},
        {"data.foreground_oversample": "0.33"},
        note="`segdoctor train` oversamples foreground by itself (a third of the crops); both "
        "runs train the recipe's per-image Dice + cross-entropy.",
    )


def _learning_rate(f: Finding, plan: DataPlan) -> Prescription | Unverified:
    lr, steepest = f.evidence.get("configured_lr"), f.evidence.get("steepest_lr")
    if not lr or not steepest or not 0 < float(lr) < 10:
        return Unverified(f.id, "not-verifiable", "the finding names no usable learning rates.")
    return Prescription(
        f.id,
        f"learning rate {float(steepest) / 10:.3g} (a tenth of the steepest descent)",
        f"your learning rate {float(lr):.3g}",
        {"train.lr": f"{float(lr):.6g}"},
        {"train.lr": f"{float(steepest) / 10:.6g}"},
        note="measured on segdoctor's U-Net with these learning rates, not on your model.",
    )


def _dropout(f: Finding, plan: DataPlan) -> Prescription | Unverified:
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


def _weight_decay(f: Finding, plan: DataPlan) -> Prescription | Unverified:
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


def _batchnorm(f: Finding, plan: DataPlan) -> Prescription | Unverified:
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


PRESCRIBERS: dict[str, Callable[[Finding, DataPlan], Prescription | Unverified]] = {
    "mask-scale-255": _mask_scale_255,
    "mask-instance-labels": _mask_instances,
    "duplicate-across-splits": _leak,
    "unreadable-file": _unreadable,
    "class-imbalance": _oversample,
    "empty-masks": _oversample,
    "lr-too-high": _learning_rate,
    "lr-too-low": _learning_rate,
    "dropout-high": _dropout,
    "weight-decay-high": _weight_decay,
    "batchnorm-small-batch": _batchnorm,
}
"""Finding ids whose fix segdoctor can apply to its own recipe (and reproduce the fault)."""


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
    for f in report.findings:
        if f.severity == "info" or f.id in seen:
            continue
        seen.add(f.id)
        if f.id in RECIPE_FIXES_IT:
            other.append(Unverified(f.id, "recipe-fixes-it", RECIPE_FIXES_IT[f.id]))
        elif f.id in PRESCRIBERS or f.id in LOGIT_FIXES:
            made = _from_logits(f, model) if f.id in LOGIT_FIXES else PRESCRIBERS[f.id](f, plan)
            same = next((p for p in found if _same_runs(p, made)), None)
            if same is not None:
                made = Unverified(f.id, "skipped", f"the same fix as {same.finding_id}: see there.")
            (other if isinstance(made, Unverified) else found).append(made)  # type: ignore[arg-type]
        else:
            reason = NOT_VERIFIABLE.get(
                f.id,
                "not verifiable yet: its fix is not a setting of segdoctor's recipe (see the "
                "finding's fix).",
            )
            other.append(Unverified(f.id, "not-verifiable", reason))
    return found, other


def _same_runs(a: Prescription, b: Prescription | Unverified) -> bool:
    if isinstance(b, Unverified):
        return False
    keys = ("diagnosed", "fixed", "drop_train", "extra_train", "from_logits")
    return all(a.to_dict().get(k) == b.to_dict().get(k) for k in keys)


# ----------------------------------------------------------------------------------------------
# The runs


def run_config(
    train_csv: Path,
    val_csv: Path,
    overrides: Mapping[str, str],
    *,
    settings: Mapping[str, str] | None = None,
    epochs: int = MAX_EPOCHS,
    minutes: float | None = None,
    seed: int = 0,
    verbose: int = 0,
) -> RunConfig:
    """The recipe's configuration of one verifying run.

    :data:`SHORT_RUN`, then ``settings``, then the prescription's ``overrides``; the data
    paths, epochs, time budget, seed and verbosity are the comparison's.

    Example:
        >>> from pathlib import Path
        >>> cfg = run_config(Path("t.csv"), Path("v.csv"), {"model.dropout": "0.5"}, epochs=4)
        >>> cfg.model.dropout, cfg.train.epochs, cfg.train.lr
        (0.5, 4, 0.001)
    """
    values = {
        **SHORT_RUN,
        **dict(settings or {}),
        **dict(overrides),
        "train.epochs": str(epochs),
        "train.max_minutes": "" if minutes is None else f"{minutes:.6g}",
        "train.seed": str(seed),
        "train.verbose": str(verbose),
    }
    config = resolve_config(overrides=values)
    data = replace(config.data, path=str(train_csv), val_path=str(val_csv))
    return replace(config, data=data)


def plan_budget(max_minutes: float, prescriptions: int) -> tuple[float, int]:
    """Minutes per comparison, and how many comparisons (two runs each) fit in ``max_minutes``.

    Every comparison gets an equal share, enough for two runs of :data:`MIN_RUN_MINUTES`;
    ``(0.0, 0)`` when not even one fits.

    Example:
        >>> plan_budget(5.0, 9)
        (1.0, 5)
    """
    count = min(prescriptions, int(max_minutes / (2 * MIN_RUN_MINUTES) + 1e-9))
    return (max_minutes / count, count) if count else (0.0, 0)


def _rescore(
    run_dir: Path, val_pairs: Sequence[sd.Pair], foreground: Callable[[np.ndarray], np.ndarray]
) -> dict[str, float]:
    """Per-image Dice of a run's best model against the true foreground of the stored masks."""
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    normalizer = sd.ImageNormalizer.from_dict(meta["normalizer"])
    model = load_model(run_dir / "best.keras")
    names, truths, preds = [], [], []
    for pair in val_pairs:
        image, mask = sd.read_pair(pair)
        x = normalizer(sd.to_channels(image, int(meta["channels"]), name=pair.name))  # (H, W, C)
        labels = to_labels(predict_image(model, x))  # (H, W)
        names.append(pair.name)
        truths.append(foreground(mask).astype(np.int32))
        preds.append(foreground(labels).astype(np.int32))
    _, rows = score_images(names, truths, preds, 2)
    return {row["name"]: float(row["dice"]) for row in rows}


def _train_and_score(
    config: RunConfig,
    run_dir: Path,
    label: str,
    foreground: Callable[[np.ndarray], np.ndarray] | None,
    log: Log,
) -> RunScore:
    """Train one run with the recipe; a run that fails is a result, not an exception."""
    start = time.monotonic()
    try:
        result = train_run(config, run_dir, log=log)
        if foreground is None:
            rows = result.evaluation.get("per_image", [])
            per_image = {row["name"]: float(row["dice"]) for row in rows}
        elif (run_dir / "best.keras").exists():
            val = sd.discover_pairs(config.data.val_path, on_unpaired="skip").pairs
            per_image = _rescore(run_dir, val, foreground)
        else:
            per_image = {}
    except Exception as err:  # the as-diagnosed run may fail: that is the finding
        what = getattr(err, "what", None) or f"{type(err).__name__}: {err}"
        log(f"failed: {what}")
        return RunScore(label, "failed", seconds=time.monotonic() - start, error=str(what))
    seconds = time.monotonic() - start
    return RunScore(label, result.status, result.epochs_run, seconds, per_image)


def verify_prescription(
    p: Prescription,
    plan: DataPlan,
    work: Path,
    *,
    minutes: float,
    settings: Mapping[str, str] | None = None,
    seed: int = 0,
    verbose: int = 0,
    log: Log = print,
) -> Verification:
    """Run the as-diagnosed and the fixed training of one prescription and compare them.

    The as-diagnosed run goes first, within :data:`FIRST_RUN_SHARE` of ``minutes`` (the
    recipe's own time budget); the run with the fix then trains the same number of epochs (all
    of them when the first run failed), within what is left of ``minutes`` (a safety net). The
    fix never trains longer than the fault: a fault that slows training (a 256-class head for
    0/255 masks) does not turn into an advantage measured for the fix.
    """
    start = time.monotonic()
    folder = work / p.finding_id
    val_csv = _write_csv(folder / "val.csv", plan.val)
    extra = [q for q in plan.unreadable if q.name in p.extra_train]
    fixed_train = [q for q in plan.train if q.name not in p.drop_train]
    diagnosed = _one_run(
        p, "as diagnosed", p.diagnosed, [*plan.train, *extra], val_csv, folder / "diagnosed",
        p.foreground, settings=settings, epochs=MAX_EPOCHS, minutes=minutes * FIRST_RUN_SHARE,
        seed=seed, verbose=verbose, log=log,
    )  # fmt: skip
    fixed = _one_run(
        p, "with the fix", p.fixed, fixed_train, val_csv, folder / "fixed", None,
        settings=settings, epochs=diagnosed.epochs or MAX_EPOCHS,
        minutes=_second_run_minutes(minutes, (time.monotonic() - start) / 60.0),
        seed=seed, verbose=verbose, log=log,
    )  # fmt: skip
    if diagnosed.dice_mean is None or fixed.dice_mean is None:
        return Verification(p, diagnosed, fixed, {"images": 0}, _failed_verdict(diagnosed, fixed))
    comparison = paired_difference(fixed.per_image, diagnosed.per_image, seed=seed)
    return Verification(p, diagnosed, fixed, comparison, verdict(comparison, p.expect))


def _second_run_minutes(minutes: float, first: float) -> float:
    """The second run's time limit: what is left of the comparison's share, but at least
    :data:`SECOND_RUN_SLACK` times what the first run took (the same epochs at the same speed)."""
    return max(minutes * PAIR_FILL - first, SECOND_RUN_SLACK * first, MIN_RUN_MINUTES)


def _one_run(p, label, overrides, train, val_csv, run_dir, foreground, *, log, **config_args):
    tag = run_dir.name
    train_csv = _write_csv(run_dir.parent / f"train_{tag}.csv", train)
    epochs, minutes = config_args["epochs"], config_args["minutes"]
    limit = f"{epochs} epochs" if epochs < MAX_EPOCHS else f"{minutes:.1f} min"
    log(f"{p.finding_id}: training {label} ({limit})...")
    config = run_config(train_csv, val_csv, overrides, **config_args)
    if p.from_logits is not None:
        from_logits = p.from_logits[0 if tag == "diagnosed" else 1]
        score = _fit_user_model(p.model, from_logits, config, label, _prefixed(log, p, label))
    else:
        score = _train_and_score(config, run_dir, label, foreground, _prefixed(log, p, label))
    log(f"{p.finding_id}: {label}: {_fmt_dice(score)}")
    return score


def _prefixed(log: Log, p: Prescription, label: str) -> Log:
    prefix = f"  [{p.finding_id}, {label}] "
    return lambda message: log(prefix + message)


# ----------------------------------------------------------------------------------------------
# Fixes to the user's model: a fresh copy of it trained on the recipe's crops

LOGIT_FIXES = ("output-activation-missing", "from-logits-mismatch")
"""Finding ids whose fix is the ``from_logits`` setting of the user's loss (needs the model)."""


def _loss_config(model: Any) -> dict | None:
    """The serialized loss of a compiled model, when it is a Loss with a from_logits setting."""
    loss = getattr(model, "loss", None)
    if not isinstance(loss, keras.losses.Loss):
        return None
    config = keras.losses.serialize(loss)
    return config if "from_logits" in config.get("config", {}) else None


def _outputs_logits(model: keras.Model) -> bool:
    """Whether the model's last layer outputs logits (no sigmoid/softmax)."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "linear") == "linear"


def _from_logits(f: Finding, model: Any) -> Prescription | Unverified:
    if model is None or isinstance(model, (str, Path)):
        why = "needs your model: pass it (--model MODEL, a compiled .keras file)."
        return Unverified(f.id, "not-verifiable", why)
    loss = _loss_config(model)
    shape = tuple(model.inputs[0].shape)  # (None, H, W, C)
    reason = None
    if loss is None:
        reason = "not verifiable yet: the loss is not a Keras Loss object with from_logits."
    elif shape[1] is not None or shape[2] is not None:
        reason = "not verifiable yet: the model has a fixed input size (whole images are scored)."
    elif shape[-1] not in (1, 3):
        reason = "not verifiable yet: only models with 1 or 3 input channels."
    elif len(model.outputs) != 1 or model.outputs[0].shape[-1] != 1:
        reason = "not verifiable yet: only single-output, one-channel (binary) models."
    if reason is not None:
        return Unverified(f.id, "not-verifiable", reason)
    now = bool(loss["config"]["from_logits"])
    return Prescription(
        f.id,
        f"from_logits={not now} in your loss",
        f"your model and loss as compiled (from_logits={now})",
        {"data.channels": str(shape[-1])},
        {"data.channels": str(shape[-1])},
        from_logits=(now, not now),
        model=model,
        note="both runs train a fresh copy of your model (same seed) with Adam at the short "
        "run's learning rate on the recipe's crops; outputs are thresholded as what they are "
        "(logits at 0, probabilities at 0.5).",
    )


def _fit_user_model(
    model: keras.Model, from_logits: bool, config: RunConfig, label: str, log: Log
) -> RunScore:
    """Train a fresh copy of ``model`` with its loss at ``from_logits``; score whole images."""
    start, done = time.monotonic(), 0
    try:
        prepared = prepare_data(config, log=log)
        keras.utils.set_random_seed(config.train.seed)
        clone = keras.models.clone_model(model)  # fresh weights, same seed in both runs
        loss = _loss_config(model)
        loss = {**loss, "config": {**loss["config"], "from_logits": from_logits}}
        clone.compile(
            optimizer=keras.optimizers.Adam(float(config.train.lr or 1e-3)),
            loss=keras.losses.deserialize(loss),
        )
        limit = (config.train.max_minutes or float("inf")) * 60.0
        while done < config.train.epochs and time.monotonic() - start < limit:
            clone.fit(prepared.train, epochs=done + 1, initial_epoch=done, verbose=0)
            done += 1
        per_image = _score_model(clone, prepared)
    except Exception as err:  # the as-diagnosed run may fail: that is the finding
        log(f"failed: {type(err).__name__}: {err}")
        error = f"{type(err).__name__}: {err}"
        return RunScore(label, "failed", done, time.monotonic() - start, error=error)
    status = "completed" if done >= config.train.epochs else "time budget"
    return RunScore(label, status, done, time.monotonic() - start, per_image)


def _score_model(model: keras.Model, prepared: PreparedData) -> dict[str, float]:
    logits = _outputs_logits(model)
    names, truths, preds = [], [], []
    for pair in prepared.val_pairs:
        image, truth = prepared.load(pair)  # (H, W, C) normalized, (H, W) int32
        names.append(pair.name)
        truths.append(truth)
        preds.append(to_labels(predict_image(model, image), from_logits=logits))  # (H, W)
    _, rows = score_images(names, truths, preds, 2)
    return {row["name"]: float(row["dice"]) for row in rows}


# ----------------------------------------------------------------------------------------------
# A corrected copy of the data (the user's files are never changed)


def _check_destination(out: Path, root: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SegdoctorError(
            f"--write-fixed {out} already exists",
            expected="a new (or empty) folder for the corrected copy",
            fix="choose another folder, or remove this one first.",
        )
    folder = root if root.is_dir() else root.parent
    if out.resolve().is_relative_to(folder.resolve()):
        raise SegdoctorError(
            f"--write-fixed {out} is inside the data folder {folder}",
            expected="a folder outside the data (the user's files are never changed)",
            fix="write the copy next to the data, e.g. --write-fixed data-fixed.",
        )


def _fixed_policy(pairs: Sequence[sd.Pair]) -> sd.MaskPolicy | None:
    """The 0/k -> 0/1 decision for the masks, or None when they need no rescaling."""
    masks = ((p.name, sd.read_mask(p.mask)) for p in pairs)
    policy = sd.decide_mask_policy(sd.inspect_masks(masks))
    return policy if policy.kind in ("scale-255", "two-value") else None


def _dropped_copies(plan: DataPlan) -> set[str]:
    """Training copies of validation images (own split), else every later copy of an image."""
    if plan.has_splits:
        return {train for train, _ in sd.cross_split_duplicates(plan.train, plan.val)}
    return {dup for _, dup in sd.find_duplicates([*plan.train, *plan.val])}


def _copy_pair(pair: sd.Pair, folder: Path, policy: sd.MaskPolicy | None) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pair.image, folder / "images" / f"{pair.name}{file_extension(pair.image)}")
    if policy is None:
        shutil.copyfile(pair.mask, folder / "masks" / f"{pair.name}{file_extension(pair.mask)}")
        return
    mask = sd.normalize_mask(sd.read_mask(pair.mask), policy, name=pair.name)  # (H, W) {0, 1}
    Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"{pair.name}.png")


def write_fixed_copy(
    data: str | Path, out: str | Path, report: Report, plan: DataPlan | None = None
) -> Path:
    """Write a corrected copy of ``data`` to ``out``, atomically; the originals stay untouched.

    Applies the data fixes of the report's findings (:data:`DATA_FIXES`): masks stored as 0/k
    rewritten as 0/1 PNG, the training copies of validation images dropped (without a split of
    its own: every later copy of an image), unreadable pairs left out. The copy keeps the data's
    train/val folders when it has them (``images/`` and ``masks/`` otherwise) and lists what
    was changed in ``fixes.json``. It is built in a temporary folder next to ``out`` and renamed
    into place when complete.

    Example:
        >>> # write_fixed_copy("data", "data-fixed", diagnose("data"))
    """
    root, out = Path(data), Path(out)
    _check_destination(out, root)
    ids = set(report.ids)
    plan = plan or plan_data(root, check_readable="unreadable-file" in ids)
    pairs = [*plan.train, *plan.val]
    policy = _fixed_policy(pairs) if "mask-scale-255" in ids else None
    dropped = _dropped_copies(plan) if "duplicate-across-splits" in ids else set()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for split, group in (("train", plan.train), ("val", plan.val)):
            for pair in group:
                if split == "val" or pair.name not in dropped:
                    _copy_pair(pair, tmp / split if plan.has_splits else tmp, policy)
        changes = {
            "source": str(root),
            "masks_rescaled": policy.describe() if policy else None,
            "dropped_copies": sorted(dropped),
            "dropped_unreadable": sorted(p.name for p in plan.unreadable),
        }
        (tmp / "fixes.json").write_text(json.dumps(changes, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked above): os.replace needs it gone or empty
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


# ----------------------------------------------------------------------------------------------
# Entry points


def _inputs(report_or_data: Report | str | Path, data, model, history) -> tuple[Report, Path]:
    if isinstance(report_or_data, Report):
        root = data if data is not None else report_or_data.summary.get("data")
        if root is None:
            raise ConfigError(
                "verify() got a report without its data folder",
                expected="verify(report, data=FOLDER) or verify(FOLDER)",
                fix="pass the data folder the report was made from as data=.",
            )
        return report_or_data, Path(root)
    root = Path(report_or_data)
    return diagnose(data=root, model=model, history=history, plots=False), root


def verify(
    report_or_data: Report | str | Path,
    data: str | Path | None = None,
    *,
    model: Any = None,
    history: Any = None,
    max_minutes: float = 10.0,
    settings: Mapping[str, str] | None = None,
    seed: int = 0,
    work_dir: str | Path | None = None,
    write_fixed: str | Path | None = None,
    verbose: int = 0,
    log: Log = print,
    started: float | None = None,
) -> VerifyResult:
    """Prove the prescriptions of a diagnosis: two short trainings per fix, compared per image.

    Args:
        report_or_data: A :class:`~segdoctor.doctor.Report` (then ``data`` defaults to the
            folder it was made from) or a data folder, which is diagnosed first.
        data: The data folder of a report.
        model, history: Passed to :func:`~segdoctor.doctor.diagnose` with a data folder.
        max_minutes: Time for everything; split evenly over the runs. Prescriptions that do
            not fit (:data:`MIN_RUN_MINUTES` a run) are listed as skipped.
        settings: Recipe overrides for every run (``{"data.patch_size": "64"}``), on top of
            :data:`SHORT_RUN`.
        seed: The seed of the split, of both runs and of the bootstrap.
        work_dir: Where the runs are kept; default a temporary folder, removed afterwards.
        write_fixed: Also write a corrected copy of the data there (:func:`write_fixed_copy`).
        verbose: Keras' fit verbosity in the runs (2: one line per epoch).
        log: Progress messages.
        started: ``time.monotonic()`` from which ``max_minutes`` counts (the command passes its
            own start, so that the diagnosis counts too); default: now.

    Returns:
        A :class:`VerifyResult`.

    Example:
        >>> # result = verify("data/", max_minutes=3); print(result.to_text())
    """
    start = time.monotonic() if started is None else started
    report, root = _inputs(report_or_data, data, model, history)
    plan = plan_data(root, seed, check_readable="unreadable-file" in report.ids)
    result = VerifyResult(str(root))
    if write_fixed is not None:
        result.written = str(write_fixed_copy(root, write_fixed, report, plan))
    if isinstance(model, (str, Path)):
        model = load_model(model, compile=True)
    prescriptions, result.unverified = prescribe(report, plan, model)
    if prescriptions:
        keep = work_dir is not None
        work = Path(work_dir) if keep else Path(tempfile.mkdtemp(prefix="segdoctor-verify-"))
        try:
            _run_all(prescriptions, plan, work, result, max_minutes, settings, seed, verbose, log,
                     start)  # fmt: skip
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result


def _run_all(prescriptions, plan, work, result, max_minutes, settings, seed, verbose, log, start):
    _, count = plan_budget(max_minutes, len(prescriptions))
    log(f"Verifying {count} of {len(prescriptions)} prescription(s) in {max_minutes:g} minutes...")
    result.settings = {
        "seed": seed,
        "max_minutes": max_minutes,
        "train_images": len(plan.train),
        "val_images": len(plan.val),
        "recipe": {**SHORT_RUN, **dict(settings or {})},
    }
    for k, p in enumerate(prescriptions):
        left = max_minutes - (time.monotonic() - start) / 60.0
        minutes = max(left, 0.0) / max(count - k, 1)
        if k >= count or (k and minutes < 2 * MIN_RUN_MINUTES):  # no share, or earlier overran
            reason = f"--max-minutes {max_minutes:g} leaves no time for it (two runs of at "
            reason += f"least {MIN_RUN_MINUTES:g} min each); give more minutes."
            result.unverified.append(Unverified(p.finding_id, "skipped", reason))
            continue
        log(f"[{k + 1}/{count}] {p.finding_id}: {p.change}")
        result.verified.append(
            verify_prescription(
                p, plan, work, minutes=minutes, settings=settings, seed=seed, verbose=verbose,
                log=log,
            )
        )  # fmt: skip


def cmd_verify(args: Any) -> int:
    """``segdoctor diagnose DATA --verify [--max-minutes M] [--write-fixed OUT]``.

    Prints the diagnosis, then the verification; ``--json`` gets the verification as
    ``summary["verify"]``. Exit status as ``diagnose``: 0, 1 with an error finding, 2 when it
    could not run.
    """
    from rich.console import Console

    try:
        for destination in (args.json, args.html):  # refuse before the work, not after it
            if destination is not None:
                check_writable(Path(destination).parent)
        report = diagnose(
            data=args.data,
            model=args.model,
            history=args.history,
            probe=args.probe,
            plots=args.html is not None,
            safe_mode=not args.unsafe,
            batch_size=args.batch_size,
        )
        report.to_terminal(Console())
        if args.verify:
            model = args.model
            if model is not None:
                model = load_model(model, unsafe=args.unsafe, compile=True)
            result = verify(
                report,
                args.data,
                started=STARTED,
                model=model,
                max_minutes=args.max_minutes,
                write_fixed=args.write_fixed,
                verbose=2,
            )
            print(result.to_text(), flush=True)
            report.summary["verify"] = result.to_dict()
        elif args.write_fixed:
            out = write_fixed_copy(args.data, args.write_fixed, report)
            print(f"Corrected copy of the data written to {out}.")
    except SegdoctorError as err:
        print(f"segdoctor: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"segdoctor: error: could not run the diagnosis: {err}", file=sys.stderr)
        return 2
    if args.json is not None:
        report.to_json(args.json)
    if args.html is not None:
        report.to_html(args.html)
    return 1 if report.has_errors else 0
