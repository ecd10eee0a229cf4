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
