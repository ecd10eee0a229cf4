"""Broken and unusual data folders through the public entry points: a sentence, never a traceback.

Each case of :mod:`tests.corpus` is run through ``segdoctor train`` and ``segdoctor diagnose``
(``segdoctor.cli.main``). A refused input must exit with status 2 and a message that names the file
and says what to do; ``diagnose`` reports file-level problems as findings (exit 1) and stops with
status 2 only when it cannot run at all. Every test has a timeout, so a hang fails instead of
blocking the suite.
"""

from __future__ import annotations

import json
import resource
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdoctor.cli import main
from segdoctor.data import (
    MAX_PIXELS,
    decide_mask_policy,
    discover_pairs,
    inspect_masks,
    normalize_mask,
    read_image,
    read_pair,
)
from segdoctor.data.io import display_name, read_mask
from segdoctor.errors import DataError
from tests.corpus import CASE_LIST, CASES, REFUSED, USABLE, Case, count_by_category

TINY = [
    "--epochs", "1", "--lr", "0.01", "--patch-size", "32", "--batch-size", "2",
    "--set", "model.depth=2", "--set", "model.base_filters=4", "--set", "train.verbose=0",
    "--set", "train.doctor=false", "--set", "data.samples_per_epoch=4",
]  # fmt: skip

TRAIN_XFAIL: dict = {}
DIAGNOSE_XFAIL: dict = {}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the command in-process; return (status, stdout, stderr) and forbid a traceback."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _params(cases: list[Case], xfail: dict) -> list:
    return [pytest.param(c, id=c.id, marks=xfail.get(c.id, ())) for c in cases]


def _strings(node) -> list[str]:
    """Every string in a JSON document (keys and values), unescaped."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *_strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


# ------------------------------------------------------------------------------------- train


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", _params(REFUSED, TRAIN_XFAIL))
def test_train_refuses_each_broken_input_with_a_sentence(case, tmp_path, capsys):
    data = case.build(tmp_path / "data")
    code, _out, err = cli(capsys, "train", data, "--out", tmp_path / "run", *TINY, *case.train_args)
    assert code == 2
    assert "segdoctor: error:" in err
    assert case.culprit is None or case.culprit in err, err
    assert "Fix:" in err  # the remedy
    assert not (tmp_path / "run" / "last.keras").exists()  # refused before training


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", _params(REFUSED, DIAGNOSE_XFAIL))
def test_diagnose_reports_each_broken_input(case, tmp_path, capsys):
    data = case.build(tmp_path / "data")
    report = tmp_path / "report.json"
    code, _out, err = cli(capsys, "diagnose", data, "--json", report)
    expected_code, finding = case.diagnose
    assert code == expected_code, err
    if code == 2:  # could not run: the reason and the file on stderr
        assert "segdoctor: error:" in err and "Fix:" in err
        assert case.culprit is None or case.culprit in err, err
        return
    findings = json.loads(report.read_text())["findings"]
    if finding is not None:
        assert finding in [f["id"] for f in findings]
    if case.culprit is not None:
        text = "\n".join(_strings(findings)) + err
        assert case.culprit in text


# ------------------------------------------------------------------------------------- usable


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", _params(USABLE, {}))
def test_unusual_but_valid_data_is_read_into_valid_arrays(case, tmp_path, capsys):
    data = case.build(tmp_path / "data")
    index = discover_pairs(data)
    assert len(index.pairs) == 6 and index.complete
    named = [(display_name(p.mask), read_mask(p.mask)) for p in index.pairs]
    policy = decide_mask_policy(inspect_masks(named))
    for pair in index.pairs:
        image, mask = read_pair(pair)
        assert image.ndim == 3 and image.shape[:2] == mask.shape[:2]
        assert np.isfinite(image.astype(np.float64)).all()
        labels = normalize_mask(mask, policy)
        assert labels.min() >= 0 and labels.max() < policy.num_classes
    code, _, _ = cli(capsys, "diagnose", data)
    assert code == case.diagnose[0]


@pytest.mark.timeout(120)
def test_train_runs_on_a_folder_of_unusual_but_valid_files(tmp_path, capsys):
    """RGBA and 16-bit images, an RGBA mask, a 1x1 pair, non-UTF-8 names and a folder link loop."""
    data = CASES["one-pixel-pair"].build(tmp_path / "data")  # case_002 is 1x1
    for make in ("rgba-images", "rgba-mask", "symlink-dir-loop", "non-utf8-pair"):
        CASES[make].make(data)
    (data / "images" / "case_004.png").unlink()  # and one 16-bit gray image
    Image.fromarray(np.full((32, 32), 40_000, np.uint16)).save(data / "images" / "case_004.png")
    code, _out, err = cli(capsys, "train", data, "--out", tmp_path / "run", *TINY)
    assert code == 0, err
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    names = meta["train_names"] + meta["val_names"]
    assert len(names) == 6 and "case_002_\\xe9t\\xe9" in names
    assert meta["channels"] == 3  # RGBA -> RGB; the gray 16-bit image is repeated to 3


@pytest.mark.timeout(120)
def test_train_runs_on_a_folder_of_1x1_images(tmp_path, capsys):
    data = CASES["all-one-pixel"].build(tmp_path / "data")
    code, _, err = cli(capsys, "train", data, "--out", tmp_path / "run", *TINY)
    assert code == 0, err
    assert (tmp_path / "run" / "best.keras").is_file()


# ------------------------------------------------------------------------------------- skip


@pytest.mark.timeout(120)
def test_skip_bad_files_trains_on_the_rest_and_lists_what_it_skipped(tmp_path, capsys):
    data = CASES["truncated-png-image"].build(tmp_path / "data")
    (data / "images" / "case_004.png").unlink()  # a second broken image, on another pair
    np.save(data / "images" / "case_004.npy", np.full((32, 32), np.nan, np.float32))
    (data / "images" / "stray.png").write_bytes(b"")  # no mask: listed as unpaired
    code, out, err = cli(
        capsys, "train", data, "--out", tmp_path / "run", *TINY,
        "--set", "data.on_error=skip",
    )  # fmt: skip
    assert code == 0, err
    skipped = [line for line in out.splitlines() if line.startswith("Skipped")]
    assert len(skipped) == 2
    assert "images/case_002.png" in skipped[0] + skipped[1]
    assert "images/case_004.npy" in skipped[0] + skipped[1]
    assert "stray.png" in out  # the unpaired image is listed too


@pytest.mark.timeout(60)
def test_skip_bad_files_also_skips_a_broken_mask(tmp_path, capsys):
    # spelt the old way (data.skip_bad_files, before data.on_error): still works, with a warning
    data = CASES["truncated-png-mask"].build(tmp_path / "data")
    with warnings.catch_warnings(record=True) as caught:  # not pytest.warns: it re-raises
        warnings.simplefilter("always")  # the backends' own warnings, which pyproject ignores
        code, out, err = cli(
            capsys, "train", data, "--out", tmp_path / "run", *TINY,
            "--set", "data.skip_bad_files=true",
        )  # fmt: skip
    deprecated = [str(w.message) for w in caught if w.category is FutureWarning]
    assert any(
        "data.skip_bad_files is deprecated" in m and "data.on_error=skip" in m for m in deprecated
    )
    assert code == 0, err
    assert "masks/case_002.png" in out


@pytest.mark.timeout(60)
def test_each_skippable_file_is_skipped_by_the_loader_with_its_name(tmp_path):
    from segdoctor.data import SegmentationDataset

    file_level = [c for c in REFUSED if c.diagnose[1] in ("unreadable-file", "pair-shape-mismatch")]
    assert len(file_level) >= 25
    for case in file_level:
        data = case.build(tmp_path / case.id)
        index = discover_pairs(data)
        dataset = SegmentationDataset(index.pairs, patch_size=32, batch_size=2, on_error="skip")
        skipped = ["case_002", "loop_b"] if case.id == "symlink-loop" else ["case_002"]
        assert [name for name, _ in dataset.skipped] == skipped, case.id
        assert len(dataset.pairs) == len(index.pairs) - len(skipped), case.id
        assert case.culprit in dataset.describe(), case.id


# ------------------------------------------------------------------------------------- bombs


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case_id", ["bomb-png-144mp", "bomb-png-10gp", "bomb-tiff", "bomb-npy"])
def test_decompression_bomb_is_refused_without_allocating_it(case_id, tmp_path):
    case = CASES[case_id]
    data = case.build(tmp_path / "data")
    path = data / "images" / case.culprit
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="pixel limit") as info:
            read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert f"{MAX_PIXELS:,}" in str(info.value) and case.culprit in str(info.value)
    assert peak < 8 * 2**20  # numpy allocations: far below even one declared row band
    assert rss_after - rss_before < 64 * 1024  # KiB: the declared image is >= 144 MB


@pytest.mark.timeout(60)
def test_pixel_limit_is_adjustable_for_genuine_large_images(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.zeros((64, 64), np.uint8))
    with pytest.raises(DataError, match="pixel limit"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=64 * 64).shape == (64, 64, 1)


# ------------------------------------------------------------------------------------- values


def test_an_out_of_range_mask_value_is_refused_with_the_file_that_holds_it(tmp_path):
    data = CASES["mask-value-7"].build(tmp_path / "data")
    index = discover_pairs(data)
    named = [(display_name(p.mask), read_mask(p.mask)) for p in index.pairs]
    with pytest.raises(DataError, match=r"masks/case_002\.png") as info:
        decide_mask_policy(inspect_masks(named), num_classes=2)
    assert "data.num_classes" in str(info.value)
    data = CASES["mask-negative"].build(tmp_path / "neg")
    index = discover_pairs(data)
    named = [(display_name(p.mask), read_mask(p.mask)) for p in index.pairs]
    with pytest.raises(DataError, match=r"value -1 first in masks/case_002\.npy"):
        decide_mask_policy(inspect_masks(named))


def test_the_corpus_covers_every_category_of_the_issue():
    counts = count_by_category()
    assert len(CASE_LIST) == len(CASES)  # unique ids
    for category in [
        "truncated file",
        "zero-byte file",
        "text with an image extension",
        "image and mask sizes differ",
        "NaN or Inf values",
        "1x1 images",
        "decompression bomb",
        "non-UTF-8 file name",
        "symlink loop or broken link",
        "same stem, different extensions",
        "mask values outside the classes",
        "RGBA and 16-bit",
        "empty folder",
        "missing masks folder",
    ]:
        assert counts.get(category, 0) >= 2, category


def test_a_data_path_that_is_missing_or_a_file_is_explained(tmp_path, capsys):
    code, _, err = cli(capsys, "diagnose", tmp_path / "nope")
    assert code == 2 and "does not exist" in err
    (tmp_path / "a.png").write_bytes(b"x")
    code, _, err = cli(capsys, "train", tmp_path / "a.png", "--out", tmp_path / "run", *TINY)
    assert code == 2 and "a.png is a file" in err


def test_printable_names_round_trip_to_the_original_file(tmp_path):
    """Pair names show undecodable bytes as \\xNN; the pair's paths still open the right files."""
    data = CASES["non-utf8-pair"].build(tmp_path / "data")
    index = discover_pairs(data)
    (pair,) = [p for p in index.pairs if p.name.startswith("case_002")]
    assert pair.name == "case_002_\\xe9t\\xe9"
    pair.name.encode("utf-8")  # always encodable
    image, mask = read_pair(pair)
    assert image.shape[:2] == mask.shape[:2] == (32, 32)
    assert Path(pair.image).exists()
