"""``lr-too-high`` from the relative size of the first updates (probe copy and DoctorCallback)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

from segdoctor.doctor import DoctorCallback
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.update_ratio import (
    UPDATE_ERROR,
    UPDATE_LOW,
    UPDATE_WARN,
    probe_update_ratio,
    relative_update,
    update_findings,
)


def _nuclei(shared_data, n: int = 8, size: int = 32):
    """Real DSB 2018 centre crops: ``x`` in [0, 1] (n, size, size, 1), ``y`` 0/1."""
    folder = shared_data / "dsb2018-nuclei"
    xs, ys = [], []
    for path in sorted((folder / "images").iterdir())[:n]:
        image = np.asarray(Image.open(path).convert("L"))
        labels = np.asarray(Image.open(folder / "masks" / path.name))
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        box = (slice(top, top + size), slice(left, left + size))
        xs.append(image[box] / 255.0)
        ys.append((labels[box] > 0).astype("float32"))
    return np.stack(xs).astype("float32")[..., None], np.stack(ys)[..., None]


def _model(shape, lr: float):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    model = keras.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(x))
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    return model


def test_relative_update_and_thresholds():
    w = [np.ones((3, 3, 1, 2)), np.zeros((3, 3, 2, 2))]  # a kernel of norm 0 is skipped
    assert relative_update(w, [np.full((3, 3, 1, 2), 1.1), np.ones((3, 3, 2, 2))]) == pytest.approx(
        0.1
    )
    assert update_findings([UPDATE_WARN / 2] * 3, 1e-3, "Adam", "x") == []
    warn = update_findings([UPDATE_WARN * 1.2] * 3, 0.03, "Adam", "x")[0]
    assert warn.severity == "warning" and "0.03" in warn.fix
    assert update_findings([UPDATE_ERROR * 1.5] * 3, 0.1, "Adam", "x")[0].severity == "error"
    assert update_findings([float("nan")], 0.1, "Adam", "x") == []


@pytest.mark.parametrize(("lr", "fires"), [(0.1, True), (1e-3, False)])
def test_probe_copy_names_the_learning_rate(shared_data, lr, fires):
    x, y = _nuclei(shared_data, n=4)
    model = _model(x.shape[1:], lr)
    before = [np.array(w) for w in model.get_weights()]
    found = {f.id: f for f in probe_update_ratio(model, x, y)}
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    if fires:
        assert found["lr-too-high"].severity in ("warning", "error")
        assert found["lr-too-high"].evidence["relative_update_per_step"] >= UPDATE_WARN
        assert "learning rate 0.1" in found["lr-too-high"].fix
    else:
        assert "lr-too-high" not in found


@pytest.mark.parametrize(("lr", "fires"), [(0.1, True), (1e-3, False)])
def test_callback_measures_the_first_steps(shared_data, lr, fires):
    x, y = _nuclei(shared_data)
    model = _model(x.shape[1:], lr)
    doctor = DoctorCallback(verbose=False, watch_gradients=0)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[doctor])
    found = {f.id: f for f in doctor.findings}
    assert ("lr-too-high" in found) == fires
    if fires:
        assert found["lr-too-high"].evidence["optimizer"] == "Adam"
        assert found["lr-too-high"].evidence["relative_update_per_step"] >= UPDATE_WARN


@pytest.mark.parametrize(("lr", "stands"), [(1e-6, True), (1e-3, False)])
def test_lr_too_low_from_the_range_test_is_checked_against_the_updates(shared_data, lr, stands):
    """A one-batch range test called Adam 1e-3 too low (steepest descent at 1.08 on the fault
    benchmark's healthy twin): the weights' first updates keep it at 1e-6 and make it info at 1e-3."""
    x, y = _nuclei(shared_data, n=4)
    model = _model(x.shape[1:], lr)
    low = make_finding("lr-too-low", {"configured_lr": lr, "steepest_lr": 1.08}, suggested_lr=0.1)
    found = {f.id: f for f in probe_update_ratio(model, x, y, found=[low])}
    assert set(found) == {"lr-too-low"}  # neither rate makes a kernel move by UPDATE_WARN
    ratio = found["lr-too-low"].evidence["relative_update_per_step"]
    assert (ratio < UPDATE_LOW) == stands
    assert found["lr-too-low"].severity == ("warning" if stands else "info")
    if not stands:
        assert "1.1e+00" in found["lr-too-low"].fix and "lr-find" in found["lr-too-low"].fix


def test_update_ratio_probe_measures_nothing_it_does_not_need(shared_data):
    x, y = _nuclei(shared_data, n=4)
    high = make_finding(
        "lr-too-high",
        {"configured_lr": 0.1, "steepest_lr": 0.01, "diverge_lr": 0.1},
        suggested_lr=1e-3,
    )
    assert probe_update_ratio(_model(x.shape[1:], 0.1), x, y, found=[high]) == []
