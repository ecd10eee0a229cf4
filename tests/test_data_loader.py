"""The loader: shapes, decisions, determinism, foreground oversampling, padding, bad input."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from segdoctor.data import (
    AugmentConfig,
    ImageNormalizer,
    SegmentationDataset,
    discover_pairs,
    train_val_datasets,
)
from segdoctor.errors import ConfigError, DataError
from segdoctor.sample_data import sample_path


def _write(root: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}.png")
    Image.fromarray(mask).save(root / "masks" / f"{name}.png")


@pytest.fixture(scope="module")
def sample_pairs():
    return discover_pairs(sample_path()).pairs


def test_sample_end_to_end(sample_pairs):
    start = time.perf_counter()
    ds = SegmentationDataset(sample_pairs, batch_size=8, patch_size=128, seed=0)
    x, y = ds[0]
    elapsed = time.perf_counter() - start
    assert x.shape == (8, 128, 128, 3) and x.dtype == np.float32  # gray + RGB mixed -> 3
    assert y.shape == (8, 128, 128, 1) and y.dtype == np.int32
    assert set(np.unique(y)) <= {0, 1} and y.max() == 1
    assert np.isfinite(x).all() and abs(float(x.mean())) < 1.0
    assert ds.mask_policy.kind == "instance" and ds.num_classes == 2
    assert ds.cached == len(sample_pairs) == len(ds.pairs)
    assert "instance labels" in ds.describe()
    assert elapsed < 20, f"loading the bundled sample took {elapsed:.1f} s"


def test_deterministic_for_a_seed_and_order_independent(sample_pairs):
    pairs = sample_pairs[:8]
    a = SegmentationDataset(pairs, batch_size=4, patch_size=64, seed=5)
    b = SegmentationDataset(pairs, batch_size=4, patch_size=64, seed=5)
    b1 = b[1]  # visit in another order: batch content depends on (seed, epoch, index) only
    b0 = b[0]
    for (xa, ya), (xb, yb) in zip([a[0], a[1]], [b0, b1], strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    c = SegmentationDataset(pairs, batch_size=4, patch_size=64, seed=6)
    assert not np.array_equal(a[0][0], c[0][0])
    first = a[0][0].copy()
    a.on_epoch_end()
    a.on_epoch_end()  # Keras may call it twice: still one epoch forward
    a.on_epoch_begin()
    assert a.epoch == 1 and not np.array_equal(first, a[0][0])


def test_epoch_visits_every_pair(sample_pairs):
    ds = SegmentationDataset(sample_pairs[:10], batch_size=4, patch_size=64, augment=False)
    order = ds._epoch_order()[: len(ds) * 4]
    assert len(ds) == 3 and set(order[:10].tolist()) == set(range(10))


def test_a_longer_epoch_set_after_the_first_batch_is_served_whole(sample_pairs):
    """The recipe lengthens epochs after its measurements have drawn batches of the first."""
    ds = SegmentationDataset(sample_pairs[:10], batch_size=4, patch_size=64, augment=False)
    assert len(ds) == 3 and ds[0][0].shape == (4, 64, 64, 3)  # the order of epoch 0 is drawn
    ds.set_samples_per_epoch(40)
    assert len(ds) == 10
    assert all(ds[i][0].shape == (4, 64, 64, 3) for i in (3, 9))  # past the old order's end
    with pytest.raises(ValueError, match="training dataset"):
        SegmentationDataset(sample_pairs[:2], training=False).set_samples_per_epoch(8)


def _tiny_foreground(tmp_path, n=4):
    for i in range(n):
        image = np.random.default_rng(i).integers(0, 255, (256, 256), np.uint8)
        mask = np.zeros((256, 256), np.uint8)
        mask[200 + i : 204 + i, 30:34] = 255  # 16 px of 65536
        _write(tmp_path, f"t{i}", image, mask)
    return discover_pairs(tmp_path).pairs


def test_foreground_oversampling(tmp_path):
    pairs = _tiny_foreground(tmp_path)

    def fg_share(fraction):
        ds = SegmentationDataset(
            pairs, batch_size=8, patch_size=32, foreground_fraction=fraction, augment=False, seed=1
        )
        hits = [y[k].any() for i in range(6) for y in [ds[i % len(ds)][1]] for k in range(8)]
        ds.on_epoch_end()
        return float(np.mean(hits)), ds

    share, ds = fg_share(0.5)
    assert ds.mask_policy.kind == "scale-255"
    _x, y = ds[0]
    assert all(y[k].any() for k in range(4, 8))  # the last round(8 * 0.5) samples
    assert share >= 0.5
    none, _ = fg_share(0.0)
    assert none < 0.2


def test_small_images_are_padded(tmp_path):
    image = np.full((20, 30), 200, np.uint8)
    image[0, 0] = 0
    mask = np.ones((20, 30), np.uint8)
    mask[0, 0] = 0
    _write(tmp_path, "s", image, mask)
    ds = SegmentationDataset(
        discover_pairs(tmp_path).pairs, batch_size=2, patch_size=32, augment=False, stride=16
    )
    x, y = ds[0]
    assert x.shape == (2, 32, 32, 1)
    for k in range(2):
        assert int(y[k].sum()) == 20 * 30 - 1  # the whole image inside, padding is background


def test_validation_whole_images_padded_to_stride(tmp_path):
    for i, (h, w) in enumerate([(40, 50), (40, 50), (70, 33)]):
        _write(tmp_path, f"v{i}", np.full((h, w), 9 * i, np.uint8), np.ones((h, w), np.uint8))
    ds = SegmentationDataset(
        discover_pairs(tmp_path).pairs, training=False, batch_size=4, stride=16, patch_size=32
    )
    shapes = sorted(ds[i][0].shape for i in range(len(ds)))
    assert shapes == [(1, 80, 48, 1), (2, 48, 64, 1)]
    for i in range(len(ds)):
        x, y = ds[i]
        h = 40 if x.shape[1] == 48 else 70
        w = 50 if x.shape[1] == 48 else 33
        assert int(y.sum()) == x.shape[0] * h * w  # padding added background only
    center = SegmentationDataset(
        ds.pairs, training=False, validation="center", batch_size=4, patch_size=32, stride=16
    )
    assert len(center) == 1 and center[0][0].shape == (3, 32, 32, 1)
    np.testing.assert_array_equal(center[0][0], center[0][0])  # deterministic


def test_channels_forced_to_gray(sample_pairs):
    ds = SegmentationDataset(sample_pairs[:6], channels=1, batch_size=2, patch_size=64)
    assert ds[0][0].shape == (2, 64, 64, 1)


def test_bad_pair_named_or_skipped(tmp_path):
    _write(tmp_path, "good", np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8))
    _write(tmp_path, "bad", np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8))
    (tmp_path / "images" / "bad.png").write_bytes(b"not an image")
    pairs = discover_pairs(tmp_path).pairs
    with pytest.raises(DataError, match=r"bad\.png"):
        SegmentationDataset(pairs, patch_size=32, batch_size=2)
    ds = SegmentationDataset(pairs, patch_size=32, batch_size=2, on_error="skip")
    assert [p.name for p in ds.pairs] == ["good"]
    assert ds.skipped[0][0] == "bad" and "bad.png" in ds.describe()


def test_argument_errors(sample_pairs):
    with pytest.raises(ConfigError, match="multiple of the model stride"):
        SegmentationDataset(sample_pairs[:2], patch_size=100, stride=32)
    with pytest.raises(ConfigError, match="validation"):
        SegmentationDataset(sample_pairs[:2], patch_size=64, training=False, validation="full")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX-only guard")
def test_multiprocessing_refused_on_jax(sample_pairs):
    with pytest.raises(ConfigError, match="JAX"):
        SegmentationDataset(sample_pairs[:2], patch_size=64, use_multiprocessing=True)


def test_train_val_share_decisions(sample_pairs):
    train, val = train_val_datasets(
        sample_pairs[:10],
        val_fraction=0.3,
        seed=0,
        patch_size=64,
        batch_size=2,
        normalizer=ImageNormalizer(mode="dataset"),
    )
    assert train.mask_policy == val.mask_policy and train.channels == val.channels
    assert train.normalizer == val.normalizer and train.normalizer.fitted
    assert not {p.name for p in train.pairs} & {p.name for p in val.pairs}
    assert val.augment == AugmentConfig.none()


def test_feeds_model_fit(sample_pairs):
    train, val = train_val_datasets(
        sample_pairs[:8], val_fraction=0.25, patch_size=32, batch_size=4, stride=16, workers=2
    )
    inputs = keras.Input((None, None, train.channels))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    assert train.epoch >= 1  # keras called on_epoch_end: new patches every epoch


@pytest.mark.parametrize(
    ("name", "kwargs", "values"),
    [
        ("dsb2018-nuclei", {}, {0, 1}),
        ("isbi2012-membrane", {}, {0, 1}),
        ("camvid-val", {"ignore_index": 11}, set(range(12))),
    ],
)
def test_real_datasets(shared_data, name, kwargs, values):
    pairs = discover_pairs(shared_data / name).pairs[:24]
    ds = SegmentationDataset(pairs, batch_size=8, patch_size=128, seed=0, **kwargs)
    seen = set()
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == np.float32 and y.dtype == np.int32 and np.isfinite(x).all()
        seen |= set(np.unique(y).tolist())
    assert seen <= values and len(seen) >= 2
    if name == "camvid-val":
        assert ds.num_classes == 11 and ds.ignore_index == 11 and ds.channels == 3
