"""The layouts that discovery knows, each scanned into pairs (see :mod:`segdoctor.data.discover`).

One function per layout: :func:`folder_pairs` (``images/`` + ``masks/``, also each split folder of
the ``train-val`` layout), :func:`nnunet_pairs` and :func:`csv_pairs`; then
:func:`expand_slices` (3D NIfTI volumes, one pair per slice) and :func:`check_same_names`. A name
clash is refused by strict discovery (``clashes is None``) and recorded by lenient discovery.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from segdoctor.data.io import (
    NIFTI_EXTENSIONS,
    file_extension,
    file_stem,
    is_supported,
    nifti_shape,
    printable,
)
from segdoctor.data.pairs import NameClash, Pair, names_text
from segdoctor.errors import DataError

MASK_DIR_NAMES: tuple[str, ...] = ("masks", "labels", "mask", "label", "annotations")
IMAGE_DIR_NAMES: tuple[str, ...] = ("images", "image", "imgs")
SPLIT_DIR_NAMES: dict[str, str] = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
MASK_SUFFIXES: tuple[str, ...] = ("_mask", "_masks", "_label", "_labels", "_seg", "_gt", "-mask")


def list_files(folder: Path) -> tuple[list[Path], list[str]]:
    files, ignored = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        broken_link = path.is_symlink() and not path.exists()  # read_image names it
        if not (path.is_file() or broken_link):
            continue  # sub-folders (and links to folders) are not searched
        if is_supported(path):
            files.append(path)
        else:
            ignored.append(printable(f"{folder.name}/{path.name}"))
    return files, ignored


def record(clashes: list[NameClash] | None, clash: NameClash, error: DataError) -> None:
    """Strict discovery (``clashes is None``) raises ``error``; lenient discovery records it."""
    if clashes is None:
        raise error
    clashes.append(clash)


def _two_files(
    clashes: list[NameClash] | None,
    kind: str,
    key: str,
    files: tuple[Path, Path],
    prefix: str,
    what: str,
    expected: str,
) -> None:
    """Two files claim one name (``same-stem``, ``two-masks``): refused, or the first one kept."""
    shown = tuple(printable(prefix + f.name) for f in files)
    record(
        clashes,
        NameClash(kind, printable(key), shown),
        DataError(
            what,
            expected=expected,
            received=" and ".join(printable(f.name) for f in files),
            fix="remove or rename one of them.",
        ),
    )


def by_stem(
    paths: list[Path], folder: Path, clashes: list[NameClash] | None = None, prefix: str = ""
) -> dict[str, Path]:
    """File stem -> file; two files with one stem are a ``same-stem`` clash (first one kept)."""
    out: dict[str, Path] = {}
    for path in paths:
        stem = file_stem(path)
        if stem in out:
            what = f"Two files in {printable(str(folder))} have the same stem {printable(stem)!r}"
            _two_files(
                clashes, "same-stem", stem, (out[stem], path), prefix, what, "one file per name"
            )
            continue  # lenient: the first file (sorted order) is used
        out[stem] = path
    return out


def mask_key(stem: str, image_stems: set[str]) -> str:
    if stem in image_stems:
        return stem
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and stem[: -len(suffix)] in image_stems:
            return stem[: -len(suffix)]
    return stem


def match(
    images: dict[str, Path],
    masks: dict[str, Path],
    split: str | None,
    clashes: list[NameClash] | None = None,
    mask_folder: str = "",
) -> tuple[list[Pair], list[str], list[str]]:
    stems = set(images)
    keyed: dict[str, Path] = {}
    # exact stem matches first, so that lenient discovery prefers a.png over a_mask.png
    for stem, path in sorted(masks.items(), key=lambda item: (item[0] not in stems, item[0])):
        key = mask_key(stem, stems)
        if key in keyed:
            what = f"Two masks match the image {printable(key)!r}"
            _two_files(
                clashes,
                "two-masks",
                key,
                (keyed[key], path),
                mask_folder,
                what,
                "one mask per image",
            )
            continue
        keyed[key] = path
    pairs = [Pair(printable(s), images[s], keyed[s], split) for s in sorted(stems & set(keyed))]
    unpaired_images = sorted(printable(images[s].name) for s in stems - set(keyed))
    unpaired_masks = sorted(printable(keyed[s].name) for s in set(keyed) - stems)
    return pairs, unpaired_images, unpaired_masks


def find_dir(
    root: Path, names: Sequence[str], clashes: list[NameClash] | None = None, prefix: str = ""
) -> Path | None:
    found = [root / n for n in names if (root / n).is_dir()]
    if len(found) > 1:  # lenient: the first in ``names`` order is used
        record(
            clashes,
            NameClash("two-folders", names[0], tuple(f"{prefix}{p.name}/" for p in found)),
            DataError(
                f"Ambiguous folders in {root}",
                expected=f"exactly one of {', '.join(names)}",
                received=", ".join(p.name for p in found),
                fix="keep one folder, or pass mask_dir=/image_dir= explicitly.",
            ),
        )
    return found[0] if found else None


def expand_slices(pairs: list[Pair]) -> list[Pair]:
    out: list[Pair] = []
    for pair in pairs:
        if file_extension(pair.image) not in NIFTI_EXTENSIONS:
            out.append(pair)
            continue
        shape = nifti_shape(pair.image)
        depth = shape[2] if len(shape) >= 3 else 1
        if depth == 1:
            out.append(pair)
            continue
        for z in range(depth):
            out.append(replace(pair, name=f"{pair.name}_z{z:03d}", slice_index=z))
    return out


def folder_pairs(
    root: Path,
    split: str | None,
    image_dir: Path | None = None,
    mask_dir: Path | None = None,
    clashes: list[NameClash] | None = None,
) -> tuple[list[Pair], list[str], list[str], list[str]]:
    prefix = f"{split}/" if split else ""
    image_dir = image_dir or find_dir(root, IMAGE_DIR_NAMES, clashes, prefix)
    mask_dir = mask_dir or find_dir(root, MASK_DIR_NAMES, clashes, prefix)
    if image_dir is None or mask_dir is None:
        missing = "images/" if image_dir is None else "masks/ (or labels/)"
        raise DataError(
            f"No {missing} folder in {root}",
            expected="DATA/images + DATA/masks (or labels/), DATA/train + DATA/val, "
            "an nnU-Net raw folder (imagesTr + labelsTr), or a CSV of pairs",
            received="folders: "
            + (", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "(none)"),
            fix="arrange the data in one of the expected layouts (see docs/data.md).",
        )
    image_files, ignored_i = list_files(image_dir)
    mask_files, ignored_m = list_files(mask_dir)
    if not image_files:
        others = f": {names_text(ignored_i)}" if ignored_i else ""
        raise DataError(
            f"The image folder {printable(str(image_dir))} has no image files",
            expected="image files (PNG, JPEG, BMP, TIFF, NPY, NIfTI)",
            received=f"{len(ignored_i)} files of other types{others}",
            fix="put the images into this folder (or convert them to a supported format).",
        )
    images = by_stem(image_files, image_dir, clashes, f"{prefix}{image_dir.name}/")
    masks = by_stem(mask_files, mask_dir, clashes, f"{prefix}{mask_dir.name}/")
    pairs, ui, um = match(images, masks, split, clashes, f"{prefix}{mask_dir.name}/")
    return (
        pairs,
        [prefix + n for n in ui],
        [prefix + n for n in um],
        [prefix + n for n in ignored_i + ignored_m],
    )


def train_val_pairs(
    root: Path, clashes: list[NameClash] | None = None
) -> tuple[list[Pair], list[str], list[str], list[str]]:
    """Each split folder (``train/``, ``val/``, ...) scanned as :func:`folder_pairs`."""
    pairs: list[Pair] = []
    ui: list[str] = []
    um: list[str] = []
    ignored: list[str] = []
    for name in sorted(p.name for p in root.iterdir() if p.is_dir()):
        split = SPLIT_DIR_NAMES.get(name.lower())
        if split is None:
            continue
        p, a, b, ig = folder_pairs(root / name, split, clashes=clashes)
        pairs += p
        ui += a
        um += b
        ignored += ig
    return pairs, ui, um, ignored


def nnunet_pairs(
    root: Path, clashes: list[NameClash] | None = None
) -> tuple[list[Pair], list[str], list[str], list[str], dict]:
    """``imagesTr/<case>_<XXXX>`` (channels stacked in order) with ``labelsTr/<case>``."""
    metadata = _dataset_json(root)
    images, ignored = list_files(root / "imagesTr")
    labels, ignored_l = list_files(root / "labelsTr")
    cases = _nnunet_cases(images)
    _check_channels(cases, metadata)
    masks = by_stem(labels, root / "labelsTr", clashes, "labelsTr/")
    pairs = [
        Pair(
            printable(case), files[0], masks[case], None, tuple(files[i] for i in sorted(files)[1:])
        )
        for case, files in sorted(cases.items())
        if case in masks
    ]
    unpaired_images = sorted(printable(f"{c}_0000") for c in cases if c not in masks)
    unpaired_masks = sorted(printable(masks[s].name) for s in masks if s not in cases)
    ignored = ignored + ignored_l  # already "imagesTr/<name>", "labelsTr/<name>"
    return pairs, unpaired_images, unpaired_masks, ignored, metadata


def _dataset_json(root: Path) -> dict:
    """The nnU-Net ``dataset.json`` (empty without one)."""
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        return {}
    try:
        return json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(
            f"Cannot parse {meta_path.name}",
            expected="a JSON object (nnU-Net v2 dataset.json)",
            received=str(err),
            fix="fix the JSON syntax.",
        ) from err


def _nnunet_cases(images: list[Path]) -> dict[str, dict[int, Path]]:
    """Case -> channel index -> file, from ``<case>_<XXXX>`` names."""
    cases: dict[str, dict[int, Path]] = {}
    for path in images:
        stem = file_stem(path)
        case, _, channel = stem.rpartition("_")
        if not case or len(channel) != 4 or not channel.isdigit():
            raise DataError(
                f"imagesTr/{path.name} does not follow the nnU-Net naming",
                expected="<case>_<XXXX>.<ext> with a 4-digit channel index, e.g. case_001_0000.png",
                received=path.name,
                fix="rename the file (channel 0 is _0000).",
            )
        cases.setdefault(case, {})[int(channel)] = path
    return cases


def _check_channels(cases: dict[str, dict[int, Path]], metadata: dict) -> None:
    """Every case has channels 0..K-1 (K from ``channel_names`` when the metadata has it)."""
    channel_names = metadata.get("channel_names") or metadata.get("modality") or {}
    expected_channels = len(channel_names) if channel_names else None
    for case, files in cases.items():
        indices = sorted(files)
        if indices != list(range(len(indices))) or (
            expected_channels is not None and len(indices) != expected_channels
        ):
            raise DataError(
                f"Case {case!r} in imagesTr has channels {indices}",
                expected=f"channels 0..{(expected_channels or len(indices)) - 1} (_0000, _0001, ...)",
                received=", ".join(files[i].name for i in indices),
                fix="add the missing channel files or fix dataset.json channel_names.",
            )


def csv_pairs(path: Path) -> tuple[list[Pair], list[str], list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(
            f"Cannot read the CSV {path.name}",
            expected="a UTF-8 CSV with columns image,mask[,split][,group]",
            received=str(err),
            fix="fix the file.",
        ) from err
    if not rows or not {"image", "mask"} <= set(rows[0]):
        raise DataError(
            f"The CSV {path.name} has no image/mask columns",
            expected="a header row with columns image,mask (optional split, group)",
            received=f"columns {list(rows[0]) if rows else '(no rows)'}",
            fix="add a header row: image,mask",
        )
    base = path.parent
    pairs, missing_images, missing_masks, seen = [], [], [], {}
    for line, row in enumerate(rows, start=2):
        image = base / row["image"].strip()
        mask_text = (row.get("mask") or "").strip()
        mask = base / mask_text if mask_text else None
        if not image.is_file():
            missing_images.append(f"{row['image']} (line {line})")
            continue
        if mask is None or not mask.is_file():
            missing_masks.append(f"{mask_text or '(empty)'} for {image.name} (line {line})")
            continue
        name = printable(file_stem(image))
        if name in seen:
            name = f"{name}_{line}"  # same stem in two folders: keep both, uniquely named
        seen[name] = line
        split = (row.get("split") or "").strip() or None
        if split is not None:
            split = SPLIT_DIR_NAMES.get(split.lower(), split.lower())
        group = (row.get("group") or "").strip() or None
        pairs.append(Pair(name, image, mask, split, group=group))
    return pairs, missing_images, missing_masks


def check_same_names(pairs: list[Pair], clashes: list[NameClash] | None) -> None:
    """Pairs that share a name (same stem in two splits): refused (strict) or recorded."""
    by_name: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_name.setdefault(pair.name, []).append(pair)
    dupes = {name: group for name, group in sorted(by_name.items()) if len(group) > 1}
    if not dupes:
        return
    if clashes is None:
        raise DataError(
            "Two pairs have the same name",
            expected="unique image stems across splits",
            received=", ".join(_pair_files(group) for group in list(dupes.values())[:10]),
            fix="rename the files so each image stem is unique (if they are copies of one image, "
            "keep it in one split only; `segdoctor diagnose` reports such leaks).",
        )
    for name, group in dupes.items():
        files = tuple(_pair_file(p) for p in group)
        clashes.append(NameClash("same-name", name, files, tuple(p.split or "" for p in group)))


def _pair_file(pair: Pair) -> str:
    prefix = f"{pair.split}/" if pair.split else ""
    return printable(prefix + pair.image.name)


def _pair_files(group: list[Pair]) -> str:
    return " and ".join(_pair_file(p) for p in group)
