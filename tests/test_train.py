"""Training recipe: configuration, atomic writes, callbacks, LR range test, interruption."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import yaml

from segdoctor._io import (
    atomic_path,
    atomic_write_text,
    check_writable,
    remove_stale_temporaries,
)
from segdoctor.cli.train import record_nan_finding, resume_training, run_training
from segdoctor.doctor import Report, make_finding
from segdoctor.errors import ConfigError, SegdoctorError
from segdoctor.lr_range import LRFindResult, lr_range_test, suggest
from segdoctor.models import create_model
from segdoctor.train import environment, recipe
from segdoctor.train.callbacks import (
    HistoryWriter,
    MainOutputLogs,
    NanGuard,
    RunCheckpoint,
    RunState,
    TimeBudget,
)
from segdoctor.train.config import config_from_dict, config_to_dict, dump_yaml, resolve_config
from segdoctor.train.inference import load_model, predict_full
from segdoctor.train.recipe import (
    choose_lr,
    compile_model,
    deep_supervision_weights,
    make_model,
    resume_run,
    resume_schedule_note,
    train_run,
)
from tests.helpers import write_disc_dataset

# -------------------------------------------------------------------------------- configuration


def test_yaml_then_overrides_then_validation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  lr: 3e-4\nmodel:\n  base_filters: 8\n")
    cfg = resolve_config(path, {"train.epochs": "9", "data.path": "d"})
    assert cfg.train.epochs == 9  # the override wins over the file
    assert cfg.train.lr == pytest.approx(
        3e-4
    )  # YAML 1.1 reads 3e-4 as a string: still a float here
    assert cfg.model.base_filters == 8


@pytest.mark.parametrize(
    ("choice", "elastic", "rotate"),
    [("default", 0.0, 0.2), ("light", 0.0, 0.0), ("strong", 0.2, 0.2)],
)
def test_each_augmentation_choice_reaches_the_training_loader(tmp_path, choice, elastic, rotate):
    from segdoctor.train.data import prepare_data

    data = write_disc_dataset(tmp_path / "data", n=10)
    config = resolve_config(overrides={"data.path": str(data), "data.augment": choice})
    prepared = prepare_data(config, log=lambda *a, **k: None)
    assert (prepared.train.augment.elastic, prepared.train.augment.rotate) == (elastic, rotate)
    assert prepared.val.augment.flip == 0.0  # validation is never augmented


def test_config_round_trips_through_yaml():
    cfg = resolve_config(
        overrides={"data.path": "d", "train.max_minutes": "2.5", "data.ignore_index": "11"}
    )

    again = config_from_dict(yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg
    assert config_to_dict(again)["data"]["ignore_index"] == 11


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.epocs": "3"}, 'Did you mean "epochs"'),
        ({"trian.epochs": "3"}, 'Did you mean "train"'),
        ({"train.epochs": "three"}, "Expected: int"),
        ({"train.epochs": "2.5"}, "Expected: int"),
        ({"model.norm": "layer"}, "Unknown model.norm"),
        ({"data.patch_size": "100"}, "multiple of the model stride 16"),
        ({"data.val_fraction": "1.5"}, "data.val_fraction"),
        ({"train.lr": "-1"}, "train.lr"),
        ({"epochs": "3"}, "has no section"),
        ({"model.deep_supervision": "true", "model.depth": "2"}, "needs model.depth >= 3"),
    ],
)
def test_bad_configuration_gets_a_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace('"', '"')):
        resolve_config(overrides=overrides)


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("train: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(path)


# -------------------------------------------------------------------------------- atomic writes


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "history.csv"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_temporaries_of_a_killed_writer_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "best.keras"
    atomic_write_text(target, "complete")
    (tmp_path / "notes.tmp.txt").write_text("the user's")  # not a name atomic_path makes
    writer = atomic_path(target, suffix=".keras")
    partial = writer.__enter__()  # the process dies inside the write: no __exit__ runs
    partial.write_text("half")
    assert remove_stale_temporaries(tmp_path) == [partial.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "notes.tmp.txt"]
    assert target.read_text() == "complete"
    assert remove_stale_temporaries(tmp_path) == []  # a clean folder: nothing to do


def test_unwritable_output_folder_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SegdoctorError, match="not writable"):
        check_writable(blocker / "run")


# -------------------------------------------------------------------------------- callbacks


def _tiny_model(loss="binary_crossentropy", lr=1e-2):
    model = create_model("unet", input_shape=(16, 16, 1), depth=1, base_filters=2, norm="none")
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    return model


def _xy(n=4, nan=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16, 16, 1)).astype("float32")
    y = (x > 0).astype("float32")
    if nan:  # in the target too: TensorFlow's max pooling turns a NaN pixel into -3.4e38
        x[1, 3, 3, 0] = np.nan
        y[1, 3, 3, 0] = np.nan
    return x, y


def test_history_writer_keeps_earlier_rows_on_resume_and_drops_stale_ones(tmp_path):
    path = tmp_path / "history.csv"
    first = HistoryWriter(path)
    for epoch in range(3):
        first.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_dice": 0.1 * epoch})
    resumed = HistoryWriter(path, resume=True)
    resumed.on_epoch_end(2, {"loss": 0.2, "val_dice": 0.5, "lr": 1e-3})  # epoch 2 is redone
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[2]["val_dice"]) == pytest.approx(0.5)
    assert "lr" in rows[0]


def test_nan_guard_stops_training_and_keeps_the_good_checkpoint(tmp_path):
    model = _tiny_model(loss="mse")  # torch's BCE raises on NaN input instead of returning NaN
    state = RunState(tmp_path / "state.json")
    checkpoint = RunCheckpoint(tmp_path, "val_score", "max", state)
    x, y = _xy()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    checkpoint.on_epoch_end(0, {"loss": 0.5, "val_score": 0.3})
    saved = (tmp_path / "best.keras").read_bytes()
    guard = NanGuard()
    xn, yn = _xy(nan=True)
    history = model.fit(xn, yn, epochs=5, batch_size=4, verbose=0, callbacks=[guard])
    assert guard.event is not None and guard.event["epoch"] == 0
    assert len(history.history["loss"]) == 1  # stopped after the first epoch
    checkpoint.on_epoch_end(1, {"loss": float("nan"), "val_score": 0.9})
    assert (tmp_path / "best.keras").read_bytes() == saved  # a diverged model never replaces it
    assert state.data["best"] == pytest.approx(0.3)


def test_checkpoint_refuses_auto_mode(tmp_path):
    with pytest.raises(ValueError, match="max"):
        RunCheckpoint(tmp_path, "val_dice", "auto", RunState(tmp_path / "s.json"))


def test_main_output_names_reach_every_log_the_progress_bar_reads():
    cb = MainOutputLogs("mask", ["dice", "iou"])
    batch = {"loss": 0.5, "mask_dice": 0.7, "aux1_loss": 0.2}
    held = batch  # the progress bar holds the same dict
    cb.on_train_batch_end(0, batch)
    assert list(held) == ["loss", "dice", "aux1_loss"] and held["dice"] == 0.7
    epoch = {"mask_iou": 0.4, "val_mask_dice": 0.6, "val_loss": 1.0}
    cb.on_epoch_end(0, epoch)
    assert list(epoch) == ["iou", "val_dice", "val_loss"]
    single = {"dice": 0.9}
    cb.on_test_batch_end(0, single)  # a single-output model's names stay as they are
    assert single == {"dice": 0.9}


def test_time_budget_stops_at_an_epoch_boundary():
    model = _tiny_model()
    budget = TimeBudget(max_minutes=1e-6)
    x, y = _xy()
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[budget])
    assert budget.triggered
    assert len(history.history["loss"]) == 1


# -------------------------------------------------------------------------------- LR range test


def test_lr_range_test_finds_a_finite_rate_below_divergence():
    keras.utils.set_random_seed(0)
    model = create_model(
        "unet", input_shape=(16, 16, 1), depth=1, base_filters=2, norm="none", output="logits"
    )
    model.compile(
        optimizer=keras.optimizers.SGD(1e-6), loss="mse"
    )  # unbounded: SGD surely diverges
    x, y = _xy(n=8)

    class Repeat(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[2 * i : 2 * i + 2], y[2 * i : 2 * i + 2]

    result = lr_range_test(model, Repeat(), start_lr=1e-4, end_lr=1e4, steps=30)
    assert result.suggestion is not None
    assert result.diverged
    assert 1e-5 <= result.suggestion < result.min_loss_lr < 1e4
    assert result.suggestion == pytest.approx(result.min_loss_lr / 10)


def test_choose_lr_keeps_adam_within_its_band_and_says_so():
    no_divergence = LRFindResult(suggestion=0.54, min_loss_lr=5.4, steepest_lr=0.08, diverged=False)
    lr, message = choose_lr(no_divergence, "adamw")
    assert lr == pytest.approx(3e-3)
    assert "no divergence" in message and "within" in message
    lr, message = choose_lr(
        LRFindResult(suggestion=4e-4, min_loss_lr=4e-3, steepest_lr=1e-3, diverged=True), "adam"
    )
    assert lr == pytest.approx(4e-4)
    assert "within" not in message
    lr, message = choose_lr(LRFindResult(), "sgd")
    assert 1e-3 <= lr <= 1e-1 and "inconclusive" in message


def test_lr_suggestion_is_a_tenth_of_the_minimum_of_the_smoothed_loss():
    lrs = list(np.logspace(-5, 0, 30))
    smoothed = [1.0 - 0.02 * i for i in range(20)] + [0.64 + 0.2 * i for i in range(10)]
    result = suggest(LRFindResult(lrs=lrs, losses=smoothed, smoothed=smoothed))
    assert result.min_loss_lr == pytest.approx(lrs[19])
    assert result.suggestion == pytest.approx(lrs[19] / 10)
    assert (
        suggest(LRFindResult(lrs=lrs[:3], losses=[1, 1, 1], smoothed=[1, 1, 1])).suggestion is None
    )


# -------------------------------------------------------------------------------- interruption


def test_a_run_killed_mid_epoch_resumes_from_its_last_completed_epoch(tmp_path):
    data = write_disc_dataset(tmp_path / "data", n=8)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "segdoctor.cli", "train", str(data), "--out", str(run),
           "--epochs", "40", "--lr", "0.01", "--patch-size", "32", "--batch-size", "2",
           "--set", "model.depth=2", "--set", "model.base_filters=4", "--set", "train.verbose=0",
           "--set", "data.samples_per_epoch=64", "--set", "train.doctor=false"]  # fmt: skip
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = run / "state.json"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if state_file.exists() and json.loads(state_file.read_text()).get("epoch", -1) >= 1:
                break
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("training made no progress in 240 s")
        time.sleep(0.3)  # land somewhere inside the next epoch
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    completed = json.loads(state_file.read_text())["epoch"]
    assert completed >= 1

    def partial_files():
        return [p.name for p in run.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]

    # A kill that lands inside a checkpoint write leaves its temporary file (nothing can remove it
    # on SIGKILL; seen on JAX, where a save takes longer); the resume removes it.
    left_by_kill = partial_files()
    target = completed + 2
    resume = [
        sys.executable,
        "-m",
        "segdoctor.cli",
        "train",
        "--resume",
        str(run),
        "--epochs",
        str(target),
    ]
    done = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Resuming from epoch {completed + 2}" in done.stdout
    assert partial_files() == []
    assert all(name in done.stdout for name in left_by_kill)  # the log names what it removed
    with open(run / "history.csv") as fh:
        epochs = [int(r["epoch"]) for r in csv.DictReader(fh)]
    assert epochs == list(range(target))

    assert load_model(run / "last.keras", compile=True).optimizer.iterations.numpy() > 0  # intact


def test_resume_without_a_run_folder_is_explained(tmp_path):
    with pytest.raises(SegdoctorError, match="Cannot resume"):
        resume_run(Path(tmp_path))


def test_a_nan_loss_leaves_a_doctor_finding(tmp_path):
    path = tmp_path / "doctor.json"
    before = Report(
        [make_finding("plateau", {"epochs": 9}, "lower the LR")], {"checked": ["model"]}
    )
    before.to_json(path)
    record_nan_finding(path, {"epoch": 2, "batch": 5, "loss": str(np.nan), "lr": 0.1})
    written = json.loads(path.read_text())
    findings = written["findings"]
    assert [f["id"] for f in findings] == ["nan-loss", "plateau"]
    assert findings[0]["severity"] == "error" and findings[0]["evidence"]["epoch"] == 3
    # Written through Report: the summary counts the new finding, and keeps what was checked.
    assert written["summary"]["errors"] == 1 and written["summary"]["warnings"] == 1
    assert written["summary"]["top"] == "nan-loss" and written["summary"]["checked"] == ["model"]


def test_a_nan_loss_without_the_doctor_creates_its_report(tmp_path):
    path = tmp_path / "doctor.json"
    record_nan_finding(path, {"epoch": 0, "batch": 1, "loss": "inf", "lr": 0.1})
    written = json.loads(path.read_text())
    assert [f["id"] for f in written["findings"]] == ["nan-loss"]
    assert written["summary"]["errors"] == 1


# -------------------------------------------------------------------------------- recipe options


def _run_config(data: Path, **overrides: str):
    """A tiny in-process run: depth-2 U-Net, 4 filters, 32x32 patches, 1 epoch."""
    settings = {
        "data.path": str(data),
        "data.patch_size": "32",
        "data.batch_size": "2",
        "model.depth": "2",
        "model.base_filters": "4",
        "train.epochs": "1",
        "train.lr": "0.01",
        "train.verbose": "0",
        "train.doctor": "false",
    }
    return resolve_config(overrides={**settings, **overrides})


def _history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def test_deep_supervision_loss_weights_halve_per_decoder_level():
    cfg = _run_config(Path("d"), **{"model.depth": "4", "model.deep_supervision": "true"})
    prepared = SimpleNamespace(mode="binary", num_classes=2, channels=1, ignore_index=None)
    model = compile_model(make_model(cfg, prepared), cfg, prepared, lr=1e-3, steps_per_epoch=1)
    assert model.output_names == ["mask", "aux2", "aux1"]  # the U-Net lists coarsest first
    weights = model.get_compile_config()["loss_weights"]
    assert weights == pytest.approx([1 / 1.75, 0.25 / 1.75, 0.5 / 1.75])  # 1 : 1/4 : 1/2
    assert sum(weights) == pytest.approx(1.0)
    assert deep_supervision_weights(["mask", "aux1"]) == pytest.approx([2 / 3, 1 / 3])


def test_resume_past_the_planned_schedule_says_what_happens(tmp_path):
    longer = _run_config(tmp_path, **{"train.epochs": "30", "train.schedule": "cosine"})
    note = resume_schedule_note(longer, {"schedule_epochs": 20})
    assert note and "planned for 20 epochs" in note and "epochs 21-30" in note
    assert "--epochs 30" in note
    assert resume_schedule_note(longer, {"schedule_epochs": 30}) is None  # within the plan
    plateau = _run_config(tmp_path, **{"train.epochs": "30", "train.schedule": "plateau"})
    assert resume_schedule_note(plateau, {"schedule_epochs": 20}) is None  # nothing planned


@pytest.mark.timeout(180)
def test_deep_supervision_trains_watches_val_dice_and_saves_the_main_output(tmp_path):
    data = write_disc_dataset(tmp_path / "data", n=8)
    run = tmp_path / "run"
    cfg = _run_config(
        data,
        **{"model.depth": "3", "model.deep_supervision": "true", "train.epochs": "2"},
        **{
            "train.doctor": "true",
            "train.schedule": "plateau",
            "train.early_stopping_patience": "5",
        },
    )
    result = run_training(cfg, run, log=lambda _: None)  # train.doctor: with the DoctorCallback
    assert result.status == "completed" and result.epochs_run == 2
    assert (run / "doctor.json").is_file()
    rows = _history(run)
    assert len(rows) == 2
    # The main output's metrics keep their plain names; each output's loss is logged too.
    assert {"dice", "iou", "val_dice", "val_iou", "mask_loss", "aux1_loss"} <= set(rows[0])
    assert not [k for k in rows[0] if k.endswith("mask_dice") or k.endswith("mask_iou")]
    assert result.best_val_dice == pytest.approx(max(r["val_dice"] for r in rows))
    assert np.isfinite(result.evaluation["summary"]["dice_mean"])
    for name in ("best.keras", "last.keras"):  # what evaluate and predict load: one output
        model = load_model(run / name)
        assert model.output_names == ["mask"]
        out = model.predict(np.zeros((1, 32, 32, 1), "float32"), verbose=0)
        assert isinstance(out, np.ndarray) and out.shape == (1, 32, 32, 1)
        assert predict_full(model, np.zeros((40, 24, 1), "float32")).shape == (40, 24, 1)
    trained = load_model(run / "last_train.keras", compile=True)  # what a resume continues
    assert trained.output_names == ["mask", "aux1"]
    assert int(trained.optimizer.iterations.numpy()) > 0
    resumed = resume_training(run, extra_epochs=3, log=lambda _: None)
    assert resumed.epochs_run == 3
    assert [int(r["epoch"]) for r in _history(run)] == [0, 1, 2]


@pytest.mark.timeout(180)
def test_mixed_precision_computes_in_bfloat16_and_restores_the_global_policy(tmp_path, monkeypatch):
    data = write_disc_dataset(tmp_path / "data", n=8)
    before = keras.config.dtype_policy().name
    seen: dict[str, str] = {}
    compile_model = recipe.compile_model

    def spy(model, *args, **kwargs):
        seen["policy"] = keras.config.dtype_policy().name
        seen["conv"] = model.get_layer("enc0_conv1").compute_dtype
        seen["output"] = model.outputs[0].dtype
        return compile_model(model, *args, **kwargs)

    monkeypatch.setattr(recipe, "compile_model", spy)
    # No learning rate: the LR range test runs first and its clear_session() must not drop the policy.
    cfg = _run_config(
        data, **{"train.mixed_precision": "true", "train.lr": "", "train.lr_find_steps": "10"}
    )
    result = recipe.train_run(cfg, tmp_path / "run", log=lambda _: None)
    assert result.status == "completed"
    assert seen == {"policy": "mixed_bfloat16", "conv": "bfloat16", "output": "float32"}
    row = _history(tmp_path / "run")[0]
    assert np.isfinite(row["loss"]) and np.isfinite(row["val_loss"])
    assert keras.config.dtype_policy().name == before
    # A run that fails after setting the policy restores it as well.
    with pytest.raises(SegdoctorError):
        recipe.train_run(
            _run_config(tmp_path / "missing", **{"train.mixed_precision": "true"}),
            tmp_path / "run2",
            log=lambda _: None,
        )
    assert keras.config.dtype_policy().name == before


@pytest.mark.timeout(180)
def test_tensorboard_writes_event_files_into_the_run_folder(tmp_path):
    if not all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard")):
        pytest.skip("Keras' TensorBoard callback needs tensorflow and tensorboard installed")
    data = write_disc_dataset(tmp_path / "data", n=8)
    train_run(
        _run_config(data, **{"train.tensorboard": "true"}), tmp_path / "run", log=lambda _: None
    )
    events = sorted(
        p.parent.name for p in (tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*")
    )
    assert events == ["train", "validation"]


def test_tensorboard_without_its_packages_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    cfg = _run_config(tmp_path / "data", **{"train.tensorboard": "true"})
    with pytest.raises(ConfigError, match="needs tensorboard") as info:
        train_run(cfg, tmp_path / "run", log=lambda _: None)
    assert "pip install tensorboard" in str(info.value)
    assert "train.tensorboard=false" in str(info.value)
    assert not (tmp_path / "run").exists()  # nothing started


@pytest.mark.timeout(180)
def test_time_budget_shortens_the_cosine_schedule(tmp_path):
    """With --max-minutes the cosine decay spans the epochs that fit, not train.epochs."""

    data = write_disc_dataset(tmp_path / "data", n=8)
    messages: list[str] = []
    cfg = _run_config(
        data,
        **{"train.epochs": "500", "train.max_minutes": "0.05", "train.schedule": "cosine"},
    )
    train_run(cfg, tmp_path / "run", log=messages.append)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert 1 <= meta["schedule_epochs"] < 500
    # the precision decision is recorded with its reason (here auto, on the test's backend)
    assert meta["precision"]["bfloat16"] is False and "auto" in meta["precision"]["why"]
    assert any("schedule spans the" in m for m in messages)
    rates = [row["learning_rate"] for row in _history(tmp_path / "run")]
    if meta["schedule_epochs"] < len(rates):  # the decay ended within the budget: at its floor
        assert rates[-1] == pytest.approx(0.01 * 0.01, rel=0.05)  # alpha 0.01 of train.lr 0.01


def test_mixed_precision_setting_words_and_auto(monkeypatch):
    for word, expected in (("true", "on"), ("off", "off"), ("auto", "auto"), ("No", "off")):
        cfg = _run_config(Path("d"), **{"train.mixed_precision": word})
        assert cfg.train.mixed_precision == expected
    assert _run_config(Path("d")).train.mixed_precision == "auto"
    with pytest.raises(ConfigError):
        _run_config(Path("d"), **{"train.mixed_precision": "fp8"})
    assert environment.resolve_mixed_precision("on")[0] is True
    assert environment.resolve_mixed_precision("off")[0] is False
    # auto: on only for TensorFlow on a CPU with native bfloat16 units (where it was measured
    # to pay: AMX, and AVX512-BF16 without AMX)
    on_tf = keras.backend.backend() == "tensorflow"
    for units in ("AMX", "AVX512-BF16"):
        monkeypatch.setattr(environment, "cpu_bf16_units", lambda units=units: units)
        on, why = environment.resolve_mixed_precision("auto")
        assert on is on_tf and (units in why or not on_tf)
    monkeypatch.setattr(environment, "cpu_bf16_units", lambda: None)
    assert environment.resolve_mixed_precision("auto")[0] is False


def test_cpu_bf16_units_reads_the_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    cpuinfo.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert environment.cpu_bf16_units() == "AVX512-BF16"
    cpuinfo.write_text("flags : fpu avx2 avx512_bf16 amx_bf16 amx_tile\n")
    assert environment.cpu_bf16_units() == "AMX"
    cpuinfo.write_text("flags : fpu avx2 fma\n")
    assert environment.cpu_bf16_units() is None
