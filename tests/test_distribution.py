"""Multi-device data-parallel training through keras.distribution (JAX), on 2 virtual CPU devices."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import keras
import pytest

from segdoctor.errors import ConfigError
from segdoctor.train.config import resolve_config
from tests.helpers import write_disc_dataset


def test_devices_must_divide_the_batch():
    with pytest.raises(ConfigError, match="cannot be split evenly over 2 devices"):
        resolve_config(overrides={"data.path": "d", "train.devices": "2", "data.batch_size": "3"})


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the refusal on other backends")
def test_multi_device_needs_jax_and_says_so():
    from segdoctor.train.recipe import setup_data_parallel

    with pytest.raises(ConfigError, match="needs the JAX backend"):
        setup_data_parallel(2)


@pytest.mark.timeout(300)
def test_data_parallel_training_on_two_virtual_cpu_devices(tmp_path):
    pytest.importorskip("jax")
    data = write_disc_dataset(tmp_path / "data", n=8)
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["KERAS_BACKEND"] = "jax"
    cmd = [sys.executable, "-m", "segdoctor.cli", "train", str(data), "--out", str(run), "--devices", "2",
           "--epochs", "2", "--lr", "0.01", "--patch-size", "32", "--batch-size", "4",
           "--set", "model.depth=2", "--set", "model.base_filters=4", "--set", "train.verbose=0",
           "--set", "train.doctor=false"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Data-parallel training on 2 devices" in done.stdout
    with open(run / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(float(r["loss"]) > 0 for r in rows)
