"""Hostile files run no code, user strings never become HTML, unwritable outputs are caught early.

* Models load with Keras ``safe_mode``: a Lambda layer is refused by ``evaluate``, ``predict`` and
  ``diagnose --model`` with a sentence naming ``--unsafe``, and loads with it.
* NPY files are read with ``allow_pickle=False`` and YAML with ``safe_load``: a tripwire object in
  the file would create a folder if it were ever unpickled or constructed; it never is.
* File names with HTML and script characters appear escaped in both HTML reports.
* An output folder that cannot be written (a path under a regular file, a full disk simulated by
  failing the write probe) is reported before any data is read or any training starts. Tests run
  as root here, where ``chmod`` does not stop writes; the permission case is skipped for root.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib

import keras
import numpy as np
import pytest

from segdoctor.cli import main
from segdoctor.data import read_image, read_mask
from segdoctor.errors import DataError
from tests.helpers import write_disc_dataset

TINY = [
    "--epochs", "1", "--lr", "0.01", "--patch-size", "32", "--batch-size", "2",
    "--set", "model.depth=2", "--set", "model.base_filters=4", "--set", "train.verbose=0",
    "--set", "train.doctor=false", "--set", "data.samples_per_epoch=4",
]  # fmt: skip


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


class Tripwire:
    """Unpickling this object calls ``os.mkdir(marker)``: proof that pickle ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# ------------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    """A tiny sigmoid model with a Lambda layer, saved as .keras, plus a data folder."""
    root = tmp_path_factory.mktemp("lambda")
    inputs = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Lambda(lambda t: t * 2.0)(h)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    model.save(root / "lam.keras")
    data = write_disc_dataset(root / "data", n=3)
    return root / "lam.keras", data


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["evaluate", "predict", "diagnose"])
def test_a_lambda_model_is_refused_with_the_opt_in_named_and_loads_with_it(
    command, lambda_model, tmp_path, capsys
):
    model, data = lambda_model
    args = {
        "evaluate": ["evaluate", model, data],
        "predict": ["predict", model, data / "images", "--out", tmp_path / "pred"],
        "diagnose": ["diagnose", data, "--model", model],
    }[command]
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert "--unsafe" in err and "Lambda" in err
    code, _, err = cli(capsys, *args, "--unsafe")
    assert code in (0, 1), err  # diagnose may find issues (1); loading worked
    if command == "predict":
        assert len(list((tmp_path / "pred").glob("*.png"))) == 3


@pytest.mark.timeout(60)
def test_a_truncated_model_file_is_explained(lambda_model, tmp_path, capsys):
    model, data = lambda_model
    broken = tmp_path / "best.keras"
    broken.write_bytes(model.read_bytes()[:500])
    for args in (["evaluate", broken, data], ["diagnose", data, "--model", broken]):
        code, _, err = cli(capsys, *args)
        assert code == 2 and "best.keras" in err


# ------------------------------------------------------------------------------- pickle


@pytest.mark.timeout(60)
def test_an_npy_object_array_is_refused_without_unpickling(tmp_path, capsys):
    marker = tmp_path / "pickle-ran"
    data = write_disc_dataset(tmp_path / "data", n=4)
    (data / "masks" / "case_001.png").unlink()
    evil = data / "masks" / "case_001.npy"
    payload = np.empty((8, 8), dtype=object)
    payload[0, 0] = Tripwire(marker)
    np.save(evil, payload, allow_pickle=True)
    for read in (read_image, read_mask):
        with pytest.raises(DataError, match="pickle"):
            read(evil)
    code, _, err = cli(capsys, "train", data, "--out", tmp_path / "run", *TINY)
    assert code == 2 and "masks/case_001.npy" in err and "pickle" in err
    code, out, _ = cli(capsys, "diagnose", data)
    assert code == 1 and "unreadable-file" in out
    assert not marker.exists()


# ------------------------------------------------------------------------------- YAML


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "text",
    [
        "train: !!python/object/apply:os.mkdir ['{marker}']\n",
        "data:\n  path: !!python/object/new:os.mkdir ['{marker}']\n",
        "!!python/name:os.system\n",
    ],
)
def test_a_yaml_config_with_a_python_tag_is_refused(text, tmp_path, capsys):
    marker = tmp_path / "yaml-ran"
    config = tmp_path / "evil.yaml"
    config.write_text(text.format(marker=marker))
    data = write_disc_dataset(tmp_path / "data", n=2)
    code, _, err = cli(capsys, "train", data, "--config", config, "--out", tmp_path / "run")
    assert code == 2
    assert "evil.yaml" in err and "Fix:" in err
    assert not marker.exists()
    assert not (tmp_path / "run" / "config.yaml").exists()


# ------------------------------------------------------------------------------- HTML

SCRIPT = "<script>alert(1)</script>"
EVIL_NAME = '<img src=x onerror=alert(1)>&"q'


def _evil_folder(tmp_path: pathlib.Path) -> pathlib.Path:
    """A data folder whose path contains SCRIPT and whose files are named EVIL_NAME_<i>."""
    # "/" cannot be part of a file name: the closing tag spans two folder levels
    root = tmp_path / "d<script>alert(1)<" / 'script>&"'
    write_disc_dataset(root, n=4)
    for sub in ("images", "masks"):
        for i, path in enumerate(sorted((root / sub).iterdir())):
            path.rename(path.with_name(f"{EVIL_NAME}_{i}.png"))
    assert SCRIPT in str(root)
    return root


def _assert_escaped(page: str) -> None:
    assert SCRIPT not in page
    assert "<img src=x" not in page
    assert "onerror=alert(1)>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;" in page  # the name is shown, escaped


@pytest.mark.timeout(60)
def test_file_names_are_escaped_in_the_diagnose_html_report(tmp_path, capsys):
    data = _evil_folder(tmp_path)
    (data / "images" / f"{EVIL_NAME}_1.png").write_bytes(b"")  # unreadable: named in the report
    (data / "masks" / f"{EVIL_NAME}_3.png").unlink()  # unpaired: named in the report
    html = tmp_path / "report.html"
    code, _, err = cli(capsys, "diagnose", data, "--html", html)
    assert code == 1, err
    page = html.read_text(encoding="utf-8")
    _assert_escaped(page)
    # unreadable files are named relative to the data folder, escaped
    assert "images/&lt;img src=x onerror=alert(1)&gt;&amp;" in page


@pytest.mark.timeout(120)
def test_file_names_are_escaped_in_the_training_report(tmp_path, capsys):
    data = _evil_folder(tmp_path)
    run = tmp_path / "run<b>&'"
    code, _, err = cli(capsys, "train", data, "--out", run, *TINY, "--set", "data.val_fraction=0.5")
    assert code == 0, err
    page = (run / "report.html").read_text(encoding="utf-8")
    _assert_escaped(page)
    assert "<b>&'" not in page and "run&lt;b&gt;&amp;&#x27;" in page


# ------------------------------------------------------------------------------- outputs


@pytest.mark.timeout(60)
def test_an_output_folder_under_a_file_is_reported_before_the_data_is_read(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    data = tmp_path / "never-read"  # does not exist: reading it first would give another error
    code, out, err = cli(capsys, "train", data, "--out", blocker / "run", *TINY)
    assert code == 2
    assert "not writable" in err and "a-file" in err and "Fix:" in err
    assert "Data:" not in out


@pytest.mark.timeout(60)
def test_a_full_disk_is_reported_before_training(tmp_path, capsys, monkeypatch):
    """A full filesystem cannot be created without privileges: the write probe is made to fail."""
    data = write_disc_dataset(tmp_path / "data", n=2)
    real = pathlib.Path.write_bytes

    def full(self, payload):
        if self.name == ".segdoctor-write-test":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, payload)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    code, out, err = cli(capsys, "train", data, "--out", tmp_path / "run", *TINY)
    assert code == 2
    assert "No space left on device" in err and "free disk space" in err
    assert "Data:" not in out and not (tmp_path / "run" / "last.keras").exists()


@pytest.mark.timeout(60)
@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_a_read_only_output_folder_is_reported_before_training(tmp_path, capsys):
    data = write_disc_dataset(tmp_path / "data", n=2)
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    out_dir.chmod(0o500)
    try:
        code, out, err = cli(capsys, "train", data, "--out", out_dir, *TINY)
    finally:
        out_dir.chmod(0o700)
    assert code == 2 and "not writable" in err and "Data:" not in out


@pytest.mark.timeout(60)
def test_diagnose_reports_an_unwritable_report_path_before_diagnosing(tmp_path, capsys):
    data = write_disc_dataset(tmp_path / "data", n=2)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = cli(capsys, "diagnose", data, "--html", blocker / "r.html")
    assert code == 2 and "a-file" in err and "Fix:" in err
    assert "checked: data" not in out  # refused before the diagnosis ran


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_report_an_unwritable_destination(
    command, lambda_model, tmp_path, capsys
):
    model, data = lambda_model
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = {
        "evaluate": ["evaluate", model, data, "--unsafe", "--json", blocker / "s.json"],
        "predict": ["predict", model, data / "images", "--unsafe", "--out", blocker / "pred"],
    }[command]
    code, _, err = cli(capsys, *args)
    assert code == 2 and "a-file" in err and "Fix:" in err


@pytest.mark.timeout(60)
def test_writers_accept_names_with_undecodable_bytes(tmp_path):
    from segdoctor._io import atomic_write_text

    atomic_write_text(tmp_path / "x.csv", "name\n" + os.fsdecode(b"caf\xe9") + "\n")
    assert json.dumps(os.fsdecode(b"caf\xe9"))
