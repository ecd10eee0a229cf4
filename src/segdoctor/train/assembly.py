"""The recipe's callbacks, assembled the right way round for a metric that must go up.

Every callback that watches Dice is told ``mode="max"`` (:data:`MONITOR`): ``mode="auto"`` fails
(Keras 3) or silently minimizes (Keras 2) a custom metric. The caller's callbacks
(:data:`CallerCallbacks`) run after the recipe's.

Example:
    >>> caller_callbacks([], config=None, prepared=None)
    []
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import keras

from segdoctor.runfiles import update_run_meta
from segdoctor.train import callbacks as cb
from segdoctor.train.build import DECAYING_SCHEDULES, main_output, make_metrics, make_schedule
from segdoctor.train.config import RunConfig
from segdoctor.train.data import PreparedData
from segdoctor.train.measure import Log, print_log

MONITOR = "val_dice"
"""The key every callback that selects or stops watches (``mode="max"``)."""


def budget_schedule(
    config: RunConfig, run_dir: Path, budget: cb.TimeBudget, plan: tuple[float, int, int], log: Log
) -> cb.BudgetSchedule:
    """Refit the schedule to the budget from the timed epochs; run.json records the new horizon.

    ``plan`` = (lr, steps per epoch, horizon in steps)."""
    lr, steps, horizon = plan

    def on_replan(old: int, new: int, epoch_s: float) -> None:
        update_run_meta(run_dir, schedule_steps=new, schedule_epochs=math.ceil(new / steps))
        log(
            f"Epochs take {epoch_s:.0f} s here (median), not what the plan assumed: the "
            f"{config.train.schedule} schedule now spans {new} steps ({new / steps:.1f} epochs) "
            f"instead of {old}, so that it ends with the budget."
        )

    return cb.BudgetSchedule(
        budget,
        planned=horizon,
        max_epochs=config.train.epochs,
        make_schedule=lambda total: make_schedule(config, lr, steps, total_steps=total),
        on_replan=on_replan,
        steps_per_epoch=steps,
    )


def recipe_callbacks(
    config: RunConfig,
    run_dir: Path,
    state: cb.RunState,
    resume: bool,
    prepared: PreparedData,
    model: keras.Model,
    plan: tuple[float, int, int] | None = None,
    log: Log = print_log,
    budget: cb.TimeBudget | None = None,
):
    """The recipe's callbacks; ``plan`` = (lr, steps per epoch, horizon in steps) of a new run's
    schedule; ``budget``: the run's time budget, if it has one."""
    t = config.train
    nan_guard = cb.NanGuard()
    items: list[keras.callbacks.Callback] = []
    export = None
    if len(model.outputs) > 1:  # deep supervision: monitor and save the main output
        names = [m.name for m in make_metrics(prepared)]
        items.append(cb.MainOutputLogs(model.output_names[0], names))  # first: renames for all
        export = main_output(model)
    items += [cb.LearningRateLogger(), nan_guard]
    if budget is not None:
        items.append(budget)
        if plan is not None and t.schedule in DECAYING_SCHEDULES:
            # before the checkpoint: last_train.keras then holds the schedule run.json names
            items.append(budget_schedule(config, run_dir, budget, plan, log))
    checkpoint = cb.RunCheckpoint(run_dir, MONITOR, "max", state, export=export)
    items += [checkpoint, cb.HistoryWriter(run_dir / "history.csv", resume=resume)]
    early = None
    if t.early_stopping_patience:
        early = keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="max", patience=t.early_stopping_patience, verbose=1
        )
        items.append(early)
    if t.schedule == "plateau":
        items.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=MONITOR, mode="max", factor=0.5, patience=5, min_lr=1e-6, verbose=1
            )
        )
    if t.tensorboard:
        items.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return items, nan_guard, early, budget


CallerCallbacks = (
    Sequence[keras.callbacks.Callback]
    | Callable[[RunConfig, PreparedData], Sequence[keras.callbacks.Callback]]
)
"""Callbacks a caller adds to the recipe's: a sequence, or a function of the run's configuration
and prepared data (for callbacks that depend on them, such as the doctor with its validation
sample; a resumed run's configuration is only known once its folder is read)."""


def caller_callbacks(
    callbacks: CallerCallbacks, config: RunConfig, prepared: PreparedData
) -> list[keras.callbacks.Callback]:
    """The caller's callbacks as a list; a function is called with the config and prepared data.

    Example:
        >>> caller_callbacks(lambda config, prepared: [], config=None, prepared=None)
        []
    """
    return list(callbacks(config, prepared) if callable(callbacks) else callbacks)


def with_progress_bar(items: list[keras.callbacks.Callback], verbose: int | str) -> None:
    """Append a :class:`~segdoctor.train.callbacks.StepProgbar` last (where Keras puts its own)
    when ``fit`` shows progress and none of ``items`` is a progress bar already.

    Example:
        >>> items = []
        >>> with_progress_bar(items, verbose=0); items
        []
    """
    if verbose and not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in items):
        items.append(cb.StepProgbar())
