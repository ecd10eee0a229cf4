"""diagnose() and cli_diagnose(): one report from data, model and history; exit statuses 0/1/2."""

from __future__ import annotations

import json

import keras
import numpy as np
from PIL import Image

from segdoctor.cli.diagnose import cli_diagnose
from segdoctor.doctor import diagnose


def folder(root, rng, value=1, n=6):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:32, :32]
    taken: set[tuple[int, int]] = set()
    for i in range(n):
        cy, cx = rng.integers(8, 24, 2)
        # one disc at the place of another's flip or rotation would be that image again (up to
        # its noise): duplicate-across-splits finds such copies
        while {(cy, cx), (cx, cy), (31 - cy, cx), (cy, 31 - cx), (31 - cy, 31 - cx),
               (cx, 31 - cy), (31 - cx, cy), (31 - cx, 31 - cy)} & taken:  # fmt: skip
            cy, cx = rng.integers(8, 24, 2)
        taken.add((int(cy), int(cx)))
        m = (((yy - cy) ** 2 + (xx - cx) ** 2) <= 25).astype(np.uint8)
        img = (50 + 150 * m + rng.normal(0, 5, (32, 32))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(m * value).save(root / "masks" / f"{i}.png")
    return root


def model_file(path, lam=False):
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    if lam:
        h = keras.layers.Lambda(lambda t: t * 2.0)(h)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="softmax")(h))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.save(path)
    return path


def test_exit_status_0_and_json_html(tmp_path, rng, capsys):
    data = folder(tmp_path / "d", rng)
    code = cli_diagnose(data, json_path=tmp_path / "r.json", html_path=tmp_path / "r.html")
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["findings"] == [] and report["summary"]["pairs"] == 6
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_exit_status_1_with_model_and_history(tmp_path, rng, capsys):
    data = folder(tmp_path / "d", rng, value=255)
    hist = tmp_path / "h.json"
    hist.write_text(json.dumps({"loss": [0.5] * 6, "val_dice_coef": [0.0] * 6}))
    code = cli_diagnose(
        data, history=hist, model=model_file(tmp_path / "m.keras"), json_path=tmp_path / "r.json"
    )
    assert code == 1
    found = [f["id"] for f in json.loads((tmp_path / "r.json").read_text())["findings"]]
    assert {
        "mask-scale-255",
        "softmax-single-channel",
        "metric-constant",
        "prediction-collapse",
    } <= set(found)
    assert "mask-scale-255" in capsys.readouterr().out


def test_exit_status_2_for_bad_inputs(tmp_path, rng, capsys):
    assert cli_diagnose(tmp_path / "missing") == 2
    (tmp_path / "empty").mkdir()
    assert cli_diagnose(tmp_path / "empty") == 2
    data = folder(tmp_path / "d", rng)
    bad = tmp_path / "h.txt"
    bad.write_text("no idea\n1 2")
    assert cli_diagnose(data, history=bad) == 2
    assert "Unknown history format" in capsys.readouterr().err
    corrupt = tmp_path / "m.keras"
    corrupt.write_bytes(b"nope")
    assert cli_diagnose(data, model=corrupt) == 2


def test_unsafe_model_is_refused_and_names_the_opt_in(tmp_path, rng, capsys):
    data = folder(tmp_path / "d", rng)
    path = model_file(tmp_path / "lam.keras", lam=True)
    assert cli_diagnose(data, model=path) == 2
    err = capsys.readouterr().err
    assert "unsafe" in err and "--unsafe" in err
    assert cli_diagnose(data, model=path, safe_mode=False) == 1  # loads; softmax-single-channel


def test_diagnose_with_probe_runs_on_data_folder(tmp_path, rng):
    data = folder(tmp_path / "d", rng)
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-9), loss="binary_crossentropy")
    report = diagnose(data=data, model=model, probe=True)
    assert "probes" in report.summary["checked"]
    assert "lr-too-low" in report.ids


def test_cli_probe_end_to_end_with_a_saved_unet(tmp_path, rng, capsys):
    """``segdoctor diagnose DATA --model M --probe`` through cli_diagnose, on a U-Net file."""
    from segdoctor.losses import DiceCELoss
    from segdoctor.models import create_model

    data = folder(tmp_path / "d", rng, n=8)
    keras.utils.set_random_seed(0)
    model = create_model("unet", input_shape=(None, None, 1), depth=2, base_filters=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceCELoss(mode="binary"))
    model.save(tmp_path / "unet.keras")
    code = cli_diagnose(
        data, model=tmp_path / "unet.keras", probe=True, json_path=tmp_path / "r.json"
    )
    report = json.loads((tmp_path / "r.json").read_text())
    found = {f["id"] for f in report["findings"]}
    assert "probes" in report["summary"]["checked"]
    assert code == (1 if report["summary"]["errors"] else 0)
    assert not found & {"cannot-overfit", "nan-loss", "exploding-gradients", "lr-too-high"}


def test_cli_batch_size_reaches_the_model_checks(tmp_path, rng, capsys):
    """``segdoctor diagnose DATA --model M --batch-size N``: BatchNorm with a batch of 2 is flagged."""
    import pytest

    from segdoctor.cli import main

    data = folder(tmp_path / "d", rng)
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    path = tmp_path / "bn.keras"
    model.save(path)

    def found(batch_size):
        out = tmp_path / f"r{batch_size}.json"
        main(
            [
                "diagnose",
                str(data),
                "--model",
                str(path),
                "--batch-size",
                batch_size,
                "--json",
                str(out),
            ]
        )
        return {f["id"] for f in json.loads(out.read_text())["findings"]}

    assert "batchnorm-small-batch" in found("2")
    assert "batchnorm-small-batch" not in found("16")
    with pytest.raises(SystemExit) as exit_info:
        main(["diagnose", str(data), "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_cannot_overfit_does_not_blame_the_pairing_when_another_error_blocks_fitting(tmp_path, rng):
    """A softmax over one channel outputs 1 everywhere: the probe's copy fits its own masks no
    better than other images' masks, which alone would say "check the pairing" (fourth blind
    test, on four runs without a pairing fault)."""
    data = folder(tmp_path / "d", rng)
    model = keras.models.load_model(model_file(tmp_path / "m.keras"))  # softmax, one channel
    report = diagnose(data=data, model=model, probe=True, plots=False)
    [cannot] = [f for f in report.findings if f.id == "cannot-overfit"]
    assert cannot.evidence["blocked_by"] == ["softmax-single-channel"]
    assert "fix that first" in cannot.fix and "sorted names" not in cannot.fix


def test_cannot_overfit_keeps_the_pairing_text_without_a_blocking_error():
    from segdoctor.doctor.api import _unblamed_pairing
    from segdoctor.doctor.catalog import make_finding

    evidence = {
        "samples": 8, "steps": 40, "fitted_foreground_dice": 0.1, "threshold": 0.5,
        "one_class_everywhere_dice": 0.1, "loss_first_last": [1.0, 0.9], "learning_rate": 0.01,
        "control_dice_with_other_images_masks": 0.1, "fits_no_better_than_other_masks": True,
    }  # fmt: skip
    f = make_finding("cannot-overfit", evidence, variant="pairing", optimizer_lr=0.01)
    assert _unblamed_pairing([f], [f]) == [f]
    warning = make_finding("overfitting", {}, severity="warning")
    assert _unblamed_pairing([f], [f, warning]) == [f]
