"""Find image/mask pairs on disk. Pairs are matched by file stem, never by sort order.

Layouts (detected in this order):

* ``"csv"``: ``root`` is a ``.csv`` file with columns ``image`` and ``mask`` (optional
  ``split`` and ``group``); relative paths are relative to the CSV's folder.
* ``"nnunet"``: nnU-Net v2 raw layout, ``imagesTr/<case>_<XXXX>.<ext>`` (one file per channel,
  ``_0000``, ``_0001``, ... stacked in that order) and ``labelsTr/<case>.<ext>``, with an optional
  ``dataset.json`` (its ``labels`` and ``channel_names`` are kept in ``PairIndex.metadata``).
  ``imagesTs`` (unlabelled test cases) is not paired.
* ``"train-val"``: ``train/{images,masks}`` and ``val/{images,masks}`` (also ``valid``,
  ``validation``, ``test``); ``Pair.split`` is set from the folder.
* ``"folder-pairs"``: ``images/`` with ``masks/`` (or ``labels/``, ``mask/``, ``label/``,
  ``annotations/``).

A mask matches an image when their stems are equal, or when the mask stem is the image stem plus
one of :data:`MASK_SUFFIXES` (``cell_01.png`` <-> ``cell_01_mask.png``). 3D NIfTI volumes become
one pair per slice (``Pair.slice_index``). Hidden files and files with other extensions are
ignored and listed in ``PairIndex.ignored``; sub-folders are not searched. A symbolic link with a
supported extension is kept even when its target is missing (or the links form a loop), so that
reading it reports the broken link by name instead of the file vanishing.

Strict and lenient discovery: by default (``strict=True``, what training uses) an ambiguity stops
discovery with a :class:`DataError` that names the files: two files with the same stem in one
folder, two masks that match one image, or two pairs with the same name (e.g. ``train/images/a.png``
and ``val/images/a.png``). With ``strict=False`` (what the doctor uses) discovery keeps going and
records each one as a :class:`NameClash` in ``PairIndex.clashes``: the first file (in sorted order;
for masks the exact stem match) is used, and same-name pairs in different splits are all kept.

Names (``Pair.name``, the unpaired and ignored lists) are always printable: bytes of a file name
that are not valid UTF-8 are shown as ``\\xNN`` (:func:`segdoctor.data.io.printable`); the paths
in ``Pair.image`` / ``Pair.mask`` keep the exact bytes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from segdoctor.data.io import (
    NIFTI_EXTENSIONS,
    file_extension,
    file_stem,
    is_supported,
    nifti_shape,
    printable,
)
from segdoctor.errors import ConfigError, DataError, check_choice

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
LAYOUTS: tuple[str, ...] = ("auto", "folder-pairs", "train-val", "nnunet", "csv")


@dataclass(frozen=True)
class Pair:
    """One training example: an image file and its mask file.

    Attributes:
        name: Unique name (the image stem; ``<stem>_z012`` for a NIfTI slice).
        image: The image file (for nnU-Net multi-channel cases: channel ``_0000``).
        mask: The mask file, or ``None`` for an unlabelled image.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (not assigned yet).
        channels: Further image files stacked as extra channels (nnU-Net ``_0001``, ...).
        slice_index: Slice along the third axis of a 3D NIfTI volume, else ``None``.
        group: A group key (patient, slide) from a CSV ``group`` column, used by split_pairs.

    Example:
        >>> Pair("a", Path("images/a.png"), Path("masks/a.png"), None).image_files
        (PosixPath('images/a.png'),)
    """

    name: str
    image: Path
    mask: Path | None
    split: str | None = None
    channels: tuple[Path, ...] = ()
    slice_index: int | None = None
    group: str | None = None

    @property
    def image_files(self) -> tuple[Path, ...]:
        """All image files of this pair, in channel order."""
        return (self.image, *self.channels)


CLASH_KINDS: tuple[str, ...] = ("same-stem", "two-masks", "same-name", "two-folders")


@dataclass(frozen=True)
class NameClash:
    """An ambiguity that strict discovery refuses and lenient discovery records.

    Attributes:
        kind: ``"same-stem"`` (two files with one stem in a folder), ``"two-masks"`` (two masks
            match one image), ``"same-name"`` (two pairs with one name, e.g. in two splits) or
            ``"two-folders"`` (e.g. both ``masks/`` and ``labels/``; ``name`` is the first choice).
        name: The shared stem or pair name.
        files: The files involved (printable, ``split/`` prefixed where there are splits); for
            ``same-stem``, ``two-masks`` and ``two-folders`` the first one is the one used.
        splits: For ``same-name``: the split of each pair (``""`` for none), in ``files`` order.

    Example:
        >>> NameClash("same-name", "a", ("train/a.png", "val/a.png"), ("train", "val")).describe()
        'same-name a: train/a.png, val/a.png'
    """

    kind: str
    name: str
    files: tuple[str, ...]
    splits: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: kind, name and files."""
        return f"{self.kind} {self.name}: {', '.join(self.files)}"


@dataclass
class PairIndex:
    """The result of :func:`discover_pairs`.

    Attributes:
        pairs: Matched pairs, sorted by name.
        unpaired_images: Names of images without a mask.
        unpaired_masks: Names of masks without an image.
        layout: ``"folder-pairs"``, ``"train-val"``, ``"nnunet"`` or ``"csv"``.
        root: The folder (or CSV file) that was scanned.
        ignored: Files that were skipped because their type is not readable.
        metadata: Layout metadata (nnU-Net ``dataset.json`` content), else empty.
        clashes: Ambiguities that lenient discovery (``strict=False``) kept going past.
    """

    pairs: list[Pair]
    unpaired_images: list[str]
    unpaired_masks: list[str]
    layout: str
    root: Path
    ignored: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    clashes: list[NameClash] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every image has a mask and every mask an image."""
        return not self.unpaired_images and not self.unpaired_masks

    def describe(self) -> str:
        """One paragraph: layout, counts, and every unpaired file by name."""
        splits = sorted({p.split for p in self.pairs if p.split})
        text = f"{len(self.pairs)} image/mask pairs ({self.layout} layout"
        text += f", splits: {', '.join(splits)})" if splits else ")"
        if self.unpaired_images:
            text += f"; images without a mask: {_names(self.unpaired_images)}"
        if self.unpaired_masks:
            text += f"; masks without an image: {_names(self.unpaired_masks)}"
        if self.ignored:
            text += f"; ignored (unsupported type): {_names(self.ignored)}"
        if self.clashes:
            text += f"; name clashes: {_names([c.describe() for c in self.clashes], 5)}"
        return text

    @property
    def label_hints(self) -> dict:
        """Keywords for :func:`segdoctor.data.decide_mask_policy` from nnU-Net ``dataset.json``.

        ``{"num_classes": ..., "class_names": (...), "ignore_index": ...}`` from its ``labels``
        (an ``"ignore"`` label becomes ``ignore_index``); empty without integer labels.

        Example:
            >>> idx = PairIndex([], [], [], "nnunet", Path("."),
            ...                 metadata={"labels": {"background": 0, "cell": 1, "ignore": 2}})
            >>> idx.label_hints
            {'num_classes': 2, 'class_names': ('background', 'cell'), 'ignore_index': 2}
        """
        labels = self.metadata.get("labels")
        if not isinstance(labels, dict) or not all(isinstance(v, int) for v in labels.values()):
            return {}
        classes = sorted((v, k) for k, v in labels.items() if k != "ignore")
        hints: dict = {
            "num_classes": len(classes),
            "class_names": tuple(k for _, k in classes),
        }
        if "ignore" in labels:
            hints["ignore_index"] = labels["ignore"]
        return hints

    def raise_if_incomplete(self) -> None:
        """Raise :class:`DataError` naming every image without a mask and mask without an image."""
        if self.complete:
            return
        parts = []
        if self.unpaired_images:
            parts.append(f"images without a mask: {_names(self.unpaired_images, 50)}")
        if self.unpaired_masks:
            parts.append(f"masks without an image: {_names(self.unpaired_masks, 50)}")
        raise DataError(
            f"Some files in {self.root} have no counterpart",
            expected="every image to have a mask with the same file stem (and vice versa)",
            received="; ".join(parts),
            fix="add or rename the missing files, or pass on_unpaired='skip' to train on the "
            "complete pairs only (the unpaired files stay listed in the PairIndex).",
        )


def _names(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def _files(folder: Path) -> tuple[list[Path], list[str]]:
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


def _record(clashes: list[NameClash] | None, clash: NameClash, error: DataError) -> None:
    """Strict discovery (``clashes is None``) raises ``error``; lenient discovery records it."""
    if clashes is None:
        raise error
    clashes.append(clash)


def _by_stem(
    paths: list[Path], folder: Path, clashes: list[NameClash] | None = None, prefix: str = ""
) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in paths:
        stem = file_stem(path)
        if stem in out:
            files = (printable(prefix + out[stem].name), printable(prefix + path.name))
            _record(
                clashes,
                NameClash("same-stem", printable(stem), files),
                DataError(
                    f"Two files in {printable(str(folder))} have the same stem {printable(stem)!r}",
                    expected="one file per name",
                    received=f"{printable(out[stem].name)} and {printable(path.name)}",
                    fix="remove or rename one of them.",
                ),
            )
            continue  # lenient: the first file (sorted order) is used
        out[stem] = path
    return out


def _mask_key(stem: str, image_stems: set[str]) -> str:
    if stem in image_stems:
        return stem
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and stem[: -len(suffix)] in image_stems:
            return stem[: -len(suffix)]
    return stem


def _match(
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
        key = _mask_key(stem, stems)
        if key in keyed:
            files = (printable(mask_folder + keyed[key].name), printable(mask_folder + path.name))
            _record(
                clashes,
                NameClash("two-masks", printable(key), files),
                DataError(
                    f"Two masks match the image {printable(key)!r}",
                    expected="one mask per image",
                    received=f"{printable(keyed[key].name)} and {printable(path.name)}",
                    fix="remove or rename one of them.",
                ),
            )
            continue
        keyed[key] = path
    pairs = [Pair(printable(s), images[s], keyed[s], split) for s in sorted(stems & set(keyed))]
    unpaired_images = sorted(printable(images[s].name) for s in stems - set(keyed))
    unpaired_masks = sorted(printable(keyed[s].name) for s in set(keyed) - stems)
    return pairs, unpaired_images, unpaired_masks


def _find_dir(
    root: Path, names: Sequence[str], clashes: list[NameClash] | None = None, prefix: str = ""
) -> Path | None:
    found = [root / n for n in names if (root / n).is_dir()]
    if len(found) > 1:  # lenient: the first in ``names`` order is used
        _record(
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


def _expand_slices(pairs: list[Pair]) -> list[Pair]:
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


def _folder_pairs(
    root: Path,
    split: str | None,
    image_dir: Path | None = None,
    mask_dir: Path | None = None,
    clashes: list[NameClash] | None = None,
) -> tuple[list[Pair], list[str], list[str], list[str]]:
    prefix = f"{split}/" if split else ""
    image_dir = image_dir or _find_dir(root, IMAGE_DIR_NAMES, clashes, prefix)
    mask_dir = mask_dir or _find_dir(root, MASK_DIR_NAMES, clashes, prefix)
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
    image_files, ignored_i = _files(image_dir)
    mask_files, ignored_m = _files(mask_dir)
    if not image_files:
        others = f": {_names(ignored_i)}" if ignored_i else ""
        raise DataError(
            f"The image folder {printable(str(image_dir))} has no image files",
            expected="image files (PNG, JPEG, BMP, TIFF, NPY, NIfTI)",
            received=f"{len(ignored_i)} files of other types{others}",
            fix="put the images into this folder (or convert them to a supported format).",
        )
    images = _by_stem(image_files, image_dir, clashes, f"{prefix}{image_dir.name}/")
    masks = _by_stem(mask_files, mask_dir, clashes, f"{prefix}{mask_dir.name}/")
    pairs, ui, um = _match(images, masks, split, clashes, f"{prefix}{mask_dir.name}/")
    return (
        pairs,
        [prefix + n for n in ui],
        [prefix + n for n in um],
        [prefix + n for n in ignored_i + ignored_m],
    )


def _nnunet(
    root: Path, clashes: list[NameClash] | None = None
) -> tuple[list[Pair], list[str], list[str], list[str], dict]:
    metadata: dict = {}
    meta_path = root / "dataset.json"
    if meta_path.is_file():
        try:
            metadata = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(
                f"Cannot parse {meta_path.name}",
                expected="a JSON object (nnU-Net v2 dataset.json)",
                received=str(err),
                fix="fix the JSON syntax.",
            ) from err
    images, ignored = _files(root / "imagesTr")
    labels, ignored_l = _files(root / "labelsTr")
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
    masks = _by_stem(labels, root / "labelsTr", clashes, "labelsTr/")
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


def _csv(path: Path) -> tuple[list[Pair], list[str], list[str]]:
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


def discover_pairs(
    root: str | Path,
    *,
    layout: str = "auto",
    on_unpaired: str = "error",
    image_dir: str | Path | None = None,
    mask_dir: str | Path | None = None,
    strict: bool = True,
) -> PairIndex:
    """Find image/mask pairs under ``root``, matched by file stem.

    Args:
        root: A data folder, or a ``.csv`` file of pairs.
        layout: ``"auto"`` (detect), ``"folder-pairs"``, ``"train-val"``, ``"nnunet"`` or ``"csv"``.
        on_unpaired: ``"error"`` (default) raises :class:`DataError` naming every file without a
            counterpart; ``"skip"`` keeps the complete pairs and lists the others in the index.
        image_dir: Explicit image folder (folder-pairs layout only).
        mask_dir: Explicit mask folder (folder-pairs layout only).
        strict: ``True`` (default, what training uses) raises :class:`DataError` on a name clash
            (two files with one stem, two masks for one image, two pairs with one name);
            ``False`` (what the doctor uses) records each in ``PairIndex.clashes`` and goes on.

    Returns:
        A :class:`PairIndex`.

    Raises:
        DataError: missing or empty folder, no recognizable layout, (strict) duplicate stems or
            names, or (with ``on_unpaired="error"``) unpaired files.

    Example:
        >>> from segdoctor.sample_data import sample_path
        >>> index = discover_pairs(sample_path())
        >>> index.layout, len(index.pairs) > 0
        ('folder-pairs', True)
    """
    check_choice("layout", layout, LAYOUTS)
    check_choice("on_unpaired", on_unpaired, ("error", "skip"))
    root = Path(root)
    if not root.exists():
        raise DataError(
            f"The data path {root} does not exist",
            expected="a folder with images/ and masks/, or a CSV file of pairs",
            received=str(root),
            fix="check the path.",
        )
    if layout == "auto":
        layout = _detect_layout(root)
    metadata: dict = {}
    ignored: list[str] = []
    clashes: list[NameClash] | None = None if strict else []
    if layout == "csv":
        pairs, ui, um = _csv(root)
    elif layout == "nnunet":
        pairs, ui, um, ignored, metadata = _nnunet(root, clashes)
    elif layout == "train-val":
        pairs, ui, um = [], [], []
        for name in sorted(p.name for p in root.iterdir() if p.is_dir()):
            split = SPLIT_DIR_NAMES.get(name.lower())
            if split is None:
                continue
            p, a, b, ig = _folder_pairs(root / name, split, clashes=clashes)
            pairs += p
            ui += a
            um += b
            ignored += ig
    else:
        if (image_dir is None) != (mask_dir is None):
            raise ConfigError(
                "image_dir and mask_dir must be given together",
                expected="both or neither",
                received=f"image_dir={image_dir!r}, mask_dir={mask_dir!r}",
            )
        pairs, ui, um, ignored = _folder_pairs(
            root,
            None,
            Path(image_dir) if image_dir else None,
            Path(mask_dir) if mask_dir else None,
            clashes,
        )
    pairs = _expand_slices(pairs)
    _same_names(pairs, clashes)
    if not pairs and not ui:
        raise DataError(
            f"No image/mask pairs found in {root}",
            expected="image files with matching mask files",
            received="nothing readable",
            fix="check the folder layout (see docs/data.md).",
        )
    index = PairIndex(
        sorted(pairs, key=lambda p: (p.name, p.split or "")),
        ui,
        um,
        layout,
        root,
        ignored,
        metadata,
        clashes or [],
    )
    if on_unpaired == "error":
        index.raise_if_incomplete()
    if not index.pairs:
        raise DataError(
            f"No image in {root} has a mask",
            expected="masks with the same file stem as the images",
            received=f"images: {_names(ui)}; masks: {_names(um)}",
            fix="rename the masks to match the image names.",
        )
    return index


def _same_names(pairs: list[Pair], clashes: list[NameClash] | None) -> None:
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


def _detect_layout(root: Path) -> str:
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise DataError(
            f"{root.name} is a file",
            expected="a data folder, or a .csv file of image,mask pairs",
            received=root.name,
            fix="pass the folder that contains images/ and masks/.",
        )
    if (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
        return "nnunet"
    if any((root / n).is_dir() for n in SPLIT_DIR_NAMES) and not (root / "images").is_dir():
        return "train-val"
    return "folder-pairs"
