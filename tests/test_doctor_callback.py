"""DoctorCallback on real fits: the three classic recipes fire, their corrected versions are silent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np
from examples import classic_1_monitor_mode, classic_2_class_weights, classic_3_augmentation
from keras import ops

from segdoctor.doctor.batch_checks import check_batch, loss_vs_labels
from segdoctor.losses import DiceCELoss


def ids(doctor):
    return {f.id for f in doctor.findings}


def test_classic_1_monitor_mode(tmp_path):
    path = tmp_path / "doctor.json"
    doctor = classic_1_monitor_mode.main(corrected=False, epochs=2, report=str(path))
    assert "monitor-mode" in ids(doctor)
    data = json.loads(path.read_text())
    assert data["findings"][0]["id"] == "monitor-mode"
    assert ids(classic_1_monitor_mode.main(corrected=True, epochs=2)) == set()


def test_classic_2_class_weights():
    assert "loss-background-dominated" in ids(
        classic_2_class_weights.main(corrected=False, epochs=1)
    )
    assert ids(classic_2_class_weights.main(corrected=True, epochs=1)) == set()


def test_classic_3_augmentation():
    found = ids(classic_3_augmentation.main(corrected=False))
    assert {"pair-misaligned", "dropout-high"} <= found
    assert ids(classic_3_augmentation.main(corrected=True)) == set()


def test_behaviour_lr_cut_while_dice_rises_without_callback_handle():
    """Even when the CallbackList is not found, the LR cut during a rise is caught."""
    from segdoctor.doctor.callback import DoctorCallback

    model, callbacks, (x, y) = classic_1_monitor_mode.build(corrected=False)
    doctor = DoctorCallback(verbose=False)
    doctor._sibling_callbacks = lambda: None  # simulate a Keras without a reachable CallbackList
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        validation_split=0.25,
        verbose=0,
        callbacks=[doctor, *callbacks],
    )
    assert "lr-reduced-while-improving" in ids(doctor)
    assert "monitor-mode" not in ids(doctor)


def test_batch_checks_fire_and_silent(rng):
    from examples._synthetic import disks

    x, y = disks(8)
    assert check_batch(x, y) == []
    assert [f.id for f in check_batch(x, y * 255)] == ["mask-scale-255"]
    assert "input-not-normalized" in {f.id for f in check_batch(x * 255, y)}
    assert "mask-fractional" in {f.id for f in check_batch(x, y * 0.7)}
    x2 = x.copy()
    x2[:5] = 0.3
    assert "input-constant" in {f.id for f in check_batch(x2, y)}
    flipped = x[:, ::-1, ::-1]
    assert "pair-misaligned" in {f.id for f in check_batch(flipped, y)}


def test_stop_while_rising_blames_early_stopping_only():
    """A time budget that ends a run while Dice rises is not a monitor-mode error."""
    import keras

    from segdoctor.doctor.callback import DoctorCallback
    from segdoctor.train.callbacks import TimeBudget

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])

    def verdict(siblings):
        doctor = DoctorCallback(verbose=False)
        doctor.set_model(model)
        doctor.set_params({"epochs": 200})
        doctor.history = {"val_dice": [0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8]}
        doctor._siblings = siblings
        model.stop_training = True
        return [f.id for f in doctor._stopped_while_improving()]

    early = keras.callbacks.EarlyStopping(monitor="val_dice", mode="min")
    early.stopped_epoch = 6
    assert verdict([early]) == ["monitor-mode"]
    assert verdict([TimeBudget(15)]) == []
    assert verdict(None) == ["monitor-mode"]  # no handle on the callbacks: judged by behaviour


def test_a_mid_run_overfitting_alarm_that_the_run_disproves_leaves_the_report():
    """Validation dips (overfitting is printed), then recovers: the final report drops it."""
    import keras
    import numpy as np

    from segdoctor.doctor.callback import DoctorCallback

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    doctor = DoctorCallback(verbose=False, watch_gradients=0)
    doctor.set_model(model)
    doctor.set_params({"epochs": 16})
    train = np.linspace(0.5, 0.95, 16)
    val = [
        0.5,
        0.6,
        0.7,
        0.8,
        0.85,
        0.83,
        0.80,
        0.77,
        0.74,
        0.72,
        0.70,
        0.86,
        0.88,
        0.9,
        0.91,
        0.92,
    ]
    for epoch in range(16):
        logs = {"loss": 1 - train[epoch], "dice": train[epoch], "val_dice": val[epoch]}
        doctor.on_epoch_end(epoch, logs)
        if epoch == 9:
            assert "overfitting" in ids(doctor)  # said as soon as it looked sure
    doctor.on_train_end()
    assert "overfitting" not in ids(doctor)  # the whole run does not support it
    assert "overfitting" not in doctor.report().ids


def _head(k: int, activation: str | None, loss) -> keras.Model:
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(k, 1, activation=activation)(inputs))
    model.compile(optimizer="adam", loss=loss)
    return model


def _one_hot_dice(y_true, y_pred, smooth=1.0):
    """The multi-class Dice loss of many Q&A answers: written for one-hot targets."""
    y_true = ops.cast(y_true, "float32")
    inter = ops.sum(y_true * y_pred, axis=(1, 2))
    den = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
    return 1.0 - ops.mean((2.0 * inter + smooth) / (den + smooth))


def _labels(k=4, n=4):
    return np.random.default_rng(0).integers(0, k, (n, 16, 16, 1)).astype("float32")


def test_class_indices_given_to_a_one_hot_loss_are_found():
    y = _labels()
    (f,) = loss_vs_labels(_head(4, "softmax", _one_hot_dice), y)
    assert f.id == "loss-label-format" and f.severity == "error"
    assert f.evidence["loss_right_answer"] >= f.evidence["loss_uniform"] - 1e-6
    x = np.zeros((4, 16, 16, 1), "float32")
    assert "loss-label-format" in {
        g.id for g in check_batch(x, y, _head(4, "softmax", _one_hot_dice))
    }


def test_losses_that_read_class_indices_and_one_hot_targets_stay_silent():
    y = _labels()
    sparse_ce = keras.losses.SparseCategoricalCrossentropy()
    assert loss_vs_labels(_head(4, "softmax", sparse_ce), y) == []
    logits = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert loss_vs_labels(_head(4, None, logits), y) == []
    assert loss_vs_labels(_head(4, "softmax", DiceCELoss()), y) == []
    one_hot = np.eye(4, dtype="float32")[y[..., 0].astype(int)]
    assert loss_vs_labels(_head(4, "softmax", _one_hot_dice), one_hot) == []  # as the loss wants
    assert (
        loss_vs_labels(_head(1, "sigmoid", "binary_crossentropy"), (y > 1).astype("float32")) == []
    )


def _augmented(value_range=None):
    """Images in, a sigmoid out, with brightness and contrast augmentation in the model (the
    Keras layers' default value_range is (0, 255))."""
    kw = {} if value_range is None else {"value_range": value_range}
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.RandomBrightness(0.2, **kw),
            keras.layers.RandomContrast(0.2, **kw),
            keras.layers.Conv2D(1, 1, activation="sigmoid"),
        ]
    )


def test_augment_value_range_fires_on_unit_images_with_the_default_range(rng):
    x = rng.random((4, 16, 16, 1)).astype("float32")  # in [0, 1]
    y = (x > 0.5).astype("float32")
    found = [f for f in check_batch(x, y, _augmented()) if f.id == "augment-value-range"]
    assert [f.severity for f in found] == ["error"]
    assert len(found[0].evidence["layers"]) == 2 and "value_range=(0, 1)" in found[0].fix


def test_augment_value_range_silent_when_the_range_matches(rng):
    x = rng.random((4, 16, 16, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    assert "augment-value-range" not in {f.id for f in check_batch(x, y, _augmented((0, 1)))}
    raw = (x * 255).round()  # 0..255 with the default range: right too
    assert "augment-value-range" not in {f.id for f in check_batch(raw, y, _augmented())}


def test_augment_value_range_from_the_command_line_needs_a_history_that_never_learned():
    """The command line does not see the inputs: layers at the (0, 255) default are named only
    when the history says nothing was learned (fourth blind test, F3 from the command line)."""
    from segdoctor.doctor import diagnose

    flat = {"loss": [0.9] * 6, "dice": [0.0] * 6, "val_dice": [0.0] * 6}
    learned = {"loss": [0.9, 0.6, 0.4, 0.3, 0.25, 0.2], "val_dice": [0.1, 0.4, 0.6, 0.7, 0.75, 0.8]}
    model = _augmented()
    model.compile("adam", "binary_crossentropy")
    found = diagnose(model=model, history=flat, plots=False).findings
    [f] = [f for f in found if f.id == "augment-value-range"]
    assert f.severity == "warning" and "value_range=(0, 1)" in f.fix
    assert "augment-value-range" not in diagnose(model=model, history=learned, plots=False).ids
    matched = _augmented((0, 1))
    matched.compile("adam", "binary_crossentropy")
    assert "augment-value-range" not in diagnose(model=matched, history=flat, plots=False).ids
