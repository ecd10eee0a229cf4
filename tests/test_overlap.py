"""Regions shared between images (segdoctor.data.overlap): found at their offset, never invented."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segdoctor.data.overlap import BLOCK, block_print, find_overlaps


@pytest.fixture()
def slice_(shared_data):
    """A real ISBI 2012 slice (512 x 512, 8-bit gray)."""
    return np.asarray(Image.open(shared_data / "isbi2012-membrane" / "images" / "00.png"))


def _overlaps(images):
    return find_overlaps([block_print(i) for i in images])


def test_two_crops_of_one_image_are_found_at_their_offset(slice_):
    a, b = slice_[100:200, 50:180], slice_[140:260, 90:170]
    [o] = _overlaps([a, b])
    assert (o.a, o.b, o.offset) == (0, 1, (-40, -40))  # a's (y, x) is b's (y - 40, x - 40)
    top, left, bottom, right = o.box
    assert np.array_equal(
        a[top:bottom, left:right], b[top - 40 : bottom - 40, left - 40 : right - 40]
    )
    assert o.share == pytest.approx(60 * 80 / (120 * 80))


def test_rgb_and_float_images_are_compared_too(slice_):
    rgb = np.stack([slice_, slice_[::-1], slice_.T], axis=-1)[:200, :200]
    assert len(_overlaps([rgb[:120, :120], rgb[60:, 60:]])) == 1
    f = slice_.astype(np.float32) / 255.0
    assert len(_overlaps([f[:120, :120], f[60:180, 60:180]])) == 1


def test_adjacent_tiles_and_other_slices_share_nothing(shared_data, slice_):
    other = np.asarray(Image.open(shared_data / "isbi2012-membrane" / "images" / "01.png"))
    tiles = [slice_[y : y + 64, x : x + 64] for y in range(0, 512, 64) for x in range(0, 512, 64)]
    assert _overlaps([*tiles, slice_[:256, 256:] * 0 + other[:256, 256:]]) == []


def test_flat_borders_and_a_burnt_in_label_do_not_make_an_overlap(rng):
    label = (rng.random((BLOCK, 3 * BLOCK)) * 255).astype(np.uint8)  # a scale bar with text
    images = []
    for _ in range(2):
        image = np.zeros((128, 128), np.uint8)  # black padding around the content
        image[32:96, 32:96] = rng.integers(0, 256, (64, 64))
        image[100 : 100 + BLOCK, 60 : 60 + 3 * BLOCK] = label
        images.append(image)
    assert _overlaps(images) == []
    images[1][32:96, 32:96] = images[0][32:96, 32:96]  # the content too: now it is shared
    assert len(_overlaps(images)) == 1


def test_groups_restrict_the_comparison(slice_):
    crops = [slice_[:100, :100], slice_[50:150, 50:150], slice_[300:, 300:]]
    prints = [block_print(c) for c in crops]
    assert len(find_overlaps(prints)) == 1
    assert find_overlaps(prints, groups=[0, 0, 1]) == []


def test_images_smaller_than_a_block_have_no_print():
    assert block_print(np.zeros((BLOCK - 1, 64), np.uint8)) is None
