"""``mask-lossy-format``: masks saved as JPEG (by the file, and by the ringing it leaves)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segdoctor.doctor import diagnose
from segdoctor.doctor.mask_format import RING_NEAR_EDGE, RingingStats, edge_counts, lossy_format

NUCLEI = "dsb2018-nuclei"


def _nuclei_pairs(shared_data, n: int = 12, size: int = 64):
    """Real DSB 2018 crops: gray images and 0/1 masks (instance labels merged)."""
    folder = shared_data / NUCLEI
    out = []
    for path in sorted((folder / "images").iterdir())[:n]:
        image = np.asarray(Image.open(path).convert("L"))[:size, :size]
        mask = (np.asarray(Image.open(folder / "masks" / path.name))[:size, :size] > 0).astype(
            np.uint8
        )
        out.append((path.stem, image, mask))
    return out


def _write(root, pairs, mask_ext: str, mask_format: str | None = None):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, image, mask in pairs:
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}{mask_ext}", format=mask_format)
    return root


def _severity(report, finding_id):
    return {f.id: f.severity for f in report.findings}.get(finding_id)


def test_jpeg_masks_of_0_1_fire_as_an_error_naming_jpeg(shared_data, tmp_path):
    folder = _write(tmp_path / "d", _nuclei_pairs(shared_data), ".jpg")
    report = diagnose(data=folder, plots=False)
    finding = next(f for f in report.findings if f.id == "mask-lossy-format")
    assert finding.severity == "error"
    assert "JPEG" in finding.fix and "PNG" in finding.fix
    assert finding.evidence["jpeg_masks"] == 12
    assert finding.evidence["ringing_values"] == [2]  # 0/1 came back as 0, 1, 2


def test_the_same_masks_as_png_are_silent(shared_data, tmp_path):
    folder = _write(tmp_path / "d", _nuclei_pairs(shared_data), ".png")
    assert _severity(diagnose(data=folder, plots=False), "mask-lossy-format") is None


def test_jpeg_bytes_under_a_png_name_are_found_by_their_marker(shared_data, tmp_path):
    folder = _write(tmp_path / "d", _nuclei_pairs(shared_data, n=4), ".png", mask_format="JPEG")
    assert lossy_format(next((folder / "masks").iterdir())) == "JPEG"
    assert _severity(diagnose(data=folder, plots=False), "mask-lossy-format") == "error"


def test_ringing_converted_back_to_png_is_a_warning(shared_data, tmp_path):
    pairs = []
    for name, image, mask in _nuclei_pairs(shared_data):
        jpeg = tmp_path / f"{name}.jpg"
        Image.fromarray(mask).save(jpeg)
        pairs.append((name, image, np.asarray(Image.open(jpeg))))  # JPEG once, then PNG
    folder = _write(tmp_path / "d", pairs, ".png")
    assert _severity(diagnose(data=folder, plots=False), "mask-lossy-format") == "warning"


@pytest.mark.parametrize("name", ["dsb2018-nuclei", "isbi2012-membrane", "camvid-val"])
def test_real_datasets_are_silent(shared_data, name):
    report = diagnose(data=shared_data / name, plots=False)
    assert "mask-lossy-format" not in report.ids


def test_a_rare_thin_class_with_an_interior_is_not_ringing():
    stats = RingingStats()
    m = np.zeros((64, 64), "uint8")
    m[10:50, 10:50] = 1
    m[20:26, 20:26] = 2  # rare (0.9%) but a 6x6 object: its centre is 2 px from any edge
    stats.add("a.png", "a.png", m)
    assert stats.edge_share(2) < RING_NEAR_EDGE
    assert stats.ringing_values() == []


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, bool])
def test_edge_counts_by_bincount_equal_the_general_path(dtype):
    """Integer masks take a bincount shortcut; it counts what the float (np.unique) path counts."""
    rng = np.random.default_rng(3)
    high = 2 if dtype is bool else 6
    mask = rng.integers(0, high, (40, 52)).astype(dtype)
    mask[5:20, 10:30] = high - 1  # a block: interior pixels are not near an edge
    fast = edge_counts(mask)
    assert fast is not None and sum(n for n, _ in fast.values()) == mask.size
    assert fast == edge_counts(mask.astype(np.float32))
    many = np.arange(40 * 52, dtype=np.uint16).reshape(40, 52)  # too many values: no counts
    assert edge_counts(many) is None and edge_counts(many.astype(np.float32)) is None
