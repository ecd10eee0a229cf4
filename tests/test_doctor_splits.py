"""Split-aware data checks: every check fires on a planted split problem and stays silent on real
train/val splits (dsb2018 nuclei, CamVid), including the two failures of issue 15."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdoctor.cli import main
from segdoctor.data import discover_pairs, split_pairs
from segdoctor.data.split import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION
from segdoctor.doctor.data_checks import check_data
from segdoctor.sample_data import sample_path

SPLIT_IDS = {
    "split-class-absent",
    "split-empty-masks",
    "split-object-size",
    "split-intensity-shift",
    "split-image-size",
    "split-channel-order",
    "duplicate-across-splits",
    "overlap-across-splits",
    "name-clash",
    "unsupported-file",
}


def dsb_names(shared_data: Path, n: int) -> list[str]:
    """The first ``n`` gray 256x256 dsb2018 images (small and alike: a fair split)."""
    with (shared_data / "dsb2018-nuclei" / "index.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["width"] == r["height"] == "256"]
    return [r["name"] for r in rows if r["is_gray"] == "1"][:n]


def copy_pairs(src: Path, names: list[str], dest: Path, transform=None) -> None:
    """Copy pairs ``names`` from a real dataset into ``dest/{images,masks}``, optionally changed."""
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        image, mask = src / "images" / f"{name}.png", src / "masks" / f"{name}.png"
        if transform is None:
            shutil.copy(image, dest / "images" / image.name)
            shutil.copy(mask, dest / "masks" / mask.name)
            continue
        img, msk = transform(np.asarray(Image.open(image)), np.asarray(Image.open(mask)))
        Image.fromarray(img).save(dest / "images" / image.name)
        Image.fromarray(msk).save(dest / "masks" / mask.name)


def binary(image, mask):
    """dsb2018 instance labels -> a binary 0/1 mask (what most users have)."""
    return image, (mask > 0).astype(np.uint8)


def then(first, second=None):
    return first if second is None else (lambda i, m: second(*first(i, m)))


def dsb_split(shared_data, root, n_train=12, n_val=8, val_transform=None) -> Path:
    """Real dsb2018 images with binary masks in train/ and val/ folders."""
    names = dsb_names(shared_data, n_train + n_val)
    src = shared_data / "dsb2018-nuclei"
    copy_pairs(src, names[:n_train], root / "train", binary)
    copy_pairs(src, names[n_train:], root / "val", then(binary, val_transform))
    return root


def camvid_split(shared_data, root, val_transform=None, n_train=8, n_val=6) -> Path:
    src = shared_data / "camvid-val"
    names = sorted(p.stem for p in (src / "images").iterdir())[: n_train + n_val]
    copy_pairs(src, names[:n_train], root / "train")
    copy_pairs(src, names[n_train:], root / "val", val_transform)
    return root


def findings(root):
    found, _, _ = check_data(root, plots=False)
    return {f.id: f for f in found}


def split_ids(root) -> set[str]:
    return set(findings(root)) & SPLIT_IDS


# --- healthy data: silent -------------------------------------------------------------------


def test_real_train_val_folders_are_silent(shared_data, tmp_path):
    assert split_ids(dsb_split(shared_data, tmp_path / "dsb")) == set()
    assert split_ids(camvid_split(shared_data, tmp_path / "camvid")) == set()


@pytest.mark.parametrize("which", ["sample", "dsb2018"])
def test_split_segdoctor_train_would_make_is_silent_on_healthy_data(which, shared_data):
    root = sample_path() if which == "sample" else shared_data / "dsb2018-nuclei"
    found = findings(root)
    assert not [f for f in found.values() if f.id in SPLIT_IDS and f.severity != "info"]


# --- classes --------------------------------------------------------------------------------


def _drop_class(value: int, to: int = 0):
    def transform(image, mask):
        mask = mask.copy()
        mask[mask == value] = to
        return image, mask

    return transform


def test_class_in_every_train_mask_and_no_val_mask_is_an_error(shared_data, tmp_path):
    """Issue 15: class 10 (bicyclist) in all training masks, in none of the validation masks."""
    root = camvid_split(shared_data, tmp_path, val_transform=_drop_class(10))
    found = findings(root)
    f = found["split-class-absent"]
    assert f.severity == "error"
    assert f.evidence["classes"] == [10]
    assert f.evidence["train"] == "class 10 in 8/8 masks"
    assert f.evidence["val"] == "class 10 in 0/6 masks"
    assert "folders" in f.evidence["split"]
    assert "class-absent" not in found  # the whole-dataset check cannot see it


def test_class_rare_in_train_and_absent_from_val_is_only_info(shared_data, tmp_path):
    src = shared_data / "camvid-val"
    names = sorted(p.stem for p in (src / "images").iterdir())[:14]
    copy_pairs(src, names[:1], tmp_path / "train")
    copy_pairs(src, names[1:8], tmp_path / "train", _drop_class(10))
    copy_pairs(src, names[8:], tmp_path / "val", _drop_class(10))
    f = findings(tmp_path)["split-class-absent"]
    assert f.severity == "info"  # 1 of 8 training masks: (7/8)**6 = 0.45, plausibly chance
    assert f.evidence["chance_if_same_population"] == [pytest.approx((7 / 8) ** 6, rel=1e-2)]


def test_foreground_only_in_training_binary_masks(shared_data, tmp_path):
    root = dsb_split(shared_data, tmp_path, val_transform=lambda i, m: (i, np.zeros_like(m)))
    f = findings(root)["split-class-absent"]
    assert f.severity == "error"
    assert f.evidence["val"] == "foreground in 0/8 masks"


def test_csv_split_column_is_compared(shared_data, tmp_path):
    root = camvid_split(shared_data, tmp_path / "d", val_transform=_drop_class(3))
    rows = ["image,mask,split"]
    for split in ("train", "val"):
        for p in sorted((root / split / "images").iterdir()):
            rows.append(f"d/{split}/images/{p.name},d/{split}/masks/{p.name},{split}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    f = findings(tmp_path / "pairs.csv")["split-class-absent"]
    assert f.evidence["classes"] == [3] and "CSV" in f.evidence["split"]


# --- empty masks, object size, intensity ----------------------------------------------------


def test_empty_mask_rate_differs_between_splits(shared_data, tmp_path):
    names = dsb_names(shared_data, 20)
    src = shared_data / "dsb2018-nuclei"
    copy_pairs(src, names[:12], tmp_path / "train", binary)
    copy_pairs(src, names[12:13], tmp_path / "val", binary)
    copy_pairs(src, names[13:], tmp_path / "val", lambda i, m: (i, np.zeros_like(m)))
    found = findings(tmp_path)
    f = found["split-empty-masks"]
    assert f.evidence["train"] == "0/12 masks empty (0%)"
    assert f.evidence["val"] == "7/8 masks empty (88%)"
    assert "split-class-absent" not in found  # one validation mask still has nuclei


def _zoom(factor: int):
    def transform(image, mask):
        return (
            np.repeat(np.repeat(image, factor, 0), factor, 1),
            np.repeat(np.repeat(mask, factor, 0), factor, 1),
        )

    return transform


def test_object_size_differs_between_splits(shared_data, tmp_path):
    found = findings(dsb_split(shared_data, tmp_path, val_transform=_zoom(3)))
    f = found["split-object-size"]
    assert f.evidence["median_ratio"] < 1 / 4  # areas grow 9x under a 3x zoom
    assert f.evidence["val"].startswith("object area median")
    assert "split-intensity-shift" not in found  # the zoom keeps the intensities


def test_objects_at_half_the_scale_in_one_split_are_named(shared_data):
    # Third blind test: training tiles cut from 2x downscaled images, D = 0.38 between the
    # splits' object sizes, silent at the 0.6 that the intensity checks use, since per-image
    # object sizes spread over an order of magnitude within a split. Here: dsb2018's own
    # per-image object areas, every other image's shrunk 4x (a 2x downscale).
    from dataclasses import replace

    from segdoctor.doctor import split_checks as sc

    _, summary, _ = check_data(shared_data / "dsb2018-nuclei", plots=False)
    stats = [s for s in summary.split_stats if s.object_area is not None]
    half = [replace(s, object_area=s.object_area / 4) for s in stats[0::2]]
    pair = (sc._Split("train", half), sc._Split("val", stats[1::2]))
    (f,) = sc._object_size(pair, "test")
    assert 0.3 <= f.evidence["ks_statistic"] < 0.6 and f.evidence["median_ratio"] < 0.5
    same = (sc._Split("train", stats[0::2]), sc._Split("val", stats[1::2]))
    assert sc._object_size(same, "test") == []


def _crop(size: int):
    def transform(image, mask):
        return image[:size, :size].copy(), mask[:size, :size].copy()

    return transform


def test_validation_crops_are_named_and_larger_validation_images_are_not(shared_data, tmp_path):
    found = findings(dsb_split(shared_data, tmp_path / "crops", val_transform=_crop(64)))
    f = found["split-image-size"]
    assert f.severity == "warning" and f.evidence["cropped_split"] == "val"
    assert f.evidence["area_ratio"] == 16.0  # 256x256 training images, 64x64 crops
    assert f.evidence["train"] == "median 256x256 px over 12 images"
    assert f.evidence["val"] == "median 64x64 px over 8 images"
    # the other way round (patches for training, whole images for validation) is right
    assert "split-image-size" not in findings(
        dsb_split(shared_data, tmp_path / "zoom", val_transform=_zoom(3))
    )
    # half-size crops (a quarter of the pixels) are the threshold's edge: 3/4-side crops are not
    assert "split-image-size" in findings(
        dsb_split(shared_data, tmp_path / "half", val_transform=_crop(128))
    )
    assert "split-image-size" not in findings(
        dsb_split(shared_data, tmp_path / "most", val_transform=_crop(192))
    )


def test_intensity_shift_between_splits(shared_data, tmp_path):
    def invert(image, mask):
        return 255 - image, mask  # dark fluorescence -> bright background

    found = findings(dsb_split(shared_data, tmp_path, val_transform=invert))
    f = found["split-intensity-shift"]
    assert f.evidence["ks_statistic"] >= 0.6 and f.evidence["ks_p"] < 1e-3
    assert set(f.evidence) >= {"train", "val", "split", "statistic"}
    assert "split-object-size" not in found


# --- duplicates and leakage -----------------------------------------------------------------


def test_val_images_that_are_same_name_copies_of_train_images(shared_data, tmp_path, capsys):
    """Issue 15: copies under the same file name once made diagnose exit 2."""
    root = dsb_split(shared_data, tmp_path)
    train = sorted((root / "train" / "images").iterdir())[:3]
    for image in train:
        shutil.copy(image, root / "val" / "images" / image.name)
        shutil.copy(root / "train" / "masks" / image.name, root / "val" / "masks" / image.name)
    f = findings(root)["duplicate-across-splits"]
    assert f.severity == "error" and f.evidence["across_existing_splits"]
    assert f.evidence["val"] == "3 of 11 images have a copy in another split"
    assert [f"train:{train[0].stem}", f"val:{train[0].stem}"] in f.evidence["groups"]
    assert main(["diagnose", str(root)]) == 1
    assert "duplicate-across-splits" in capsys.readouterr().out


def test_a_validation_folder_written_bgr_is_named(shared_data, tmp_path):
    # Missed by the second blind test (channel means 0.31/0.33/0.34 against 0.37/0.36/0.34):
    # per image, red below blue and blue more spread than red in every CamVid frame.
    bgr = camvid_split(shared_data, tmp_path / "bgr", lambda i, m: (i[..., ::-1].copy(), m))
    f = findings(bgr)["split-channel-order"]
    assert f.severity == "error" and "100% of 6 above 0" in f.evidence["val"]
    assert "split-channel-order" not in findings(camvid_split(shared_data, tmp_path / "rgb"))


def test_same_name_with_different_pixels_is_a_warning(shared_data, tmp_path):
    root = dsb_split(shared_data, tmp_path)
    name = sorted((root / "train" / "images").iterdir())[0].name
    other = sorted((root / "val" / "images").iterdir())[0]
    (root / "val" / "images" / other.name).rename(root / "val" / "images" / name)
    (root / "val" / "masks" / other.name).rename(root / "val" / "masks" / name)
    f = findings(root)["duplicate-across-splits"]
    assert f.severity == "warning"
    assert f.evidence["same_name_different_pixels"] == [Path(name).stem]


def test_copies_in_one_folder_use_the_split_segdoctor_train_would_make(shared_data, tmp_path):
    names = dsb_names(shared_data, 10)
    src = shared_data / "dsb2018-nuclei"
    copy_pairs(src, names, tmp_path)
    for name in names:  # every image twice, under another name
        shutil.copy(tmp_path / "images" / f"{name}.png", tmp_path / "images" / f"copy_{name}.png")
        shutil.copy(tmp_path / "masks" / f"{name}.png", tmp_path / "masks" / f"copy_{name}.png")
    train, val = split_pairs(discover_pairs(tmp_path).pairs)
    side = {p.name: p.split for p in train + val}
    leaked = sorted(n for n in names if side[n] != side[f"copy_{n}"])
    assert leaked  # the fixture must contain a leak for this test to mean anything
    f = findings(tmp_path)["duplicate-across-splits"]
    assert f.severity == "error" and not f.evidence["across_existing_splits"]
    assert "the split segdoctor train would make" in f.evidence["split"]
    assert f.evidence["count"] == len(leaked)


def test_defaults_are_those_of_segdoctor_train():
    from segdoctor.train.config import DataConfig

    config = DataConfig()
    assert (config.val_fraction, config.split_seed, config.group_by) == (
        DEFAULT_VAL_FRACTION,
        DEFAULT_SPLIT_SEED,
        None,
    )


# --- nnU-Net imagesTs: an unlabelled test split ------------------------------------------------


def nnunet_folder(shared_data, root, n_train=12, n_test=8, test_transform=None) -> Path:
    """Real dsb2018 pairs as nnU-Net raw data: imagesTr/labelsTr, and imagesTs without labels."""
    names = dsb_names(shared_data, n_train + n_test)
    src = shared_data / "dsb2018-nuclei"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    for i, name in enumerate(names):
        image, mask = binary(
            np.asarray(Image.open(src / "images" / f"{name}.png")),
            np.asarray(Image.open(src / "masks" / f"{name}.png")),
        )
        if i < n_train:
            Image.fromarray(image).save(root / "imagesTr" / f"case{i:03d}_0000.png")
            Image.fromarray(mask).save(root / "labelsTr" / f"case{i:03d}.png")
        else:
            image = image if test_transform is None else test_transform(image)
            Image.fromarray(image).save(root / "imagesTs" / f"test{i:03d}_0000.png")
    return root


def test_nnunet_imagests_is_compared_as_an_unlabelled_test_split(shared_data, tmp_path):
    assert split_ids(nnunet_folder(shared_data, tmp_path / "ok")) == set()
    root = nnunet_folder(shared_data, tmp_path / "dark", test_transform=lambda i: 255 - i)
    f = findings(root)["split-intensity-shift"]
    assert "imagesTs" in f.evidence["split"] and f.evidence["test"].startswith("image ")


def test_nnunet_imagests_copies_of_training_cases(shared_data, tmp_path):
    root = nnunet_folder(shared_data, tmp_path)
    for i in range(3):
        shutil.copy(
            root / "imagesTr" / f"case{i:03d}_0000.png", root / "imagesTs" / f"t{i}_0000.png"
        )
    f = findings(root)["duplicate-across-splits"]
    assert f.severity == "error"
    assert f.evidence["test"] == "3 of 11 images have a copy in another split"


def _scenes(rng, n):
    """Distinct textured images with a disk mask each (gray, 40 x 48: not square)."""
    out = []
    for _ in range(n):
        image = (rng.random((40, 48)) * 255).astype(np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[10:20, 12:30] = 1
        out.append((image, mask))
    return out


def write_splits(root: Path, splits: dict) -> Path:
    for split, pairs in splits.items():
        for k, (image, mask) in enumerate(pairs):
            for kind, array in (("images", image), ("masks", mask)):
                (root / split / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / split / kind / f"{split}_{k:02d}.png")
    return root


def test_flipped_or_rotated_copies_across_splits_are_duplicates(tmp_path, rng):
    train = _scenes(rng, 8)
    leaked = [(np.fliplr(i).copy(), np.fliplr(m).copy()) for i, m in train[:2]]
    leaked += [(np.rot90(i).copy(), np.rot90(m).copy()) for i, m in train[2:3]]
    root = write_splits(tmp_path, {"train": train, "val": leaked + _scenes(rng, 3)})
    f = findings(root)["duplicate-across-splits"]
    assert f.severity == "error" and f.evidence["groups_flipped_or_rotated"] == 3


def test_flipped_copies_within_the_training_split_are_not_a_leak(tmp_path, rng):
    train = _scenes(rng, 8)
    train += [(np.flipud(i).copy(), np.flipud(m).copy()) for i, m in train]  # offline augmentation
    root = write_splits(tmp_path / "ok", {"train": train, "val": _scenes(rng, 4)})
    assert "duplicate-across-splits" not in findings(root)


# --- overlapping tiles ------------------------------------------------------------------------


def isbi_tiles(shared_data: Path, stride: int, n_images: int = 2, region: int = 256) -> list:
    """``(name, image, mask)`` 64 px tiles of the top-left ``region`` px of ISBI 2012 slices, cut
    at ``stride`` (below 64: neighbouring tiles overlap), named ``sliceK_Y_X``."""
    size = 64
    src = shared_data / "isbi2012-membrane"
    tiles = []
    for k in range(n_images):
        image = np.asarray(Image.open(src / "images" / f"{k:02d}.png"))[:region, :region]
        mask = np.asarray(Image.open(src / "masks" / f"{k:02d}.png"))[:region, :region] > 127
        for y in range(0, region - size + 1, stride):
            for x in range(0, region - size + 1, stride):
                box = (slice(y, y + size), slice(x, x + size))
                tiles.append((f"slice{k}_{y}_{x}", image[box], mask[box].astype(np.uint8)))
    return tiles


def write_tiles(root: Path, tiles: list, val_every: int | None = 5) -> Path:
    """Tiles into ``train/`` and ``val/`` (every ``val_every``-th tile, as a random split would
    spread them), or into one folder when ``val_every`` is None."""
    for i, (name, image, mask) in enumerate(tiles):
        split = "" if val_every is None else ("val" if i % val_every == 2 else "train")
        for kind, array in (("images", image), ("masks", mask)):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / split / kind / f"{name}.png")
    return root


def test_overlapping_tiles_split_across_folders_are_an_error(shared_data, tmp_path):
    tiles = isbi_tiles(shared_data, stride=32)
    f = findings(write_tiles(tmp_path, tiles))["overlap-across-splits"]
    assert f.severity == "error"
    assert f.evidence["shared_pixels"] > 0.9  # each val tile is covered by its training neighbours
    n_val = sum(i % 5 == 2 for i in range(len(tiles)))
    assert f.evidence["val"].startswith(f"{n_val} of {n_val} images share a region with train")
    assert "offset" in f.evidence["pairs"][0]
    assert "data.group_by=REGEX" in f.fix  # two sources: too few groups for a split by prefix


def test_tiles_cut_without_overlap_are_silent(shared_data, tmp_path):
    found = findings(write_tiles(tmp_path, isbi_tiles(shared_data, stride=64, n_images=4)))
    assert "overlap-across-splits" not in found and "duplicate-across-splits" not in found


def test_overlapping_tiles_in_one_folder_warn_and_keep_together_splits_them_apart(
    shared_data, tmp_path
):
    tiles = isbi_tiles(shared_data, stride=32, n_images=6, region=128)
    root = write_tiles(tmp_path, tiles, val_every=None)
    f = findings(root)["overlap-across-splits"]
    assert f.severity == "warning" and "random split" in f.title
    assert "data.group_by=prefix" in f.fix  # six sources, named in the tiles' names
    pairs = discover_pairs(root).pairs
    train, val = split_pairs(pairs, 0.2, 0, keep_duplicates_together=True)
    assert {p.name.split("_")[0] for p in train}.isdisjoint({p.name.split("_")[0] for p in val})
    train, val = split_pairs(pairs, 0.2, 0)  # the default split does put neighbours apart
    assert {p.name.split("_")[0] for p in train} & {p.name.split("_")[0] for p in val}
