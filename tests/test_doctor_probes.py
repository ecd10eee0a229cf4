"""Probes on tiny models (32x32): each fires on a realistic fault and is silent on a healthy model."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._synthetic import disks

from segdoctor.doctor import probes
from segdoctor.doctor._grad import model_value_and_grads, value_and_grad


@pytest.fixture(scope="module")
def batch():
    return disks(8)


def net(
    act="relu",
    depth=2,
    init="he_normal",
    bias=0.0,
    lr=1e-3,
    out_bias=0.0,
    out="sigmoid",
    loss="binary_crossentropy",
):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    h = inputs
    for _ in range(depth):
        h = keras.layers.Conv2D(
            8,
            3,
            padding="same",
            activation=act,
            kernel_initializer=init,
            bias_initializer=keras.initializers.Constant(bias),
        )(h)
    outputs = keras.layers.Conv2D(
        1, 1, activation=out, bias_initializer=keras.initializers.Constant(out_bias)
    )(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    return model


def ids(found):
    return {f.id for f in found}


def test_gradient_helpers_match_analytic():
    v, g = value_and_grad(lambda t: ops.sum(t * t), np.array([1.0, -2.0], "float32"))
    assert v == pytest.approx(5.0) and g.tolist() == pytest.approx([2.0, -4.0])
    inputs = keras.Input((3,))
    model = keras.Model(
        inputs, keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(inputs)
    )
    x = np.array([[1.0, 2.0, 3.0]], "float32")
    loss, (gk,) = model_value_and_grads(
        model, lambda y, p: ops.sum(p), x, np.zeros((1, 1), "float32")
    )
    assert loss == pytest.approx(6.0) and gk.ravel().tolist() == pytest.approx([1.0, 2.0, 3.0])


def test_healthy_model_is_silent(batch):
    x, y = batch
    assert probes.run_probes(net(), x, y) == []


def test_init_loss_anomaly(batch):
    x, y = batch
    assert ids(probes.probe_init_loss(net(out_bias=12.0), x, y)) == {"init-loss-anomaly"}


def test_lr_too_high_and_too_low(batch):
    x, y = batch
    logits = keras.losses.BinaryCrossentropy(from_logits=True)  # unbounded: divergence shows
    assert ids(probes.probe_lr(net(lr=10.0, out=None, loss=logits), x, y)) == {"lr-too-high"}
    assert ids(probes.probe_lr(net(lr=1e-7), x, y)) == {"lr-too-low"}


def test_dead_relu(batch):
    x, _ = batch
    assert ids(probes.probe_dead_relu(net(bias=-5.0), x)) == {"dead-relu"}


def test_vanishing_gradients(batch):
    x, y = batch
    deep_sigmoid = net(act="sigmoid", depth=12, init="glorot_uniform")
    assert ids(probes.probe_gradients(deep_sigmoid, x, y)) == {"vanishing-gradients"}


def test_nan_loss(batch):
    x, _ = batch

    def dice_no_smooth(y_true, y_pred):  # 0/0 on an empty mask predicted empty
        i = ops.sum(y_true * y_pred, axis=(1, 2, 3))
        return 1 - 2 * i / (ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3)))

    model = net(out="relu", out_bias=-5.0, loss=dice_no_smooth)
    found, losses = probes.probe_overfit(model, x, np.zeros_like(x))
    assert ids(found) == {"nan-loss"} and not np.isfinite(losses[-1])
