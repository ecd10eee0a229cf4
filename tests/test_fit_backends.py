"""model.fit with segdoctor's loader on every backend (this file runs once per backend).

Two cases that went wrong on TensorFlow, where Keras turns a PyDataset into
``from_generator(...).prefetch(AUTOTUNE)``: whole-image validation whose images come in several
sizes (Keras infers the signature from the first batches, which, sorted by size, all have the
smallest shape), and epochs that began after a wait of up to a minute for tf.data's autotuning
thread. ``SegmentationDataset.for_fit`` declares H and W dynamic and turns autotuning off.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from segdoctor.data import SegmentationDataset, discover_pairs
from segdoctor.losses import DiceCELoss
from segdoctor.metrics import DiceScore
from segdoctor.models import create_model


def _write(root: Path, name: str, h: int, w: int) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 1
    Image.fromarray((40 + 150 * mask).astype(np.uint8)).save(root / "images" / f"{name}.png")
    Image.fromarray(mask).save(root / "masks" / f"{name}.png")


def test_fit_with_whole_image_validation_of_mixed_sizes(tmp_path):
    # Five small images first (they fill the batches Keras inspects), then larger ones.
    sizes = [(32, 32)] * 5 + [(48, 64), (64, 40)]
    for i, (h, w) in enumerate(sizes):
        _write(tmp_path / "val", f"v{i}", h, w)
        _write(tmp_path / "train", f"t{i}", h, w)
    common = dict(batch_size=1, patch_size=32, stride=4, channels=1)
    train = SegmentationDataset(discover_pairs(tmp_path / "train").pairs, **common, seed=0)
    val = SegmentationDataset(discover_pairs(tmp_path / "val").pairs, training=False, **common)
    assert len({val[i][0].shape[1:3] for i in range(len(val))}) == 3
    keras.utils.set_random_seed(0)
    model = create_model("unet", input_shape=(None, None, 1), depth=2, base_filters=4)
    model.compile(optimizer="adam", loss=DiceCELoss(), metrics=[DiceScore(name="dice")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            train.for_fit(), validation_data=val.for_fit(), epochs=2, verbose=0, shuffle=False
        )
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert len(history.history["val_dice"]) == 2
    assert all(np.isfinite(history.history["val_loss"]))
    if keras.backend.backend() != "tensorflow":
        assert val.for_fit() is val  # only TensorFlow needs the dynamic-shape pipeline
        assert train.for_fit() is train


def test_the_training_pipeline_serves_the_datasets_batches_epoch_by_epoch(tmp_path):
    for i in range(5):
        _write(tmp_path, f"t{i}", 40, 48)
    pairs = discover_pairs(tmp_path).pairs
    common = dict(batch_size=2, patch_size=32, channels=1, seed=3, samples_per_epoch=6)
    train = SegmentationDataset(pairs, **common)
    if keras.backend.backend() != "tensorflow":
        assert train.for_fit() is train
        return
    pipeline = train.for_fit()
    assert pipeline.options().autotune.enabled is False  # its thread stalled epoch starts
    assert int(pipeline.cardinality()) == len(train) == 3
    reference = SegmentationDataset(pairs, **common)
    epochs = []
    for epoch in range(2):  # a new iterator per epoch, as Keras makes them
        served = [(x.numpy(), y.numpy()) for x, y in pipeline]
        epochs.append(served)
        reference.set_epoch(epoch)
        expected = [reference[i] for i in range(len(reference))]
        assert len(served) == len(expected)
        for (x, y), (ex, ey) in zip(served, expected, strict=True):
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(y, ey)
    assert not np.array_equal(epochs[0][0][0], epochs[1][0][0])  # the second epoch drew anew
    val = SegmentationDataset(pairs, **{**common, "training": False})
    assert val.for_fit().options().autotune.enabled is False


def _one_weight_fit(planned: int, epochs: int = 8, seconds=None, budget_s: float = 100.0):
    """SGD on a single weight whose gradient is always 1: each step subtracts that step's rate.

    A fake clock makes epoch ``k`` last ``seconds[k]`` (10 s each by default) of a ``budget_s``
    budget. Returns (final weight, replans, schedule maker).
    """
    from segdoctor.train.callbacks import BudgetSchedule, TimeBudget

    seconds = seconds or [10.0] * epochs
    now = {"t": 0.0}

    class Ticker(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now["t"] += seconds[epoch]

    def schedule(epochs: int):
        return keras.optimizers.schedules.CosineDecay(1.0, decay_steps=2 * epochs, alpha=0.01)

    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    model.layers[0].kernel.assign(np.array([[100.0]], "float32"))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule(planned)), loss="mae")
    budget = TimeBudget(budget_s / 60, clock=lambda: now["t"])
    replans = []
    refit = BudgetSchedule(
        budget, planned, epochs, schedule, on_replan=lambda *args: replans.append(args)
    )
    x, y = np.ones((2, 1), "float32"), np.zeros((2, 1), "float32")  # 2 steps per epoch
    model.fit(x, y, batch_size=1, epochs=epochs, verbose=0, callbacks=[Ticker(), budget, refit])
    return float(model.layers[0].kernel.numpy()[0, 0]), replans, schedule


def _lr_sum(schedule, steps) -> float:
    return float(sum(float(keras.ops.convert_to_numpy(schedule(k))) for k in steps))


def test_budget_schedule_refits_the_compiled_step_to_the_measured_epoch_time():
    final, replans, schedule = _one_weight_fit(planned=2)
    # Epochs 2-4 are timed (the first compiles): after the fourth, 6 more 10-s epochs fit in the
    # 100-s budget, capped at epochs=8.
    assert replans == [(2, 8, 10.0)]
    # Steps 0-7 ran with the 2-epoch plan, steps 8-15 with the 8-epoch one: the compiled train
    # step (tf.function, jax.jit) must have been rebuilt to use the new schedule.
    expected = 100.0 - _lr_sum(schedule(2), range(8)) - _lr_sum(schedule(8), range(8, 16))
    stale = 100.0 - _lr_sum(schedule(2), range(16))
    assert abs(final - expected) < 1e-3 < abs(final - stale)


def test_budget_schedule_ignores_one_slow_epoch():
    # A 50-s stall in the second epoch: trusting that epoch alone would count 4 epochs in the
    # budget (the plan of 15 cut to 4); the median of the timed epochs keeps the plan.
    seconds = [10.0, 50.0] + [10.0] * 13
    final, replans, schedule = _one_weight_fit(15, 15, seconds, budget_s=200.0)
    assert replans == []
    assert abs(final - (100.0 - _lr_sum(schedule(15), range(30)))) < 1e-3


def test_budget_schedule_refits_again_when_epochs_speed_up():
    # 10-s epochs, then 5-s ones from the sixth: once the median moves, the horizon follows.
    seconds = [10.0] * 5 + [5.0] * 15
    _, replans, _ = _one_weight_fit(10, 20, seconds, budget_s=100.0)
    assert replans == [(10, 13, 7.5)]  # after the ninth: 30 s left at 7.5 s each, 4 more fit


def test_budget_schedule_keeps_a_plan_that_fits():
    final, replans, schedule = _one_weight_fit(planned=5, epochs=5)
    assert replans == []
    assert abs(final - (100.0 - _lr_sum(schedule(5), range(10)))) < 1e-3


def test_precision_probe_times_both_policies_and_restores_the_policy():
    """The bfloat16-or-float32 calibration's real probe (train.calibration) on this backend."""
    from segdoctor.train import calibration

    before = keras.config.dtype_policy().name
    seconds = calibration.time_probe_steps()
    assert set(seconds) == {"float32", "mixed_bfloat16"}
    assert all(s > 0 for s in seconds.values())
    assert keras.config.dtype_policy().name == before
