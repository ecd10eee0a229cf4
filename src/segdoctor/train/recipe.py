"""The default training recipe: data -> model -> fit -> best model -> evaluation -> report.

The choices, and why:
- Loss: Dice + cross-entropy (nnU-Net's default): Dice targets the overlap directly, cross-entropy
  gives well-behaved gradients early and on empty images.
- Optimizer: AdamW, learning rate from an LR range test when none is given; linear warmup then
  cosine decay (or poly decay as nnU-Net; or a constant rate with ReduceLROnPlateau on val_dice).
- Every callback that watches Dice is told ``mode="max"``: ``mode="auto"`` fails (Keras 3) or
  silently minimizes (Keras 2) a custom metric.
- Checkpoints and history are written atomically every epoch, so a killed run resumes from its last
  completed epoch (``segdoctor train --resume RUN``).
- With a time budget, an epoch is long enough that its end (validation on whole images,
  checkpoints, the doctor) takes at most a tenth of it (:func:`.planning.lengthen_epochs`);
  one pass over a small dataset per epoch spent a quarter of the budget there.
- Deep supervision (``model.deep_supervision``): the same loss on every output, weights halving per
  decoder level (nnU-Net), metrics on the main output; the checkpoints hold the main output only.
- Global Keras state a run changes (the mixed-precision policy, a distribution) is restored when
  it returns, so the caller's later code runs as before.

The jobs live in modules of their own: :mod:`.build` (network, loss, metrics, optimizer),
:mod:`.environment` (bfloat16, devices, optional packages), :mod:`.planning` (learning rate,
time budget), :mod:`.assembly` (callbacks); this module runs them in order.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from segdoctor._io import atomic_write_text, check_writable, remove_stale_temporaries
from segdoctor.errors import SegdoctorError
from segdoctor.lr_range import LRFindResult
from segdoctor.runfiles import load_model, read_run_meta
from segdoctor.train import budget as bud
from segdoctor.train import callbacks as cb
from segdoctor.train.assembly import (
    MONITOR,
    CallerCallbacks,
    caller_callbacks,
    recipe_callbacks,
    with_progress_bar,
)
from segdoctor.train.budget import Deadline
from segdoctor.train.build import (
    DECAYING_SCHEDULES,
    compile_model,
    deep_supervision_weights,
    fit_data,
    make_loss,
    make_metrics,
    make_model,
    make_optimizer,
    make_schedule,
    throwaway_model,
)
from segdoctor.train.config import RunConfig, config_from_dict, load_yaml
from segdoctor.train.data import PreparedData, prepare_data
from segdoctor.train.environment import (
    PrecisionChoice,
    check_tensorboard_available,
    choose_precision,
    cpu_bf16_units,
    resolve_mixed_precision,
    setup_data_parallel,
)
from segdoctor.train.evaluate import finish_run
from segdoctor.train.measure import (
    Log,
    Measurement,
    clear_session_keeping_run_state,
    measure,
    print_log,
)
from segdoctor.train.planning import (
    LR_BAND,
    budget_notes,
    choose_lr,
    find_lr,
    lengthen_epochs,
    lr_test_skipped,
    record_budget,
    resume_schedule_note,
    schedule_horizon,
    size_to_budget,
    time_budget,
    write_run_files,
)

__all__ = [  # the recipe's public names, wherever they are defined
    "DECAYING_SCHEDULES",
    "LR_BAND",
    "MONITOR",
    "CallerCallbacks",
    "RunResult",
    "caller_callbacks",
    "check_tensorboard_available",
    "choose_lr",
    "choose_precision",
    "compile_model",
    "cpu_bf16_units",
    "deep_supervision_weights",
    "find_lr",
    "fit_data",
    "make_loss",
    "make_metrics",
    "make_model",
    "make_optimizer",
    "make_schedule",
    "resolve_mixed_precision",
    "resume_run",
    "resume_schedule_note",
    "setup_data_parallel",
    "train_run",
]


@dataclass
class RunResult:
    """What a training run produced and where it is."""

    run_dir: Path
    status: str
    epochs_run: int
    best_val_dice: float | None
    best_epoch: int | None
    lr: float
    evaluation: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary_text(self) -> str:
        lines = [f"Run folder: {self.run_dir}"]
        if self.best_val_dice is not None:
            lines.append(
                f"Best validation Dice (per-image mean, during training): {self.best_val_dice:.4f} at epoch {self.best_epoch + 1}"
            )
        ev = self.evaluation.get("summary", {})
        if ev:
            lines.append(
                f"Full-size evaluation on {ev.get('n_images')} validation images: "
                f"Dice {ev.get('dice_mean', float('nan')):.4f}, IoU {ev.get('iou_mean', float('nan')):.4f} "
                f"(empty policy: {ev.get('empty_policy')})"
            )
        lines.append(
            f"Stopped: {self.status} after {self.epochs_run} epochs "
            f"(base learning rate {self.lr:.3g}; its decay is in history.csv)"
        )
        lines.extend(f"Note: {n}" for n in self.notes)
        width = max(len(k) for k in self.files) if self.files else 0
        lines.append("Files:")
        lines.extend(f"  {k.ljust(width)}  {p}" for k, p in self.files.items() if Path(p).exists())
        return "\n".join(lines)


def _resume_checkpoint(run_dir: Path, config: RunConfig) -> Path:
    """The model a resume continues from: with deep supervision the full multi-output one."""
    return run_dir / ("last_train.keras" if config.model.deep_supervision else "last.keras")


def train_run(
    config: RunConfig,
    run_dir: Path,
    log: Log = print_log,
    resume: bool = False,
    *,
    callbacks: CallerCallbacks = (),
    deadline: Deadline | None = None,
) -> RunResult:
    """Train ``config`` into ``run_dir`` (or continue it with ``resume=True``).

    The global Keras dtype policy (``train.mixed_precision``) and distribution
    (``train.devices``) the run sets are restored when it returns or fails.

    Args:
        config: the resolved configuration.
        run_dir: the run folder (created; refused when it holds another run unless ``resume``).
        log: where progress messages go.
        resume: continue the run in ``run_dir`` from its last completed epoch.
        callbacks: the caller's callbacks, run after the recipe's (:data:`CallerCallbacks`). The
            recipe adds no doctor of its own: ``segdoctor.cli.train.run_training`` adds
            ``DoctorCallback`` when ``train.doctor`` is on.
        deadline: the command's time budget (:class:`~segdoctor.train.budget.Deadline`), started
            by the caller when the command started, so that everything before this call counts;
            one without a budget (``Deadline(None)``: only the start) gets ``train.max_minutes``
            from that start; default: ``train.max_minutes`` from now. Everything the run does
            (measurements, LR range test, training, final evaluation, report) fits in it.

    Example:
        >>> logger = keras.callbacks.CSVLogger("log.csv")
        >>> train_run(config, Path("runs/x"), callbacks=[logger])  # doctest: +SKIP
    """
    deadline = (deadline or Deadline(None)).with_budget(config.train.max_minutes)
    policy = keras.config.dtype_policy()
    distribution = keras.distribution.distribution()
    try:
        return _train_run(config, run_dir, log, resume, callbacks, deadline)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.distribution.set_distribution(distribution)


@dataclass
class _Plan:
    """What the fit starts from: the compiled model, its base learning rate, the first epoch."""

    model: keras.Model
    lr: float
    initial_epoch: int
    horizon: int | None = None  # steps the new schedule spans (None: resumed as saved)
    lr_result: LRFindResult | None = None
    sizing: Measurement | None = None  # measured before training when the run has a budget
    notes: list[str] = field(default_factory=list)


def _train_run(
    config: RunConfig,
    run_dir: Path,
    log: Log,
    resume: bool,
    callbacks: CallerCallbacks = (),
    deadline: Deadline | None = None,
) -> RunResult:
    """Set up, plan (new) or restore (resumed), fit, then evaluate; see :func:`train_run`."""
    deadline = deadline or Deadline(None)
    run_dir, state = _open_run(config, run_dir, resume)
    precision = _set_up_machine(config, log)
    deadline.mark("setup")
    prepared = prepare_data(config, log=log, run_dir=run_dir)
    deadline.mark("data")
    if resume:
        plan = _resumed_plan(config, run_dir, state, prepared, deadline, log)
    else:
        config, plan = _new_plan(config, run_dir, prepared, deadline, log, precision)
    result = _fit(config, run_dir, state, prepared, plan, deadline, callbacks, log)
    if config.train.devices > 1:
        keras.distribution.set_distribution(None)  # evaluate image by image on one device
    finish_run(result, prepared, log=log)
    deadline.mark("evaluation")
    if deadline.bounded:
        record_budget(run_dir, deadline, log)
    return result


def _open_run(config: RunConfig, run_dir: Path, resume: bool) -> tuple[Path, cb.RunState]:
    """The run folder and its state; a new run refuses a folder that holds another run."""
    if config.train.tensorboard:
        check_tensorboard_available()
    run_dir = check_writable(run_dir)
    state = cb.RunState(run_dir / "state.json")
    if not resume and state.data.get("epoch", -1) >= 0:
        raise SegdoctorError(
            f"{run_dir} already holds a training run (last completed epoch {state.data['epoch'] + 1})",
            expected="an empty or new run folder",
            fix=f"continue it with `segdoctor train --resume {run_dir}`, or choose another --out folder.",
        )
    return run_dir, state


def _set_up_machine(config: RunConfig, log: Log) -> PrecisionChoice:
    """The seed, the devices and the precision policy of the run (restored by train_run)."""
    keras.utils.set_random_seed(config.train.seed)
    if config.train.devices > 1:
        setup_data_parallel(config.train.devices, log)
    choice = choose_precision(config.train.mixed_precision, log)
    if choice.bfloat16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if config.train.mixed_precision == "auto":
        log(choice.why)
    keras.utils.set_random_seed(config.train.seed)  # the same stream whether or not it measured
    return choice


def _resumed_plan(
    config: RunConfig,
    run_dir: Path,
    state: cb.RunState,
    prepared: PreparedData,
    deadline: Deadline,
    log: Log,
) -> _Plan:
    """The last checkpoint with its optimizer (and schedule) as saved, from the next epoch."""
    meta = read_run_meta(run_dir)
    lr = meta.lr
    model = load_model(_resume_checkpoint(run_dir, config), compile=True)
    initial_epoch = int(state.data["epoch"]) + 1
    log(
        f"Resuming from epoch {initial_epoch + 1} (last completed: {initial_epoch}), learning rate {lr:.3g}."
    )
    plan = _Plan(model, lr, initial_epoch)
    note = resume_schedule_note(config, meta.to_dict())
    if note:
        log(note)
        plan.notes.append(note)
    if deadline.bounded:
        plan.sizing = measure(throwaway_model, config, prepared, deadline.share(bud.SEARCH_SHARE))
        deadline.mark("configuration")
    return plan


def _new_plan(
    config: RunConfig,
    run_dir: Path,
    prepared: PreparedData,
    deadline: Deadline,
    log: Log,
    precision: PrecisionChoice | None = None,
) -> tuple[RunConfig, _Plan]:
    """Size to the budget, choose the learning rate, plan the schedule, build and compile."""
    sizing, choice = None, None
    if deadline.bounded:
        config, sizing, choice = size_to_budget(config, prepared, deadline, log)
        deadline.mark("configuration")
    notes: list[str] = []
    lr, lr_result = _learning_rate(config, prepared, sizing, deadline, log, notes)
    if sizing is not None:
        config, epoch_length = lengthen_epochs(config, prepared, sizing, lr_result, log)
        if epoch_length is not None:  # recorded whether or not the width was searched
            choice = {**(choice or {}), "epoch_length": epoch_length}
    steps = len(prepared.train)
    horizon = schedule_horizon(config, prepared, steps, lr_result, log, sizing, deadline)
    keras.utils.set_random_seed(config.train.seed)
    model = make_model(config, prepared)
    compile_model(model, config, prepared, lr, steps, total_steps=horizon)
    extra = {"schedule_steps": horizon, "configuration": choice}
    if precision is not None:
        extra["precision"] = precision.to_dict()
    write_run_files(run_dir, config, prepared, lr, lr_result, math.ceil(horizon / steps), extra)
    return config, _Plan(model, lr, 0, horizon, lr_result, sizing, notes)


def _learning_rate(
    config: RunConfig,
    prepared: PreparedData,
    sizing: Measurement | None,
    deadline: Deadline,
    log: Log,
    notes: list[str],
) -> tuple[float, LRFindResult | None]:
    """``train.lr``; else the LR range test's choice, or the band's middle when it is skipped."""
    lr = config.train.lr
    skipped = lr_test_skipped(config, sizing, deadline)
    if lr is None and skipped:
        lr = float(np.sqrt(np.prod(LR_BAND[config.train.optimizer])))
        log(skipped + f" Using {lr:.2g}, the middle of the {config.train.optimizer} band.")
        notes.append(skipped)
        sizing.model = None
        clear_session_keeping_run_state()  # the measured model is not needed
        return lr, None
    if lr is not None:
        return lr, None
    log("No learning rate given: running an LR range test (loss vs. learning rate)...")
    lr_result = find_lr(
        config,
        prepared,
        steps=config.train.lr_find_steps,
        log=log,
        max_seconds=deadline.share(bud.LR_TEST_SHARE) if deadline.bounded else None,
        model=sizing.model if sizing is not None else None,
    )
    if sizing is not None:
        sizing.model = None  # the range test trained it; it is freed
    lr, message = choose_lr(lr_result, config.train.optimizer)
    log(message)
    notes.append(message)
    deadline.mark("lr_test")
    return lr, lr_result


def _fit(
    config: RunConfig,
    run_dir: Path,
    state: cb.RunState,
    prepared: PreparedData,
    plan: _Plan,
    deadline: Deadline,
    callbacks: CallerCallbacks,
    log: Log,
) -> RunResult:
    """``model.fit`` with the recipe's callbacks and the caller's; why it stopped."""
    model, steps, resume = plan.model, len(prepared.train), plan.horizon is None
    if plan.initial_epoch >= config.train.epochs:
        log(
            f"The run already completed {plan.initial_epoch} of {config.train.epochs} epochs; nothing to do."
        )
    log(
        f"Model: {config.model.name}, {model.count_params():,} parameters; {steps} steps per epoch of {config.data.batch_size} patches {config.data.patch_size}x{config.data.patch_size}."
    )
    schedule = None if resume else (plan.lr, steps, plan.horizon)
    budget = time_budget(deadline, plan.sizing, prepared, plan.lr_result)
    items, nan_guard, early, budget = recipe_callbacks(
        config, run_dir, state, resume, prepared, model, schedule, log, budget
    )
    items += caller_callbacks(callbacks, config, prepared)
    with_progress_bar(items, config.train.verbose)
    state.update(status="running")
    started = time.monotonic()
    prepared.train.set_epoch(plan.initial_epoch)  # a resume draws new patches, not epoch 0's again
    history = model.fit(
        fit_data(model, prepared.train.for_fit()),
        validation_data=fit_data(model, prepared.val.for_fit()),
        epochs=config.train.epochs,
        initial_epoch=plan.initial_epoch,
        callbacks=items,
        verbose=config.train.verbose,
        shuffle=False,  # every epoch already draws its own permutation and patches (the loader)
    )
    status = _stop_status(run_dir, nan_guard, budget, early, deadline, plan.notes)
    state.update(status=status)
    log(f"Training took {time.monotonic() - started:.0f} s.")
    deadline.mark("training")
    return RunResult(
        run_dir=run_dir,
        status=status,
        epochs_run=plan.initial_epoch + len(history.history.get("loss", [])),
        best_val_dice=state.data.get("best"),
        best_epoch=state.data.get("best_epoch"),
        lr=plan.lr,
        notes=plan.notes,
    )


def _stop_status(
    run_dir: Path,
    nan_guard: cb.NanGuard,
    budget: cb.TimeBudget | None,
    early: keras.callbacks.EarlyStopping | None,
    deadline: Deadline,
    notes: list[str],
) -> str:
    """Why training stopped (the run's status); what it means is added to ``notes``."""
    if nan_guard.event is not None:
        event = nan_guard.event
        notes.append(
            f"Training stopped at epoch {event['epoch'] + 1}, batch {event['batch']}: the loss became {event['loss']} "
            f"(learning rate {event['lr']:.3g}). The last good checkpoint is kept. Lower the learning rate or check the inputs for NaN/Inf."
        )
        atomic_write_text(run_dir / "nan_event.json", json.dumps(event, indent=2))
        return "nan-loss"
    if budget is not None and budget.triggered:
        notes.extend(budget_notes(budget))
        return f"time budget ({deadline.total_s / 60:g} min)"
    if early is not None and early.stopped_epoch > 0:
        return "early stopping"
    return "completed"


def resume_run(
    run_dir: Path,
    extra_epochs: int | None = None,
    log: Log = print_log,
    *,
    callbacks: CallerCallbacks = (),
    deadline: Deadline | None = None,
) -> RunResult:
    """Continue an interrupted run with its saved configuration (``callbacks``, ``deadline``: see
    train_run; the budget is the saved ``train.max_minutes`` unless ``deadline`` has one)."""
    run_dir = Path(run_dir)
    needed = ["config.yaml", "state.json", "run.json"]
    missing = [n for n in needed if not (run_dir / n).exists()]
    config = None
    if (run_dir / "config.yaml").exists():
        config = config_from_dict(load_yaml(run_dir / "config.yaml"))
    checkpoint = _resume_checkpoint(run_dir, config) if config else run_dir / "last.keras"
    if not checkpoint.exists():
        missing.append(checkpoint.name)
    if missing or config is None:
        raise SegdoctorError(
            f"Cannot resume {run_dir}: {', '.join(missing)} missing",
            expected="a run folder written by `segdoctor train` that completed at least one epoch",
            fix="start a new run with `segdoctor train DATA --out RUN`.",
        )
    if extra_epochs is not None:
        config = replace(config, train=replace(config.train, epochs=extra_epochs))
    stale = remove_stale_temporaries(run_dir)
    if stale:
        log(f"Removed {len(stale)} partial file(s) of the interrupted run: {', '.join(stale)}.")
    return train_run(config, run_dir, log=log, resume=True, callbacks=callbacks, deadline=deadline)
