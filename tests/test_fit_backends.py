"""model.fit with segdoctor's loader on every backend (this file runs once per backend).

The case that broke on TensorFlow: whole-image validation whose images come in several sizes. Keras
infers a tf.data signature from the first batches, which (sorted by size) all have the smallest
shape; ``SegmentationDataset.for_fit`` declares H and W dynamic instead.
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
        history = model.fit(train, validation_data=val.for_fit(), epochs=2, verbose=0)
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert len(history.history["val_dice"]) == 2
    assert all(np.isfinite(history.history["val_loss"]))
    if keras.backend.backend() != "tensorflow":
        assert val.for_fit() is val  # only TensorFlow needs the dynamic-shape pipeline


def _one_weight_fit(planned: int, epochs: int = 5):
    """SGD on a single weight whose gradient is always 1: each step subtracts that step's rate.

    A fake clock makes every epoch last 10 s of a 100 s budget, so after the second epoch the
    budget fits more epochs than ``planned``. Returns (final weight, replans, schedule maker).
    """
    from segdoctor.train.callbacks import BudgetSchedule, TimeBudget

    now = {"t": 0.0}

    class Ticker(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now["t"] += 10.0

    def schedule(epochs: int):
        return keras.optimizers.schedules.CosineDecay(1.0, decay_steps=2 * epochs, alpha=0.01)

    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    model.layers[0].kernel.assign(np.array([[100.0]], "float32"))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule(planned)), loss="mae")
    budget = TimeBudget(100 / 60, clock=lambda: now["t"])
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
    assert replans == [(2, 5, 10.0)]  # 8 more 10-s epochs fit, capped at epochs=5
    # Steps 0-3 ran with the 2-epoch plan, steps 4-9 with the 5-epoch one: the compiled train
    # step (tf.function, jax.jit) must have been rebuilt to use the new schedule.
    expected = 100.0 - _lr_sum(schedule(2), range(4)) - _lr_sum(schedule(5), range(4, 10))
    stale = 100.0 - _lr_sum(schedule(2), range(10))
    assert abs(final - expected) < 1e-3 < abs(final - stale)


def test_budget_schedule_keeps_a_plan_that_fits():
    final, replans, schedule = _one_weight_fit(planned=5)
    assert replans == []
    assert abs(final - (100.0 - _lr_sum(schedule(5), range(10)))) < 1e-3
