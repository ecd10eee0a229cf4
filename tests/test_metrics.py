"""Dice and IoU: numpy evaluation functions and the stateful Keras metrics.

Runs on whichever backend KERAS_BACKEND names (torch, jax, tensorflow), one process each.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segdoctor.errors import ConfigError, DataError
from segdoctor.losses import DiceCELoss
from segdoctor.metrics import (
    DiceScore,
    IoUScore,
    confusion_stats,
    dice_from_stats,
    iou_from_stats,
    multilabel_confusion_stats,
    per_image_scores,
    predictions_to_labels,
)
from tests import reference as ref

BACKEND = keras.backend.backend()
EXAMPLES = 8 if BACKEND == "jax" else 20  # jax compiles every new op shape: keep its run short
PROPERTY = settings(deadline=None, max_examples=EXAMPLES)
METRICS = {"dice": DiceScore, "iou": IoUScore}
MODES = ["binary", "multiclass", "multilabel"]
IGNORE = 255


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def make_batch(
    seed: int,
    mode: str,
    *,
    batch: int = 3,
    size: int = 6,
    ignore: bool = False,
    logits: bool = False,
    empties: bool = True,
):
    """Random labels and predictions; image 0 may be empty in truth, image 1 in both."""
    rng = np.random.default_rng(seed)
    c = 1 if mode == "binary" else 3
    raw = rng.normal(0, 2, (batch, size, size, c))
    if mode == "multiclass":
        labels = rng.integers(0, c, (batch, size, size, 1))
    else:
        labels = rng.integers(0, 2, (batch, size, size, c))
    if empties:
        labels[0] = 0  # empty truth (multiclass: background only), prediction random
        labels[1] = 0
        raw[1] = -6.0  # empty prediction as well
        if mode == "multiclass":
            raw[1, ..., 0] = 6.0
    if ignore:
        labels = np.where(rng.random(labels.shape) < 0.2, IGNORE, labels)
    if logits:
        return labels.astype("int32"), raw.astype("float32")
    probs = softmax(raw) if mode == "multiclass" else 1 / (1 + np.exp(-raw))
    return labels.astype("int32"), probs.astype("float32")


def evaluate(metric, *batches) -> float:
    metric.reset_state()
    for y_true, y_pred in batches:
        metric.update_state(y_true, y_pred)
    return float(keras.ops.convert_to_numpy(metric.result()))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------------ Keras metrics


@PROPERTY
@given(
    kind=st.sampled_from(list(METRICS)),
    mode=st.sampled_from(MODES),
    per_image=st.booleans(),
    empty=st.sampled_from(["skip", "one", "zero"]),
    ignore=st.booleans(),
    from_logits=st.booleans(),
    include_background=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_metric_matches_reference_over_several_batches(
    kind, mode, per_image, empty, ignore, from_logits, include_background, seed
):
    first = make_batch(seed, mode, ignore=ignore, logits=from_logits)
    second = make_batch(seed + 1, mode, ignore=ignore, logits=from_logits, empties=False)
    options = {
        "mode": mode,
        "per_image": per_image,
        "empty": empty,
        "ignore_index": IGNORE if ignore else None,
        "from_logits": from_logits,
        "include_background": include_background and mode == "multiclass",
        "threshold": 0.4,
    }
    metric = METRICS[kind](**options, num_classes=None if mode == "binary" else 3)
    got = evaluate(metric, first, second)
    y_true = np.concatenate([first[0], second[0]])
    y_pred = np.concatenate([first[1], second[1]])
    want, want_per_class = ref.metric(kind, y_true, y_pred, **options)
    assert same(got, want)
    np.testing.assert_allclose(metric.per_class_result(), want_per_class, rtol=1e-5, atol=1e-6)


@PROPERTY
@given(kind=st.sampled_from(list(METRICS)), mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_metric_range_and_perfect_prediction(kind, mode, seed):
    y_true, y_pred = make_batch(seed, mode)
    num_classes = None if mode == "binary" else 3
    value = evaluate(METRICS[kind](mode=mode, num_classes=num_classes), (y_true, y_pred))
    assert 0.0 <= value <= 1.0
    perfect = np.eye(3)[y_true[..., 0]] if mode == "multiclass" else y_true
    for empty in ("skip", "one"):  # with "zero", the empty-empty image 1 scores 0 on purpose
        metric = METRICS[kind](mode=mode, num_classes=num_classes, empty=empty)
        assert evaluate(metric, (y_true, perfect.astype("float32"))) == pytest.approx(1.0)


@PROPERTY
@given(
    kind=st.sampled_from(list(METRICS)),
    mode=st.sampled_from(MODES),
    per_image=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_metric_invariant_to_pixel_permutation(kind, mode, per_image, seed):
    y_true, y_pred = make_batch(seed, mode, ignore=True)
    b, h, w, _ = y_pred.shape
    perm = np.random.default_rng(seed).permutation(h * w)

    def shuffle(x):
        return x.reshape(b, h * w, -1)[:, perm].reshape(x.shape)

    options = {
        "mode": mode,
        "num_classes": None if mode == "binary" else 3,
        "per_image": per_image,
        "ignore_index": IGNORE,
    }
    before = evaluate(METRICS[kind](**options), (y_true, y_pred))
    after = evaluate(METRICS[kind](**options), (shuffle(y_true), shuffle(y_pred)))
    assert same(before, after)


@PROPERTY
@given(kind=st.sampled_from(list(METRICS)), mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_per_image_and_dataset_agree_for_one_image(kind, mode, seed):
    y_true, y_pred = make_batch(seed, mode, batch=1, empties=False)
    num_classes = None if mode == "binary" else 3
    per_image = METRICS[kind](mode=mode, num_classes=num_classes, per_image=True)
    dataset = METRICS[kind](mode=mode, num_classes=num_classes, per_image=False)
    assert same(evaluate(per_image, (y_true, y_pred)), evaluate(dataset, (y_true, y_pred)))


@PROPERTY
@given(
    kind=st.sampled_from(list(METRICS)),
    mode=st.sampled_from(MODES),
    per_image=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_metric_ignored_pixels_change_nothing(kind, mode, per_image, seed):
    y_true, y_pred = make_batch(seed, mode, ignore=True)
    ignored = np.broadcast_to(y_true == IGNORE, y_pred.shape)
    flipped = np.where(ignored, 1.0 - y_pred, y_pred).astype("float32")
    assert not np.allclose(flipped, y_pred)
    options = {
        "mode": mode,
        "num_classes": None if mode == "binary" else 3,
        "per_image": per_image,
        "ignore_index": IGNORE,
    }
    before = evaluate(METRICS[kind](**options), (y_true, y_pred))
    after = evaluate(METRICS[kind](**options), (y_true, flipped))
    assert same(before, after)


def test_empty_policies_binary():
    y_true = np.zeros((3, 4, 4, 1), "int32")
    y_pred = np.zeros((3, 4, 4, 1), "float32")  # image 0: both empty
    y_pred[1, 0, 0] = 0.9  # image 1: empty truth, one false positive -> 0
    y_true[2, :2] = 1
    y_pred[2, :2] = 0.9  # image 2: perfect -> 1
    expected = {"skip": 0.5, "one": 2 / 3, "zero": 1 / 3}
    for empty, want in expected.items():
        for cls in (DiceScore, IoUScore):
            assert evaluate(cls(empty=empty), (y_true, y_pred)) == pytest.approx(want)
    # dataset level pools the statistics: tp = 8, fp = 1, fn = 0
    assert evaluate(DiceScore(per_image=False), (y_true, y_pred)) == pytest.approx(16 / 17)
    assert evaluate(IoUScore(per_image=False), (y_true, y_pred)) == pytest.approx(8 / 9)
    # nothing to score at all: skip gives NaN, the other policies a number
    nothing = (np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1), "float32"))
    assert math.isnan(evaluate(DiceScore(), nothing))
    assert evaluate(DiceScore(empty="one"), nothing) == 1.0
    assert evaluate(DiceScore(empty="zero", per_image=False), nothing) == 0.0


def test_threshold_is_strict_and_applies_after_the_sigmoid():
    y_true = np.ones((1, 2, 2, 1), "int32")
    at = np.full((1, 2, 2, 1), 0.5, "float32")
    assert evaluate(DiceScore(), (y_true, at)) == 0.0  # exactly at the threshold: background
    assert evaluate(DiceScore(), (y_true, at + 1e-3)) == 1.0
    assert evaluate(DiceScore(threshold=0.7), (y_true, at + 0.1)) == 0.0
    logits = np.full((1, 2, 2, 1), 0.2, "float32")  # sigmoid(0.2) = 0.55
    assert evaluate(DiceScore(from_logits=True), (y_true, logits)) == 1.0
    assert evaluate(DiceScore(from_logits=True, threshold=0.6), (y_true, logits)) == 0.0


def test_threshold_ties_compare_in_the_predictions_precision():
    """A float32 0.4 is not above a 0.4 threshold, although float64(0.4f) > 0.4: the metric, the
    numpy form and the reference agree (the reference once compared in float64; a property test
    found the tie with seed 5950)."""
    y_true = np.ones((1, 2, 2, 1), "int32")
    tie = np.full((1, 2, 2, 1), 0.4, "float32")
    assert float(tie[0, 0, 0, 0]) > 0.4  # the float64 view of the same number
    assert evaluate(DiceScore(threshold=0.4), (y_true, tie)) == 0.0
    assert not ref.hard_predictions(tie, "binary", 0.4, False).any()
    assert not predictions_to_labels(tie[0], threshold=0.4).any()


def test_per_class_results_and_class_id():
    y_true = np.array([[[0, 1, 2, 2]]])
    y_pred = np.eye(3, dtype="float32")[np.array([[[0, 1, 1, 2]]])]
    metric = DiceScore(mode="multiclass", num_classes=3)
    mean = evaluate(metric, (y_true, y_pred))
    np.testing.assert_allclose(metric.per_class_result(), [1.0, 2 / 3, 2 / 3])
    assert mean == pytest.approx(2 / 3)  # background left out
    with_bg = DiceScore(mode="multiclass", num_classes=3, include_background=True)
    assert evaluate(with_bg, (y_true, y_pred)) == pytest.approx(7 / 9)
    only_2 = IoUScore(mode="multiclass", num_classes=3, class_id=2, name="iou_2")
    assert evaluate(only_2, (y_true, y_pred)) == pytest.approx(0.5)


def test_sample_weight_weighs_images():
    y_true = np.zeros((2, 4, 4, 1), "int32")
    y_true[:, :2] = 1
    y_pred = np.zeros((2, 4, 4, 1), "float32")
    y_pred[0, :2] = 1.0  # image 0 perfect, image 1 all missed
    metric = DiceScore()
    metric.update_state(y_true, y_pred, sample_weight=np.array([1.0, 0.0]))
    assert float(metric.result()) == pytest.approx(1.0)
    metric.reset_state()
    metric.update_state(y_true, y_pred, sample_weight=np.array([1.0, 3.0]))
    assert float(metric.result()) == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="one sample weight per image"):
        metric.update_state(y_true, y_pred, sample_weight=np.ones((2, 4, 4)))


def test_reset_state_starts_a_new_epoch():
    y_true, y_pred = make_batch(1, "binary", empties=False)
    metric = DiceScore()
    first = evaluate(metric, (y_true, y_pred))
    metric.update_state(y_true, 1.0 - y_pred)
    assert float(metric.result()) != pytest.approx(first)
    metric.reset_state()
    assert math.isnan(float(metric.result()))
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == pytest.approx(first)


def test_metric_errors():
    with pytest.raises(ConfigError, match="needs num_classes"):
        DiceScore(mode="multiclass")
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        DiceScore(threshold=1.0)
    with pytest.raises(ConfigError, match='Did you mean "skip"'):
        IoUScore(empty="skp")
    with pytest.raises(ConfigError, match="include_background=True"):
        DiceScore(include_background=True)
    with pytest.raises(ConfigError, match=r"class_id must lie in \[0, 3\)"):
        DiceScore(mode="multiclass", num_classes=3, class_id=3)
    with pytest.raises(ConfigError, match="look like logits"):
        DiceScore().update_state(np.zeros((1, 4, 4, 1)), np.full((1, 4, 4, 1), 3.0, "float32"))
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        DiceScore(mode="multiclass", num_classes=3).update_state(
            np.full((1, 4, 4), 5), np.full((1, 4, 4, 3), 1 / 3, "float32")
        )


def test_metric_validate_policy():
    good = (np.zeros((1, 4, 4, 1), "int32"), np.full((1, 4, 4, 1), 0.5, "float32"))
    logits = (good[0], np.full((1, 4, 4, 1), 4.0, "float32"))
    first = DiceScore()
    with pytest.raises(ConfigError, match="look like logits"):
        first.update_state(*logits)
    first.update_state(*good)
    first.update_state(*logits)  # checked once already
    always = IoUScore(validate="always")
    always.update_state(*good)
    with pytest.raises(ConfigError, match="look like logits"):
        always.update_state(*logits)
    DiceScore(validate="never").update_state(*logits)


@pytest.mark.parametrize("cls", [DiceScore, IoUScore])
def test_metric_config_round_trip(cls):
    metric = cls(
        mode="multiclass",
        num_classes=4,
        per_image=False,
        empty="one",
        ignore_index=255,
        class_id=2,
        threshold=0.3,
        validate="always",
        name="custom",
    )
    config = metric.get_config()
    assert config["num_classes"] == 4 and config["empty"] == "one" and config["class_id"] == 2
    assert cls.from_config(config).get_config() == config
    registered = keras.saving.get_registered_name(cls)
    assert registered == f"segdoctor>{cls.__name__}"
    restored = keras.saving.get_registered_object(registered).from_config(config)
    assert type(restored) is cls
    assert restored.get_config() == config
    assert restored._direction == "up"


def test_default_names_and_direction():
    assert (DiceScore().name, IoUScore().name) == ("dice", "iou")
    assert DiceScore._direction == IoUScore._direction == "up"


def test_callbacks_in_auto_mode_maximise_dice():
    rng = np.random.default_rng(3)
    x = rng.random((8, 8, 8, 1)).astype("float32")
    y = (x > 0.5).astype("int32")
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(keras.optimizers.SGD(0.05), loss=DiceCELoss(), metrics=[DiceScore(), IoUScore()])
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_dice", mode="auto", patience=5)
    stopper = keras.callbacks.EarlyStopping(monitor="val_dice", mode="auto", patience=5)
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[plateau, stopper],
    )
    assert {"dice", "val_dice", "iou", "val_iou"} <= set(history.history)
    for callback in (plateau, stopper):
        assert bool(callback.monitor_op(2.0, 1.0))  # "greater": higher Dice is an improvement
    assert all(0.0 <= v <= 1.0 for v in history.history["val_dice"])


# ------------------------------------------------------------------------ numpy functions


@settings(deadline=None, max_examples=40)
@given(
    num_classes=st.integers(1, 4),
    ignore=st.booleans(),
    sizes=st.lists(st.tuples(st.integers(1, 7), st.integers(1, 7)), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_confusion_stats_match_reference(num_classes, ignore, sizes, seed):
    rng = np.random.default_rng(seed)
    truths = [rng.integers(0, num_classes, s) for s in sizes]
    preds = [rng.integers(0, num_classes, s) for s in sizes]
    if ignore:
        truths = [np.where(rng.random(t.shape) < 0.3, IGNORE, t) for t in truths]
    ignore_index = IGNORE if ignore else None
    got = confusion_stats(truths, preds, num_classes, ignore_index=ignore_index)
    want = ref.label_map_counts(truths, preds, num_classes, ignore_index)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    tp, _, fn = got
    counted = sum(int(np.sum(t != IGNORE)) if ignore else t.size for t in truths)
    assert tp.sum() + fn.sum() == counted  # every counted pixel has exactly one true class


def test_confusion_stats_layouts_and_errors():
    truth = np.array([[0, 1], [1, 1]])
    pred = np.array([[0, 1], [0, 1]])
    single = confusion_stats(truth, pred, 2)
    batch = confusion_stats(truth[None], pred[None], 2)
    listed = confusion_stats([truth], [pred], 2)
    for a, b, c in zip(single, batch, listed, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert single[0].tolist() == [[1, 2]]
    with pytest.raises(DataError, match=r"must lie in \[0, 2\)"):
        confusion_stats(truth, pred + 1, 2)
    with pytest.raises(DataError, match="differ in shape"):
        confusion_stats([truth], [pred[:1]], 2)
    with pytest.raises(DataError, match="different numbers of images"):
        confusion_stats([truth, truth], [pred], 2)
    with pytest.raises(ConfigError, match="num_classes"):
        confusion_stats(truth, pred, 0)


def test_scores_from_stats_with_empty_policies():
    tp, fp, fn = np.array([3, 0, 0, 0]), np.array([1, 0, 2, 0]), np.array([0, 0, 0, 4])
    np.testing.assert_allclose(dice_from_stats(tp, fp, fn, "one"), [6 / 7, 1, 0, 0])
    np.testing.assert_allclose(dice_from_stats(tp, fp, fn, "zero"), [6 / 7, 0, 0, 0])
    skipped = dice_from_stats(tp, fp, fn)
    assert math.isnan(skipped[1]) and not np.isnan(skipped[[0, 2, 3]]).any()
    np.testing.assert_allclose(iou_from_stats(tp, fp, fn, "one"), [3 / 4, 1, 0, 0])
    with pytest.raises(ConfigError, match="Unknown empty"):
        dice_from_stats(tp, fp, fn, "nan")


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("empty", ["skip", "one", "zero"])
def test_numpy_and_keras_metrics_agree(mode, empty):
    y_true, y_pred = make_batch(21, mode, batch=4)
    num_classes = 2 if mode == "binary" else 3
    truth_maps = y_true[..., 0]
    pred_maps = predictions_to_labels(y_pred, mode=mode)
    scores = per_image_scores(truth_maps, pred_maps, num_classes, empty=empty)
    keras_kwargs = {"mode": mode, "num_classes": None if mode == "binary" else 3, "empty": empty}
    for per_image, summary in ((True, scores.mean()), (False, scores.dataset())):
        for kind, cls in METRICS.items():
            value = evaluate(cls(**keras_kwargs, per_image=per_image), (y_true, y_pred))
            assert same(value, summary[kind])
    assert scores.image_dice.shape == (4,)


def test_per_image_scores_for_worst_case_lists():
    truths = [np.array([[0, 1, 1]]), np.zeros((2, 2), int), np.array([[1, 1], [1, 1]])]
    preds = [np.array([[0, 1, 0]]), np.zeros((2, 2), int), np.array([[1, 1], [0, 0]])]
    scores = per_image_scores(truths, preds, num_classes=2)
    np.testing.assert_allclose(scores.image_dice, [2 / 3, np.nan, 2 / 3])
    np.testing.assert_allclose(scores.image_iou, [0.5, np.nan, 0.5])
    assert scores.classes == (1,)
    assert scores.mean()["dice"] == pytest.approx(2 / 3)
    assert scores.dataset()["dice"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 3))
    with_bg = per_image_scores(truths, preds, num_classes=2, include_background=True)
    assert with_bg.classes == (0, 1)


def test_predictions_to_labels_and_multilabel_stats():
    probs = np.array([[[[0.2], [0.5], [0.51]]]])
    assert predictions_to_labels(probs).tolist() == [[[0, 0, 1]]]
    assert predictions_to_labels(np.log(probs / (1 - probs)), from_logits=True).tolist() == [
        [[0, 0, 1]]
    ]
    assert predictions_to_labels(np.array([[[[0.1, 0.7, 0.2]]]]), mode="multiclass").tolist() == [
        [[1]]
    ]
    with pytest.raises(ConfigError, match="one output channel"):
        predictions_to_labels(np.zeros((1, 2, 2, 3)))
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, (2, 5, 5, 3))
    pred = rng.integers(0, 2, (2, 5, 5, 3))
    tp, fp, fn = multilabel_confusion_stats(truth, pred)
    for c in range(3):
        want = ref.label_map_counts(list(truth[..., c]), list(pred[..., c]), 2)
        np.testing.assert_array_equal(tp[:, c], want[0][:, 1])
        np.testing.assert_array_equal(fp[:, c], want[1][:, 1])
        np.testing.assert_array_equal(fn[:, c], want[2][:, 1])
