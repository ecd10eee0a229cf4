"""Callbacks of the training recipe, each configured the right way round for a metric that goes up.

- :class:`RunCheckpoint` writes ``best.keras`` (highest monitored value, ``mode="max"``),
  ``last.keras`` (every epoch, with optimizer state) and ``state.json`` atomically, so a run killed at
  any moment resumes from its last completed epoch. With an ``export`` model (deep supervision),
  best/last hold that single-output model and ``last_train.keras`` the trained one.
- :class:`HistoryWriter` rewrites ``history.csv`` atomically after every epoch (continuous across a
  resume, unlike ``keras.callbacks.CSVLogger`` in append mode after a crash mid-line).
- :class:`NanGuard` stops on a non-finite loss and records why.
- :class:`TimeBudget` stops training when the next step and its validation would cross the
  budget (mid-epoch); :class:`BudgetSchedule` refits the learning-rate schedule to it from the
  median epoch time.
- :class:`StepProgbar` is Keras' progress bar, but an epoch stopped mid-way ends at the steps
  that ran (``12/30``), not at the epoch's length.
- :class:`LearningRateLogger` adds ``learning_rate`` to the logs (and so to the history).
- :class:`MainOutputLogs` logs a deep-supervised model's main-output metrics under their plain
  names (``val_dice``, not ``val_mask_dice``), so every callback watches the same key.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from segdoctor._io import atomic_save, atomic_write_text
from segdoctor.lr_range import current_lr
from segdoctor.train.budget import Deadline, must_stop


class StepProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, except that an epoch cut short ends at the steps that ran.

    Keras' ``ProgbarLogger`` draws the bar to the epoch's length at every epoch end, so an epoch
    stopped mid-way (by :class:`TimeBudget` or :class:`NanGuard`) looked complete: ``30/30``
    after 12 steps. This one ends it at ``12/30``. Put it in the callbacks of ``fit``: Keras then
    uses it instead of adding its own. It overrides ``ProgbarLogger._finalize_progbar`` and reads
    its ``seen``, ``target`` and ``progbar`` attributes (Keras 3 internals, checked by
    tests/test_train_budget.py).

    Example:
        >>> model.fit(x, y, callbacks=[StepProgbar()], verbose=2)  # doctest: +SKIP
    """

    def _finalize_progbar(self, logs: dict | None) -> None:
        cut_short = self.target is not None and 0 < self.seen < self.target
        if not cut_short or self.progbar is None:
            super()._finalize_progbar(logs)
            return
        self.progbar.update(self.seen, list((logs or {}).items()), finalize=True)


class LearningRateLogger(keras.callbacks.Callback):
    """Put the learning rate of the epoch's last step into ``logs["learning_rate"]``.

    The key Keras' own LR callbacks use, so the history has one learning-rate column whoever
    writes it (the doctor's callback only fills it in when it is missing).
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        lr = current_lr(self.model.optimizer)
        if logs is not None and lr is not None:
            logs["learning_rate"] = lr


class MainOutputLogs(keras.callbacks.Callback):
    """Rename a multi-output model's main-output metrics to their single-output names.

    Keras prefixes the metrics of a model with several outputs with the output's name
    (``mask_dice``, ``val_mask_dice``). The recipe computes its metrics on the main output only
    and every callback, the history and the doctor watch ``dice``/``val_dice``: put this callback
    first in the list; the epoch logs are one dict shared by all callbacks (Keras' ``History``
    and progress bar included), so all of them see the plain names.

    Args:
        output_name: the main output (``"mask"`` for segdoctor's U-Nets).
        metric_names: the metrics compiled on it (``["dice", "iou"]``).
    """

    def __init__(self, output_name: str, metric_names: list[str]) -> None:
        super().__init__()
        self.renames: dict[str, str] = {}
        for metric in metric_names:
            for prefix in ("", "val_"):
                self.renames[f"{prefix}{output_name}_{metric}"] = f"{prefix}{metric}"

    def rename(self, logs: dict | None) -> None:
        """Rename in place, keeping the order: later callbacks hold this very dict."""
        if not logs or not any(key in self.renames for key in logs):
            return
        items = list(logs.items())
        logs.clear()
        logs.update((self.renames.get(key, key), value) for key, value in items)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.rename(logs)  # the progress bar shows the same names as the epoch logs

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.rename(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.rename(logs)


class RunState:
    """The small JSON file that says how far a run got (``RUN/state.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {
            "epoch": -1,
            "best": None,
            "best_epoch": None,
            "status": "new",
            "elapsed_s": 0.0,
        }
        if self.path.exists():
            self.data.update(json.loads(self.path.read_text(encoding="utf-8")))

    def update(self, **values: Any) -> None:
        self.data.update(values)
        atomic_write_text(self.path, json.dumps(self.data, indent=2))


class RunCheckpoint(keras.callbacks.Callback):
    """Atomic best/last checkpoints plus ``state.json``.

    Args:
        run_dir: the run folder.
        monitor: the quantity that decides "best" (``val_dice``).
        mode: "max" for Dice/IoU. Never "auto": a custom metric has no direction Keras knows.
        state: the run's :class:`RunState`.
        export: the model written to ``best.keras`` and ``last.keras`` when it is not the trained
            model itself, e.g. the single-output view ``keras.Model(m.input, m.outputs[0])`` of a
            deep-supervised model (sharing its weights). The trained model, with its optimizer
            state, then goes to ``last_train.keras`` (what a resume loads).
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str,
        mode: str,
        state: RunState,
        export: keras.Model | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.mode = mode
        self.state = state
        self.export = export
        self._started = time.monotonic()
        self._elapsed0 = float(state.data.get("elapsed_s", 0.0))
        best = state.data.get("best")
        self.best = (
            -math.inf
            if best is None and mode == "max"
            else math.inf
            if best is None
            else float(best)
        )

    def _improved(self, value: float) -> bool:
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        loss = logs.get("loss")
        if loss is not None and not np.isfinite(loss):
            return  # never overwrite a good checkpoint with a diverged model
        value = logs.get(self.monitor)
        saved = self.export if self.export is not None else self.model
        if value is not None and np.isfinite(value) and self._improved(float(value)):
            self.best = float(value)
            atomic_save(self.run_dir / "best.keras", saved.save, suffix=".keras")
            self.state.data.update(best=self.best, best_epoch=epoch)
        if self.export is not None:
            atomic_save(self.run_dir / "last_train.keras", self.model.save, suffix=".keras")
        atomic_save(self.run_dir / "last.keras", saved.save, suffix=".keras")
        elapsed = self._elapsed0 + time.monotonic() - self._started
        self.state.update(epoch=epoch, status="running", elapsed_s=round(elapsed, 1))


class HistoryWriter(keras.callbacks.Callback):
    """Keep ``history.csv`` complete after every epoch; rows from an earlier run are kept."""

    def __init__(self, path: Path, resume: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if resume and self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as fh:
                self.rows = [dict(row) for row in csv.DictReader(fh)]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row: dict[str, Any] = {"epoch": epoch}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.rows = [r for r in self.rows if int(float(r["epoch"])) < epoch] + [row]
        keys: list[str] = []
        for r in self.rows:
            keys.extend(k for k in r if k not in keys)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


class NanGuard(keras.callbacks.Callback):
    """Stop training at the first non-finite batch loss and remember where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.event: dict[str, Any] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.event = {
                "epoch": self._epoch,
                "batch": batch,
                "loss": str(float(loss)),
                "lr": current_lr(self.model.optimizer),
            }
            self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """Stop training before the time budget ends, mid-epoch if need be.

    Without a ``deadline`` the budget is ``max_minutes`` of training, counted from the start of
    the fit. With one (:class:`~segdoctor.train.budget.Deadline`, started with the command) it is
    the time left to the command minus ``reserve_s`` (kept for the final evaluation and report).

    After every step the median step time of this fit (its first, compiling step left out; the
    ``step_s`` measured before training until then) and the last validation time (``val_s``
    until one is measured) decide whether another step and the validation after it still fit
    (:func:`~segdoctor.train.budget.must_stop`); if not, training stops: Keras then validates the
    partial epoch and the epoch-end callbacks save it (``last.keras`` holds the last completed
    step; ``best.keras`` stays the best validated model). ``mid_epoch=False`` keeps the old rule:
    stop at the first epoch boundary after the budget.

    Args:
        max_minutes: the training budget when no ``deadline`` is given.
        clock: monotonic seconds (the deadline's clock when one is given).
        deadline: the command's deadline.
        reserve_s: seconds of the deadline kept for what follows training.
        step_s: a step's duration measured before training (LR range test, step timing).
        val_s: a validation's expected duration before one is measured.
        mid_epoch: stop between steps (default) or only at epoch ends.

    Example:
        >>> from segdoctor.train.budget import Deadline
        >>> budget = TimeBudget(deadline=Deadline(900.0), reserve_s=40.0, step_s=1.2, val_s=8.0)
        >>> budget.remaining_s <= 860.0
        True
    """

    def __init__(
        self,
        max_minutes: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        deadline: Deadline | None = None,
        reserve_s: float = 0.0,
        step_s: float | None = None,
        val_s: float = 0.0,
        mid_epoch: bool = True,
    ) -> None:
        super().__init__()
        if deadline is None and max_minutes is None:
            raise ValueError("TimeBudget needs max_minutes or a deadline")
        self.deadline = deadline
        self.clock = deadline.clock if deadline is not None else clock
        self.max_seconds = (
            max_minutes * 60.0 if max_minutes is not None else deadline.remaining() - reserve_s
        )
        self.reserve_s = reserve_s
        self.mid_epoch = mid_epoch
        self.triggered = False
        self.stopped_at: dict[str, int] | None = None  # epoch and steps done when stopped mid-epoch
        self.prior_step_s = step_s
        self.step_seconds: list[float] = []
        self.val_seconds: list[float] = []
        self.prior_val_s = val_s
        self._start = self.clock()
        self._last_end: float | None = None
        self._steps_seen = 0
        self._epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = self.clock()

    @property
    def remaining_s(self) -> float:
        """Seconds of the training budget left now."""
        if self.deadline is not None:
            return self.deadline.remaining() - self.reserve_s
        return self.max_seconds - (self.clock() - self._start)

    @property
    def step_s(self) -> float:
        """The step time the stop rule uses (0 before anything was measured)."""
        if self.step_seconds:
            return float(np.median(self.step_seconds))
        return float(self.prior_step_s or 0.0)

    @property
    def val_s(self) -> float:
        """The validation time the stop rule uses: the last one measured (or the prior)."""
        return self.val_seconds[-1] if self.val_seconds else float(self.prior_val_s)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._last_end = None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._last_end is None:
            self._last_end = self.clock()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # from the previous step's end: what other callbacks do between steps counts too
        now = self.clock()
        self._steps_seen += 1
        if self._steps_seen > 1:  # the first step of a fit traces and compiles
            self.step_seconds.append(now - self._last_end)
        self._last_end = now
        if self.mid_epoch and must_stop(self.remaining_s, self.step_s, self.val_s):
            self.triggered = True
            self.stopped_at = {"epoch": self._epoch, "steps": batch + 1}
            self.model.stop_training = True

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._test_start = self.clock()

    def on_test_end(self, logs: dict | None = None) -> None:
        self.val_seconds.append(self.clock() - self._test_start)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model.stop_training:
            return
        full_stop = self.remaining_s <= 0
        if full_stop or (self.mid_epoch and must_stop(self.remaining_s, self.step_s, self.val_s)):
            self.triggered = True
            self.model.stop_training = True


class BudgetSchedule(keras.callbacks.Callback):
    """Refit the learning-rate schedule to the time budget from the measured epoch time.

    Before training, the schedule's horizon is planned from the step time of the LR range test
    (or a few timed steps). A machine busier or idler then than during training makes that plan
    wrong: too short, and the last epochs train at the schedule's floor; too long, and the budget
    ends with the rate still high. So the epochs of this fit are timed (all but the first, which
    compiles) and, once ``min_timed`` of them are, the epochs that still fit are counted from the
    median epoch time at every epoch end. When that count is off the current horizon by more than
    ``tolerance`` of it (and by 2 epochs or more), the optimizer gets the same schedule over the
    new horizon and the train function is rebuilt so that compiled backends trace the new schedule
    (one retrace per refit). The rate jumps at most by the difference between the two curves at
    the current step.

    The median is the point: one slow epoch (a stall outside the train steps, another process on
    the cores) once shrank a 26-epoch cosine to 17 when the refit trusted a single epoch, and the
    run then spent its last quarter at the floor rate (benchmarks/RESULTS.md, quality section).

    Args:
        budget: the run's :class:`TimeBudget` (its clock and remaining time).
        planned: the horizon the optimizer's schedule was built with, in epochs.
        max_epochs: ``train.epochs``, never exceeded.
        make_schedule: ``epochs -> schedule`` for the new horizon.
        on_replan: called with ``(old, new, epoch_seconds)`` after a refit (run files, log).
        tolerance: relative difference that triggers a refit.
        min_timed: timed epochs before the first refit (3: the median ignores one outlier).
        steps_per_epoch: when given, ``planned``, the horizon given to ``make_schedule`` and the
            ``on_replan`` values count steps, not epochs, and the partial last epoch that fits
            counts too (training stops mid-epoch at the budget).
    """

    def __init__(
        self,
        budget: TimeBudget,
        planned: int,
        max_epochs: int,
        make_schedule: Callable[[int], Any],
        on_replan: Callable[[int, int, float], None] | None = None,
        tolerance: float = 0.2,
        min_timed: int = 3,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.budget = budget
        self.planned = planned
        self.max_epochs = max_epochs
        self.make_schedule = make_schedule
        self.on_replan = on_replan
        self.tolerance = tolerance
        self.min_timed = max(1, int(min_timed))
        self.steps_per_epoch = steps_per_epoch
        self.epoch_seconds: list[float] = []  # timed epochs of this fit, the first one excluded
        self._epochs_seen = 0
        self._epoch_start = budget.clock()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self.budget.clock()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._epochs_seen += 1
        epoch_s = self.budget.clock() - self._epoch_start
        if self._epochs_seen == 1 or epoch_s <= 0:
            return  # the first epoch of a fit includes tracing and compilation
        self.epoch_seconds.append(epoch_s)
        if len(self.epoch_seconds) < self.min_timed or self.model.stop_training:
            return
        typical = float(np.median(self.epoch_seconds))
        left = max(0.0, self.budget.remaining_s) / typical  # epochs that still fit
        unit = self.steps_per_epoch or 1
        if self.steps_per_epoch:
            horizon = (epoch + 1) * unit + int(left * unit)
        else:
            horizon = epoch + 1 + int(left)
        horizon = max((epoch + 2) * unit, min(self.max_epochs * unit, horizon))
        if abs(horizon - self.planned) < max(2.0 * unit, self.tolerance * self.planned):
            return
        self.model.optimizer.learning_rate = self.make_schedule(horizon)
        self.model.make_train_function(force=True)
        old, self.planned = self.planned, horizon
        if self.on_replan is not None:
            self.on_replan(old, horizon, typical)
