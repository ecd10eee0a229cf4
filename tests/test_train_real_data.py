"""The three real datasets load with the right mask decision and train (one short epoch each)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from segdoctor.cli import main

CASES = [
    pytest.param("dsb2018-nuclei", [], "instance labels", "binary", 2, marks=pytest.mark.slow),
    ("isbi2012-membrane", [], "{0, 255}", "binary", 2),
    ("camvid-val", ["--set", "data.ignore_index=11"], "class", "multiclass", 11),
]


@pytest.mark.parametrize(("name", "extra", "decision", "mode", "classes"), CASES)
def test_real_dataset_trains_with_the_right_mask_decision(
    shared_data, tmp_path, capsys, name, extra, decision, mode, classes
):
    run = tmp_path / name
    argv = ["train", str(shared_data / name), "--out", str(run), "--epochs", "1", "--lr", "0.003",
            "--patch-size", "64", "--batch-size", "4", "--set", "model.depth=2", "--set", "model.base_filters=4",
            "--set", "data.samples_per_epoch=16", "--set", "train.verbose=0", "--set", "train.doctor=false",
            "--set", "data.val_fraction=0.1", *extra]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    masks_line = next(line for line in out.splitlines() if line.startswith("Masks:"))
    assert decision in masks_line
    meta = json.loads((run / "run.json").read_text())
    assert meta["mode"] == mode and meta["num_classes"] == classes
    with open(run / "history.csv") as fh:
        row = next(csv.DictReader(fh))
    assert np.isfinite(float(row["loss"])) and np.isfinite(float(row["val_loss"]))
