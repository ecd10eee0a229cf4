"""Copies with changed brightness, contrast, gamma or colour across splits (segdoctor.data.near_copies).

Before, ``duplicate-across-splits`` found pixel-identical and flipped copies only: a
brightness-jittered copy in validation drew nothing (first blind test, 2026-12-07).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segdoctor.data import near_copies as nc
from segdoctor.doctor.data_checks import check_data
from tests.helpers import write_disc_dataset


def _jitter(image: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = image.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    x = 255 * (np.clip(x, 0, 255) / 255) ** rng.uniform(0.7, 1.4)
    return np.clip(x, 0, 255).astype(np.uint8)


def _texture(seed: int, size: int = 96) -> np.ndarray:
    """A smooth random gray image (blurred noise), (H, W, 1) uint8."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8))
    return np.asarray(small.resize((size, size), Image.BICUBIC))[..., None]


@pytest.mark.parametrize("seed", range(4))
def test_a_jittered_copy_scores_as_a_copy(seed):
    a = _texture(seed)
    assert nc.copy_score(a, _jitter(a, seed)) >= nc.COPY_MIN


def test_inverted_and_colour_balanced_copies_score_as_copies():
    a = _texture(7)
    assert nc.copy_score(a, 255 - a) >= nc.COPY_MIN
    rgb = np.concatenate([a, _texture(8), _texture(9)], axis=-1)
    balanced = np.clip(rgb * np.array([1.2, 0.9, 1.1]) + np.array([10, -5, 0]), 0, 255).astype(
        np.uint8
    )
    assert nc.copy_score(rgb, balanced) >= nc.COPY_MIN


def test_different_images_do_not():
    assert nc.copy_score(_texture(1), _texture(2)) < 0.5
    # similar images (one texture, a quarter of another blended in) stay below the bar
    a, b = _texture(1).astype(np.float32), _texture(2).astype(np.float32)
    assert nc.copy_score(a.astype(np.uint8), (0.75 * a + 0.25 * b).astype(np.uint8)) < nc.COPY_MIN


def test_best_partner_finds_the_flipped_jittered_copy():
    refs = [nc.thumbnail(_texture(s)) for s in range(5)]
    query = nc.thumbnail(np.ascontiguousarray(_jitter(_texture(3), 0)[:, ::-1]))
    [(qi, ri, k, corr)] = nc.best_partners([query], refs)
    assert (qi, ri, k) == (0, 3, 1) and corr > 0.95


def _jittered_split(root, copies: bool):
    """train/ with 8 disc images; val/ with 4 images: jittered copies of training images (fault)
    or images of their own (twin)."""
    write_disc_dataset(root / "train", n=8, size=48, seed=1)
    if copies:
        (root / "val" / "images").mkdir(parents=True)
        (root / "val" / "masks").mkdir(parents=True)
        for i in range(4):
            name = f"case_{i:03d}.png"
            image = np.asarray(Image.open(root / "train" / "images" / name))
            Image.fromarray(_jitter(image, i)).save(root / "val" / "images" / f"copy_{i}.png")
            mask = Image.open(root / "train" / "masks" / name)
            mask.save(root / "val" / "masks" / f"copy_{i}.png")
    else:
        write_disc_dataset(root / "val", n=4, size=48, seed=2)
        for sub in ("images", "masks"):  # names of their own: a shared name is another warning
            for path in sorted((root / "val" / sub).iterdir()):
                path.rename(path.with_name("other_" + path.name))
    return root


def test_duplicate_across_splits_fires_on_jittered_copies(tmp_path):
    found, _, _ = check_data(_jittered_split(tmp_path, copies=True), plots=False)
    [dup] = [f for f in found if f.id == "duplicate-across-splits"]
    assert dup.severity == "error"
    assert dup.evidence["groups_brightness_or_colour_changed"] == 4
    assert dup.evidence["val"].startswith("4 of 4")


def test_duplicate_across_splits_silent_on_different_images(tmp_path):
    found, _, _ = check_data(_jittered_split(tmp_path, copies=False), plots=False)
    assert "duplicate-across-splits" not in [f.id for f in found]


def test_silent_on_consecutive_video_frames(shared_data):
    """CamVid frames a fifteenth of a second apart are near-identical as thumbnails (0.99+) but
    not copies: the split segdoctor train would make must not be called a leak."""
    found, _, _ = check_data(shared_data / "camvid-val", plots=False)
    assert "duplicate-across-splits" not in [f.id for f in found]


def test_blank_images_are_not_called_copies(tmp_path):
    """Blank images in both splits are pixel-identical; input-constant reports them, and they
    hold nothing that could leak (fourth blind test: uint8-truncated inputs drew both errors)."""
    root = _jittered_split(tmp_path, copies=False)
    for split in ("train", "val"):
        path = sorted((root / split / "images").iterdir())[0]
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(path)
    found, _, _ = check_data(root, plots=False)
    ids = [f.id for f in found]
    assert "input-constant" in ids and "duplicate-across-splits" not in ids


def _blob_tile(seed: int, radius: float) -> np.ndarray:
    """A dark, noisy 64 px tile with one bright nucleus in its top-left corner, (64, 64, 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    blob = 200 * np.exp(-((yy - 6) ** 2 + (xx - 8) ** 2) / (2 * radius**2))
    return np.clip(blob + rng.normal(6, 2, (64, 64)), 0, 255).astype(np.uint8)[..., None]


def test_tiles_alike_only_in_one_blob_are_not_copies():
    """Crops of two different fluorescence images, each one bright blob in the same corner of an
    independent noisy background: the blob decides the copy score (above the bar) but the fine
    detail does not repeat (fifth blind test: three such 64 px DSB tiles drew an error)."""
    a, b = _blob_tile(1, 9.0), _blob_tile(2, 10.0)
    assert nc.copy_score(a, b) >= nc.COPY_MIN  # the first two steps alone call them copies
    assert nc.detail_score(a, b) < nc.DETAIL_MIN
    assert (
        nc.photometric_copies(
            [nc.thumbnail(a)], [nc.thumbnail(b)], [a].__getitem__, [b].__getitem__
        )
        == []
    )
    brighter = _jitter(a, 0)  # a real copy of the same tile still is one
    assert nc.detail_score(a, brighter) >= nc.DETAIL_MIN
    found = nc.photometric_copies(
        [nc.thumbnail(brighter)], [nc.thumbnail(a)], [brighter].__getitem__, [a].__getitem__
    )
    assert [(q, r) for q, r, _ in found] == [(0, 0)]


def _letterbox(image: np.ndarray, bar: int) -> np.ndarray:
    out = np.zeros_like(image)
    out[bar:-bar] = image[bar:-bar]
    return out


def test_letterbox_bars_do_not_make_images_alike():
    """Letterboxed images share their black bars: without them the images are unrelated and are
    not copies; a jittered copy of a letterboxed image still is one."""
    a, b = _letterbox(_texture(1), 20), _letterbox(_texture(2), 20)
    assert nc.content_box(a) == (slice(20, 76), slice(0, 96))
    reader = {0: a, 1: b, 2: _letterbox(_jitter(_texture(1), 3), 20)}
    thumbs = {k: nc.thumbnail(v) for k, v in reader.items()}
    assert nc.photometric_copies([thumbs[1]], [thumbs[0]], lambda i: b, lambda i: a) == []
    found = nc.photometric_copies([thumbs[2]], [thumbs[0]], lambda i: reader[2], lambda i: a)
    assert len(found) == 1


def test_silent_on_crops_of_different_dsb_images(shared_data):
    """Two real 64 px crops (DSB2018 303 and 300, a bright nucleus in one corner each) that the
    copy score alone called copies, rotated 180 degrees (fifth blind test)."""
    from segdoctor.data import read_image

    root = shared_data / "dsb2018-nuclei" / "images"
    a = read_image(root / "303_70827e40a715.png")
    b = read_image(root / "300_6fc83b33896f.png")
    ta = a[a.shape[0] // 2 - 64 : a.shape[0] // 2, a.shape[1] // 2 - 64 : a.shape[1] // 2]
    tb = b[b.shape[0] // 2 - 64 : b.shape[0] // 2, b.shape[1] // 2 - 64 : b.shape[1] // 2]
    rotated = nc.orientations(tb)[2]
    assert nc.copy_score(ta, rotated) >= nc.COPY_MIN
    assert (
        nc.photometric_copies([nc.thumbnail(ta)], [nc.thumbnail(tb)], lambda i: ta, lambda i: tb)
        == []
    )
