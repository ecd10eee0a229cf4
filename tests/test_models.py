"""Contract tests for the model registry and the U-Net family (run on every backend)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segdoctor.doctor._grad import value_and_grad
from segdoctor.errors import ConfigError
from segdoctor.models import create_model, list_models, register_model
from segdoctor.models.layers import BatchNormalization, UpSampling2D
from segdoctor.train.inference import mirrored, model_stride, predict_full, to_labels

TINY = {"depth": 2, "base_filters": 4}


def test_registry_lists_builtin_models():
    assert {"unet", "resunet"} <= set(list_models())


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(ConfigError, match='Did you mean "unet"'):
        create_model("unte")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ConfigError, match="already registered"):
        register_model("unet")(lambda: None)


@pytest.mark.parametrize(
    ("mode", "num_classes", "channels", "activation"),
    [("binary", 1, 1, "sigmoid"), ("multiclass", 4, 4, "softmax"), ("multilabel", 3, 3, "sigmoid")],
)
def test_output_head_follows_mode(mode, num_classes, channels, activation):
    model = create_model(
        "unet", input_shape=(32, 32, 3), mode=mode, num_classes=num_classes, **TINY
    )
    assert model.output_shape == (None, 32, 32, channels)
    head = model.get_layer("mask")
    assert head.activation.__name__ == activation
    y = keras.ops.convert_to_numpy(
        model(np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32"))
    )
    if activation == "softmax":
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    assert np.all((y >= 0) & (y <= 1))


def test_logits_output_is_unbounded_and_float32():
    model = create_model("unet", input_shape=(32, 32, 1), output="logits", **TINY)
    assert model.get_layer("mask").activation.__name__ == "linear"
    assert model.get_layer("mask").dtype_policy.compute_dtype == "float32"


def test_multiclass_with_one_class_is_refused():
    with pytest.raises(ConfigError, match='mode="binary"'):
        create_model("unet", input_shape=(32, 32, 1), mode="multiclass", num_classes=1, **TINY)


def test_input_size_must_be_a_multiple_of_the_stride():
    with pytest.raises(ConfigError, match="multiple of the U-Net stride 16"):
        create_model("unet", input_shape=(40, 40, 1), depth=4, base_filters=2)


@pytest.mark.parametrize(
    "bad", [{"norm": "layer"}, {"depth": 0}, {"dropout": 1.5}, {"base_filters": 0}]
)
def test_bad_arguments_get_a_clear_error(bad):
    kwargs = {**TINY, **bad}
    with pytest.raises(ConfigError):
        create_model("unet", input_shape=(32, 32, 1), **kwargs)


@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_every_normalization_builds_and_runs_on_dynamic_sizes(norm):
    model = create_model("unet", input_shape=(None, None, 1), norm=norm, depth=2, base_filters=8)
    for h, w in [(32, 32), (16, 48)]:
        assert tuple(model(np.zeros((1, h, w, 1), "float32")).shape) == (1, h, w, 1)
    kinds = {type(layer).__name__ for layer in model.layers}
    expected = {
        "batch": "BatchNormalization",
        "group": "GroupNormalization",
        "instance": "GroupNormalization",
    }
    if norm == "none":
        assert not kinds & {"BatchNormalization", "GroupNormalization"}
    else:
        assert expected[norm] in kinds


def test_residual_blocks_add_a_skip_path():
    plain = create_model("unet", input_shape=(32, 32, 1), **TINY)
    res = create_model("resunet", input_shape=(32, 32, 1), **TINY)
    assert any(isinstance(layer, keras.layers.Add) for layer in res.layers)
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    assert res.count_params() > plain.count_params()


def test_deep_supervision_returns_full_size_auxiliary_outputs():
    model = create_model(
        "unet", input_shape=(32, 32, 1), depth=3, base_filters=4, deep_supervision=True
    )
    shapes = [tuple(o.shape) for o in model.outputs]
    assert len(shapes) == 2
    assert all(s == (None, 32, 32, 1) for s in shapes)


class _TwoSizes(keras.utils.PyDataset):
    """Whole images of two sizes, as the recipe validates: height and width unknown when traced."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        h, w = ((32, 48), (64, 32))[i]
        x = np.random.default_rng(i).normal(size=(1, h, w, 1)).astype("float32")
        return x, ((x > 0).astype("float32"), (x > 0).astype("float32"))


def test_deep_supervision_validates_images_of_varying_size():
    # Keras' bilinear UpSampling2D fails in a TensorFlow graph on unknown sizes (Keras 3.15)
    model = create_model(
        "unet", input_shape=(None, None, 1), depth=3, base_filters=4, deep_supervision=True
    )
    model.compile(loss=["binary_crossentropy", "binary_crossentropy"])
    losses = model.evaluate(_TwoSizes(), verbose=0)
    assert np.all(np.isfinite(losses))
    x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype("float32")
    ours = model.get_layer("aux1_up")
    assert isinstance(ours, UpSampling2D)
    keras_layer = keras.layers.UpSampling2D(2, interpolation="bilinear")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(keras_layer(x)), atol=1e-6
    )


def test_he_initialization_on_convolutions():
    model = create_model("unet", input_shape=(32, 32, 1), **TINY)
    conv = model.get_layer("enc0_conv1")
    assert type(conv.kernel_initializer).__name__ == "HeNormal"


def test_dropout_layer_only_when_requested():
    assert "bottleneck_dropout" not in [
        layer.name for layer in create_model("unet", input_shape=(32, 32, 1), **TINY).layers
    ]
    model = create_model("unet", input_shape=(32, 32, 1), dropout=0.2, **TINY)
    assert model.get_layer("bottleneck_dropout").rate == pytest.approx(0.2)


def test_save_and_load_round_trip(tmp_path):
    model = create_model("unet", input_shape=(None, None, 1), **TINY)
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 1)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )


def test_a_training_step_reduces_the_loss_on_one_batch():
    keras.utils.set_random_seed(0)
    model = create_model("unet", input_shape=(32, 32, 1), **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    first = model.train_on_batch(x, y)
    for _ in range(15):
        last = model.train_on_batch(x, y)
    assert float(last) < float(first)


def test_stride_is_derived_from_the_pooling_layers():
    assert (
        model_stride(create_model("unet", input_shape=(None, None, 1), depth=3, base_filters=2))
        == 8
    )


def test_predict_full_keeps_any_input_size():
    model = create_model("unet", input_shape=(None, None, 1), depth=3, base_filters=2)
    out = predict_full(model, np.zeros((37, 53, 1), "float32"))
    assert out.shape == (37, 53, 1)
    labels = to_labels(np.array([[[0.2], [0.7]]]))
    np.testing.assert_array_equal(labels, [[0, 1]])
    np.testing.assert_array_equal(to_labels(np.array([[[0.1, 0.9, 0.0]]])), [[1]])


def test_mirrored_prediction_averages_the_four_flips_mapped_back():
    """A "model" that writes each pixel's position (not flip-equivariant): mapped back, the four
    copies hold the positions of the mirror pixels, and their mean is the centre of the image."""
    h, w = 5, 4
    rows = np.broadcast_to(np.arange(h, dtype="float32")[:, None], (h, w))
    calls = []

    def position(batch):
        calls.append(batch.shape)
        return np.broadcast_to(rows[None, :, :, None], (*batch.shape[:3], 1)).copy()

    image = np.random.default_rng(0).random((2, h, w, 3)).astype("float32")
    out = mirrored(position)(image)
    assert calls == [(8, h, w, 3)]  # one call with the four copies of both images
    assert out.shape == (2, h, w, 1)
    np.testing.assert_allclose(out, (h - 1) / 2)  # row r averaged with row h - 1 - r


def test_mirrored_prediction_of_an_equivariant_model_is_unchanged():
    image = np.random.default_rng(1).random((1, 6, 7, 1)).astype("float32")
    np.testing.assert_allclose(mirrored(lambda b: b * 2.0)(image), image * 2.0, rtol=1e-6)


def test_predict_full_with_tta_matches_averaging_by_hand():
    keras.utils.set_random_seed(0)
    model = create_model("unet", input_shape=(None, None, 1), depth=2, base_filters=4)
    image = np.random.default_rng(2).random((32, 32, 1)).astype("float32")
    by_hand = np.mean(
        [
            np.flip(predict_full(model, np.flip(image, axes)), axes)
            if axes
            else predict_full(model, image)
            for axes in [(), (0,), (1,), (0, 1)]
        ],
        axis=0,
    )
    np.testing.assert_allclose(predict_full(model, image, tta=True), by_hand, atol=1e-5)
    assert not np.allclose(predict_full(model, image), by_hand, atol=1e-5)  # TTA changed it


def test_batchnorm_inference_agrees_with_training_after_a_short_run():
    """With Keras' default momentum 0.99 the moving statistics still hold most of their initial
    values after 40 steps and inference-mode predictions differ from training-mode ones."""
    keras.utils.set_random_seed(0)
    model = create_model("unet", input_shape=(16, 16, 1), depth=1, base_filters=4)
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(8, 16, 16, 1)) * 5 + 3).astype("float32")  # far from mean 0, var 1
    y = (x > 3).astype("float32")
    for _ in range(40):
        model.train_on_batch(x, y)
    infer = keras.ops.convert_to_numpy(model(x, training=False))
    train = keras.ops.convert_to_numpy(model(x, training=True))
    assert np.abs(infer - train).mean() < 0.02


def _bn_pair(**kwargs):
    """segdoctor's BatchNormalization and Keras' own, built alike with equal non-trivial weights."""

    rng = np.random.default_rng(0)
    ours, theirs = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    for layer in (ours, theirs):
        layer.build((None, 6, 5, 3))
    weights = [rng.normal(size=3).astype("float32") for _ in theirs.weights]
    weights[-1] = np.abs(weights[-1]) + 0.5  # a variance
    for layer in (ours, theirs):
        layer.set_weights(weights)
    return ours, theirs


@pytest.mark.parametrize("kwargs", [{"momentum": 0.9, "epsilon": 1e-5}, {"center": False}])
def test_batchnorm_equals_keras_in_training_and_inference(kwargs):
    """On TensorFlow this is the fused kernel; its outputs, gradients and moving statistics must be
    Keras' (the kernel's Bessel-corrected batch variance would move the moving variance by 1/n)."""
    x = (np.random.default_rng(1).normal(size=(2, 6, 5, 3)) * 4 + 2).astype("float32")
    ours, theirs = _bn_pair(**kwargs)
    for training in (True, False):
        outs = [keras.ops.convert_to_numpy(layer(x, training=training)) for layer in (ours, theirs)]
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5
        )
    xt = keras.ops.convert_to_tensor(x)
    grads = [
        value_and_grad(lambda t, layer=layer: keras.ops.sum(layer(t, training=True) ** 3), xt)[1]
        for layer in (ours, theirs)
    ]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-3)


def test_batchnorm_under_bfloat16_returns_bfloat16_close_to_keras():
    x = np.random.default_rng(2).normal(size=(2, 6, 5, 3)).astype("float32")
    ours, theirs = _bn_pair(dtype="mixed_bfloat16")
    outs = [layer(x, training=True) for layer in (ours, theirs)]
    assert [keras.backend.standardize_dtype(o.dtype) for o in outs] == ["bfloat16"] * 2
    a, b = (keras.ops.convert_to_numpy(keras.ops.cast(o, "float32")) for o in outs)
    np.testing.assert_allclose(a, b, atol=0.05)  # bfloat16 keeps 8 bits of mantissa


def test_unet_checkpoints_with_keras_batchnorm_still_load(tmp_path):
    """A model saved before segdoctor had its own BatchNormalization (Keras' layer) loads and
    predicts the same; a new one loads as segdoctor's layer."""
    model = create_model("unet", input_shape=(None, None, 1), **TINY)
    assert all(type(v) is BatchNormalization for v in model.layers if "norm" in v.name)
    old = keras.models.clone_model(
        model,
        clone_function=lambda layer: (
            keras.layers.BatchNormalization.from_config(layer.get_config())
            if isinstance(layer, BatchNormalization)
            else layer.__class__.from_config(layer.get_config())
        ),
    )
    old.set_weights(model.get_weights())
    old.save(tmp_path / "old.keras")
    loaded = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True)
    assert not any(isinstance(v, BatchNormalization) for v in loaded.layers)
    x = np.random.default_rng(3).normal(size=(1, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )
    model.save(tmp_path / "new.keras")
    again = keras.saving.load_model(tmp_path / "new.keras", safe_mode=True)
    assert any(type(v) is BatchNormalization for v in again.layers)
