"""inference-stochastic: a model that is not a function in inference mode (third blind test)."""

from __future__ import annotations

import keras
import numpy as np

from segdoctor.doctor.inference_checks import check_inference
from segdoctor.doctor.model_checks import check_model


def _unet(training=None) -> keras.Model:
    """A small U-Net-like model with SpatialDropout after the bottleneck, called with ``training``."""
    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    d = keras.layers.MaxPooling2D()(h)
    d = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(d)
    d = keras.layers.SpatialDropout2D(0.5)(d, training=training)
    u = keras.layers.Concatenate()([keras.layers.UpSampling2D()(d), h])
    return keras.Model(x, keras.layers.Conv2D(1, 1, activation="sigmoid")(u))


class _NoisyHead(keras.Model):
    """A subclassed model whose call adds noise whatever the mode (the flag is ignored)."""

    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(1, 3, padding="same")
        self.seed = keras.random.SeedGenerator(0)

    def call(self, x, training=None):
        h = self.conv(x)
        return keras.ops.sigmoid(h + 0.5 * keras.random.normal(keras.ops.shape(h), seed=self.seed))


def test_dropout_forced_into_training_mode_is_named_by_layer():
    model = _unet(training=True)
    (f,) = check_inference(model)
    assert f.id == "inference-stochastic" and f.severity == "warning"
    assert f.evidence["layers"] == ["spatial_dropout2d"]
    assert f.evidence["relative_difference_of_two_model_x_calls"] > 0.01
    assert "inference-stochastic" in {g.id for g in check_model(model)}
    # Keras' own predict passes training=False, which wins: that is why it is a warning
    x = np.random.default_rng(0).random((1, 32, 32, 1)).astype("float32")
    assert np.array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_call_that_draws_noise_in_inference_mode_is_found_by_two_calls():
    model = _NoisyHead()
    model.build((None, 32, 32, 1))
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    (f,) = check_inference(model, x)
    assert f.severity == "error" and f.evidence["layers"] == []
    assert (
        "different outputs" in f.title
        and f.evidence["relative_difference_in_inference_mode"] > 0.01
    )


def test_dropout_left_to_keras_and_plain_layers_are_silent():
    assert check_inference(_unet(training=None)) == []
    assert "inference-stochastic" not in {g.id for g in check_model(_unet(training=None))}


def test_a_model_file_with_an_unregistered_loss_is_checked_without_it(tmp_path, shared_data):
    """Third blind test: a plain-Keras model compiled with its own weighted BCE made --model
    exit 2; the architecture is checked, the loss checks and probes are skipped and said so."""
    from segdoctor.doctor import diagnose

    def weighted_bce(y_true, y_pred):  # not registered: Keras cannot find it when loading
        return keras.ops.mean(keras.ops.binary_crossentropy(y_true, y_pred))

    model = _unet(training=True)
    model.compile(optimizer="adam", loss=weighted_bce)
    model.save(tmp_path / "m.keras")
    report = diagnose(model=tmp_path / "m.keras", probe=True, data=None)
    found = {f.id: f for f in report.findings}
    assert "weighted_bce" in found["model-loss-unavailable"].evidence["reason"]
    assert "inference-stochastic" in found  # the architecture checks still ran
    registered = _unet()
    registered.compile(optimizer="adam", loss="binary_crossentropy")
    registered.save(tmp_path / "ok.keras")
    assert "model-loss-unavailable" not in {
        f.id for f in diagnose(model=tmp_path / "ok.keras").findings
    }


def _weighted_bce(w_background: float, w_foreground: float):
    def weighted_bce(y_true, y_pred):
        y_true = keras.ops.cast(y_true, "float32")
        y_pred = keras.ops.clip(y_pred, 1e-7, 1 - 1e-7)
        w = y_true * w_foreground + (1 - y_true) * w_background
        ce = y_true * keras.ops.log(y_pred) + (1 - y_true) * keras.ops.log(1 - y_pred)
        return keras.ops.mean(-w * ce, axis=(1, 2, 3))

    return weighted_bce


def test_a_loss_whose_class_weights_favour_the_background_is_named():
    """Third blind test: weights computed as frequency / mean (foreground 0.27, background 1.73)
    instead of their inverse; missed foreground costs 0.16x a false foreground pixel."""
    from segdoctor.doctor.loss_probe import probe_loss
    from segdoctor.losses import DiceCELoss

    (f,) = [f for f in probe_loss(_weighted_bce(1.73, 0.27)) if f.id == "loss-favours-background"]
    assert f.severity == "warning" and 0.1 < f.evidence["ratio"] < 0.3
    for fine in (
        _weighted_bce(0.58, 3.76),  # inverse frequency: the twin
        keras.losses.BinaryCrossentropy(),
        keras.losses.Dice(),
        DiceCELoss(mode="binary"),
    ):
        assert "loss-favours-background" not in {g.id for g in probe_loss(fine)}


def test_augmentation_layers_in_the_model_are_info_not_a_warning():
    """Keras' augmentation layers default to training=True, which the graph records: the
    recommended pattern is reported as info with its own text, not as MC-dropout code (fourth
    blind test, a healthy twin)."""
    from segdoctor.doctor.inference_checks import check_inference

    inputs = keras.Input((16, 16, 1))
    h = keras.layers.RandomBrightness(0.2, value_range=(0, 1))(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    [f] = check_inference(model)
    assert (f.id, f.severity) == ("inference-stochastic", "info")
    assert "model(x, training=False)" in f.fix
    dropout = keras.layers.Dropout(0.5)(h, training=True)  # MC dropout next to it: a warning
    mixed = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(dropout))
    assert [g.severity for g in check_inference(mixed)] == ["warning"]
