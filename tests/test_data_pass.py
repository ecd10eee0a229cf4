"""Whole-dataset passes: the doctor's streaming pass (``check_data``) and the loader's first pass.

These replace the tests of ``segdoctor.data.stats``, a third pass that nothing used: each number
it was tested for is now checked where segdoctor computes it (foreground fractions and empty masks
in the doctor's summary, pixel counts per value in the mask report, classes and foreground
locations with an ``ignore_index`` in the loader's samples, bad files stopped or listed by both).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdoctor.data import (
    ImageNormalizer,
    MaskPolicy,
    discover_pairs,
    inspect_masks,
    normalize_mask,
    read_mask,
)
from segdoctor.data.prepare import SampleMaker, prepare
from segdoctor.doctor.data_checks import check_data
from segdoctor.errors import DataError

H, W = 32, 40


def _dataset(root: Path, n=6, size=(H, W), corrupt=None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 255, size, np.uint8)
        mask = np.zeros(size, np.uint8)
        mask[: i * 2, :10] = 255  # i * 20 foreground pixels; mask 0 is empty
        Image.fromarray(image).save(root / "images" / f"i{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"i{i}.png")
    if corrupt is not None:
        (root / "images" / f"i{corrupt}.png").write_bytes(b"")
    return root


def _prepare(pairs, policy=None, **kw):
    return prepare(
        pairs,
        channels=None,
        normalizer=ImageNormalizer(),
        mask_policy=policy,
        ignore_index=None,
        **kw,
    )


def test_the_doctors_pass_counts_foreground_and_empty_masks(tmp_path):
    _, summary, _ = check_data(_dataset(tmp_path), plots=False)
    assert summary.mask_kind == "scale-255"
    assert summary.n_pairs == 6
    assert summary.foreground_fractions == [i * 20 / (H * W) for i in range(6)]
    assert summary.empty == ["i0"]
    assert summary.to_dict()["foreground_fraction_median"] == pytest.approx(50 / (H * W))


def test_pixel_counts_per_value_and_per_class(tmp_path):
    pairs = discover_pairs(_dataset(tmp_path)).pairs
    masks = [read_mask(p.mask) for p in pairs]
    report = inspect_masks(masks)
    assert report.value_counts == {0: 6 * H * W - 300, 255: 300}
    policy = report.policy()
    classes = np.concatenate([normalize_mask(m, policy).ravel() for m in masks])
    assert np.bincount(classes).tolist() == [6 * H * W - 300, 300]


def test_ignore_index_is_neither_a_class_nor_foreground():
    policy = MaskPolicy("multiclass", 2, ignore_index=2)
    labels = normalize_mask(np.array([[0, 1, 2, 2]], np.uint8), policy)
    assert labels.tolist() == [[0, 1, 2, 2]]
    foreground = SampleMaker(1, ImageNormalizer(), policy).foreground(labels, "a")
    assert [c.tolist() for c in foreground] == [[[0, 1]]]  # the class-1 pixel only


def test_bad_file_stops_or_is_listed(tmp_path):
    root = _dataset(tmp_path, corrupt=3)
    pairs = discover_pairs(root).pairs
    with pytest.raises(DataError, match=r"i3\.png"):
        _prepare(pairs)
    prepared = _prepare(pairs, on_error="skip")
    assert [n for n, _ in prepared.skipped] == ["i3"] and len(prepared.pairs) == 5
    findings, summary, _ = check_data(root, plots=False)
    assert [Path(path).name for path, _ in summary.unreadable] == ["i3.png"]
    assert "unreadable-file" in [f.id for f in findings]


def test_the_doctors_pass_memory_is_independent_of_dataset_size(tmp_path):
    small = _dataset(tmp_path / "a", n=20, size=(128, 128))
    large = _dataset(tmp_path / "b", n=80, size=(128, 128))

    def peak(root):
        tracemalloc.start()
        check_data(root, plots=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(small)  # warm up: first-use allocations (imports, caches) are not the pass's
    assert peak(large) < 1.5 * peak(small) + 200_000


def test_real_camvid_classes_and_channels(shared_data):
    pairs = discover_pairs(shared_data / "camvid-val").pairs[:8]
    prepared = _prepare(
        pairs, MaskPolicy("multiclass", 11, ignore_index=11), cache_limit_bytes=2**30
    )
    values = set()
    for sample in prepared.cache.values():
        values |= set(np.unique(sample.mask).tolist())
    assert len(prepared.cache) == 8
    assert values <= set(range(12)) and 11 in values
    assert prepared.maker.channels == 3
