"""Mask inspection and normalization: every kind detected, every decision explicit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segdoctor.data import (
    MaskPolicy,
    decide_mask_policy,
    discover_pairs,
    inspect_masks,
    mask_rules,
    normalize_mask,
    read_mask,
)
from segdoctor.data.masks import KINDS
from segdoctor.errors import DataError
from segdoctor.sample_data import sample_path


def _blobs(n: int, seed: int, size: int = 96) -> np.ndarray:
    """Instance-label mask: n separate discs labelled 1..n (uint16)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint16)
    yy, xx = np.mgrid[:size, :size]
    for label in range(1, n + 1):
        cy, cx = rng.integers(4, size - 4, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 4
        mask[disc & (mask == 0)] = label
    return mask


def _classes(seed: int, k: int = 5, size: int = 64) -> np.ndarray:
    """Class-index mask: each class appears as several blobs (a class map, not instances)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, k, (8, 8))
    return np.kron(coarse, np.ones((size // 8, size // 8), np.int64)).astype(np.uint8)


def test_binary():
    policy = inspect_masks([np.array([[0, 1], [1, 1]], np.uint8)]).policy()
    assert policy.kind == "binary" and policy.num_classes == 2
    assert "binary" in policy.describe()


def test_scale_255():
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    policy = inspect_masks([mask]).policy()
    assert policy.kind == "scale-255"
    assert normalize_mask(mask, policy).tolist() == [[0, 1], [1, 0]]
    assert "255 -> 1" in policy.describe()


def test_two_value():
    mask = np.array([[0, 128]], np.uint8)
    policy = inspect_masks([mask]).policy()
    assert policy.kind == "two-value" and policy.foreground_value == 128
    assert normalize_mask(mask, policy).tolist() == [[0, 1]]


def test_instance_labels_to_foreground_or_kept():
    masks = [_blobs(20, s) for s in range(4)]
    report = inspect_masks(masks)
    assert report.kind == "instance"
    policy = report.policy()
    assert "binary foreground" in policy.describe()
    out = normalize_mask(masks[0], policy)
    np.testing.assert_array_equal(out, (masks[0] > 0).astype(np.int32))
    kept = report.policy(keep_instances=True)
    np.testing.assert_array_equal(normalize_mask(masks[0], kept), masks[0].astype(np.int32))


def test_labels_above_max_classes_are_instances():
    mask = np.zeros((8, 8), np.uint16)
    mask[0, 0], mask[1, 1] = 300, 301
    assert inspect_masks([mask]).kind == "instance"


def test_multiclass_with_ignore_index():
    masks = [_classes(s, 12) for s in range(3)]
    report = inspect_masks(masks)
    assert report.kind == "multiclass"
    policy = report.policy(ignore_index=11)
    assert policy.num_classes == 11 and policy.ignore_index == 11
    assert "ignore_index" in policy.describe()
    np.testing.assert_array_equal(normalize_mask(masks[0], policy), masks[0])


def test_ignore_value_above_the_classes():
    masks = [np.where(_classes(s, 3) == 2, 255, _classes(s, 3)).astype(np.uint8) for s in range(2)]
    policy = inspect_masks(masks).policy(kind="multiclass", ignore_index=255)
    assert policy.num_classes == 2 and policy.is_binary
    out = normalize_mask(masks[0], policy)
    assert set(np.unique(out)) == {0, 1, 255}


def test_multiclass_value_out_of_range_named():
    policy = MaskPolicy("multiclass", 3)
    with pytest.raises(DataError, match=r"m7\.png.*values \[5\]"):
        normalize_mask(np.array([[0, 5]], np.uint8), policy, name="m7.png")


def test_rgb_palette_class_map(tmp_path):
    colors = [(0, 0, 0), (255, 0, 0), (0, 128, 0)]
    idx = _classes(1, 3)
    rgb = np.array(colors, np.uint8)[idx]
    report = inspect_masks([rgb])
    policy = report.policy()
    assert policy.kind == "palette"
    assert policy.palette == ((0, 0, 0), (0, 128, 0), (255, 0, 0))  # black first, then ascending
    out = normalize_mask(rgb, policy)
    assert [policy.palette[v] for v in out.ravel()[:20]] == [colors[v] for v in idx.ravel()[:20]]
    given_map = report.policy(palette=colors)
    np.testing.assert_array_equal(normalize_mask(rgb, given_map), idx)
    saved = MaskPolicy.from_json(given_map.save(tmp_path / "class_map.json").read_text())
    assert saved == given_map
    with pytest.raises(DataError, match="not in the class map"):
        report.policy(palette=colors[:2])


def test_fractional_float_refused_or_rounded():
    mask = np.array([[0.0, 0.2], [0.7, 1.0]], np.float32)
    report = inspect_masks([mask])
    assert report.kind == "fractional"
    with pytest.raises(DataError, match="fractional"):
        report.policy()
    with pytest.warns(UserWarning, match="rounded"):
        policy = report.policy(round_fractional=True)
    assert normalize_mask(mask, policy).tolist() == [[0, 0], [1, 1]]


def test_jpeg_like_0_255_mask_is_fractional():
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    smooth = ndimage.uniform_filter(mask.astype(float), 3).round().astype(np.uint8)  # soft edges
    report = inspect_masks([smooth])
    assert report.kind == "fractional", report.describe()
    with pytest.warns(UserWarning):
        policy = report.policy(round_fractional=True)
    out = normalize_mask(smooth, policy)
    assert set(np.unique(out)) == {0, 1}
    assert abs(int(out.sum()) - 32 * 32) < 64


def test_kind_override_must_fit():
    report = inspect_masks([np.array([[0, 2]], np.uint8)])
    with pytest.raises(DataError, match="binary"):
        report.policy(kind="binary")


@settings(deadline=None, max_examples=25)
@given(
    st.lists(st.integers(0, 4), min_size=4, max_size=64),
    st.integers(0, 2**31 - 1),
)
def test_normalized_values_in_range(values, seed):
    rng = np.random.default_rng(seed)
    mask = rng.choice(np.array(values, np.uint8), (16, 16))
    mask = np.kron(mask, np.ones((2, 2), np.uint8))
    report = inspect_masks([mask])
    policy = decide_mask_policy(report, kind="multiclass" if report.kind == "instance" else None)
    out = normalize_mask(mask, policy)
    assert out.dtype == np.int32 and out.shape == mask.shape
    assert out.min() >= 0 and out.max() < policy.num_classes


def test_real_masks(shared_data):
    def masks(name, n=12):
        files = sorted((shared_data / name / "masks").iterdir())[:n]
        return [read_mask(f) for f in files]

    dsb = decide_mask_policy(inspect_masks(masks("dsb2018-nuclei")))
    assert dsb.kind == "instance" and dsb.num_classes == 2
    assert "instance labels" in dsb.describe() and "label > 0" in dsb.describe()
    isbi = decide_mask_policy(inspect_masks(masks("isbi2012-membrane")))
    assert isbi.kind == "scale-255"
    camvid = decide_mask_policy(inspect_masks(masks("camvid-val")), ignore_index=11)
    assert camvid.kind == "multiclass" and camvid.num_classes == 11


def test_sample_masks_are_instances():
    pairs = discover_pairs(sample_path()).pairs
    report = inspect_masks(read_mask(p.mask) for p in pairs)
    assert report.kind == "instance" and report.dtypes == ("uint16",)


def test_every_mask_kind_has_exactly_one_decision_rule():
    assert set(mask_rules.RULES) == set(KINDS)
    assert mask_rules.RGB_RULES <= set(KINDS)


def test_the_rounding_warning_points_at_the_caller():
    report = inspect_masks([np.array([[0.0, 0.4, 1.0]], np.float32)])
    with pytest.warns(UserWarning, match="rounded") as caught:
        decide_mask_policy(report, round_fractional=True)
    assert caught[0].filename == __file__
