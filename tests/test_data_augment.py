"""Joint augmentation keeps image and mask aligned and mask values exact, on every backend.

The property: put the mask into an image channel, transform, and check that this channel equals
the transformed mask. Run this file under KERAS_BACKEND=torch, jax and tensorflow.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segdoctor.data import (
    AugmentConfig,
    Augmenter,
    ImageNormalizer,
    SegmentationDataset,
    discover_pairs,
)
from segdoctor.data.augment import (
    Geometry,
    extract_patch,
    photometric,
    recolor,
    sampling_grid,
)
from segdoctor.errors import ConfigError

ALL_GEOMETRY = AugmentConfig(
    flip=0.5,
    rot90=0.5,
    rotate=1.0,
    scale=1.0,
    translate=1.0,
    shear=1.0,
    elastic=1.0,
    brightness=0.0,
    contrast=0.0,
    gamma=0.0,
    noise=0.0,
    blur=0.0,
    color=0.0,
    image_order=0,
)


def _label_mask(seed: int, size: tuple[int, int], classes: int) -> np.ndarray:
    """Blocky multi-class mask (H, W) with values 0..classes-1, then smoothed into blobs."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes, (max(2, size[0] // 8), max(2, size[1] // 8)))
    mask = ndimage.zoom(coarse, (size[0] / coarse.shape[0], size[1] / coarse.shape[1]), order=0)
    return mask[: size[0], : size[1]].astype(np.int32)


def _embed(mask: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=mask.shape).astype(np.float32)
    return np.stack([mask.astype(np.float32), noise], axis=-1)  # (H, W, 2)


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.integers(16, 72),
    w=st.integers(16, 72),
    classes=st.integers(2, 6),
    fill=st.sampled_from(["constant", "reflect"]),
)
def test_mask_in_image_channel_stays_aligned(seed, h, w, classes, fill):
    mask = _label_mask(seed, (h, w), classes)
    image = _embed(mask, seed)
    config = AugmentConfig(**{**ALL_GEOMETRY.__dict__, "fill": fill})
    out_image, out_mask = Augmenter(config)(image, mask, np.random.default_rng(seed))
    assert out_image.shape == (h, w, 2) and out_mask.shape == (h, w)
    np.testing.assert_array_equal(out_image[..., 0], out_mask.astype(np.float32))
    assert set(np.unique(out_mask)) <= set(np.unique(mask)) | {0}
    assert out_mask.dtype == mask.dtype


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 2**31 - 1))
def test_bilinear_image_differs_only_at_label_edges(seed):
    mask = _label_mask(seed, (64, 64), 2)
    image = _embed(mask, seed)
    config = AugmentConfig(**{**ALL_GEOMETRY.__dict__, "image_order": 1})
    out_image, out_mask = Augmenter(config)(image, mask, np.random.default_rng(seed))
    mismatch = np.rint(out_image[..., 0]) != out_mask
    edges = ndimage.maximum_filter(out_mask, 5) != ndimage.minimum_filter(out_mask, 5)
    assert not (mismatch & ~edges).any()
    assert set(np.unique(out_mask)) <= {0, 1}


def test_free_rotation_by_90_equals_rot90():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (9, 9)).astype(np.int32)
    image = _embed(mask, 1)
    t = math.radians(90)
    geo = Geometry(matrix=np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]))
    out_image, out_mask = extract_patch(image, mask, (0, 0), (9, 9), geo, image_order=1)
    np.testing.assert_array_equal(out_mask, np.rot90(mask, -1))
    np.testing.assert_allclose(out_image, np.rot90(image, -1, axes=(0, 1)), atol=1e-5)


def test_geometry_really_changes_things():
    mask = _label_mask(3, (48, 48), 3)
    image = _embed(mask, 3)
    out_image, out_mask = Augmenter(ALL_GEOMETRY)(image, mask, np.random.default_rng(3))
    assert not np.array_equal(out_mask, mask)
    assert not np.array_equal(out_image, image)


def test_photometric_changes_image_never_mask():
    mask = _label_mask(5, (32, 32), 3)
    image = _embed(mask, 5)
    config = AugmentConfig(
        **{
            **AugmentConfig.none().__dict__,
            "brightness": 1.0,
            "contrast": 1.0,
            "gamma": 1.0,
            "noise": 1.0,
            "blur": 1.0,
        }
    )
    out_image, out_mask = Augmenter(config)(image, mask.copy(), np.random.default_rng(0))
    np.testing.assert_array_equal(out_mask, mask)
    assert not np.allclose(out_image, image)
    assert np.isfinite(photometric(image, config, np.random.default_rng(1))).all()


def test_color_rotates_hue_keeps_gray_and_mask():
    rng = np.random.default_rng(3)
    rgb = rng.normal(size=(3, 16, 16)).astype(np.float32)
    # A full turn, and no change of saturation, is the identity; the gray part never moves.
    np.testing.assert_allclose(recolor(rgb, 2 * np.pi, 1.0), rgb, atol=1e-5)
    out = recolor(rgb, 0.7, 1.3)
    np.testing.assert_allclose(out.mean(axis=0), rgb.mean(axis=0), atol=1e-5)
    # A rotation keeps the chroma's length; the saturation scales it.
    chroma = np.linalg.norm(rgb - rgb.mean(axis=0), axis=0)
    np.testing.assert_allclose(
        np.linalg.norm(out - out.mean(axis=0), axis=0), 1.3 * chroma, rtol=1e-4
    )
    # Gray images (three equal channels) are left exactly as they are, RGB ones are not.
    config = AugmentConfig(**{**AugmentConfig.none().__dict__, "color": 1.0})
    mask = _label_mask(4, (24, 24), 2)
    gray = np.repeat(rng.normal(size=(24, 24, 1)).astype(np.float32), 3, axis=-1)
    np.testing.assert_allclose(photometric(gray, config, np.random.default_rng(0)), gray, atol=1e-6)
    color = rng.normal(size=(24, 24, 3)).astype(np.float32)
    out_image, out_mask = Augmenter(config)(color, mask.copy(), np.random.default_rng(0))
    np.testing.assert_array_equal(out_mask, mask)
    assert not np.allclose(out_image, color)
    one = np.ascontiguousarray(color[..., :1])
    assert photometric(one, config, np.random.default_rng(0)) is one  # no colour in one channel


def test_color_saturation_range_is_checked():
    with pytest.raises(ConfigError, match="color_saturation"):
        AugmentConfig(color_saturation=(1.5, 0.5))


def test_loader_batches_stay_aligned(tmp_path):
    """Through SegmentationDataset (random patches, padding, all transforms) on this backend."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, size in enumerate([(40, 56), (80, 64), (24, 30)]):
        mask = _label_mask(i, size, 4)
        np.save(tmp_path / "images" / f"c{i}.npy", _embed(mask, i))
        np.save(tmp_path / "masks" / f"c{i}.npy", mask.astype(np.uint8))
    ds = SegmentationDataset(
        discover_pairs(tmp_path).pairs,
        batch_size=4,
        patch_size=32,
        stride=16,
        augment=ALL_GEOMETRY,
        normalizer=ImageNormalizer(mode="none"),
        seed=0,
    )
    for _ in range(3):
        x, y = ds[0]
        np.testing.assert_array_equal(x[..., 0], y[..., 0].astype(np.float32))
        assert set(np.unique(y)) <= {0, 1, 2, 3}
        ds.on_epoch_end()
    assert keras.backend.backend() in ("torch", "jax", "tensorflow", "numpy")


def test_reflect_crop_mirrors_like_numpy_reflect():
    mask = _label_mask(7, (12, 10), 3)
    image = _embed(mask, 7)
    img, msk = extract_patch(image, mask, (-3, -2), (18, 14), Geometry(), fill="reflect")
    np.testing.assert_array_equal(msk, np.pad(mask, ((3, 3), (2, 2)), mode="reflect"))
    np.testing.assert_array_equal(img, np.pad(image, ((3, 3), (2, 2), (0, 0)), mode="reflect"))


def test_every_image_order_samples_the_mask_grid():
    """A linear ramp is reproduced exactly by bilinear and cubic sampling at the grid points."""
    h, w = 80, 90
    rows, cols = np.mgrid[:h, :w].astype(np.float32)
    mask = _label_mask(9, (h, w), 3)
    image = np.stack([0.1 * rows + 0.05 * cols, mask.astype(np.float32)], axis=-1)  # (H, W, 2)
    t = math.radians(30)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    geo = Geometry(matrix=rot / 1.2, shift=np.array([0.3, -0.7]))
    start, size = (20, 25), (32, 32)
    coords = sampling_grid(start, size, geo)  # inside the image: no border effects
    assert coords.min() > 2 and coords[0].max() < h - 3 and coords[1].max() < w - 3
    ramp = 0.1 * coords[0] + 0.05 * coords[1]
    nearest = mask[np.floor(coords[0] + 0.5).astype(int), np.floor(coords[1] + 0.5).astype(int)]
    for order in (0, 1, 3):
        img, msk = extract_patch(image, mask, start, size, geo, image_order=order)
        np.testing.assert_array_equal(msk, nearest)
        if order:
            np.testing.assert_allclose(img[..., 0], ramp, atol=1e-3)
        else:
            np.testing.assert_array_equal(img[..., 1], nearest.astype(np.float32))
