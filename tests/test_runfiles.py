"""run.json has one schema (RunMeta) and one reader and writer; the JSON sanitizer has one NaN rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segdoctor.errors import SegdoctorError
from segdoctor.jsonsafe import dumps, to_jsonable
from segdoctor.runfiles import (
    RUN_META_VERSION,
    RunMeta,
    RunMetaError,
    read_run_meta,
    run_meta_path,
    update_run_meta,
    write_run_meta,
)

# A run.json as `segdoctor train` wrote it before the schema had a version (keys and values of a
# real run folder, names shortened).
LEGACY = {
    "backend": "torch",
    "keras": "3.15.1",
    "lr": 0.0031,
    "schedule_epochs": 40,
    "mode": "binary",
    "num_classes": 2,
    "channels": 3,
    "ignore_index": None,
    "mask_policy": {"kind": "instance-labels", "num_classes": 2},
    "normalizer": {"mode": "image"},
    "train_names": ["a", "b"],
    "val_names": ["c"],
    "schedule_steps": 800,
    "configuration": {"chosen": {"model.base_filters": 16}},
    "budget": {"budget_s": 240.0, "elapsed_s": 228.1, "phases_s": {"training": 136.0}},
}


def _meta(**changes) -> RunMeta:
    values = {"lr": 0.01, "mode": "binary", "num_classes": 2, "channels": 1, "normalizer": {}}
    return RunMeta(**{**values, **changes})


def test_a_run_json_without_version_reads_as_version_1_and_round_trips(tmp_path):
    run_meta_path(tmp_path).write_text(json.dumps(LEGACY, indent=2))
    meta = read_run_meta(tmp_path)
    assert meta.version == 1 and meta.lr == 0.0031 and meta.channels == 3
    assert meta.budget["phases_s"] == {"training": 136.0} and meta.extra == {}
    write_run_meta(tmp_path, meta)
    written = json.loads(run_meta_path(tmp_path).read_text())
    assert written == {"version": RUN_META_VERSION, **LEGACY}  # same keys and values, versioned
    assert list(written) == ["version", *LEGACY]  # and in the same order


def test_unknown_keys_are_kept_and_updates_write_atomically(tmp_path):
    run_meta_path(tmp_path).write_text(json.dumps({**LEGACY, "note": "hand-added"}))
    meta = update_run_meta(tmp_path, schedule_steps=120, budget={"budget_s": math.inf})
    assert meta.schedule_steps == 120 and meta.extra == {"note": "hand-added"}
    written = json.loads(run_meta_path(tmp_path).read_text())
    assert written["note"] == "hand-added" and written["schedule_steps"] == 120
    assert written["budget"] == {"budget_s": None}  # inf is not JSON: null
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left


def test_optional_keys_are_left_out_when_unset(tmp_path):
    write_run_meta(tmp_path, _meta())
    written = json.loads(run_meta_path(tmp_path).read_text())
    assert not {"budget", "configuration", "schedule_steps"} & set(written)
    assert written["ignore_index"] is None  # "no void label" is a value, kept


def test_a_newer_version_is_refused_with_the_fix(tmp_path):
    run_meta_path(tmp_path).write_text(json.dumps({**LEGACY, "version": RUN_META_VERSION + 1}))
    with pytest.raises(RunMetaError, match="newer segdoctor") as info:
        read_run_meta(tmp_path)
    assert "upgrade segdoctor" in str(info.value) and isinstance(info.value, SegdoctorError)


@pytest.mark.parametrize("version", [0, "1", 1.5, True, None])
def test_an_unknown_version_is_refused(tmp_path, version):
    run_meta_path(tmp_path).write_text(json.dumps({**LEGACY, "version": version}))
    with pytest.raises(RunMetaError, match="unknown schema version"):
        read_run_meta(tmp_path)


@pytest.mark.parametrize(
    ("text", "received"),
    [
        ('{"lr": 0.01, "mode": "bin', "invalid JSON"),  # cut short
        ("[1, 2]", "not an object"),
        (json.dumps({k: v for k, v in LEGACY.items() if k != "normalizer"}), "no normalizer"),
        (json.dumps({**LEGACY, "channels": "three"}), "channels 'three'"),
    ],
)
def test_a_corrupted_run_json_says_what_and_how_to_fix(tmp_path, text, received):
    run_meta_path(tmp_path).write_text(text)
    with pytest.raises(RunMetaError, match="corrupted or incomplete") as info:
        read_run_meta(tmp_path)
    assert received in str(info.value) and "Fix:" in str(info.value)


def test_a_missing_run_json_is_a_clear_error(tmp_path):
    with pytest.raises(RunMetaError, match="does not exist"):
        read_run_meta(tmp_path)


def test_the_sanitizer_turns_every_non_finite_float_into_null():
    value = {
        "dice": [0.5, float("nan")],
        "inf": -math.inf,
        "np": np.array([1.0, np.nan]),
        "scalar": np.float32(np.inf),
        "tuple": (1, "a", None, True),
        2: "key",
    }
    assert to_jsonable(value) == {
        "dice": [0.5, None],
        "inf": None,
        "np": [1.0, None],
        "scalar": None,
        "tuple": [1, "a", None, True],
        "2": "key",
    }
    assert "NaN" not in dumps(value) and json.loads(dumps(value))["dice"] == [0.5, None]


def test_the_sanitizer_rounds_only_when_asked():
    assert to_jsonable(0.123456789) == 0.123456789
    assert to_jsonable([0.123456789, 1.234e-9], digits=6) == [0.123457, 1.234e-9]


def test_segdoctors_own_model_file_loads_in_a_process_that_never_imported_the_models(tmp_path):
    """`segdoctor diagnose DATA --model RUN` loads the run's U-Net in a fresh process: its
    registered layers (segdoctor.models.layers: the fused BatchNormalization) must be imported
    by the loader itself. Before, the command exited 2 on segdoctor's own demo run."""
    import os
    import subprocess
    import sys

    from segdoctor.models import create_model

    path = tmp_path / "best.keras"
    create_model("unet", input_shape=(32, 32, 1), depth=2, base_filters=4).save(path)
    code = (
        "import segdoctor\n"
        "from segdoctor.runfiles import load_model\n"
        f"print(type(load_model({str(path)!r}, compile=False)).__name__)\n"
    )
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "torch"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-800:]
    assert "Functional" in out.stdout
