"""Format checks (bit depth and used range, channel modes, alpha, intensity outliers).

Each check fires on a folder built from real images (dsb2018-nuclei, isbi2012-membrane) with one
planted format fault, and stays silent on the same folder without it and on the real datasets.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from segdoctor.cli import main
from segdoctor.doctor import diagnose
from segdoctor.doctor.data_checks import check_data
from segdoctor.doctor.format_checks import NARROW_MAX, OUTLIER_Z, format_findings, image_format

FORMAT_IDS = {
    "image-range-narrow",
    "image-mixed-bit-depth",
    "image-mixed-channels",
    "image-alpha",
    "image-intensity-outlier",
}


def gray_sources(shared_data, n=12):
    """The first ``n`` gray (mode L) dsb2018 images with their masks."""
    root = shared_data / "dsb2018-nuclei"
    found = []
    for path in sorted((root / "images").glob("*.png")):
        with Image.open(path) as im:
            if im.mode == "L" and im.size == (256, 256):
                found.append((path, root / "masks" / path.name))
        if len(found) == n:
            return found
    pytest.skip("not enough 256x256 gray dsb2018 images")


def build(tmp_path, sources, transform=None):
    """Copy pairs into ``tmp_path``; ``transform(i, image) -> (array, suffix) | None`` rewrites
    image ``i`` (None keeps the original file)."""
    (tmp_path / "images").mkdir(parents=True)
    (tmp_path / "masks").mkdir()
    for i, (image, mask) in enumerate(sources):
        shutil.copy(mask, tmp_path / "masks" / mask.name)
        new = transform(i, np.array(Image.open(image))) if transform else None
        if new is None:
            shutil.copy(image, tmp_path / "images" / image.name)
            continue
        array, suffix = new
        target = tmp_path / "images" / f"{image.stem}{suffix}"
        if suffix == ".tif":
            tifffile.imwrite(target, array)
        else:
            Image.fromarray(array).save(target)
    return tmp_path


def format_findings_of(root):
    findings, _, _ = check_data(root, plots=False)
    return {f.id: f for f in findings if f.id in FORMAT_IDS}


def stretch(image, top):
    """``image`` (uint8) mapped onto 0..top as uint16."""
    scaled = np.round(image.astype(np.float64) / max(int(image.max()), 1) * top)
    return scaled.astype(np.uint16)


# ---- the real, healthy datasets --------------------------------------------------------------


@pytest.mark.parametrize("name", ["dsb2018-nuclei", "isbi2012-membrane", "camvid-val"])
def test_real_datasets_draw_no_format_warning(shared_data, name):
    found = format_findings_of(shared_data / name)
    assert [f.id for f in found.values() if f.severity != "info"] == []
    if name == "dsb2018-nuclei":  # fluorescence (gray) and histology (RGB): real, an info only
        mixed = found["image-mixed-channels"]
        assert mixed.severity == "info"
        assert mixed.evidence["groups"] == {"gray": 140, "RGB": 27}
        assert mixed.evidence["count"] == 27 and len(mixed.evidence["files"]) == 10
    else:
        assert found == {}


def test_bundled_sample_draws_no_format_warning():
    from segdoctor.sample_data import sample_path

    report = diagnose(data=sample_path(), plots=False)
    assert [f.id for f in report.findings if f.id in FORMAT_IDS and f.severity != "info"] == []


# ---- bit depth and used range ------------------------------------------------------------------


def test_16bit_using_0_to_40_fires(shared_data, tmp_path):
    root = build(tmp_path, gray_sources(shared_data), lambda i, im: (stretch(im, 40), ".png"))
    report = diagnose(data=root, plots=False)
    finding = report.get("image-range-narrow")
    assert finding is not None and finding.severity == "warning"
    assert finding.evidence["largest_value"] == 40 and finding.evidence["count"] == 12
    assert finding.evidence["groups"]["max <= 255 (8 bits)"] == 12
    assert "0..40 of 0..65535" in finding.title
    assert "65535" in finding.fix and "percentile" in finding.fix  # loader + hand-written


def test_12bit_in_16bit_fires_and_full_range_is_silent(shared_data, tmp_path):
    sources = gray_sources(shared_data)
    twelve = build(tmp_path / "a", sources, lambda i, im: (stretch(im, 4095), ".png"))
    finding = format_findings_of(twelve)["image-range-narrow"]
    assert finding.evidence["largest_value"] == 4095 == NARROW_MAX
    assert "12-bit data" in finding.title
    full = build(tmp_path / "b", sources, lambda i, im: (stretch(im, 65535), ".png"))
    assert format_findings_of(full) == {}


def test_narrow_band_above_an_offset_fires(shared_data, tmp_path):
    root = build(
        tmp_path, gray_sources(shared_data), lambda i, im: (stretch(im, 40) + 30000, ".tif")
    )
    finding = format_findings_of(root)["image-range-narrow"]
    assert finding.evidence["largest_span"] <= 40 and finding.evidence["largest_value"] > 30000
    assert finding.evidence["groups"] == {"span <= 4095 above an offset": 12, "wider": 0}
    assert "narrow band" in finding.title and "x / " not in finding.fix


def test_16bit_tiff_among_8bit_pngs_fires(shared_data, tmp_path):
    sources = gray_sources(shared_data)
    root = build(tmp_path, sources, lambda i, im: (stretch(im, 65535), ".tif") if i == 3 else None)
    found = format_findings_of(root)
    mixed = found["image-mixed-bit-depth"]
    assert mixed.severity == "warning"
    assert mixed.evidence["groups"] == {"uint8 .png": 11, "uint16 .tif": 1}
    assert mixed.evidence["files"] == [f"images/{sources[3][0].stem}.tif"]
    assert mixed.evidence["value_range_per_type"]["uint16"][1] == 65535
    assert set(found) == {"image-mixed-bit-depth"}  # full 16-bit range: no range finding


def test_8bit_pngs_only_are_silent(shared_data, tmp_path):
    assert format_findings_of(build(tmp_path, gray_sources(shared_data))) == {}


# ---- channel modes and alpha ---------------------------------------------------------------------


def rgba(image, alpha):
    return np.dstack([image, image, image, alpha]).astype(np.uint8)  # (H, W, 4)


def test_one_rgba_among_gray_fires_through_the_cli(shared_data, tmp_path):
    sources = gray_sources(shared_data)
    root = build(
        tmp_path / "data",
        sources,
        lambda i, im: (rgba(im, np.full_like(im, 255)), ".png") if i == 5 else None,
    )
    out = tmp_path / "report.json"
    assert main(["diagnose", str(root), "--json", str(out)]) == 1  # dsb masks: instance labels
    import json

    findings = {f["id"]: f for f in json.loads(out.read_text())["findings"]}
    mixed = findings["image-mixed-channels"]
    assert mixed["severity"] == "warning"
    assert mixed["evidence"]["groups"] == {"gray": 11, "RGBA": 1}
    assert mixed["evidence"]["files"] == [f"images/{sources[5][0].name}"]
    assert "image-alpha" not in findings  # constant alpha among gray: one finding, not two


def test_varying_alpha_fires_image_alpha(shared_data, tmp_path):
    sources = gray_sources(shared_data)

    def transparent(i, im):
        alpha = np.full_like(im, 255)
        alpha[: im.shape[0] // 2] = 0  # top half transparent
        return rgba(im, alpha), ".png"

    found = format_findings_of(build(tmp_path, sources, transparent))
    alpha = found["image-alpha"]
    assert alpha.severity == "warning" and alpha.evidence["count"] == 12
    assert alpha.evidence["alpha_ranges"][0] == [0, 255]
    assert "image-mixed-channels" not in found  # every file RGBA: one mode


def test_constant_alpha_everywhere_is_info_and_gray_only_is_silent(shared_data, tmp_path):
    sources = gray_sources(shared_data)
    opaque = build(tmp_path / "a", sources, lambda i, im: (rgba(im, np.full_like(im, 255)), ".png"))
    found = format_findings_of(opaque)
    assert set(found) == {"image-alpha"} and found["image-alpha"].severity == "info"
    assert "image-alpha" not in format_findings_of(build(tmp_path / "b", sources))


def test_gray_and_rgb_mixed_is_info(shared_data, tmp_path):
    sources = gray_sources(shared_data)
    root = build(tmp_path, sources, lambda i, im: (np.dstack([im] * 3), ".png") if i < 2 else None)
    mixed = format_findings_of(root)["image-mixed-channels"]
    assert mixed.severity == "info" and mixed.evidence["groups"] == {"gray": 10, "RGB": 2}


# ---- intensity outliers --------------------------------------------------------------------------


def isbi_sources(shared_data, n=12):
    root = shared_data / "isbi2012-membrane"
    images = sorted((root / "images").glob("*.png"))[:n]
    return [(p, root / "masks" / p.name) for p in images]


def test_dark_image_among_isbi_is_an_outlier(shared_data, tmp_path):
    sources = isbi_sources(shared_data)
    root = build(
        tmp_path, sources, lambda i, im: ((im // 8).astype(np.uint8), ".png") if i == 7 else None
    )
    outlier = format_findings_of(root)["image-intensity-outlier"]
    assert outlier.severity == "warning" and outlier.evidence["count"] == 1
    assert outlier.evidence["files"][0].startswith(f"images/{sources[7][0].name}: median")
    assert outlier.evidence["groups"] == {"uint8, 1 channel(s)": 12}


def test_isbi_copy_without_the_dark_image_is_silent(shared_data, tmp_path):
    assert format_findings_of(build(tmp_path, isbi_sources(shared_data))) == {}


def test_nifti_and_npy_are_not_judged_for_range_or_outliers():
    def fmt(i, ext, value):
        image = np.full((8, 8, 1), value, np.uint16)
        image[:4] //= 2  # an IQR
        return image_format(f"images/{i}{ext}", f"{i}{ext}", image)

    volume = [fmt(i, ".nii.gz", 3000) for i in range(11)] + [fmt(11, ".nii.gz", 6)]
    assert format_findings(volume) == []  # an MRI volume's slices: signed 16-bit, not files
    tiffs = [fmt(i, ".tif", 3000) for i in range(11)] + [fmt(11, ".tif", 6)]
    assert {f.id for f in format_findings(tiffs)} == {
        "image-range-narrow",
        "image-intensity-outlier",
    }


def test_image_without_pixels_is_skipped():
    assert image_format("images/a.npy", "a.npy", np.zeros((0, 5, 1), np.uint8)) is None


def test_outliers_need_a_group_of_ten_and_a_minority():
    def fmt(i, value):
        image = np.full((8, 8, 1), value, np.uint8)
        image[0, 0] = 0  # not constant
        image[:4] //= 2  # an IQR
        return image_format(f"images/{i}.png", f"{i}.png", image)

    base = [fmt(i, 120 + i) for i in range(9)]
    assert format_findings([*base[:8], fmt(9, 3)]) == []  # 9 files: too few to judge
    found = format_findings([*base, fmt(9, 3)])
    assert [f.id for f in found] == ["image-intensity-outlier"]
    assert found[0].evidence["files"][0].startswith("images/9.png")
    half_dark = [fmt(i, 120 + i) for i in range(10)] + [fmt(10 + i, 3) for i in range(10)]
    assert format_findings(half_dark) == []  # two populations, not outliers
    assert OUTLIER_Z > 6.2  # above the largest z on the healthy sets (dsb2018: 6.2)
