"""Dice-family losses: numpy reference, properties, empty masks, errors, mixed precision, fit.

Runs on whichever backend KERAS_BACKEND names (torch, jax, tensorflow), one process each.
"""

from __future__ import annotations

import math
import pickle
import zipfile

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import segdoctor.losses as losses_package
from segdoctor.errors import ConfigError, DataError
from segdoctor.losses import (
    DiceCELoss,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    LogCoshDiceLoss,
    TverskyLoss,
    check_probabilities,
    confusion_terms,
    dice_ce_loss,
    dice_coef,
    dice_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    log_cosh_dice_loss,
    soft_confusion,
    soft_dice_loss,
    statistics,
    tversky_loss,
    weighted_dice_loss,
)
from segdoctor.metrics import DiceScore, IoUScore
from tests import reference as ref

BACKEND = keras.backend.backend()
if BACKEND == "torch":  # the backend's own module, for gradients and compilation
    import torch
elif BACKEND == "jax":
    import jax
else:
    import tensorflow as tf
# JAX compiles every new primitive shape in eager mode, so its runs draw fewer examples.
EXAMPLES = 8 if BACKEND == "jax" else 25
PROPERTY = settings(deadline=None, max_examples=EXAMPLES)

# kind -> (class, pure function, extra keywords that the kind takes)
LOSSES = {
    "dice": (DiceLoss, soft_dice_loss, {}),
    "tversky": (TverskyLoss, tversky_loss, {"alpha": 0.3, "beta": 0.7}),
    "focal_tversky": (
        FocalTverskyLoss,
        focal_tversky_loss,
        {"alpha": 0.4, "beta": 0.6, "gamma": 0.75},
    ),
    "gdl": (GeneralizedDiceLoss, generalized_dice_loss, {"weight_type": "square"}),
    "log_cosh_dice": (LogCoshDiceLoss, log_cosh_dice_loss, {}),
    "dice_ce": (DiceCELoss, dice_ce_loss, {"lambda_dice": 1.0, "lambda_ce": 0.5}),
}
KINDS = list(LOSSES)
MODES = ["binary", "multiclass", "multilabel"]
IGNORE = 255


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def make_case(
    seed: int,
    mode: str,
    *,
    batch: int = 2,
    size: int = 6,
    channels: int = 3,
    ignore: bool = False,
    logits: bool = False,
    sparse_rank3: bool = False,
):
    """Random labels and predictions of a fixed shape for ``mode``."""
    rng = np.random.default_rng(seed)
    c = 1 if mode == "binary" else channels
    if mode == "multiclass":
        labels = rng.integers(0, c, (batch, size, size, 1))
    else:
        labels = rng.integers(0, 2, (batch, size, size, c))
    if ignore:
        labels = np.where(rng.random(labels.shape) < 0.2, IGNORE, labels)
    if sparse_rank3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    raw = rng.normal(0, 2, (batch, size, size, c)).astype("float32")
    if logits:
        return labels.astype("int32"), raw
    probs = softmax(raw) if mode == "multiclass" else sigmoid(raw)
    return labels.astype("int32"), probs.astype("float32")


def value_and_grad(fn, x):
    """Value of a scalar ``fn(x)`` and its gradient with respect to ``x``, on this backend."""
    x = np.asarray(x, dtype="float32")
    if BACKEND == "torch":
        xt = torch.tensor(x, requires_grad=True)
        out = fn(xt)
        out.backward()
        return float(out.detach()), xt.grad.numpy()
    if BACKEND == "jax":
        # One compiled program per call: much cheaper than op-by-op tracing of the backward pass.
        value, grad = jax.jit(jax.value_and_grad(fn))(jax.numpy.asarray(x))
        return float(value), np.asarray(grad)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = fn(xt)
    return float(out), tape.gradient(out, xt).numpy()


# ------------------------------------------------------------------------ reference agreement


@PROPERTY
@given(
    kind=st.sampled_from(KINDS),
    mode=st.sampled_from(MODES),
    per_image=st.booleans(),
    from_logits=st.booleans(),
    ignore=st.booleans(),
    include_background=st.booleans(),
    weighted=st.booleans(),
    squared=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_losses_match_numpy_reference(
    kind, mode, per_image, from_logits, ignore, include_background, weighted, squared, seed
):
    y_true, y_pred = make_case(seed, mode, ignore=ignore, logits=from_logits)
    channels = y_pred.shape[-1]
    options = {
        "mode": mode,
        "from_logits": from_logits,
        "per_image": per_image,
        "include_background": include_background and mode == "multiclass",
        "class_weights": [0.5, 1.0, 2.0][:channels] if weighted else None,
        "ignore_index": IGNORE if ignore else None,
        "squared_denominator": squared and kind in ("dice", "log_cosh_dice", "dice_ce"),
        "smooth": 0.5,
    }
    if kind == "gdl" and options["squared_denominator"]:
        options["squared_denominator"] = False
    _, fn, extra = LOSSES[kind]
    got = to_numpy(fn(y_true, y_pred, **options, **extra))
    want = ref.loss(kind, y_true, y_pred, **options, **extra)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_loss_class_equals_mean_of_pure_function(kind):
    cls, fn, extra = LOSSES[kind]
    y_true, y_pred = make_case(1, "multiclass", sparse_rank3=True)
    for per_image in (True, False):
        options = {"mode": "multiclass", "per_image": per_image, **extra}
        expected = np.mean(to_numpy(fn(y_true, y_pred, **options)))
        got = float(cls(**options)(y_true, y_pred))
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_soft_confusion_counts_by_hand():
    y_true = np.array([[[1, 1, 0, 0]]])  # (1, 1, 4)
    y_pred = np.array([[[[0.9], [0.2], [0.6], [0.0]]]], "float32")  # (1, 1, 4, 1)
    tp, fp, fn = (to_numpy(x) for x in soft_confusion(y_true, y_pred))
    assert tp.shape == (1, 1)
    assert tp[0, 0] == pytest.approx(1.1)
    assert fp[0, 0] == pytest.approx(0.6)
    assert fn[0, 0] == pytest.approx(0.9)


@pytest.mark.parametrize("channels", [1, 3])
def test_confusion_terms_takes_float32_numpy_arrays(channels):
    """numpy float32 inputs are made backend tensors (torch's closed-form sums need them)."""
    rng = np.random.default_rng(4)
    probs = rng.random((2, 4, 4, channels)).astype("float32")
    target = (rng.random((2, 4, 4, channels)) > 0.5).astype("float32")
    tp, fp, fn = (to_numpy(x) for x in confusion_terms(probs, target))
    np.testing.assert_allclose(tp, (probs * target).sum((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(fp, (probs * (1 - target)).sum((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fn, ((1 - probs) * target).sum((1, 2)), rtol=1e-5, atol=1e-6)


def test_sparse_one_hot_and_rank3_labels_agree():
    y_true, y_pred = make_case(2, "multiclass")
    one_hot = np.eye(3, dtype="float32")[y_true[..., 0]]
    values = [
        float(DiceCELoss(mode="multiclass")(labels, y_pred))
        for labels in (y_true, y_true[..., 0], one_hot)
    ]
    assert values[0] == pytest.approx(values[1], abs=1e-6)
    assert values[0] == pytest.approx(values[2], abs=1e-6)


# ------------------------------------------------------------------------ properties


@PROPERTY
@given(kind=st.sampled_from(KINDS), mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_loss_range(kind, mode, seed):
    y_true, y_pred = make_case(seed, mode)
    _, fn, extra = LOSSES[kind]
    value = to_numpy(fn(y_true, y_pred, mode=mode, per_image=True, **extra))
    assert np.all(np.isfinite(value))
    assert np.all(value >= -1e-6)
    if kind == "log_cosh_dice":
        assert np.all(value <= math.log(math.cosh(1.0)) + 1e-6)
    elif kind != "dice_ce":
        assert np.all(value <= 1 + 1e-6)


@PROPERTY
@given(
    kind=st.sampled_from(KINDS),
    mode=st.sampled_from(MODES),
    per_image=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_perfect_prediction_scores_zero_loss(kind, mode, per_image, seed):
    y_true, _ = make_case(seed, mode)
    if mode == "multiclass":
        y_pred = np.eye(3, dtype="float32")[y_true[..., 0]]
    else:
        y_pred = y_true.astype("float32")
    _, fn, extra = LOSSES[kind]
    value = to_numpy(fn(y_true, y_pred, mode=mode, per_image=per_image, **extra))
    np.testing.assert_allclose(value, 0.0, atol=1e-5)


@PROPERTY
@given(
    kind=st.sampled_from(KINDS),
    mode=st.sampled_from(MODES),
    per_image=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_invariant_to_pixel_permutation(kind, mode, per_image, seed):
    y_true, y_pred = make_case(seed, mode, ignore=True)
    b, h, w, _ = y_pred.shape
    perm = np.random.default_rng(seed + 1).permutation(h * w)

    def shuffle(x):
        return x.reshape(b, h * w, -1)[:, perm].reshape(x.shape)

    _, fn, extra = LOSSES[kind]
    options = {"mode": mode, "per_image": per_image, "ignore_index": IGNORE, **extra}
    before = to_numpy(fn(y_true, y_pred, **options))
    after = to_numpy(fn(shuffle(y_true), shuffle(y_pred), **options))
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-6)


@PROPERTY
@given(
    mode=st.sampled_from(MODES),
    per_image=st.booleans(),
    smooth=st.sampled_from([1e-5, 0.5, 1.0, 10.0]),
    seed=st.integers(0, 2**16),
)
def test_tversky_with_equal_weights_is_dice(mode, per_image, smooth, seed):
    y_true, y_pred = make_case(seed, mode)
    options = {"mode": mode, "per_image": per_image, "smooth": smooth}
    dice = to_numpy(soft_dice_loss(y_true, y_pred, **options))
    tversky = to_numpy(tversky_loss(y_true, y_pred, alpha=0.5, beta=0.5, **options))
    np.testing.assert_allclose(tversky, dice, rtol=1e-6, atol=1e-7)


@PROPERTY
@given(kind=st.sampled_from(KINDS), mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_per_image_and_pooled_agree_for_one_image(kind, mode, seed):
    y_true, y_pred = make_case(seed, mode, batch=1)
    _, fn, extra = LOSSES[kind]
    per_image = to_numpy(fn(y_true, y_pred, mode=mode, per_image=True, **extra))
    pooled = to_numpy(fn(y_true, y_pred, mode=mode, per_image=False, **extra))
    assert per_image.shape == (1,)
    assert pooled.shape == ()
    assert per_image[0] == pytest.approx(float(pooled), rel=1e-6, abs=1e-7)


@PROPERTY
@given(
    kind=st.sampled_from(KINDS),
    mode=st.sampled_from(MODES),
    per_image=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_ignored_pixels_change_nothing(kind, mode, per_image, seed):
    y_true, y_pred = make_case(seed, mode, ignore=True)
    rng = np.random.default_rng(seed + 7)
    ignored = y_true == IGNORE  # (B, H, W, 1) or (B, H, W, C)
    if mode == "multiclass":
        ignored = np.broadcast_to(ignored, y_pred.shape)
        other = softmax(rng.normal(0, 5, y_pred.shape))
    else:
        other = rng.random(y_pred.shape)
    changed = np.where(ignored, other, y_pred).astype("float32")
    assert not np.allclose(changed, y_pred)
    _, fn, extra = LOSSES[kind]
    options = {"mode": mode, "per_image": per_image, "ignore_index": IGNORE, **extra}
    before = to_numpy(fn(y_true, y_pred, **options))
    after = to_numpy(fn(y_true, changed, **options))
    np.testing.assert_allclose(before, after, rtol=1e-6, atol=1e-7)


EDGE_TRUTHS = ["random", "empty", "full", "perfect", "saturated"]


@settings(deadline=None, max_examples=10 if BACKEND == "jax" else 30)
@given(
    kind=st.sampled_from(KINDS),
    mode=st.sampled_from(MODES),
    truth=st.sampled_from(EDGE_TRUTHS),
    per_image=st.booleans(),
    from_logits=st.booleans(),
)
def test_gradients_finite_everywhere(kind, mode, truth, per_image, from_logits):
    y_true, raw = make_case(3, mode, logits=True)
    channels = raw.shape[-1]
    if truth == "empty":
        y_true = np.zeros_like(y_true)
    elif truth == "full":
        y_true = np.full_like(y_true, channels - 1 if mode == "multiclass" else 1)
    if truth == "perfect":  # predictions equal to the labels (saturated logits)
        target = np.eye(channels)[y_true[..., 0]] if mode == "multiclass" else y_true
        raw = np.where(target > 0, 30.0, -30.0).astype("float32")
    elif truth == "saturated":
        raw = np.sign(raw) * 60.0
    x = raw if from_logits else (softmax(raw) if mode == "multiclass" else sigmoid(raw))
    _, fn, extra = LOSSES[kind]
    options = {"mode": mode, "per_image": per_image, "from_logits": from_logits, **extra}
    value, grad = value_and_grad(
        lambda z: keras.ops.mean(fn(y_true, z, **options)), x.astype("float32")
    )
    assert math.isfinite(value)
    assert np.all(np.isfinite(grad))


def compiled(fn):
    """``fn`` compiled the way this backend compiles a training step (torch: eager)."""
    if BACKEND == "jax":
        return jax.jit(fn)
    if BACKEND == "tensorflow":
        return tf.function(fn)
    return fn


@pytest.mark.parametrize("kind", ["dice", "dice_ce"])
def test_compiled_with_constant_labels(kind):
    """Value checks must stand aside while a backend traces, even for concrete labels."""
    cls, _, extra = LOSSES[kind]
    y_true, y_pred = make_case(15, "multiclass")
    loss = cls(mode="multiclass", validate="always", **extra)
    labels = keras.ops.convert_to_tensor(y_true)
    value = compiled(lambda p: loss(labels, p))(keras.ops.convert_to_tensor(y_pred))
    assert float(value) == pytest.approx(float(cls(mode="multiclass", **extra)(y_true, y_pred)))


@pytest.mark.parametrize("shape", [(3, 5, 7, 2), (2, 16, 16, 4), (2, 32, 32, 1), (1, 4, 6, 8, 3)])
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("pooled", [False, True])
def test_class_sums_are_exact_for_every_layout(shape, squared, pooled):
    """The regrouped reduction gives the per-image (or pooled) sums of every class."""
    rng = np.random.default_rng(0)
    p, t = (rng.random(shape).astype("float32") for _ in range(2))
    axes = tuple(range(0 if pooled else 1, len(shape) - 1))
    power = 2 if squared else 1
    want = [(p * t).sum(axes), (p**power).sum(axes), (t**power).sum(axes)]
    fn = compiled(lambda p, t: statistics.masses(p, t, squared, pooled))
    got = fn(keras.ops.convert_to_tensor(p), keras.ops.convert_to_tensor(t))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(to_numpy(g).reshape(w.shape), w, rtol=1e-5)


@pytest.mark.skipif(BACKEND != "torch", reason="the closed-form backward is torch's eager path")
@pytest.mark.parametrize("shape", [(3, 5, 7, 2), (2, 32, 32, 1), (1, 4, 6, 8, 3)])
@pytest.mark.parametrize("options", [{}, {"per_image": True}, {"squared_denominator": True}])
def test_closed_form_backward_matches_automatic_differentiation(monkeypatch, shape, options):
    rng = np.random.default_rng(1)
    mode = "binary" if shape[-1] == 1 else "multilabel"
    y_true = (rng.random(shape) > 0.6).astype("float32")
    y_true[0] = 0.0  # an empty image
    y_pred = rng.random(shape).astype("float32")
    grads = []
    for closed_form in (True, False):
        monkeypatch.setattr(statistics, "CUSTOM_GRADIENT", closed_form)
        p = torch.tensor(y_pred, requires_grad=True)
        soft_dice_loss(y_true, p, mode=mode, **options).sum().backward()
        grads.append(p.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-9)
    assert np.abs(grads[1]).max() > 0


@pytest.mark.skipif(BACKEND != "tensorflow", reason="unknown spatial sizes are a tf.function case")
def test_loss_traces_with_unknown_spatial_size():
    y_true, y_pred = make_case(16, "multiclass")
    loss = DiceCELoss(mode="multiclass")
    spec = [tf.TensorSpec((None, None, None, 1), "int32"), tf.TensorSpec((None, None, None, 3))]
    value = tf.function(loss.call, input_signature=spec)(y_true.astype("int32"), y_pred)
    want = to_numpy(dice_ce_loss(y_true, y_pred, mode="multiclass"))
    np.testing.assert_allclose(to_numpy(value), want, rtol=1e-5)


def test_out_of_range_sparse_labels_match_no_class_when_unchecked():
    y_true, y_pred = make_case(17, "multiclass")
    y_true = y_true.copy()
    y_true[0, 0, 0, 0] = 7  # not a class of the 3 outputs
    dense = np.eye(3, dtype="float32")[np.clip(y_true[..., 0], 0, 2)]
    dense[0, 0, 0] = 0.0  # the same pixel with a target of no class
    options = {"mode": "multiclass", "validate": False}
    got = to_numpy(compiled(lambda p: soft_dice_loss(y_true, p, **options))(y_pred))
    np.testing.assert_allclose(got, to_numpy(soft_dice_loss(dense, y_pred, **options)), rtol=1e-6)


# ------------------------------------------------------------------------ empty masks


@pytest.mark.parametrize(
    "kind", ["dice", "tversky", "focal_tversky", "gdl", "log_cosh_dice", "dice_ce"]
)
@pytest.mark.parametrize("per_image", [True, False])
def test_false_positives_on_empty_image_are_penalised_with_a_gradient(kind, per_image):
    y_true = np.zeros((1, 8, 8, 1), "int32")
    _, fn, extra = LOSSES[kind]
    options = {"mode": "binary", "per_image": per_image, **extra}
    empty_value = float(keras.ops.mean(fn(y_true, np.zeros((1, 8, 8, 1), "float32"), **options)))
    assert empty_value == pytest.approx(0.0, abs=1e-5)  # empty truth, empty prediction: perfect
    value, grad = value_and_grad(
        lambda z: keras.ops.mean(fn(y_true, z, **options)), np.full((1, 8, 8, 1), 0.05, "float32")
    )
    assert value > 0.1  # 3.2 pixels of predicted mass against smooth=1
    assert np.all(np.isfinite(grad))
    assert np.all(grad > 0)  # every false-positive pixel is pushed down


def test_empty_mask_semantics_follow_smooth():
    y_true = np.zeros((1, 4, 4, 1), "int32")
    y_pred = np.full((1, 4, 4, 1), 0.25, "float32")  # predicted mass fp = 4
    for smooth in (1e-5, 1.0, 4.0):
        value = float(DiceLoss(smooth=smooth)(y_true, y_pred))
        assert value == pytest.approx(4.0 / (4.0 + smooth), rel=1e-5)


def test_missed_small_object_scores_smooth_over_size():
    y_true = np.zeros((1, 8, 8, 1), "int32")
    y_true[0, :2, :2] = 1  # a 4-pixel object
    y_pred = np.zeros((1, 8, 8, 1), "float32")
    for smooth in (1.0, 100.0):
        assert float(DiceLoss(smooth=smooth)(y_true, y_pred)) == pytest.approx(
            1 - smooth / (4 + smooth), rel=1e-5
        )


def test_generalized_dice_absent_class_has_no_inf_and_penalises_false_positives():
    y_true = np.zeros((2, 6, 6), "int32")
    y_true[:, :3] = 1  # classes 0 and 1 present, class 2 absent everywhere
    clean = np.eye(3, dtype="float32")[y_true]
    noisy = clean.copy()
    noisy[:, 4:, :, :] = [0.0, 0.2, 0.8]  # predicted mass on the absent class 2
    for weight_type in ("square", "simple", "uniform"):
        loss = GeneralizedDiceLoss(mode="multiclass", weight_type=weight_type)
        assert float(loss(y_true, clean)) == pytest.approx(0.0, abs=1e-6)
        value, grad = value_and_grad(lambda z, f=loss: f(y_true, z), noisy)
        assert math.isfinite(value) and value > 0.01
        assert np.all(np.isfinite(grad))


# ------------------------------------------------------------------------ semantics


def test_tversky_alpha_weights_false_positives_and_beta_false_negatives():
    y_true = np.zeros((1, 4, 4, 1), "float32")
    y_true[0, :2] = 1  # 8 foreground pixels
    with_fp = y_true.copy()
    with_fp[0, 2] = 1  # 4 false positives
    with_fn = y_true.copy()
    with_fn[0, 1] = 0  # 4 false negatives
    fp_heavy = TverskyLoss(alpha=0.7, beta=0.3)
    assert float(fp_heavy(y_true, with_fp)) > float(fp_heavy(y_true, with_fn))
    fn_heavy = TverskyLoss(alpha=0.3, beta=0.7)
    assert float(fn_heavy(y_true, with_fp)) < float(fn_heavy(y_true, with_fn))


def test_keras_tversky_alpha_weights_false_negatives_as_documented():
    """Guards the claim in docs/losses-and-metrics.md about keras.losses.Tversky."""
    y_true = np.zeros((1, 4, 4, 1), "float32")
    y_true[0, :2] = 1
    with_fp, with_fn = y_true.copy(), y_true.copy()
    with_fp[0, 2] = 1
    with_fn[0, 1] = 0
    keras_loss = keras.losses.Tversky(alpha=0.7, beta=0.3)
    assert float(keras_loss(y_true, with_fn)) > float(keras_loss(y_true, with_fp))


def test_include_background_and_class_weights():
    y_true, y_pred = make_case(4, "multiclass")
    per_class = [
        float(
            soft_dice_loss(
                y_true, y_pred, mode="multiclass", include_background=True, class_weights=w,
                per_image=False,
            )
        )
        for w in ([1, 0, 0], [0, 1, 0], [0, 0, 1])
    ]  # fmt: skip
    pooled = {"mode": "multiclass", "per_image": False}
    default = float(soft_dice_loss(y_true, y_pred, **pooled))
    assert default == pytest.approx((per_class[1] + per_class[2]) / 2, rel=1e-6)
    weighted = float(soft_dice_loss(y_true, y_pred, **pooled, class_weights=[9, 1, 3]))
    assert weighted == pytest.approx((per_class[1] + 3 * per_class[2]) / 4, rel=1e-6)
    scaled = float(soft_dice_loss(y_true, y_pred, **pooled, class_weights=[9, 10, 30]))
    assert scaled == pytest.approx(weighted, rel=1e-6)  # weights are normalized


def test_squared_denominator_is_vnet_form():
    y_true = np.array([[[[1.0], [0.0]]]], "float32")
    y_pred = np.array([[[[0.5], [0.5]]]], "float32")
    got = float(DiceLoss(squared_denominator=True, smooth=1e-5)(y_true, y_pred))
    assert got == pytest.approx(1 - 1.0 / (0.5 + 1.0), rel=1e-4)  # 2*0.5 / (0.25+0.25 + 1)


def test_dice_ce_is_weighted_sum_of_its_terms():
    y_true, y_pred = make_case(5, "multiclass")
    dice = float(DiceLoss(mode="multiclass")(y_true, y_pred))
    ce = float(DiceCELoss(mode="multiclass", lambda_dice=0.0)(y_true, y_pred))
    both = float(DiceCELoss(mode="multiclass", lambda_dice=2.0, lambda_ce=0.5)(y_true, y_pred))
    assert both == pytest.approx(2 * dice + 0.5 * ce, rel=1e-5)
    want_ce = -np.mean(np.log(np.take_along_axis(y_pred, y_true, axis=-1)))
    assert ce == pytest.approx(want_ce, rel=1e-5)


def test_logits_and_probabilities_agree():
    for mode in MODES:
        y_true, logits = make_case(6, mode, logits=True)
        probs = softmax(logits) if mode == "multiclass" else sigmoid(logits)
        for kind in KINDS:
            _, fn, extra = LOSSES[kind]
            a = float(keras.ops.mean(fn(y_true, logits, mode=mode, from_logits=True, **extra)))
            b = float(keras.ops.mean(fn(y_true, probs.astype("float32"), mode=mode, **extra)))
            assert a == pytest.approx(b, rel=1e-4, abs=1e-5), (mode, kind)


# ------------------------------------------------------------------------ errors


def _raises(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_clear_errors_for_wrong_configuration():
    y_bin = np.zeros((1, 4, 4, 1), "int32")
    p3 = np.full((1, 4, 4, 3), 1 / 3, "float32")
    p1 = np.full((1, 4, 4, 1), 0.5, "float32")
    _raises(ConfigError, "one output channel", DiceLoss(mode="binary"), y_bin, p3)
    _raises(ConfigError, "at least 2", DiceLoss(mode="multiclass"), y_bin, p1)
    _raises(ConfigError, 'Did you mean "multiclass"', DiceLoss, mode="multiclas")
    _raises(ConfigError, "smooth must be > 0", DiceLoss, smooth=0)
    _raises(ConfigError, "smooth must be a finite", DiceLoss, smooth=-1)
    _raises(ConfigError, "include_background=True", DiceLoss, include_background=True)
    _raises(ConfigError, "must be True or False", DiceLoss, from_logits="yes")
    _raises(
        ConfigError,
        "2 entries for 3 classes",
        DiceLoss(mode="multiclass", class_weights=[1, 2]),
        y_bin,
        p3,
    )
    _raises(
        ConfigError, "sum to zero", DiceLoss(mode="multiclass", class_weights=[1, 0, 0]), y_bin, p3
    )
    _raises(ConfigError, "num_classes=4", DiceLoss(mode="multiclass", num_classes=4), y_bin, p3)
    _raises(ConfigError, "alpha and beta", TverskyLoss, alpha=0, beta=0)
    _raises(ConfigError, "squared_denominator", TverskyLoss, squared_denominator=True)
    _raises(ConfigError, "weight_type", GeneralizedDiceLoss, weight_type="squares")
    _raises(ConfigError, "lambda_dice and lambda_ce", DiceCELoss, lambda_dice=0, lambda_ce=0)
    one_hot = np.eye(3, dtype="float32")[np.zeros((1, 4, 4), "int32")]
    _raises(
        ConfigError,
        "ignore_index needs sparse",
        DiceLoss(mode="multiclass", ignore_index=255),
        one_hot,
        p3,
    )


def test_clear_errors_for_wrong_data():
    p3 = np.full((1, 4, 4, 3), 1 / 3, "float32")
    p1 = np.full((1, 4, 4, 1), 0.5, "float32")
    out_of_range = np.full((1, 4, 4), 3, "int32")
    _raises(DataError, r"\[0, 3\)", DiceCELoss(mode="multiclass"), out_of_range, p3)
    _raises(DataError, "divided by 255", DiceLoss(), np.full((1, 4, 4, 1), 255, "int32"), p1)
    _raises(DataError, "whole numbers", DiceLoss(mode="multiclass"), np.full((1, 4, 4), 0.5), p3)
    _raises(DataError, "incompatible shapes", DiceLoss(), np.zeros((1, 5, 4, 1)), p1)
    _raises(
        DataError, "incompatible shapes", DiceLoss(mode="multilabel"), np.zeros((1, 4, 4, 2)), p3
    )
    _raises(ConfigError, "look like logits", DiceLoss(), np.zeros((1, 4, 4, 1)), p1 * 8 - 2)
    _raises(
        ConfigError, "softmax activation", check_probabilities, np.array([-1.0, 2.0]), "multiclass"
    )
    check_probabilities(np.array([0.0, 1.0]), "binary")  # probabilities pass
    # An ignore label inside the data is fine once declared.
    labels = np.zeros((1, 4, 4), "int32")
    labels[0, 0, 0] = 255
    assert math.isfinite(float(DiceCELoss(mode="multiclass", ignore_index=255)(labels, p3)))


def test_validate_policy_first_always_never():
    good = (np.zeros((1, 4, 4, 1), "int32"), np.full((1, 4, 4, 1), 0.5, "float32"))
    bad = (np.full((1, 4, 4, 1), 255, "int32"), good[1])
    first = DiceLoss()
    with pytest.raises(DataError):  # a failed check does not count as validated
        first(*bad)
    first(*good)
    assert math.isfinite(float(first(*bad)))  # checked once already: no per-step cost
    always = DiceLoss(validate="always")
    always(*good)
    with pytest.raises(DataError):
        always(*bad)
    assert math.isfinite(float(DiceLoss(validate="never")(*bad)))
    per_image = keras.ops.convert_to_numpy(soft_dice_loss(*bad, validate=False))  # (B,)
    assert per_image.shape == (1,) and np.isfinite(per_image).all()
    with pytest.raises(DataError):
        soft_dice_loss(*bad)  # the pure functions check by default
    with pytest.raises(ConfigError, match="validate"):
        DiceLoss(validate="sometimes")


# ------------------------------------------------------------------------ serialization


CONFIGS = {
    "dice": {
        "mode": "multiclass",
        "per_image": True,
        "class_weights": [0.0, 1.0, 2.0],
        "ignore_index": 255,
        "smooth": 0.5,
        "squared_denominator": True,
        "num_classes": 3,
    },
    "tversky": {"mode": "multilabel", "alpha": 0.6, "beta": 0.4, "from_logits": True},
    "focal_tversky": {"mode": "multiclass", "gamma": 1.5, "include_background": True},
    "gdl": {"mode": "multiclass", "weight_type": "simple", "per_image": True},
    "log_cosh_dice": {"mode": "binary", "smooth": 2.0, "from_logits": True, "validate": "never"},
    "dice_ce": {
        "mode": "multiclass",
        "lambda_dice": 0.7,
        "lambda_ce": 1.3,
        "ignore_index": 255,
        "validate": "always",
    },
}


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip(kind):
    cls = LOSSES[kind][0]
    loss = cls(**CONFIGS[kind], name=f"my_{kind}")
    config = loss.get_config()
    for key, value in CONFIGS[kind].items():
        assert config[key] == value
    rebuilt = cls.from_config(config)
    assert rebuilt.get_config() == config
    registered = keras.saving.get_registered_name(cls)
    assert registered == f"segdoctor>{cls.__name__}"
    restored = keras.saving.get_registered_object(registered).from_config(config)
    assert type(restored) is cls
    assert restored.get_config() == config
    mode = CONFIGS[kind]["mode"]
    y_true, y_pred = make_case(8, mode, logits=CONFIGS[kind].get("from_logits", False))
    assert float(restored(y_true, y_pred)) == pytest.approx(float(loss(y_true, y_pred)), rel=1e-6)


def test_options_are_readable_attributes():
    loss = DiceCELoss(mode="multiclass", from_logits=True, ignore_index=3)
    assert (loss.mode, loss.from_logits, loss.ignore_index) == ("multiclass", True, 3)


def test_saved_model_restores_loss_and_metric(tmp_path):
    inputs = keras.Input((8, 8, 2))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    loss = DiceCELoss(mode="multiclass", ignore_index=255, per_image=True)
    model.compile("adam", loss=loss, metrics=[DiceScore(mode="multiclass", num_classes=3)])
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, DiceCELoss)
    assert restored.loss.get_config() == loss.get_config()


def test_a_model_saved_when_losses_and_metrics_were_single_modules_still_loads(tmp_path):
    """Files saved before the split name ``segdoctor.losses`` / ``segdoctor.metrics`` as module."""
    inputs = keras.Input((8, 8, 2))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    loss = TverskyLoss(mode="multiclass", alpha=0.4, beta=0.6, ignore_index=255)
    model.compile("adam", loss=loss, metrics=[IoUScore(mode="multiclass", num_classes=3)])
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = files["config.json"].decode()
    old_paths = {
        '"segdoctor.losses.classes"': '"segdoctor.losses"',
        '"segdoctor.metrics.keras_metrics"': '"segdoctor.metrics"',
    }
    for new, old in old_paths.items():
        assert new in config  # what this file would have said before the split
        config = config.replace(new, old)
    assert '"registered_name": "segdoctor>TverskyLoss"' in config
    files["config.json"] = config.encode()
    old_file = tmp_path / "old.keras"
    with zipfile.ZipFile(old_file, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    restored = keras.models.load_model(old_file)
    assert type(restored.loss) is TverskyLoss
    assert restored.loss.get_config() == loss.get_config()
    x, y = np.zeros((2, 8, 8, 2), "float32"), np.zeros((2, 8, 8, 1), "int32")
    assert "iou" in restored.evaluate(x, y, verbose=0, return_dict=True)
    compiled_metrics = restored.metrics[-1].metrics  # built by evaluate
    assert [type(m) for m in compiled_metrics] == [IoUScore]


def test_pickled_losses_resolve_from_the_package_path():
    """A pickle names ``segdoctor.losses.<Class>`` (old files) or the defining module (new)."""
    for cls, _, extra in LOSSES.values():
        assert getattr(losses_package, cls.__name__) is cls
        loss = cls(mode="binary", **extra)
        restored = pickle.loads(pickle.dumps(loss))
        assert type(restored) is cls
        assert restored.get_config() == loss.get_config()


# ------------------------------------------------------------------------ classic recipe


def test_classic_dice_coef_and_loss_match_keras2_formula():
    rng = np.random.default_rng(9)
    y_true = rng.integers(0, 2, (2, 5, 5, 1)).astype("float32")
    y_pred = rng.random((2, 5, 5, 1)).astype("float32")
    for smooth in (1.0, 1e-5):
        want = ref.dice_coef(y_true, y_pred, smooth)
        assert float(dice_coef(y_true, y_pred, smooth=smooth)) == pytest.approx(want, rel=1e-6)
        assert float(dice_loss(y_true, y_pred, smooth=smooth)) == pytest.approx(1 - want, rel=1e-5)
    assert float(dice_coef(y_true[..., 0], y_pred)) == pytest.approx(ref.dice_coef(y_true, y_pred))
    with pytest.raises(DataError, match="same number of values"):
        dice_coef(np.zeros((2, 5, 5)), np.zeros((2, 5, 5, 3)))


def test_weighted_dice_loss_is_per_class_and_uses_its_smooth():
    y_true, y_pred = make_case(10, "multiclass")
    weights = [0.0, 1.0, 3.0]
    t = np.eye(3)[y_true[..., 0]]
    for smooth in (1.0, 0.1):
        dices = [
            (2 * np.sum(t[..., c] * y_pred[..., c]) + smooth)
            / (np.sum(t[..., c]) + np.sum(y_pred[..., c]) + smooth)
            for c in range(3)
        ]
        want = 1 - np.dot(np.array(weights) / 4.0, dices)
        loss_fn = weighted_dice_loss(weights, smooth=smooth)
        assert float(loss_fn(y_true, y_pred)) == pytest.approx(want, rel=1e-5)
        assert float(loss_fn(t.astype("float32"), y_pred)) == pytest.approx(want, rel=1e-5)
    assert loss_fn.__name__ == "weighted_dice_loss"


def test_classic_recipe_trains_on_keras3():
    rng = np.random.default_rng(11)
    x = rng.random((4, 8, 8, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile("adam", loss=dice_loss, metrics=[dice_coef])
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])
    assert 0 <= history.history["dice_coef"][0] <= 1


# ------------------------------------------------------------------------ training


def _weights_changed(model, before) -> bool:
    return any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize("rank", [3, 4])
def test_softmax_multiclass_trains_with_sparse_labels_on_every_backend(rank):
    """On torch, Keras' sparse CE on softmax probabilities fails ("grad_input must be
    contiguous"); DiceCELoss computes its own cross-entropy, so this trains everywhere."""
    rng = np.random.default_rng(12)
    x = rng.random((4, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 4, (4, 8, 8, 1)).astype("int32")
    y[:, 0, 0] = 255
    if rank == 3:
        y = y[..., 0]
    inputs = keras.Input((None, None, 2))  # unknown spatial size, as fully convolutional models
    outputs = keras.layers.Conv2D(4, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.SGD(0.1),
        loss=DiceCELoss(mode="multiclass", ignore_index=255),
        metrics=[DiceScore(mode="multiclass", num_classes=4, ignore_index=255)],
    )
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])
    assert _weights_changed(model, before)


def test_binary_sigmoid_recipe_trains():
    rng = np.random.default_rng(13)
    x = rng.random((4, 8, 8, 1)).astype("float32")
    y = (x > 0.6).astype("int32")  # (B, H, W, 1) int masks in {0, 1}
    y[0] = 0  # one empty image
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(
        keras.optimizers.SGD(0.1),
        loss=DiceCELoss(mode="binary", from_logits=False),
        metrics=[DiceScore(), IoUScore()],
    )
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert _weights_changed(model, before)


# ------------------------------------------------------------------------ mixed precision


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sums_are_float32_for_low_precision_predictions(dtype):
    # 131072 pixels: a float16 sum overflows (max 65504); a bfloat16 sum stalls at 256 * 2**k.
    y_true = np.ones((2, 256, 256, 1), "int32")
    y_true[:, :, :128] = 0
    probs = np.where(y_true > 0, 0.75, 0.25).astype("float32")
    low = keras.ops.cast(probs, dtype)
    for kind in ("dice", "dice_ce", "gdl"):
        _, fn, extra = LOSSES[kind]
        value = fn(y_true, low, **extra)
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        want = ref.loss(kind, y_true, to_numpy(low), **extra)  # both per image by default
        np.testing.assert_allclose(to_numpy(value), want, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_training_step_under_mixed_precision(policy):
    rng = np.random.default_rng(14)
    x = rng.random((2, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, (2, 8, 8)).astype("int32")
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        inputs = keras.Input((8, 8, 3))
        outputs = keras.layers.Dense(3, activation="softmax")(inputs)  # computes in low precision
        model = keras.Model(inputs, outputs)
        loss = DiceCELoss(mode="multiclass")
        model.compile(keras.optimizers.SGD(0.1), loss=loss)
        assert keras.backend.standardize_dtype(model.outputs[0].dtype) != "float32"
        value = loss(y, model(x))
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        history = model.fit(x, y, epochs=1, verbose=0)
        assert math.isfinite(history.history["loss"][0])
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
