"""Model, compile and callback checks, and the black-box loss probe: fire and silent cases."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from segdoctor.doctor.loss_probe import probe_loss
from segdoctor.doctor.model_checks import check_callbacks, check_model


def tiny(channels=1, activation="sigmoid", **conv):
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", **conv)(inputs)
    outputs = keras.layers.Conv2D(channels, 1, activation=activation)(h)
    return keras.Model(inputs, outputs)


def per_image_dice(y, p, smooth=1e-5):
    i = ops.sum(y * p, axis=(1, 2, 3))
    return 1 - (2 * i + smooth) / (ops.sum(y, axis=(1, 2, 3)) + ops.sum(p, axis=(1, 2, 3)) + smooth)


def pooled_dice(y, p, smooth=1.0):
    return 1 - (2 * ops.sum(y * p) + smooth) / (ops.sum(y) + ops.sum(p) + smooth)


def dice_coef(y, p):
    return 1 - per_image_dice(y, p)


def per_class_dice(y, p, smooth=1e-5, background=False):
    i = ops.sum(y * p, axis=(1, 2))
    d = (2 * i + smooth) / (ops.sum(y, axis=(1, 2)) + ops.sum(p, axis=(1, 2)) + smooth)  # (B, C)
    return 1 - ops.mean(d if background else d[:, 1:], axis=-1)


def ids(model, callbacks=(), **kw):
    return {f.id for f in check_model(model, callbacks, **kw)}


def compiled(loss, **kw):
    m = tiny(**kw)
    m.compile(optimizer="adam", loss=loss)
    return m


def test_correct_binary_setup_is_silent():
    m = compiled(per_image_dice)
    cbs = [
        keras.callbacks.ReduceLROnPlateau(monitor="val_dice", mode="max"),
        keras.callbacks.EarlyStopping("val_loss"),
    ]
    assert ids(m, cbs, num_classes=2, batch_size=8) == set()
    m = compiled(keras.losses.BinaryCrossentropy())
    assert ids(m) == set()


@pytest.mark.parametrize("mode", ["min", "auto"])
def test_monitor_mode_fires_for_dice_in_min_or_auto(mode):
    cb = keras.callbacks.ReduceLROnPlateau(monitor="val_dice_coef", mode=mode)
    found = check_callbacks(compiled(per_image_dice), [cb])
    assert [f.id for f in found] == ["monitor-mode"]
    assert found[0].evidence["mode"] == mode
    assert "mode='max'" in found[0].fix


def test_monitor_mode_silent_with_direction_up_metric_in_auto():
    class Dice(keras.metrics.Mean):
        _direction = "up"

    m = tiny()
    m.compile(optimizer="adam", loss=per_image_dice, metrics=[Dice(name="dice")])
    assert (
        check_callbacks(m, [keras.callbacks.EarlyStopping(monitor="val_dice", mode="auto")]) == []
    )
    assert [
        f.id
        for f in check_callbacks(m, [keras.callbacks.EarlyStopping(monitor="val_loss", mode="max")])
    ] == ["monitor-mode"]


def test_softmax_single_channel_fires():
    assert "softmax-single-channel" in ids(compiled("binary_crossentropy", activation="softmax"))


def test_output_activation_missing_fires_for_declared_and_black_box_losses():
    assert "output-activation-missing" in ids(
        compiled(keras.losses.BinaryCrossentropy(), activation=None)
    )
    assert "output-activation-missing" in ids(compiled(pooled_dice, activation=None))
    assert (
        ids(compiled(keras.losses.BinaryCrossentropy(from_logits=True), activation=None)) == set()
    )


def _wrapped(activation):
    """A U-Net-like model with a sigmoid (or no activation) as the last layer of a nested model,
    and augmentation layers in front (fourth blind test)."""
    inner = keras.Sequential(
        [keras.Input((16, 16, 1)), keras.layers.Conv2D(1, 1, activation=activation)], name="unet"
    )
    inputs = keras.Input((16, 16, 1))
    outer = keras.Model(inputs, inner(keras.layers.RandomFlip()(inputs)))
    outer.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy())
    return outer


def test_output_activation_inside_a_nested_model():
    assert "output-activation-missing" not in ids(_wrapped("sigmoid"))
    assert "output-activation-missing" in ids(_wrapped(None))


def test_from_logits_mismatch_fires():
    assert "from-logits-mismatch" in ids(
        compiled(keras.losses.BinaryCrossentropy(from_logits=True))
    )


def test_activation_loss_mismatch_fires():
    assert "activation-loss-mismatch" in ids(compiled("categorical_crossentropy"))
    assert "activation-loss-mismatch" in ids(
        compiled("binary_crossentropy", channels=3, activation="softmax")
    )
    assert ids(compiled("categorical_crossentropy", channels=3, activation="softmax")) == set()


def test_output_classes_mismatch_fires():
    m = compiled(keras.losses.CategoricalCrossentropy(), channels=3, activation="softmax")
    assert "output-classes-mismatch" in ids(m, num_classes=12)
    assert "output-classes-mismatch" not in ids(m, num_classes=3)
    sigmoid = compiled(keras.losses.BinaryCrossentropy())
    assert "output-classes-mismatch" in ids(sigmoid, num_classes=4)  # 1 channel, 4 classes
    assert ids(sigmoid, num_classes=2) == set()


def test_output_channels_extra_from_the_dataset_classes():
    """More channels than the masks have classes: a warning (the issue's miss); 2 on binary: fine."""
    m = compiled(keras.losses.CategoricalCrossentropy(), channels=3, activation="softmax")
    found = {f.id: f for f in check_model(m, num_classes=2)}
    assert found["output-channels-extra"].severity == "warning"
    assert "output-classes-mismatch" not in found
    two = compiled(keras.losses.CategoricalCrossentropy(), channels=2, activation="softmax")
    assert ids(two, num_classes=2) == set()


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_output_activation_unsuited_fires_in_check_model(act):
    found = ids(compiled(keras.losses.BinaryCrossentropy(from_logits=True), activation=act))
    assert "output-activation-unsuited" in found
    assert "output-activation-unsuited" not in ids(
        compiled(keras.losses.BinaryCrossentropy(from_logits=True), activation=None)
    )


def test_input_channels_read_from_the_model():
    from segdoctor.doctor.model_checks import input_channels

    assert input_channels(tiny()) == 1
    inputs = keras.Input((None, None, 3))
    assert input_channels(keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))) == 3


def test_dropout_batchnorm_weight_decay_init():
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", kernel_regularizer=keras.regularizers.l2())(
        inputs
    )
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5)(h)
    h = keras.layers.Conv2D(
        8, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(stddev=1.0)
    )(h)
    m = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    m.compile(optimizer=keras.optimizers.AdamW(weight_decay=0.1), loss=per_image_dice)
    found = ids(m, batch_size=2)
    assert {"dropout-high", "batchnorm-small-batch", "weight-decay-high", "bad-init"} <= found
    assert "batchnorm-small-batch" not in ids(m, batch_size=16)


def test_zero_init_is_bad_init():
    m = compiled(per_image_dice, kernel_initializer="zeros")
    assert "bad-init" in ids(m)


def encoder_decoder(frozen: bool, pretrained: bool = False) -> keras.Model:
    """Two conv+BN blocks as an "encoder", a head; the encoder frozen when ``frozen``."""
    inputs = keras.Input((32, 32, 1))
    h = inputs
    for _ in range(2):
        h = keras.layers.Conv2D(16, 3, padding="same")(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Activation("relu")(h)
    encoder = keras.Model(inputs, h, name="encoder")
    if pretrained:  # what loaded weights look like: biases, gamma and beta away from 0 and 1
        rng = np.random.default_rng(0)
        for v in encoder.weights:
            if v.path.rsplit("/", 1)[-1] in ("bias", "gamma", "beta"):
                v.assign(np.asarray(v) + rng.normal(0, 0.1, v.shape).astype("float32"))
    encoder.trainable = not frozen
    x = keras.Input((32, 32, 1))
    return keras.Model(x, keras.layers.Conv2D(1, 1, activation="sigmoid")(encoder(x)))


def test_frozen_layers_left_at_their_initial_values_are_found():
    assert "frozen-untrained" in ids(encoder_decoder(frozen=True))
    (f,) = [f for f in check_model(encoder_decoder(frozen=True)) if f.id == "frozen-untrained"]
    assert f.evidence["frozen_layers"] == 4 and f.evidence["frozen_share"] > 0.9


def test_trainable_or_pretrained_frozen_layers_are_not_flagged():
    assert "frozen-untrained" not in ids(encoder_decoder(frozen=False))
    assert "frozen-untrained" not in ids(encoder_decoder(frozen=True, pretrained=True))
    trained = encoder_decoder(frozen=False)  # trained a few steps, then frozen
    trained.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    x = np.random.default_rng(1).random((8, 32, 32, 1)).astype("float32")
    trained.fit(x, (x > 0.5).astype("float32"), epochs=2, verbose=0)
    trained.layers[1].trainable = False
    assert "frozen-untrained" not in ids(trained)


# -- loss probe ------------------------------------------------------------------------------


def probe_ids(loss, channels=1):
    return {f.id for f in probe_loss(loss, channels=channels)}


def test_probe_silent_on_good_losses():
    assert probe_ids(per_image_dice) == set()
    assert probe_ids(per_class_dice, channels=3) == set()
    assert probe_ids(keras.losses.BinaryCrossentropy()) == set()


def test_probe_thresholding_is_not_differentiable():
    assert "loss-not-differentiable" in probe_ids(lambda y, p: per_image_dice(y, ops.round(p)))
    assert "loss-not-differentiable" in probe_ids(
        lambda y, p: per_image_dice(y, ops.cast(p > 0.5, "float32"))
    )


def test_probe_metric_passed_as_loss_goes_wrong_way():
    assert probe_ids(dice_coef) == {"loss-wrong-direction"}


def test_probe_large_smooth_rewards_empty_prediction():
    f = [
        f
        for f in probe_loss(lambda y, p: per_image_dice(y, p, smooth=100.0))
        if f.id == "dice-smooth-large"
    ]
    assert f and 50 < f[0].evidence["estimated_smooth"] < 200


def test_probe_batch_pooling():
    assert "dice-batch-pooled" in probe_ids(pooled_dice)
    assert "dice-batch-pooled" in probe_ids(keras.losses.Dice())


def test_probe_background_dominance_and_inclusion():
    def weighted_pooled(y, p):
        w = ops.convert_to_tensor([1.0, 10.0])
        return 1 - (2 * ops.sum(w * y * p) + 1) / (ops.sum(w * (y + p)) + 1)

    assert "loss-background-dominated" in probe_ids(weighted_pooled, channels=2)
    assert "dice-includes-background" in probe_ids(
        lambda y, p: per_class_dice(y, p, background=True), channels=2
    )


def test_probe_empty_truth_penalized():
    assert "dice-empty-penalized" in probe_ids(keras.losses.Dice())

    def no_smooth(y, p):
        return per_image_dice(y, p, smooth=0.0)

    assert "dice-empty-penalized" in probe_ids(no_smooth)


def test_probe_uses_sparse_labels_when_dense_fail():
    from segdoctor.doctor.loss_probe import measure_loss

    m = measure_loss(keras.losses.SparseCategoricalCrossentropy(), channels=3)
    assert m.sparse_labels and np.isfinite(m.perfect) and m.perfect < m.inverted_large
