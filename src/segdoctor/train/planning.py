"""Planning a new run: its learning rate and what fits in its time budget.

- Learning rate: an LR range test (:mod:`segdoctor.lr_range`) on a throwaway model when
  ``train.lr`` is empty, its suggestion kept within a band per optimizer (:func:`choose_lr`);
  skipped, with the middle of the band, when its share of the budget holds too few steps.
- Budget: the configuration is timed (and the U-Net width chosen where the user left it open),
  the decaying schedule spans the steps that fit (:func:`schedule_horizon`), and a
  :class:`~segdoctor.train.callbacks.TimeBudget` stops training in time for the final
  evaluation (:func:`time_budget`).

Example:
    >>> from segdoctor.lr_range import LRFindResult
    >>> round(choose_lr(LRFindResult(), "adamw")[0], 6)  # inconclusive: the middle of the band
    0.000548
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from segdoctor._io import atomic_write_text
from segdoctor.jsonsafe import dumps
from segdoctor.lr_range import LRFindResult, lr_range_test
from segdoctor.runfiles import RunMeta, update_run_meta, write_run_meta
from segdoctor.train import budget as bud
from segdoctor.train import callbacks as cb
from segdoctor.train.budget import Deadline
from segdoctor.train.build import DECAYING_SCHEDULES, fit_data, throwaway_model
from segdoctor.train.config import RunConfig, dump_yaml
from segdoctor.train.data import PreparedData
from segdoctor.train.measure import (
    Log,
    Measurement,
    clear_session_keeping_run_state,
    measure,
    print_log,
    select_configuration,
    width_candidates,
)
from segdoctor.train.report import plot_lr_find

# Adam-family optimizers train normalized U-Nets reliably between these rates. A range test on a
# batch-normalized network often never diverges (BN makes the loss invariant to the scale of the
# weights, so it keeps falling at rates of 1 and more), and "a tenth of the minimum" then lands
# far too high: the suggestion is never taken outside this band.
LR_BAND = {"adamw": (1e-4, 3e-3), "adam": (1e-4, 3e-3), "sgd": (1e-3, 1e-1)}


def choose_lr(result, optimizer: str) -> tuple[float, str]:
    """The learning rate to train with, from an LR range test, and a sentence saying why."""
    low, high = LR_BAND[optimizer]
    candidates = [v for v in (result.suggestion, result.steepest_lr) if v]
    if not candidates:
        lr = float(np.sqrt(low * high))
        return lr, f"The LR range test was inconclusive (too few finite steps); using {lr:.2g}."
    raw = min(candidates)
    lr = float(np.clip(raw, low, high))
    why = (
        f"LR range test: loss lowest at {result.min_loss_lr:.3g}, steepest descent at "
        f"{result.steepest_lr or float('nan'):.3g}"
        + ("" if result.diverged else ", no divergence seen")
        + f"; raw suggestion {raw:.3g}"
    )
    if lr != raw:
        return lr, f"{why}, kept within {low:g}..{high:g} for {optimizer}: using {lr:.3g}."
    return lr, f"{why}: using {lr:.3g}."


def find_lr(
    config: RunConfig,
    prepared: PreparedData,
    steps: int = 50,
    log: Log = print_log,
    max_seconds: float | None = None,
    model: keras.Model | None = None,
) -> LRFindResult:
    """LR range test on a throwaway model; returns the :class:`LRFindResult`.

    ``max_seconds``: its share of a time budget (fewer steps when they do not fit). ``model``: a
    throwaway model of ``config`` already compiled (and stepped) by a measurement, reused so
    that its training step is not compiled twice."""
    model = model if model is not None else throwaway_model(config, prepared)
    data = fit_data(model, prepared.train)
    result = lr_range_test(model, data, steps=steps, max_seconds=max_seconds)
    clear_session_keeping_run_state()
    if result.steps_cut_to is not None:
        log(
            f"LR range test: {result.steps_cut_to} of {steps} steps, to keep within its share of "
            f"the time budget ({max_seconds:.0f} s at {result.seconds_per_step or 0:.2f} s a step)."
        )
    return result


SCHEDULE_FILL = 0.95
"""Share of the training time the decaying schedule is planned to fill (steps vary a little)."""


def size_to_budget(
    config: RunConfig, prepared: PreparedData, deadline: Deadline, log: Log
) -> tuple[RunConfig, Measurement, dict | None]:
    """Time the configuration (and choose the U-Net width where the user left it open)."""
    search_s = deadline.share(bud.SEARCH_SHARE)
    lr_test = config.train.lr is None  # then it runs on the measured model and times the steps
    lr_test_s = deadline.share(bud.LR_TEST_SHARE) if lr_test else 0.0
    if width_candidates(config):
        return select_configuration(
            throwaway_model, config, prepared, deadline, lr_test_s, search_s, log, keep=lr_test
        )
    steps = 2 if lr_test else 4  # with an LR range test: compile and one step, it times more
    sizing = measure(throwaway_model, config, prepared, search_s, steps=steps, keep=lr_test)
    kept = {"model.base_filters": config.model.base_filters}
    return config, sizing, {"chosen": kept, "why": "set by the user: not searched"}


def schedule_horizon(
    config: RunConfig,
    prepared: PreparedData,
    steps: int,
    lr_result,
    log: Log,
    sizing: Measurement | None = None,
    deadline: Deadline | None = None,
) -> int:
    """Steps the LR schedule spans: ``train.epochs`` epochs, or the steps that fit the budget."""
    t = config.train
    if sizing is None or deadline is None or t.schedule not in DECAYING_SCHEDULES:
        return t.epochs * steps
    step_s, compile_s = measured_step_s(lr_result, sizing)
    n_val = len(prepared.val_pairs)
    reserve = sizing.reserve_s(n_val)
    # the first validation traces the test step once: counted once, like the compilation
    train_s = SCHEDULE_FILL * (deadline.remaining() - reserve - compile_s - sizing.trace_s)
    plan = bud.plan_steps(train_s, step_s, steps, sizing.val_s(n_val), t.epochs)
    if plan.total_steps < t.epochs * steps:
        log(
            f"Time budget {deadline.total_s / 60:g} min, {deadline.remaining():.0f} s left, "
            f"{reserve:.0f} s of it kept for the final evaluation and report; at about "
            f"{step_s:.2f} s per step the {t.schedule} schedule spans the {plan.total_steps} steps "
            f"that fit ({plan.epochs:g} epochs of train.epochs={t.epochs}), so the learning rate "
            "has decayed when the budget ends."
        )
    return plan.total_steps


def lengthen_epochs(
    config: RunConfig, prepared: PreparedData, sizing: Measurement, lr_result, log: Log
) -> tuple[RunConfig, dict[str, Any] | None]:
    """Longer epochs for a budgeted run whose epoch ends would eat its training time.

    Every epoch ends with a validation on whole images, checkpoints and the doctor's checks; with
    one pass over a small dataset per epoch and fast steps, that took a quarter to 40% of the
    budget (:data:`~segdoctor.train.budget.EPOCH_END_SHARE`). The epoch is lengthened to the
    steps that keep it under that share (:func:`~segdoctor.train.budget.epoch_steps`), unless the
    user set ``data.samples_per_epoch``. The chosen value goes into the config (and so into
    config.yaml: a resume keeps it).

    Returns:
        The config (with ``data.samples_per_epoch`` set when lengthened) and what was decided
        for run.json (None: unchanged).
    """
    if config.is_explicit("data.samples_per_epoch"):
        return config, None
    step_s, _ = measured_step_s(lr_result, sizing)
    steps = len(prepared.train)
    n_val = len(prepared.val_pairs)
    val_s = sizing.val_s(n_val)
    longer = bud.epoch_steps(steps, step_s, val_s)
    if longer <= steps:
        return config, None
    samples = longer * config.data.batch_size
    prepared.train.set_samples_per_epoch(samples)
    end_s = val_s + bud.EPOCH_END_S
    why = (
        f"Epochs of {longer} steps ({samples} patches) instead of one pass over the "
        f"{len(prepared.train_pairs)} training images ({steps} steps): at {step_s:.2f} s a step, "
        f"each epoch's end (validation of {n_val} whole images, about {val_s:.1f} s, and "
        f"checkpoints and checks, about {bud.EPOCH_END_S:.0f} s) would take "
        f"{end_s / (steps * step_s + end_s):.0%} of the training time; now at most "
        f"{bud.EPOCH_END_SHARE:.0%}. Set data.samples_per_epoch to choose yourself."
    )
    log(why)
    info = {"steps": longer, "samples_per_epoch": samples, "one_pass_steps": steps, "why": why}
    return replace(config, data=replace(config.data, samples_per_epoch=samples)), info


def lr_test_skipped(
    config: RunConfig, sizing: Measurement | None, deadline: Deadline
) -> str | None:
    """Why the LR range test is skipped (its share of the budget holds too few steps), or None."""
    if config.train.lr is not None or sizing is None or sizing.step_s <= 0:
        return None
    if not deadline.bounded:
        return None
    share = deadline.share(bud.LR_TEST_SHARE)
    fit = int(share // sizing.step_s)
    if fit >= bud.MIN_LR_TEST_STEPS:
        return None
    return (
        f"LR range test skipped: at {sizing.step_s:.2f} s a step only {fit} steps fit in its "
        f"share of the time budget ({share:.0f} s), fewer than the {bud.MIN_LR_TEST_STEPS} a "
        "usable loss curve needs."
    )


def measured_step_s(lr_result, sizing: Measurement) -> tuple[float, float]:
    """(seconds a training step takes, extra seconds of the first, compiling one), measured.

    From the LR range test when it ran (its steps are the most), else from the step timing.
    """
    times = getattr(lr_result, "step_seconds", None) or []
    if len(times) >= 2:
        step_s = lr_result.seconds_per_step or float(np.median(times[1:]))
        return step_s, max(sizing.compile_s, times[0] - step_s)
    return sizing.step_s, sizing.compile_s


def time_budget(
    deadline: Deadline, sizing: Measurement | None, prepared: PreparedData, lr_result
) -> cb.TimeBudget | None:
    """The callback that stops training in time for the final evaluation (None: no budget)."""
    if not deadline.bounded or sizing is None:
        return None
    n_val = len(prepared.val_pairs)
    return cb.TimeBudget(
        deadline=deadline,
        reserve_s=sizing.reserve_s(n_val),
        step_s=measured_step_s(lr_result, sizing)[0],
        val_s=sizing.val_s(n_val) + sizing.trace_s,  # until a validation is measured
    )


def budget_notes(budget: cb.TimeBudget) -> list[str]:
    """What stopping for the time budget means for the checkpoints."""
    if budget.stopped_at is None:
        return []
    at = budget.stopped_at
    return [
        f"The time budget stopped training in epoch {at['epoch'] + 1} after {at['steps']} steps "
        f"(a step took {budget.step_s:.2f} s, validation {budget.val_s:.0f} s); that partial "
        "epoch was validated and saved: last.keras holds its last step, best.keras the best "
        "validated model."
    ]


def record_budget(run_dir: Path, deadline: Deadline, log: Log) -> None:
    """Add the budget and the wall time of each phase to run.json, and say how it went."""
    update_run_meta(run_dir, budget=deadline.to_dict())
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in deadline.phases.items())
    log(f"Time budget: {deadline.elapsed():.0f} s of {deadline.total_s:.0f} s used ({phases}).")


def write_run_files(
    run_dir: Path,
    config: RunConfig,
    prepared: PreparedData,
    lr: float,
    lr_result: LRFindResult | None = None,
    schedule_epochs: int | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """config.yaml, run.json and, after an LR range test, lr_find.json and lr_find.png."""
    atomic_write_text(run_dir / "config.yaml", dump_yaml(config))
    meta = RunMeta(
        backend=keras.backend.backend(),
        keras=keras.__version__,
        lr=lr,
        schedule_epochs=schedule_epochs or config.train.epochs,
        mode=prepared.mode,
        num_classes=prepared.num_classes,
        channels=prepared.channels,
        ignore_index=prepared.ignore_index,
        mask_policy=prepared.policy_json,
        normalizer=prepared.normalizer_dict,
        train_names=[p.name for p in prepared.train_pairs],
        val_names=[p.name for p in prepared.val_pairs],
        **(extra or {}),
    )
    write_run_meta(run_dir, meta)
    if lr_result is not None and lr_result.lrs:
        atomic_write_text(run_dir / "lr_find.json", dumps(lr_result.to_dict(), indent=2))
        plot_lr_find(
            lr_result.lrs, lr_result.smoothed, lr_result.suggestion, run_dir / "lr_find.png"
        )


def resume_schedule_note(config: RunConfig, meta: dict) -> str | None:
    """What a resume with more epochs than the saved schedule spans does (None: nothing to say).

    The optimizer, and the schedule inside it, is restored from the checkpoint unchanged: a resumed
    run continues the same curve, so an interrupted run ends exactly as an uninterrupted one would.
    Epochs past the planned horizon therefore train at the schedule's final rate.
    """
    t = config.train
    planned = int(meta.get("schedule_epochs") or t.epochs)
    if t.schedule not in DECAYING_SCHEDULES or t.epochs <= planned:
        return None
    return (
        f"The {t.schedule} learning-rate schedule was planned for {planned} epochs and is resumed "
        f"as saved: epochs {planned + 1}-{t.epochs} train at its final rate. For a full schedule "
        f"over {t.epochs} epochs start a new run with --epochs {t.epochs} (or fine-tune from "
        "best.keras with a new run)."
    )
