"""Splits: deterministic, order-independent, group-aware; duplicates found by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segdoctor.data import Pair, cross_split_duplicates, find_duplicates, split_pairs
from segdoctor.errors import ConfigError


def _pairs(names):
    return [Pair(n, Path(f"{n}.png"), Path(f"{n}_m.png")) for n in names]


def test_deterministic_and_order_independent():
    pairs = _pairs([f"img{i:03d}" for i in range(50)])
    train1, val1 = split_pairs(pairs, 0.2, seed=3)
    _train2, val2 = split_pairs(list(reversed(pairs)), 0.2, seed=3)
    assert [p.name for p in val1] == [p.name for p in val2]
    assert len(val1) == 10 and len(train1) == 40
    assert {p.split for p in train1} == {"train"} and {p.split for p in val1} == {"val"}
    _, val3 = split_pairs(pairs, 0.2, seed=4)
    assert [p.name for p in val3] != [p.name for p in val1]


@settings(deadline=None, max_examples=30)
@given(st.integers(2, 60), st.floats(0.05, 0.95), st.integers(0, 1000))
def test_partition_property(n, fraction, seed):
    pairs = _pairs([f"p{i}" for i in range(n)])
    train, val = split_pairs(pairs, fraction, seed)
    names_t, names_v = {p.name for p in train}, {p.name for p in val}
    assert not names_t & names_v
    assert names_t | names_v == {p.name for p in pairs}
    assert train and val


@pytest.mark.parametrize("group_by", ["prefix", r"^(pat\d+)", lambda p: p.name.split("_")[0]])
def test_groups_never_straddle(group_by):
    names = [f"pat{g}_s{s}" for g in range(10) for s in range(1 + g % 3)]
    train, val = split_pairs(_pairs(names), 0.3, seed=0, group_by=group_by)
    groups_t = {p.name.split("_")[0] for p in train}
    groups_v = {p.name.split("_")[0] for p in val}
    assert groups_t and groups_v and not groups_t & groups_v


def test_existing_splits_kept():
    pairs = [Pair("a", Path("a"), Path("a"), "train"), Pair("b", Path("b"), Path("b"), "val")]
    train, val = split_pairs(pairs, 0.5, seed=0)
    assert [p.name for p in train] == ["a"] and [p.name for p in val] == ["b"]


def test_bad_arguments():
    with pytest.raises(ConfigError, match="val_fraction"):
        split_pairs(_pairs(["a", "b"]), 1.5)
    with pytest.raises(ConfigError, match="two pairs"):
        split_pairs(_pairs(["a_1", "a_2"]), 0.5, group_by="prefix")
    with pytest.raises(ConfigError, match="does not match"):
        split_pairs(_pairs(["a", "b"]), 0.5, group_by=r"zzz")


def test_duplicates_found_by_pixels_across_formats(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (16, 16), np.uint8)
    b = rng.integers(0, 255, (16, 16), np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(a).save(tmp_path / "a_copy.tif")  # same pixels, other format
    Image.fromarray(b).save(tmp_path / "b.png")
    mk = lambda n, f, s: Pair(n, tmp_path / f, tmp_path / f, s)  # noqa: E731
    train = [mk("a", "a.png", "train"), mk("b", "b.png", "train")]
    val = [mk("a_copy", "a_copy.tif", "val")]
    assert cross_split_duplicates(train, val) == [("a", "a_copy")]
    assert find_duplicates(train, val) == [("train:a", "val:a_copy")]
    assert find_duplicates(train) == []


def test_split_keeps_duplicates_together(tmp_path):
    rng = np.random.default_rng(1)
    pairs = []
    for i in range(12):
        pixels = rng.integers(0, 255, (8, 8), np.uint8) if i % 4 else np.zeros((8, 8), np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        pairs.append(Pair(f"n{i:02d}", tmp_path / f"{i}.png", tmp_path / f"{i}.png"))
    copies = {"n00", "n04", "n08"}  # identical all-zero images
    for seed in range(6):
        train, val = split_pairs(pairs, 0.25, seed, keep_duplicates_together=True)
        sides = {p.split for p in train + val if p.name in copies}
        assert len(sides) == 1
        assert not cross_split_duplicates(train, val)


def test_split_keeps_brightness_changed_and_flipped_copies_together(tmp_path):
    """Offline augmentation written to disk (a copy brighter, one flipped) stays on the side of
    its original with keep_duplicates_together (before: pixel-identical copies only)."""
    rng = np.random.default_rng(2)
    pairs = []
    for i in range(10):
        small = Image.fromarray((rng.random((6, 6)) * 255).astype(np.uint8))
        pixels = np.asarray(small.resize((48, 48), Image.BICUBIC))
        for tag, view in (
            ("", pixels),
            ("_b", np.clip(pixels * 1.1 + 15, 0, 255)),
            ("_f", pixels[:, ::-1]),
        ):
            path = tmp_path / f"{i}{tag}.png"
            Image.fromarray(np.ascontiguousarray(view).astype(np.uint8)).save(path)
            pairs.append(Pair(f"n{i:02d}{tag}", path, path))
    for seed in range(4):
        train, val = split_pairs(pairs, 0.3, seed, keep_duplicates_together=True)
        side = {p.name: p.split for p in train + val}
        assert all(
            side[f"n{i:02d}"] == side[f"n{i:02d}_b"] == side[f"n{i:02d}_f"] for i in range(10)
        )
