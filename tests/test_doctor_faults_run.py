"""Faults seen in the run itself: masks divided by 255 twice, NaN under mixed precision,
background averaged into the Dice on rare foreground (DoctorCallback, batch and history checks)."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

import segdoctor.doctor.callback as callback_module
from segdoctor.doctor import DoctorCallback, diagnose
from segdoctor.doctor.batch_checks import check_batch, divided_by_255
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.history import analyze_history, nan_loss_findings
from segdoctor.doctor.loss_probe import BACKGROUND_RARE, background_severity
from segdoctor.losses import DiceLoss


def _nuclei(shared_data, n: int = 8, size: int = 32, offset: int = 0):
    """Real DSB 2018 crops: ``x`` (n, size, size, 1) uint8-valued, ``y`` 0/1 (n, size, size, 1)."""
    folder = shared_data / "dsb2018-nuclei"
    xs, ys = [], []
    for path in sorted((folder / "images").iterdir())[:n]:
        image = np.asarray(Image.open(path).convert("L"))
        labels = np.asarray(Image.open(folder / "masks" / path.name))
        box = (slice(offset, offset + size), slice(offset, offset + size))
        xs.append(image[box])
        ys.append((labels[box] > 0).astype("float32"))
    return np.stack(xs).astype("float32")[..., None], np.stack(ys)[..., None]


def _tiny(shape, out_channels: int = 1, activation: str = "sigmoid", rescale=None):
    inputs = keras.Input(shape)
    x = inputs if rescale is None else layers.Rescaling(rescale)(inputs)
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, layers.Conv2D(out_channels, 1, activation=activation)(x))


def _fit(model, x, y, epochs: int = 1, batch_size: int = 4):
    doctor = DoctorCallback(verbose=False, watch_gradients=0)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[doctor])
    return {f.id: f for f in doctor.findings}


# -- masks divided by 255 twice -------------------------------------------------------------------
def test_masks_divided_twice_are_named_as_such(shared_data):
    x, y = _nuclei(shared_data)
    found = {f.id: f for f in check_batch(x / 255.0, y / 255.0)}
    finding = found["mask-fractional"]
    assert "divided by 255" in finding.title
    assert "Remove the division" in finding.fix and "bilinear" not in finding.fix
    assert finding.evidence["values_times_255"] == [0, 1]


def test_bilinear_masks_keep_the_interpolation_diagnosis(shared_data):
    x, y = _nuclei(shared_data, size=64)
    resized = np.stack(
        [
            np.asarray(Image.fromarray(m[..., 0]).resize((48, 48), Image.BILINEAR))
            for m in y.astype("float32")
        ]
    )[..., None]
    small_x = x[:, :48, :48] / 255.0
    finding = {f.id: f for f in check_batch(small_x, resized)}["mask-fractional"]
    assert not divided_by_255(np.unique(resized))
    assert "bilinear" in finding.fix and "divided" not in finding.title


def test_clean_0_1_masks_draw_no_fractional_finding(shared_data):
    x, y = _nuclei(shared_data)
    assert "mask-fractional" not in {f.id for f in check_batch(x / 255.0, y)}


# -- NaN loss ------------------------------------------------------------------------------------
def _stretched_16bit(x):
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    return np.round((x - lo) / np.maximum(hi - lo, 1) * 65535).astype("float32")


def _dice_loss(y_true, y_pred):
    inter = keras.ops.sum(y_true * y_pred)
    return 1.0 - (2.0 * inter + 1.0) / (keras.ops.sum(y_true) + keras.ops.sum(y_pred) + 1.0)


@pytest.mark.parametrize("policy", ["mixed_float16", "float32"])
def test_nan_under_mixed_precision_is_reported_by_the_callback(shared_data, policy):
    x, y = _nuclei(shared_data)
    x = _stretched_16bit(x)  # 0..65535: above float16's 65504
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = _tiny(x.shape[1:], rescale=1 / 65535)
        model.compile(optimizer="adam", loss=_dice_loss)
        found = _fit(model, x, y)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if policy == "float32":
        assert "nan-loss" not in found
    else:
        assert found["nan-loss"].severity == "error"
        assert "float16" in found["nan-loss"].fix and "65504" in found["nan-loss"].fix
        assert found["nan-loss"].evidence["dtype_policy"] == "mixed_float16"


def test_nan_loss_from_a_history_and_missing_validation_values_are_not_nan():
    assert [f.id for f in nan_loss_findings({"loss": [0.9, 0.8, float("nan")]})] == ["nan-loss"]
    plain = nan_loss_findings({"loss": [0.9, float("inf")]})[0]
    assert "TerminateOnNaN" in plain.fix and "float16" not in plain.fix
    # A CSVLogger row without validation (validation_freq=2) reads as NaN: not a NaN loss.
    h = {"loss": [0.9, 0.8, 0.7, 0.6], "val_loss": [0.9, float("nan"), 0.7, float("nan")]}
    assert "nan-loss" not in {f.id for f in analyze_history(h)}


# -- background averaged into the Dice ----------------------------------------------------------
def test_background_severity_threshold():
    info = make_finding("dice-includes-background", {}, "exclude it")
    assert background_severity(info, BACKGROUND_RARE / 2).severity == "warning"
    assert background_severity(info, BACKGROUND_RARE * 3).severity == "info"
    other = make_finding("plateau", {}, "x")
    assert background_severity(other, 0.0) is other


def _rare_crops(shared_data):
    """Corner crops of nuclei images: most hold little or no foreground."""
    x, y = _nuclei(shared_data, n=12, size=32, offset=0)
    return x / 255.0, y


@pytest.mark.parametrize("include_background", [True, False])
def test_softmax_dice_with_background_on_rare_foreground_warns(shared_data, include_background):
    x, y = _rare_crops(shared_data)
    per_image = y.reshape(len(y), -1).mean(axis=1)
    assert float(np.median(per_image)) < BACKGROUND_RARE  # the premise, on real crops
    model = _tiny(x.shape[1:], out_channels=2, activation="softmax")
    model.compile(
        optimizer="adam", loss=DiceLoss(mode="multiclass", include_background=include_background)
    )
    found = _fit(model, x, y)
    if include_background:
        assert found["dice-includes-background"].severity == "warning"
        evidence = found["dice-includes-background"].evidence
        assert evidence["median_foreground_fraction_per_image"] < BACKGROUND_RARE
    else:
        assert "dice-includes-background" not in found


# -- sibling callbacks given explicitly ----------------------------------------------------------
@pytest.mark.parametrize("given", [True, False])
def test_callbacks_given_to_the_doctor_replace_the_frame_lookup(shared_data, monkeypatch, given):
    # The caller's-frame lookup finds nothing (only in the callback's module: Keras and
    # TensorFlow use inspect themselves).
    monkeypatch.setattr(callback_module, "inspect", SimpleNamespace(currentframe=lambda: None))
    x, y = _nuclei(shared_data)
    stop = keras.callbacks.EarlyStopping(monitor="val_dice", mode="min", patience=3)
    doctor = DoctorCallback(verbose=False, watch_gradients=0, callbacks=[stop] if given else None)
    model = _tiny(x.shape[1:])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x / 255.0, y, epochs=1, batch_size=4, verbose=0, callbacks=[stop, doctor])
    assert ("monitor-mode" in {f.id for f in doctor.findings}) == given


def _write_folder(root, x, y):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (image, mask) in enumerate(zip(x, y, strict=True)):
        Image.fromarray(image[..., 0].astype("uint8")).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask[..., 0].astype("uint8")).save(root / "masks" / f"{i:02d}.png")
    return root


@pytest.mark.parametrize("rare", [True, False])
def test_diagnose_data_and_model_grades_background_by_the_folder(shared_data, tmp_path, rare):
    x, y = _nuclei(shared_data, n=12, size=32)  # corner crops: little foreground
    if not rare:  # the same images with masks 75% foreground
        y = np.ones_like(y)
        y[:, :8] = 0
    folder = _write_folder(tmp_path / "d", x, y)
    model = _tiny(x.shape[1:], out_channels=2, activation="softmax")
    model.compile(optimizer="adam", loss=DiceLoss(mode="multiclass", include_background=True))
    found = {f.id: f for f in diagnose(data=folder, model=model, plots=False).findings}
    assert found["dice-includes-background"].severity == ("warning" if rare else "info")
