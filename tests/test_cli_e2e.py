"""End-to-end smoke test on tiny synthetic data: train -> evaluate -> predict -> diagnose (seconds)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from segdoctor.cli import main
from tests.helpers import write_disc_dataset

TINY = [
    "--epochs", "3", "--lr", "0.01", "--patch-size", "32", "--batch-size", "4",
    "--set", "model.depth=2", "--set", "model.base_filters=4", "--set", "train.verbose=0",
    "--set", "data.samples_per_epoch=16",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = write_disc_dataset(root / "data", n=10)
    run = root / "run"
    assert main(["train", str(data), "--out", str(run), *TINY]) == 0
    return data, run


def test_train_writes_a_complete_run_folder(trained):
    _, run = trained
    for name in ["config.yaml", "history.csv", "best.keras", "last.keras", "state.json", "run.json",
                 "mask_policy.json", "learning_curves.png", "evaluation.json", "per_image.csv", "report.html",
                 "doctor.json"]:  # fmt: skip
        assert (run / name).is_file(), name
    doctor = json.loads((run / "doctor.json").read_text())  # the cli attaches the DoctorCallback
    severities = [f["severity"] for f in doctor["findings"]]
    assert doctor["summary"]["errors"] == severities.count("error")
    assert doctor["summary"]["warnings"] == severities.count("warning")
    with open(run / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"loss", "dice", "val_dice", "val_loss", "learning_rate"} <= set(rows[0])
    assert "lr" not in rows[0]  # one learning-rate column, not one per callback
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and state["status"] == "completed"
    best = max(float(r["val_dice"]) for r in rows)
    assert state["best"] == pytest.approx(best)


def test_train_refuses_to_overwrite_a_run(trained, capsys):
    data, run = trained
    assert main(["train", str(data), "--out", str(run), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


def test_evaluate_json_has_the_documented_shape(trained, tmp_path):
    data, run = trained
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(run), str(data), "--json", str(out), "--hausdorff"]) == 0
    payload = json.loads(out.read_text())
    assert {"dice_mean", "iou_mean", "empty_policy", "n_images", "hd95_mean"} <= set(
        payload["summary"]
    )
    assert len(payload["per_image"]) == 10
    first = payload["per_image"][0]
    assert {"name", "dice", "iou"} <= set(first)
    dices = [r["dice"] for r in payload["per_image"] if r["dice"] is not None]
    assert payload["summary"]["dice_mean"] == pytest.approx(np.mean(dices))


def test_evaluate_and_predict_with_tta_say_so_and_keep_the_shapes(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "tta.json"
    assert main(["evaluate", str(run), str(data), "--json", str(out), "--tta"]) == 0
    payload = json.loads(out.read_text())
    assert payload["summary"]["tta"].startswith("mirroring")
    assert len(payload["per_image"]) == 10
    assert "mirroring" in capsys.readouterr().out
    plain = tmp_path / "plain.json"
    assert main(["evaluate", str(run), str(data), "--json", str(plain)]) == 0
    assert json.loads(plain.read_text())["summary"]["tta"] == "none"
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.full((37, 45), 128, np.uint8)).save(odd / "x.png")
    assert main(["predict", str(run), str(odd), "--out", str(tmp_path / "p"), "--tta"]) == 0
    assert np.array(Image.open(tmp_path / "p" / "x.png")).shape == (37, 45)


def test_predict_writes_masks_at_the_input_size(trained, tmp_path):
    _, run = trained
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.full((37, 45), 128, np.uint8)).save(odd / "x.png")
    out = tmp_path / "pred"
    assert main(["predict", str(run / "best.keras"), str(odd), "--out", str(out)]) == 0
    mask = np.array(Image.open(out / "x.png"))
    assert mask.shape == (37, 45)
    assert set(np.unique(mask)) <= {0, 1}


def test_diagnose_on_clean_data_exits_zero_and_writes_json(trained, tmp_path):
    data, run = trained
    out = tmp_path / "d.json"
    code = main(["diagnose", str(data), "--history", str(run / "history.csv"), "--json", str(out)])
    payload = json.loads(out.read_text())
    assert {"findings", "summary", "version"} <= set(payload)
    errors = [f for f in payload["findings"] if f["severity"] == "error"]
    assert code == (1 if errors else 0)
    assert not [f for f in errors if f["id"].startswith("mask-")]


def test_diagnose_flags_0_255_masks_and_exits_one(tmp_path):
    data = write_disc_dataset(tmp_path / "d255", n=4, scale=255)
    out = tmp_path / "d.json"
    assert main(["diagnose", str(data), "--json", str(out)]) == 1
    ids = [f["id"] for f in json.loads(out.read_text())["findings"]]
    assert "mask-scale-255" in ids


def test_resume_continues_the_history(trained, tmp_path):
    import shutil

    _, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["train", "--resume", str(copy), "--epochs", "4"]) == 0
    with open(copy / "history.csv") as fh:
        epochs = [int(r["epoch"]) for r in csv.DictReader(fh)]
    assert epochs == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "/nonexistent/data", "--out", "OUT"], "nonexistent"),
        (["evaluate", "/nonexistent/model.keras", "DATA"], "does not exist"),
        (["train", "DATA", "--out", "OUT", "--set", "train.epocs=3"], 'Did you mean "epochs"'),
    ],
)
def test_user_errors_exit_two_with_a_sentence(argv, message, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "o")).replace("DATA", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_multiclass_training_with_ignore_index_on_softmax(tmp_path):
    """Softmax (B, H, W, C) + sparse labels + ignore_index: the path that breaks sparse CE on torch."""
    from tests.helpers import write_multiclass_dataset

    data = write_multiclass_dataset(tmp_path / "mc", n=8, void=9)
    run = tmp_path / "run"
    argv = ["train", str(data), "--out", str(run), *TINY, "--set", "data.ignore_index=9"]
    assert main(argv) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["mode"] == "multiclass" and meta["num_classes"] == 3 and meta["ignore_index"] == 9
    summary = json.loads((run / "evaluation.json").read_text())["summary"]
    assert {"dice_class1_mean", "dice_class2_mean"} <= set(summary)
    with open(run / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(np.isfinite(float(r["loss"])) for r in rows)
