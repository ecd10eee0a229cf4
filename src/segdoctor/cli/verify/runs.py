"""The runs of a comparison: the recipe's configuration, the time budget, training and scoring.

A comparison is three runs with the same settings and number of epochs: as diagnosed and with
the fix (the same seed), and as diagnosed again with another seed, which measures how far two
runs differ by chance alone (the seed noise). Each run's best model is scored per image on the
same validation images.

Example:
    >>> plan_budget(4.5, 9)
    (1.5, 3)
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from segdoctor import data as sd
from segdoctor.cli.verify.data_fixes import _positive
from segdoctor.cli.verify.plan import DataPlan, materialize, write_csv
from segdoctor.cli.verify.results import (
    Labels,
    Log,
    Prescription,
    RunScore,
    Verification,
    _failed_verdict,
    _fmt_dice,
    still_gaining,
    verdict,
)
from segdoctor.cli.verify.user_model import _fit_user_model
from segdoctor.metrics import paired_difference
from segdoctor.runfiles import load_model, read_run_meta
from segdoctor.train.config import RunConfig, resolve_config
from segdoctor.train.evaluate import predict_image, score_images
from segdoctor.train.inference import to_labels
from segdoctor.train.recipe import train_run

SHORT_RUN: dict[str, str] = {
    "train.lr": "0.001",  # fixed (no LR range test per run), inside the recipe's Adam band
    # a warm-up and decay planned over a minute or two barely leave the warm-up: constant rate
    "train.schedule": "constant",
    "train.warmup_epochs": "0",
    "train.doctor": "false",
    "train.early_stopping_patience": "",  # both runs train every planned epoch
    # one pass over the data per epoch, not the budgeted recipe's longer epochs: the comparison
    # reads the per-epoch validation curve (was the diagnosed run still gaining?), and with
    # lengthened epochs a 7.5-minute run of a 24-crop case trained 1 to 5 epochs
    "data.samples_per_epoch": "",
    "model.base_filters": "16",
    "data.patch_size": "64",
}
"""The recipe's settings for both runs of a comparison (``settings=`` overrides them)."""
EMPTY_CORRECT = 1.0
"""Dice of an empty validation mask predicted empty, in the paired comparison (the recipe's metric
skips such images: NaN), when the other run scored the image. Measured on the lr-too-high fault
case (2026-12-06): the as-diagnosed run predicted foreground on 2 of 10 validation crops whose
masks are empty (Dice 0), the run with the fix predicted nothing there; leaving the two out
compared 7 images and called the fix worse although the image means said the opposite."""
MIN_RUN_MINUTES = 0.5
"""The shortest time budget a run is given; fewer comparisons are made to keep it."""
RUNS = 3
"""Runs of a comparison: as diagnosed, with the fix, and as diagnosed with another seed."""
MAX_EPOCHS = 200
"""Epoch limit of the first run of a comparison (its time budget ends it sooner)."""
FIRST_RUN_SHARE = 0.3
"""Share of a comparison's time the first run (as diagnosed) is given; the other two train the
same number of epochs within what is left of the comparison's time (each at least
:data:`MIN_RUN_MINUTES`), the rest goes to scoring."""
PAIR_FILL = 0.85
"""Share of a comparison's time its runs may use (the rest: scoring, files)."""
SECOND_RUN_SLACK = 3.0
"""A later run may take this many times the first run's time, whatever is left: it must train
as many epochs as the first, and a busy machine can slow a run down several-fold (measured: an
as-diagnosed run of 4 epochs and a run with the fix cut at 2 by a 1.25x limit, load ~10 on 2
cores). A run that still trains fewer epochs is not compared (:func:`unequal_epochs`)."""


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
        >>> cfg.data.samples_per_epoch, cfg.is_explicit("data.samples_per_epoch")
        (None, True)
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
    """Minutes per comparison, and how many comparisons (:data:`RUNS` runs each) fit in ``max_minutes``.

    Every comparison gets an equal share, enough for :data:`RUNS` runs of
    :data:`MIN_RUN_MINUTES`; ``(0.0, 0)`` when not even one fits.

    Example:
        >>> plan_budget(4.5, 9)
        (1.5, 3)
    """
    count = min(prescriptions, int(max_minutes / (RUNS * MIN_RUN_MINUTES) + 1e-9))
    return (max_minutes / count, count) if count else (0.0, 0)


Scorer = tuple[Sequence[sd.Pair], Labels, Labels]
"""Validation pairs, truth transform and prediction transform a run's best model is rescored with."""


def _rescore(run_dir: Path, scorer: Scorer) -> dict[str, float]:
    """Per-image Dice of a run's best model against the foreground of the given masks."""
    val_pairs, truth_fn, pred_fn = scorer
    meta = read_run_meta(run_dir)
    normalizer = sd.ImageNormalizer.from_dict(meta.normalizer)
    model = load_model(run_dir / "best.keras")
    names, truths, preds = [], [], []
    for pair in val_pairs:
        image, mask = sd.read_pair(pair)
        x = normalizer(sd.to_channels(image, meta.channels, name=pair.name))  # (H, W, C)
        labels = to_labels(predict_image(model, x))  # (H, W)
        names.append(pair.name)
        truths.append(np.asarray(truth_fn(mask)).astype(np.int32))
        preds.append(np.asarray(pred_fn(labels)).astype(np.int32))
    _, rows = score_images(names, truths, preds, 2)
    return {row["name"]: float(row["dice"]) for row in rows}


def _train_and_score(
    config: RunConfig, run_dir: Path, label: str, scorer: Scorer | None, log: Log
) -> RunScore:
    """Train one run with the recipe; a run that fails is a result, not an exception."""
    start = time.monotonic()
    try:
        result = train_run(config, run_dir, log=log)
        if scorer is None:
            rows = result.evaluation.get("per_image", [])
            per_image = {row["name"]: float(row["dice"]) for row in rows}
        elif (run_dir / "best.keras").exists():
            per_image = _rescore(run_dir, scorer)
        else:
            per_image = {}
    except Exception as err:  # the as-diagnosed run may fail: that is the finding
        what = getattr(err, "what", None) or f"{type(err).__name__}: {err}"
        log(f"failed: {what}")
        return RunScore(label, "failed", seconds=time.monotonic() - start, error=str(what))
    seconds = time.monotonic() - start
    curve = _val_dice_curve(run_dir / "history.csv")
    return RunScore(label, result.status, result.epochs_run, seconds, per_image, curve=curve)


def _val_dice_curve(history: Path) -> list[float]:
    """The ``val_dice`` column of a run's history.csv (NaN where an epoch has none)."""
    if not history.exists():
        return []
    with open(history, newline="") as fh:
        return [float(row.get("val_dice") or "nan") for row in csv.DictReader(fh)]


Sides = tuple[tuple[list, list], tuple[list, list], list]
"""(train, val) of the as-diagnosed run, (train, val) of the run with the fix, the truth."""


def _sides(p: Prescription, plan: DataPlan, folder: Path) -> Sides:
    """What each run trains and validates on; masks a run reads differently written as copies."""
    if p.data is None:
        extra = [q for q in plan.unreadable if q.name in p.extra_train]
        fixed_train = [q for q in plan.train if q.name not in p.drop_train]
        return ([*plan.train, *extra], plan.val), (fixed_train, plan.val), []
    d, masks = p.data, folder / "masks"
    diagnosed = tuple(
        materialize(g, d.diagnosed_masks, masks / f"diagnosed_{side}")
        for side, g in zip(("train", "val"), d.diagnosed, strict=True)
    )
    fixed = tuple(
        materialize(g, d.fixed_masks, masks / f"fixed_{side}")
        for side, g in zip(("train", "val"), d.fixed, strict=True)
    )
    truth = materialize(d.truth, d.fixed_masks, masks / "truth") if d.truth else []
    return diagnosed, fixed, truth  # type: ignore[return-value]


def _scorer(p: Prescription, tag: str, val: Sequence[sd.Pair], truth: list) -> Scorer | None:
    """How a run is scored: against the truth, through the foreground map, or by the recipe."""
    pred = p.foreground if tag == "diagnosed" else None
    if truth:
        return truth, _positive, (lambda labels: _positive(pred(labels))) if pred else _positive
    if pred is not None:
        return val, pred, pred
    return None


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
    0/255 masks) does not turn into an advantage measured for the fix. A third run, as diagnosed
    with the seed ``seed + 1`` and the same epochs, measures the seed noise (:func:`seed_noise`).
    """
    start = time.monotonic()
    folder = work / p.finding_id
    diagnosed_data, fixed_data, truth = _sides(p, plan, folder)
    common = {"settings": settings, "verbose": verbose, "log": log, "truth": truth}
    diagnosed = _one_run(
        p, "as diagnosed", p.diagnosed, diagnosed_data, folder / "diagnosed", side="diagnosed",
        epochs=MAX_EPOCHS, minutes=minutes * FIRST_RUN_SHARE, seed=seed, **common,
    )  # fmt: skip
    first = (time.monotonic() - start) / 60.0
    fixed = _one_run(
        p, "with the fix", p.fixed, fixed_data, folder / "fixed", side="fixed",
        epochs=diagnosed.epochs or MAX_EPOCHS, seed=seed,
        minutes=_later_run_minutes(minutes, first, first, 1), **common,
    )  # fmt: skip
    replicate = None
    if diagnosed.dice_mean is not None and fixed.epochs == diagnosed.epochs:
        replicate = _one_run(
            p, "as diagnosed, another seed", p.diagnosed, diagnosed_data, folder / "replicate",
            side="diagnosed", epochs=diagnosed.epochs, seed=seed + 1,
            minutes=_later_run_minutes(minutes, (time.monotonic() - start) / 60.0, first, 2),
            **common,
        )  # fmt: skip
    if p.data is not None and p.data.score_names:  # compared where both splits hold out
        for run in (diagnosed, fixed, replicate):
            if run is not None:
                run.per_image = {k: v for k, v in run.per_image.items() if k in p.data.score_names}
    if diagnosed.dice_mean is None or fixed.dice_mean is None:
        return Verification(p, diagnosed, fixed, {"images": 0}, _failed_verdict(diagnosed, fixed))
    # An empty mask predicted empty (NaN under the skip policy) is right: Dice 1 against a run
    # that predicts foreground there (Dice 0), as fixes for empty masks and smoothing aim to do.
    comparison = paired_difference(
        fixed.per_image, diagnosed.per_image, seed=seed, empty_correct=EMPTY_CORRECT
    )
    if diagnosed.epochs != fixed.epochs:
        comparison["equal_epochs"] = False
        return Verification(p, diagnosed, fixed, comparison, unequal_epochs(diagnosed, fixed))
    comparison["diagnosed_still_gaining"] = still_gaining(diagnosed.curve)
    comparison["seed_noise"] = seed_noise(diagnosed, replicate, seed)
    said = verdict(comparison, p.expect) + still_learning(comparison, len(diagnosed.curve))
    said += beyond_noise(comparison, replicate) + unstable(diagnosed, replicate, comparison)
    return Verification(p, diagnosed, fixed, comparison, said, replicate=replicate)


def seed_noise(diagnosed: RunScore, replicate: RunScore | None, seed: int) -> float | None:
    """How far two runs of the same settings and epochs differ by chance: the absolute mean
    paired difference of the as-diagnosed run and its replicate with another seed; None when
    the replicate did not train as many epochs or scored nothing.

    The interval over images does not hold this part of the noise: a run that predicts a little
    more foreground everywhere moves every image the same way. On the fault benchmark
    (benchmarks/RESULTS.md, 2026-12-07) the same comparison, lr-too-high on the user's model,
    gave +0.175 [+0.033, +0.400] on 48 crops and +0.010 [-0.031, +0.060] on 96 crops of the
    same dataset: an interval above 0 from one pair of runs is not enough.
    """
    if replicate is None or replicate.epochs != diagnosed.epochs or replicate.dice_mean is None:
        return None
    same = paired_difference(
        replicate.per_image, diagnosed.per_image, seed=seed, empty_correct=EMPTY_CORRECT
    )
    return abs(float(same["mean_difference"])) if same.get("images") else None


NOT_YET = " Not counted as an improvement yet: "


def _bar(comparison: Mapping, key: str, missing: str, short: str, cleared: str = "") -> str:
    """What an interval above 0 says about one of the bars its lower end must clear
    (:data:`~segdoctor.cli.verify.results.BARS`): ``missing`` when the bar was not measured,
    ``short`` (formatted with ``bar``) when the lower end does not clear it, else ``cleared``;
    nothing when no improvement is claimed."""
    ci = comparison.get("ci95")
    if not ci or ci[0] <= 0:
        return ""
    bar = comparison.get(key)
    if bar is None:
        return NOT_YET + missing
    return cleared.format(bar=bar) if ci[0] > bar else NOT_YET + short.format(bar=bar)


def beyond_noise(comparison: Mapping, replicate: RunScore | None) -> str:
    """Why an interval above 0 is not yet an improvement: it does not clear the seed noise
    (``comparison["seed_noise"]``, :func:`seed_noise`), or that could not be measured.

    Example:
        >>> beyond_noise({"ci95": [0.02, 0.1], "seed_noise": 0.03}, None)[:30]
        ' Not counted as an improvement'
    """
    why = "did not train" if replicate is None else "did not train as many epochs"
    return _bar(
        comparison,
        "seed_noise",
        f"the run as diagnosed with another seed {why}, so the difference chance alone makes "
        "is unknown; give more --max-minutes.",
        "two runs as diagnosed with different seeds differed by {bar:.4f}, as much as the fix's "
        "lower bound; give more --max-minutes or more validation images.",
        " It clears the seed noise ({bar:.4f}: as diagnosed, another seed).",
    )


UNSTABLE_SEEDS = 0.1
"""Seed noise from which the verdict calls the as-diagnosed training unstable from seed to seed.
On the fault benchmark (benchmarks/RESULTS.md, 2026-12-07) two as-diagnosed runs differed by
0.002-0.025 in seven cases; by 0.61 at Adam 0.1 (one of the two runs collapsed), 0.12 with the
output activation missing and 0.09 for a 256-class head after 4 epochs."""


def unstable(diagnosed: RunScore, replicate: RunScore | None, comparison: Mapping) -> str:
    """A sentence when the two as-diagnosed runs differ by :data:`UNSTABLE_SEEDS` or more: the
    fault may show as runs that fail by chance, which one run with the fix cannot rule out.

    Example:
        >>> a = RunScore("as diagnosed", "done", 9, per_image={"x": 0.8})
        >>> b = RunScore("another seed", "done", 9, per_image={"x": 0.2})
        >>> unstable(a, b, {"seed_noise": 0.6})[:44]
        ' As diagnosed, two seeds scored 0.800 and 0.'
    """
    noise = comparison.get("seed_noise")
    if noise is None or noise < UNSTABLE_SEEDS or replicate is None:
        return ""
    return (
        f" As diagnosed, two seeds scored {diagnosed.dice_mean:.3f} and {replicate.dice_mean:.3f}: "
        "training as diagnosed is unstable from seed to seed, and one run with the fix cannot "
        "show that the fix makes it stable (a too-high learning rate or a loss fed the wrong "
        "activation does this)."
    )


def still_learning(comparison: Mapping, epochs: int) -> str:
    """Why an interval above 0 is not yet an improvement: the as-diagnosed run was still gaining
    at least as much (``comparison["diagnosed_still_gaining"]``, :func:`still_gaining`), or its
    curve (``epochs`` validated) is too short to tell.

    Example:
        >>> still_learning({"ci95": [0.02, 0.1], "diagnosed_still_gaining": 0.05}, 7)[:30]
        ' Not counted as an improvement'
    """
    return _bar(
        comparison,
        "diagnosed_still_gaining",
        f"{epochs} validated epoch(s) are too few to see whether the as-diagnosed run had "
        "stopped improving; give more --max-minutes.",
        "the as-diagnosed run was still gaining {bar:+.4f} Dice over the second half of its "
        f"{epochs} epochs, as much as the fix's lower bound, so a longer run may close the gap; "
        "give more --max-minutes.",
    )


def unequal_epochs(diagnosed: RunScore, fixed: RunScore) -> str:
    """The verdict when the two runs did not train the same number of epochs.

    Example:
        >>> unequal_epochs(RunScore("a", "done", 4), RunScore("b", "time budget", 2))[:12]
        'Not compared'
    """
    return (
        f"Not compared: the run with the fix trained {fixed.epochs} epoch(s) in its time limit, "
        f"the as-diagnosed run {diagnosed.epochs}; a difference would measure the epochs, not the "
        "fix. Give more --max-minutes (or run on a less busy machine)."
    )


def _later_run_minutes(minutes: float, elapsed: float, first: float, done: int) -> float:
    """The time limit of a later run, after ``done`` runs took ``elapsed`` minutes (the first
    ``first``): an equal part of what is left of the comparison's share, but at least
    :data:`SECOND_RUN_SLACK` times the first run's time (the same epochs at the same speed)."""
    share = (minutes * PAIR_FILL - elapsed) / max(RUNS - done, 1)
    return max(share, SECOND_RUN_SLACK * first, MIN_RUN_MINUTES)


def _one_run(p, label, overrides, data, run_dir, *, side, truth, log, **config_args) -> RunScore:
    """One run: ``side`` ("diagnosed" or "fixed") decides how it reads the masks and the model."""
    tag = run_dir.name
    train, val = data
    train_csv = write_csv(run_dir.parent / f"train_{tag}.csv", train)
    val_csv = write_csv(run_dir.parent / f"val_{tag}.csv", val)
    epochs, minutes = config_args["epochs"], config_args["minutes"]
    limit = f"{epochs} epochs" if epochs < MAX_EPOCHS else f"{minutes:.1f} min"
    log(f"{p.finding_id}: training {label} ({limit})...")
    config = run_config(train_csv, val_csv, overrides, **config_args)
    prefixed = _prefixed(log, p, label)
    if p.model is not None:  # the fix is verified on a fresh copy of the user's model
        which = 0 if side == "diagnosed" else 1
        score = _fit_user_model(
            p.model,
            config,
            label,
            prefixed,
            from_logits=None if p.from_logits is None else p.from_logits[which],
            learning_rate=None if p.learning_rate is None else p.learning_rate[which],
        )
    else:
        score = _train_and_score(config, run_dir, label, _scorer(p, side, val, truth), prefixed)
    log(f"{p.finding_id}: {label}: {_fmt_dice(score)}")
    return score


def _prefixed(log: Log, p: Prescription, label: str) -> Log:
    prefix = f"  [{p.finding_id}, {label}] "
    return lambda message: log(prefix + message)
