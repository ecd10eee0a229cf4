"""The time budget of a whole command: the deadline, the stop rule, the plan, the width choice."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from segdoctor.lr_range import lr_range_test, lr_test_steps
from segdoctor.train.budget import (
    EPOCH_END_S,
    EPOCH_END_SHARE,
    Candidate,
    Deadline,
    choose_configuration,
    epoch_steps,
    evaluation_reserve,
    must_stop,
    plan_steps,
    tolerance_s,
    wider_may_qualify,
)
from segdoctor.train.callbacks import BudgetSchedule, StepProgbar, TimeBudget
from segdoctor.train.config import dump_yaml, load_yaml, resolve_config
from segdoctor.train.measure import Measurement, width_candidates
from segdoctor.train.planning import lr_test_skipped
from segdoctor.train.recipe import resume_run, train_run
from tests.helpers import write_disc_dataset


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -------------------------------------------------------------------------------- Deadline


def test_deadline_counts_from_its_creation_and_records_phases():
    clock = FakeClock()
    deadline = Deadline.from_minutes(2, clock=clock)
    clock.now = 30.0
    assert deadline.mark("setup") == 30.0
    clock.now = 100.0
    deadline.mark("training")
    clock.now = 110.0
    deadline.mark("training")  # repeated phases add up
    assert deadline.remaining() == 10.0 and deadline.elapsed() == 110.0
    assert deadline.phases == {"setup": 30.0, "training": 80.0}
    assert deadline.share(0.5) == 10.0  # half the budget, but only 10 s are left
    clock.now = 130.0
    assert deadline.remaining() == -10.0 and deadline.share(0.5) == 0.0
    assert deadline.to_dict()["budget_s"] == 120.0


def test_an_unbounded_deadline_never_runs_out():
    deadline = Deadline(None)
    assert not deadline.bounded
    assert math.isinf(deadline.remaining()) and math.isinf(deadline.share(0.1))


def test_tolerance_is_five_percent_or_thirty_seconds():
    assert tolerance_s(900.0) == 45.0
    assert tolerance_s(240.0) == 30.0


# -------------------------------------------------------------------------------- plan and stop


def test_plan_counts_validation_per_epoch_and_a_partial_last_epoch():
    # 10 steps of 1 s + 5 s validation + 2 s epoch end = 17 s an epoch: 5 in 100 s (85 s), then
    # 15 s left, 7 of them for the partial epoch's validation and end: 8 more steps.
    plan = plan_steps(100.0, 1.0, 10, val_s=5.0, max_epochs=50)
    assert plan.total_steps == 58 and plan.epochs == 5.8
    assert plan_steps(1e6, 1.0, 10, val_s=5.0, max_epochs=50).total_steps == 500  # capped
    assert plan_steps(0.0, 1.0, 10, val_s=5.0, max_epochs=50).total_steps == 1  # at least one
    assert plan_steps(math.inf, 1.0, 10, 5.0, 7).total_steps == 70


def test_must_stop_when_a_step_and_its_validation_no_longer_fit():
    assert not must_stop(remaining_s=10.0, step_s=2.0, val_s=5.0)
    assert must_stop(remaining_s=8.9, step_s=2.0, val_s=5.0)  # 2 + 5 + 2 s of epoch end


def test_lr_test_steps_shrink_to_the_allowance():
    assert lr_test_steps(30.0, 1.0, 50, done=3) == 33
    assert lr_test_steps(300.0, 1.0, 50, done=3) == 50
    assert lr_test_steps(0.5, 1.0, 50, done=3) == 3
    assert lr_test_steps(math.inf, 1.0, 50) == 50


def test_evaluation_reserve_grows_with_the_measured_inference_time():
    assert evaluation_reserve(0.2, 30, load_s=2.0, report_s=8.0) == pytest.approx(19.0)
    assert evaluation_reserve(1.0, 30) > evaluation_reserve(0.2, 30)


def _fit_with_clock(budget: TimeBudget, clock: FakeClock, step_s: float, epochs: int = 3):
    """A tiny model, 8 steps an epoch, every step taking ``step_s`` on the fake clock."""

    class Slow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock.now += step_s

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 2), "float32"), np.zeros((8, 1), "float32")
    history = model.fit(x, y, batch_size=1, epochs=epochs, verbose=0, callbacks=[Slow(), budget])
    return history


def test_time_budget_stops_mid_epoch_when_the_next_step_would_cross_the_deadline():
    clock = FakeClock()
    deadline = Deadline(100.0, clock=clock)
    # planned 1 s a step; each takes 10 s. 100 s, 20 kept for evaluation: 80 s for training.
    budget = TimeBudget(deadline=deadline, reserve_s=20.0, step_s=1.0, val_s=0.0)
    history = _fit_with_clock(budget, clock, step_s=10.0)
    assert budget.triggered and budget.stopped_at == {"epoch": 0, "steps": 7}
    assert len(history.history["loss"]) == 1  # the partial epoch still ends (and is saved)
    assert clock.now <= 100.0 - 20.0  # the reserve for evaluation is intact
    assert budget.step_s == 10.0  # measured, not the planned 1 s


def test_time_budget_keeps_training_while_the_steps_fit():
    clock = FakeClock()
    budget = TimeBudget(deadline=Deadline(1000.0, clock=clock), reserve_s=20.0, step_s=1.0)
    history = _fit_with_clock(budget, clock, step_s=1.0)
    assert not budget.triggered and len(history.history["loss"]) == 3


def test_time_budget_without_a_deadline_counts_from_the_fit():
    clock = FakeClock()
    budget = TimeBudget(max_minutes=0.5, clock=clock)  # 30 s
    _fit_with_clock(budget, clock, step_s=2.0)
    assert budget.triggered and budget.stopped_at["epoch"] == 1  # 8 steps (16 s), then 6 more
    with pytest.raises(ValueError):
        TimeBudget()


@pytest.mark.parametrize("verbose", [1, 2])
def test_the_progress_bar_of_an_epoch_stopped_mid_way_shows_the_steps_that_ran(capsys, verbose):
    x = np.random.default_rng(0).normal(size=(16, 2)).astype("float32")

    class StopAtThree(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:  # as TimeBudget does mid-epoch
                self.model.stop_training = True

    def fit(progbar):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, x[:, :1], batch_size=2, callbacks=[StopAtThree(), progbar], verbose=verbose)
        return capsys.readouterr().out

    assert "8/8" in fit(keras.callbacks.ProgbarLogger())  # Keras' own: the full epoch
    shown = fit(StepProgbar())
    assert "3/8" in shown and "8/8" not in shown


# -------------------------------------------------------------------------------- LR range test


def test_lr_range_test_runs_fewer_steps_to_fit_its_time_and_still_sweeps_the_range():
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")

    class SlowBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()

        def __len__(self):
            return 8

        def __getitem__(self, i):
            time.sleep(0.05)  # a step of at least 50 ms
            return x[i * 8 : i * 8 + 8], x[i * 8 : i * 8 + 8, :1]

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    started = time.perf_counter()
    result = lr_range_test(model, SlowBatches(), steps=200, end_lr=1e-1, max_seconds=1.0)
    assert time.perf_counter() - started < 4.0  # 200 steps would take 10 s and more
    assert result.planned_steps == 200
    assert result.steps_cut_to is not None and result.steps_cut_to < 200
    assert len(result.lrs) <= result.steps_cut_to
    if not result.diverged and len(result.lrs) == result.steps_cut_to:
        assert result.lrs[-1] == pytest.approx(1e-1, rel=0.05)  # the re-spaced sweep ends there


# -------------------------------------------------------------------------------- configuration


def test_explicit_settings_are_told_from_defaults(tmp_path):
    cfg = resolve_config(overrides={"data.path": "d", "data.batch_size": "4"})
    assert cfg.is_explicit("data.batch_size") and cfg.is_explicit("data.path")
    assert not cfg.is_explicit("model.base_filters")
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("model:\n  base_filters: 32\n")
    from_yaml = resolve_config(yaml_file, {"data.path": "d"})
    assert from_yaml.is_explicit("model.base_filters")  # 32 like the default, but chosen
    assert "explicit" not in dump_yaml(cfg)  # config.yaml holds the values only
    assert set(load_yaml(yaml_file)) == {"model"}


def test_width_is_searched_only_when_the_user_left_it_open():
    open_cfg = resolve_config(overrides={"data.path": "d"})
    assert [rank for _, _, rank in width_candidates(open_cfg)] == [32, 16]
    fixed = resolve_config(overrides={"data.path": "d", "model.base_filters": "32"})
    assert width_candidates(fixed) == []


def _candidates(wide_s: float, narrow_s: float) -> list[Candidate]:
    return [
        Candidate("32 base filters", {"model.base_filters": 32}, wide_s, rank=32),
        Candidate("16 base filters", {"model.base_filters": 16}, narrow_s, rank=16),
    ]


def test_the_narrow_unet_wins_when_the_wide_one_gets_too_few_epochs():
    # 15 minutes of 16 steps: 2.5 s a step gives the 32-filter net ~20 epochs, 0.6 s ~80.
    chosen, why = choose_configuration(_candidates(2.5, 0.6), 840.0, 16)
    assert chosen.rank == 16
    assert ">= 60 passes over the data" in why and "32 base filters: 2.50 s a step" in why
    # the 2-core EPYC of 2026-12-06: about 25 passes at 32 filters scored below 68 at 16
    assert choose_configuration(_candidates(1.68, 0.49), 790.0, 14)[0].rank == 16


def test_the_wider_unet_is_timed_only_when_it_could_still_make_the_passes():
    # twice the width is at least twice the step: 72 passes at 16 filters leave at most 36 at 32
    assert not wider_may_qualify(72, 16, 32)
    assert not wider_may_qualify(119, 16, 32)
    assert wider_may_qualify(120, 16, 32)


def test_the_wide_unet_wins_when_it_still_gets_enough_epochs():
    chosen, _ = choose_configuration(_candidates(0.5, 0.2), 840.0, 16)  # ~87 epochs at 32
    assert chosen.rank == 32


def test_the_fastest_wins_when_no_candidate_gets_enough_epochs():
    chosen, why = choose_configuration(_candidates(30.0, 12.0), 840.0, 16)
    assert chosen.rank == 16 and "the fastest" in why


# -------------------------------------------------------------------------------- whole command


TINY = {
    "data.patch_size": "32",
    "data.batch_size": "2",
    "model.depth": "2",
    "model.base_filters": "4",
    "train.epochs": "50",
    "train.lr": "0.01",
    "train.verbose": "0",
    "train.doctor": "false",
    "train.max_minutes": "2",
}
"""A tiny run: depth-2 U-Net of 4 filters on 32x32 patches, batches of 2."""


def _tiny_config(data: Path, **overrides: str):
    return resolve_config(overrides={"data.path": str(data), **TINY, **overrides})


@pytest.mark.timeout(240)
def test_the_command_ends_within_its_budget_when_steps_are_much_slower_than_planned(tmp_path):
    """A step measured at ~0.05 s before training takes 8 s during it (a virtual clock: the run
    sees the slowness, the test stays fast). The deadline must hold and the checkpoints agree."""

    data = write_disc_dataset(tmp_path / "data", n=16)
    offset = {"s": 0.0}
    training = {"on": False}

    def clock() -> float:
        return time.monotonic() + offset["s"]

    class SlowStep(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            training["on"] = True

        def on_train_batch_end(self, batch, logs=None):
            offset["s"] += 8.0

    deadline = Deadline(120.0, clock=clock)
    messages: list[str] = []
    run = tmp_path / "run"
    result = train_run(
        _tiny_config(data), run, log=messages.append, callbacks=[SlowStep()], deadline=deadline
    )
    assert training["on"]
    assert deadline.elapsed() <= 120.0 + tolerance_s(120.0)
    assert result.status.startswith("time budget")
    assert any("partial" in note for note in result.notes)  # stopped mid-epoch, and says so
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == result.epochs_run - 1  # last.keras is the last (partial) epoch
    assert (run / "last.keras").exists() and (run / "best.keras").exists()
    meta = json.loads((run / "run.json").read_text())
    assert set(meta["budget"]["phases_s"]) >= {"data", "configuration", "training", "evaluation"}
    assert meta["schedule_steps"] >= 1
    assert meta["configuration"]["chosen"] == {"model.base_filters": 4}  # the user's, kept
    assert (run / "report.html").exists()
    # --resume continues from the partial epoch's checkpoint, under a budget of its own

    offset["s"] = 0.0
    budget = Deadline(60.0, clock=clock)
    again = resume_run(run, log=messages.append, callbacks=[SlowStep()], deadline=budget)
    assert again.epochs_run > result.epochs_run and budget.elapsed() <= 60.0 + tolerance_s(60.0)
    with open(run / "history.csv", newline="") as fh:
        epochs = [int(float(row["epoch"])) for row in csv.DictReader(fh)]
    assert epochs == list(range(again.epochs_run))  # one continuous history


@pytest.mark.timeout(240)
def test_a_budgeted_run_chooses_the_width_the_user_left_open_and_records_why(tmp_path):
    data = write_disc_dataset(tmp_path / "data", n=12)
    settings = {**TINY, "train.epochs": "2", "train.max_minutes": "1.5"}
    del settings["model.base_filters"]  # left open: the recipe chooses
    cfg = resolve_config(overrides={"data.path": str(data), **settings})
    assert not cfg.is_explicit("model.base_filters")
    messages: list[str] = []
    train_run(cfg, tmp_path / "run", log=messages.append)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    chosen = meta["configuration"]["chosen"]["model.base_filters"]
    assert chosen in (16, 32) and "16 base filters" in meta["configuration"]["candidates"]
    assert load_yaml(tmp_path / "run" / "config.yaml")["model"]["base_filters"] == chosen
    assert any(m.startswith("Configuration: ") for m in messages)
    # steps of a few hundredths of a second: one pass over 10 images would spend most of the
    # budget on epoch ends, so the epoch is lengthened, said, recorded and kept for a resume
    longer = meta["configuration"]["epoch_length"]
    assert longer["steps"] > longer["one_pass_steps"]
    assert any(m.startswith(f"Epochs of {longer['steps']} steps") for m in messages)
    saved = load_yaml(tmp_path / "run" / "config.yaml")["data"]["samples_per_epoch"]
    assert saved == longer["samples_per_epoch"] == longer["steps"] * 2


def test_a_resumed_run_draws_the_patches_of_its_own_epochs(tmp_path):
    data = write_disc_dataset(tmp_path / "data", n=8)
    run = tmp_path / "run"
    train_run(_tiny_config(data, **{"train.epochs": "2"}), run, log=lambda m: None)
    seen: list[int] = []

    class Epochs(keras.callbacks.Callback):
        def __init__(self, dataset):
            super().__init__()
            self.dataset = dataset

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.dataset.epoch)

    def callbacks(config, prepared):
        return [Epochs(prepared.train)]

    resume_run(run, 4, log=lambda m: None, callbacks=callbacks)  # to 4 epochs in all
    assert seen and seen[0] == 2  # not 0: the first run's patches again


def test_epochs_are_lengthened_until_their_end_is_a_tenth_of_them():
    assert epoch_steps(16, 0.47, 1.4) == 66  # the 2-core EPYC: 16 filters, 27 whole images
    end = 1.4 + EPOCH_END_S
    assert end / (66 * 0.47 + end) <= EPOCH_END_SHARE < end / (65 * 0.47 + end)
    assert epoch_steps(16, 4.0, 1.4) == 16  # slow steps: one pass is long enough already
    assert epoch_steps(16, 0.0, 1.4) == 16  # no measurement: unchanged


def test_a_users_samples_per_epoch_is_kept(tmp_path):
    data = write_disc_dataset(tmp_path / "data", n=12)
    cfg = _tiny_config(data, **{"data.samples_per_epoch": "10", "train.epochs": "1"})
    messages: list[str] = []
    train_run(cfg, tmp_path / "run", log=messages.append)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "epoch_length" not in (meta["configuration"] or {})
    assert load_yaml(tmp_path / "run" / "config.yaml")["data"]["samples_per_epoch"] == 10
    assert not any(m.startswith("Epochs of") for m in messages)


def test_budget_schedule_refits_in_steps_when_told_the_steps_per_epoch():
    clock = FakeClock()

    class Ticker(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            clock.now += 10.0

    def schedule(total_steps: int):
        return keras.optimizers.schedules.CosineDecay(1.0, decay_steps=total_steps, alpha=0.01)

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule(4)), loss="mae")
    budget = TimeBudget(100 / 60, clock=clock, mid_epoch=False)
    replans = []
    refit = BudgetSchedule(
        budget, 4, 8, schedule, on_replan=lambda *a: replans.append(a), steps_per_epoch=2
    )
    x, y = np.ones((2, 1), "float32"), np.zeros((2, 1), "float32")  # 2 steps per epoch
    model.fit(x, y, batch_size=1, epochs=8, verbose=0, callbacks=[Ticker(), budget, refit])
    # after the fourth epoch (three timed, 10 s each) 60 s are left: 6 epochs, 12 steps more
    # than the 8 done: 20, capped at 8 epochs of 2 steps
    assert replans == [(4, 16, 10.0)]
    assert refit.planned == 16


def test_a_command_start_recorded_first_counts_once_the_budget_is_known():
    clock = FakeClock()
    started = Deadline(None, clock=clock)  # the command starts; its budget is not known yet
    clock.now = 20.0  # imports, configuration
    deadline = started.with_budget(1)
    assert deadline.remaining() == 40.0
    assert deadline.with_budget(5) is deadline  # a budget once set stays
    assert started.with_budget(None) is started


def test_the_lr_range_test_is_skipped_when_its_share_holds_too_few_steps():
    cfg = resolve_config(overrides={"data.path": "d"})  # no train.lr: a range test is due
    slow = Measurement(step_s=3.0, per_image_s=0.5, trace_s=0.0, seconds=10.0)
    fast = Measurement(step_s=0.3, per_image_s=0.5, trace_s=0.0, seconds=10.0)
    four_minutes = Deadline(240.0)  # 8%: 19 s, 6 steps of 3 s
    why = lr_test_skipped(cfg, slow, four_minutes)
    assert why is not None and "only 6 steps fit" in why
    assert lr_test_skipped(cfg, fast, four_minutes) is None  # 64 steps fit
    given = resolve_config(overrides={"data.path": "d", "train.lr": "0.001"})
    assert lr_test_skipped(given, slow, four_minutes) is None  # no range test to skip
    assert lr_test_skipped(cfg, slow, Deadline(None)) is None  # no budget: never skipped


@pytest.mark.timeout(240)
def test_the_deadline_holds_in_real_time_with_a_sleeping_step(tmp_path):
    """The same with the real clock: every step sleeps 4 s more than the ~0.05 s it was timed at
    before training (an epoch of 7 steps: 28 s); the whole call, from before train_run to its
    return, ends within a few seconds of the budget, far inside the tolerance."""

    data = write_disc_dataset(tmp_path / "data", n=16)

    class Sleep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(4.0)

    deadline = Deadline(45.0)
    result = train_run(
        _tiny_config(data),
        tmp_path / "run",
        log=lambda _: None,
        callbacks=[Sleep()],
        deadline=deadline,
    )
    assert deadline.elapsed() <= 45.0 + 5.0 < 45.0 + tolerance_s(45.0)
    assert result.status.startswith("time budget")
