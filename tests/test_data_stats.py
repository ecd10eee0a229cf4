"""Streaming dataset statistics for the doctor."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from segdoctor.data import MaskPolicy, dataset_stats, discover_pairs
from segdoctor.errors import DataError


def _dataset(tmp_path, n=6, size=(32, 40), corrupt=None):
    (tmp_path / "images").mkdir(parents=True, exist_ok=True)
    (tmp_path / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 255, size, np.uint8)
        mask = np.zeros(size, np.uint8)
        mask[: i * 2, :10] = 255  # i * 20 foreground pixels; mask 0 is empty
        Image.fromarray(image).save(tmp_path / "images" / f"i{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"i{i}.png")
    if corrupt is not None:
        (tmp_path / "images" / f"i{corrupt}.png").write_bytes(b"")
    return discover_pairs(tmp_path).pairs


def test_counts_and_fractions(tmp_path):
    pairs = _dataset(tmp_path)
    stats = dataset_stats(pairs)
    h, w = 32, 40
    assert stats.mask_policy.kind == "scale-255"
    assert [s.foreground_fraction for s in stats.images] == [i * 20 / (h * w) for i in range(6)]
    assert stats.empty_masks == ["i0"]
    assert stats.class_pixels == {0: 6 * h * w - 300, 1: 300}
    assert stats.sizes == {(32, 40): 6}
    assert stats.foreground_fraction == pytest.approx(300 / (6 * h * w))
    assert 0 <= stats.intensity_min < stats.intensity_max <= 255
    assert stats.channel_mean[0] == pytest.approx(np.mean([s.mean for s in stats.images]))
    assert "1 empty masks" in stats.describe()


def test_ignore_index_excluded_from_foreground(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    mask = np.array([[0, 1, 2, 2]], np.uint8)
    Image.fromarray(np.zeros((1, 4), np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    stats = dataset_stats(
        discover_pairs(tmp_path).pairs, MaskPolicy("multiclass", 2, ignore_index=2)
    )
    assert stats.images[0].foreground_fraction == 0.5
    assert stats.images[0].classes == (0, 1)


def test_bad_file_stops_or_is_listed(tmp_path):
    pairs = _dataset(tmp_path, corrupt=3)
    with pytest.raises(DataError, match=r"i3\.png"):
        dataset_stats(pairs)
    stats = dataset_stats(pairs, on_error="skip")
    assert [n for n, _ in stats.skipped] == ["i3"] and len(stats.images) == 5


def test_memory_independent_of_dataset_size(tmp_path):
    small = _dataset(tmp_path / "a", n=4, size=(128, 128))
    large = _dataset(tmp_path / "b", n=24, size=(128, 128))

    def peak(pairs):
        tracemalloc.start()
        dataset_stats(pairs)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    assert peak(large) < 1.5 * peak(small) + 200_000


def test_real_camvid(shared_data):
    pairs = discover_pairs(shared_data / "camvid-val").pairs[:8]
    stats = dataset_stats(pairs, MaskPolicy("multiclass", 11, ignore_index=11))
    assert set(stats.class_pixels) <= set(range(12)) and 11 in stats.class_pixels
    assert len(stats.channel_mean) == 3
