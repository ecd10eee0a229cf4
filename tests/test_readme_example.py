"""The README's Python example runs clean under its own DoctorCallback.

The example compiles ``DiceCELoss(mode="binary")`` with the losses' default reduction
(``segdoctor.losses.PER_IMAGE``): the doctor, which warns on Dice pooled over the batch
(``dice-batch-pooled``), must find nothing to warn about in it. The same code with
``per_image=False`` shows that the check is live. 512 small images and 6 epochs (72 steps at the
default batch size of 32) are enough for the U-Net to learn (validation Dice about 0.75), so the
curves give the doctor nothing to report either.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from segdoctor.models import create_model

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_fit_example() -> str:
    """The README's first Python block that uses DoctorCallback, shortened to 6 epochs."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    block = next(b for b in blocks if "DoctorCallback(" in b and "model.fit(" in b)
    assert "epochs=50" in block  # the example as the README shows it
    return block.replace("epochs=50", "epochs=6")


def tiny_data(seed: int = 0, n: int = 512):
    """``n`` images (32, 32, 1) with one 8x8 bright square each; 3/4 to train, 1/4 to validate."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 32, 32, 1), np.int32)
    for i, (r, c) in enumerate(rng.integers(4, 20, (n, 2))):
        y[i, r : r + 8, c : c + 8] = 1
    x = (0.5 * rng.random(y.shape) + 0.5 * y).astype("float32")  # (24, 32, 32, 1) in [0, 1)
    k = n * 3 // 4
    return x[:k], y[:k], x[k:], y[k:]


def run_example(tmp_path, monkeypatch, source: str, n: int = 512) -> list[dict]:
    monkeypatch.chdir(tmp_path)  # the example writes doctor.json next to it
    keras.utils.set_random_seed(0)
    x, y, xv, yv = tiny_data(n=n)
    model = create_model("unet", input_shape=(32, 32, 1), mode="binary", depth=2, base_filters=8)
    exec(compile(source, "README.md", "exec"), {"model": model, "x": x, "y": y, "xv": xv, "yv": yv})
    return json.loads((tmp_path / "doctor.json").read_text())["findings"]


@pytest.mark.timeout(300)
def test_the_readme_example_is_clean_under_its_own_doctor(tmp_path, monkeypatch):
    findings = run_example(tmp_path, monkeypatch, readme_fit_example())
    assert [f["id"] for f in findings if f["severity"] in ("warning", "error")] == []


@pytest.mark.timeout(180)
def test_the_same_example_with_pooled_dice_draws_the_warning(tmp_path, monkeypatch):
    source = readme_fit_example()
    assert 'DiceCELoss(mode="binary")' in source
    source = source.replace("epochs=6", "epochs=1")  # the loss probe runs at train begin
    pooled = source.replace(
        'DiceCELoss(mode="binary")', 'DiceCELoss(mode="binary", per_image=False)'
    )
    findings = run_example(tmp_path, monkeypatch, pooled, n=64)
    assert "dice-batch-pooled" in [f["id"] for f in findings]
