"""Discovery: pairs matched by stem, never by order; every layout; unpaired files named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdoctor.data import discover_pairs, read_pair
from segdoctor.errors import DataError


def _png(path: Path, value: int, size=(8, 6), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).convert(mode).save(path)


def test_pairs_matched_by_stem_not_by_sort_order(tmp_path):
    # Sorted order of masks differs from images: "b_mask" sorts before "c" but after "a".
    for stem, value in [("c", 3), ("a", 1), ("b", 2)]:
        _png(tmp_path / "images" / f"{stem}.png", value)
    _png(tmp_path / "masks" / "a.png", 1)
    _png(tmp_path / "masks" / "b_mask.png", 2)  # suffix convention
    _png(tmp_path / "masks" / "c.tif", 3)  # other extension, same stem
    index = discover_pairs(tmp_path)
    assert index.layout == "folder-pairs"
    assert [p.name for p in index.pairs] == ["a", "b", "c"]
    for pair in index.pairs:
        image, mask = read_pair(pair)
        assert image[0, 0, 0] == mask[0, 0], pair.name  # each image got its own mask


def test_missing_counterparts_named(tmp_path):
    _png(tmp_path / "images" / "one.png", 1)
    _png(tmp_path / "images" / "two.png", 1)
    _png(tmp_path / "labels" / "one.png", 1)
    _png(tmp_path / "labels" / "three.png", 1)
    with pytest.raises(DataError, match=r"two\.png.*three\.png"):
        discover_pairs(tmp_path)
    index = discover_pairs(tmp_path, on_unpaired="skip")
    assert [p.name for p in index.pairs] == ["one"]
    assert index.unpaired_images == ["two.png"]
    assert index.unpaired_masks == ["three.png"]
    assert "two.png" in index.describe() and "three.png" in index.describe()


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover_pairs(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="empty"):
        discover_pairs(tmp_path)
    with pytest.raises(DataError, match="No images/"):
        discover_pairs(tmp_path / "images")


def test_ignores_hidden_and_foreign_files(tmp_path):
    _png(tmp_path / "images" / "a.png", 1)
    _png(tmp_path / "masks" / "a.png", 1)
    (tmp_path / "images" / ".DS_Store").write_text("x")
    (tmp_path / "images" / "notes.txt").write_text("x")
    index = discover_pairs(tmp_path)
    assert len(index.pairs) == 1
    assert index.ignored == ["images/notes.txt"]


def test_duplicate_stem_is_an_error(tmp_path):
    _png(tmp_path / "images" / "a.png", 1)
    _png(tmp_path / "images" / "a.bmp", 1)
    _png(tmp_path / "masks" / "a.png", 1)
    with pytest.raises(DataError, match=r"a\.bmp.*a\.png|a\.png.*a\.bmp"):
        discover_pairs(tmp_path)


def test_train_val_layout(tmp_path):
    for split, names in [("train", ["t1", "t2"]), ("val", ["v1"])]:
        for n in names:
            _png(tmp_path / split / "images" / f"{n}.png", 1)
            _png(tmp_path / split / "masks" / f"{n}.png", 1)
    index = discover_pairs(tmp_path)
    assert index.layout == "train-val"
    assert {(p.name, p.split) for p in index.pairs} == {
        ("t1", "train"),
        ("t2", "train"),
        ("v1", "val"),
    }


def test_nnunet_layout_stacks_channels(tmp_path):
    for case, v in [("case_001", 10), ("case_002", 20)]:
        _png(tmp_path / "imagesTr" / f"{case}_0000.png", v)
        _png(tmp_path / "imagesTr" / f"{case}_0001.png", v + 1)
        _png(tmp_path / "labelsTr" / f"{case}.png", 1)
    meta = {"channel_names": {"0": "a", "1": "b"}, "labels": {"background": 0, "x": 1}}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    index = discover_pairs(tmp_path)
    assert index.layout == "nnunet"
    assert index.metadata["labels"] == {"background": 0, "x": 1}
    assert index.label_hints == {"num_classes": 2, "class_names": ("background", "x")}
    assert [p.name for p in index.pairs] == ["case_001", "case_002"]
    image, _mask = read_pair(index.pairs[1])
    assert image.shape == (8, 6, 2)
    assert image[0, 0].tolist() == [20, 21]  # channel order _0000, _0001


def test_nnunet_missing_channel(tmp_path):
    _png(tmp_path / "imagesTr" / "c_0000.png", 1)
    _png(tmp_path / "labelsTr" / "c.png", 1)
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "a", "1": "b"}}))
    with pytest.raises(DataError, match="channels"):
        discover_pairs(tmp_path)


def test_csv_layout(tmp_path):
    _png(tmp_path / "x" / "img1.png", 1)
    _png(tmp_path / "y" / "lab1.png", 1)
    _png(tmp_path / "x" / "img2.png", 2)
    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "image,mask,split,group\nx/img1.png,y/lab1.png,train,p1\nx/img2.png,y/gone.png,val,p2\n"
    )
    with pytest.raises(DataError, match=r"gone\.png"):
        discover_pairs(csv)
    index = discover_pairs(csv, on_unpaired="skip")
    assert index.layout == "csv"
    assert index.pairs[0].split == "train" and index.pairs[0].group == "p1"
    assert index.unpaired_masks and "gone.png" in index.unpaired_masks[0]


def test_nifti_volumes_become_slices(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    lab = (vol % 2).astype(np.uint8)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "images" / "v.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "masks" / "v.nii.gz")
    index = discover_pairs(tmp_path)
    assert [p.name for p in index.pairs] == ["v_z000", "v_z001", "v_z002"]
    image, mask = read_pair(index.pairs[2])
    np.testing.assert_array_equal(image[..., 0], vol[:, :, 2])
    np.testing.assert_array_equal(mask, lab[:, :, 2])


def test_real_datasets_discovered(shared_data):
    for name, n in [("dsb2018-nuclei", 167), ("isbi2012-membrane", 30), ("camvid-val", 101)]:
        index = discover_pairs(shared_data / name)
        assert len(index.pairs) == n and index.complete


def test_clashes_stop_strict_discovery_and_are_recorded_by_lenient_discovery(tmp_path):
    _png(tmp_path / "images" / "a.png", 1)
    _png(tmp_path / "images" / "a.tif", 2)  # same stem, another format
    _png(tmp_path / "images" / "b.png", 3)
    _png(tmp_path / "masks" / "a.png", 1)
    _png(tmp_path / "masks" / "b.png", 1)
    _png(tmp_path / "masks" / "b_mask.png", 1)  # a second mask for b
    with pytest.raises(DataError, match=r"a\.png and a\.tif"):
        discover_pairs(tmp_path)  # strict: what segdoctor train uses
    index = discover_pairs(tmp_path, strict=False)
    assert [p.name for p in index.pairs] == ["a", "b"]
    assert index.pairs[0].image.name == "a.png"  # the first in sorted order is used
    assert index.pairs[1].mask.name == "b.png"  # the exact stem match wins over b_mask.png
    assert [c.describe() for c in index.clashes] == [
        "same-stem a: images/a.png, images/a.tif",
        "two-masks b: masks/b.png, masks/b_mask.png",
    ]
    assert "name clashes" in index.describe()


def test_same_name_in_two_splits_is_refused_strictly_and_kept_leniently(tmp_path):
    for split, value in [("train", 1), ("val", 1)]:
        _png(tmp_path / split / "images" / "x.png", value)
        _png(tmp_path / split / "masks" / "x.png", 1)
    _png(tmp_path / "train" / "images" / "y.png", 2)
    _png(tmp_path / "train" / "masks" / "y.png", 1)
    with pytest.raises(DataError, match=r"train/x\.png and val/x\.png"):
        discover_pairs(tmp_path)
    index = discover_pairs(tmp_path, strict=False)
    assert [(p.name, p.split) for p in index.pairs] == [
        ("x", "train"),
        ("x", "val"),
        ("y", "train"),
    ]
    (clash,) = index.clashes
    assert (clash.kind, clash.name, clash.splits) == ("same-name", "x", ("train", "val"))
    assert clash.files == ("train/x.png", "val/x.png")


def test_lenient_discovery_of_clean_data_records_nothing(shared_data):
    index = discover_pairs(shared_data / "dsb2018-nuclei", strict=False)
    assert len(index.pairs) == 167 and index.clashes == []


def test_two_mask_folders_are_a_clash_in_lenient_discovery(tmp_path):
    _png(tmp_path / "images" / "a.png", 1)
    _png(tmp_path / "masks" / "a.png", 1)
    _png(tmp_path / "labels" / "a.png", 0)
    with pytest.raises(DataError, match="Ambiguous folders"):
        discover_pairs(tmp_path)
    index = discover_pairs(tmp_path, strict=False)
    assert index.pairs[0].mask.parent.name == "masks"  # the first of MASK_DIR_NAMES
    assert [c.describe() for c in index.clashes] == ["two-folders masks: masks/, labels/"]
