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

The work is split by job: :mod:`segdoctor.data.pairs` (the records :class:`Pair`,
:class:`NameClash`, :class:`PairIndex`), :mod:`segdoctor.data.layouts` (one scanner per layout)
and here the choice of layout and the checks on the whole index.
"""

from __future__ import annotations

from pathlib import Path

from segdoctor.data.layouts import (
    IMAGE_DIR_NAMES,
    MASK_DIR_NAMES,
    MASK_SUFFIXES,
    SPLIT_DIR_NAMES,
    check_same_names,
    csv_pairs,
    expand_slices,
    folder_pairs,
    nnunet_pairs,
    train_val_pairs,
)
from segdoctor.data.pairs import CLASH_KINDS, NameClash, Pair, PairIndex, names_text
from segdoctor.errors import ConfigError, DataError, check_choice

__all__ = [
    "CLASH_KINDS",
    "IMAGE_DIR_NAMES",
    "LAYOUTS",
    "MASK_DIR_NAMES",
    "MASK_SUFFIXES",
    "SPLIT_DIR_NAMES",
    "NameClash",
    "Pair",
    "PairIndex",
    "discover_pairs",
]

LAYOUTS: tuple[str, ...] = ("auto", "folder-pairs", "train-val", "nnunet", "csv")


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
    root = _existing_root(root)
    if layout == "auto":
        layout = _detect_layout(root)
    clashes: list[NameClash] | None = None if strict else []
    pairs, ui, um, ignored, metadata = _scan(root, layout, image_dir, mask_dir, clashes)
    pairs = expand_slices(pairs)
    check_same_names(pairs, clashes)
    if not pairs and not ui:
        raise DataError(
            f"No image/mask pairs found in {root}",
            expected="image files with matching mask files",
            received="nothing readable",
            fix="check the folder layout (see docs/data.md).",
        )
    pairs = sorted(pairs, key=lambda p: (p.name, p.split or ""))
    index = PairIndex(pairs, ui, um, layout, root, ignored, metadata, clashes or [])
    _check_complete(index, on_unpaired)
    return index


def _existing_root(root: str | Path) -> Path:
    """``root`` as a :class:`Path`; DataError when nothing exists there.

    Example:
        >>> from segdoctor.sample_data import sample_path
        >>> _existing_root(str(sample_path())) == sample_path()
        True
    """
    root = Path(root)
    if not root.exists():
        raise DataError(
            f"The data path {root} does not exist",
            expected="a folder with images/ and masks/, or a CSV file of pairs",
            received=str(root),
            fix="check the path.",
        )
    return root


def _check_complete(index: PairIndex, on_unpaired: str) -> None:
    """Raise DataError for unpaired files (``on_unpaired="error"``) or when no image has a mask.

    Args:
        index: the discovered index.
        on_unpaired: ``"error"`` raises naming every file without a counterpart; ``"skip"``
            accepts them as long as one complete pair remains.

    Example:
        >>> from segdoctor.sample_data import sample_path
        >>> _check_complete(discover_pairs(sample_path()), "error")  # complete: no error
    """
    if on_unpaired == "error":
        index.raise_if_incomplete()
    if not index.pairs:
        raise DataError(
            f"No image in {index.root} has a mask",
            expected="masks with the same file stem as the images",
            received=f"images: {names_text(index.unpaired_images)}; "
            f"masks: {names_text(index.unpaired_masks)}",
            fix="rename the masks to match the image names.",
        )


def _scan(
    root: Path,
    layout: str,
    image_dir: str | Path | None,
    mask_dir: str | Path | None,
    clashes: list[NameClash] | None,
) -> tuple[list[Pair], list[str], list[str], list[str], dict]:
    """``(pairs, unpaired images, unpaired masks, ignored, metadata)`` of one layout."""
    if layout == "csv":
        return (*csv_pairs(root), [], {})
    if layout == "nnunet":
        return nnunet_pairs(root, clashes)
    if layout == "train-val":
        return (*train_val_pairs(root, clashes), {})
    if (image_dir is None) != (mask_dir is None):
        raise ConfigError(
            "image_dir and mask_dir must be given together",
            expected="both or neither",
            received=f"image_dir={image_dir!r}, mask_dir={mask_dir!r}",
        )
    found = folder_pairs(
        root,
        None,
        Path(image_dir) if image_dir else None,
        Path(mask_dir) if mask_dir else None,
        clashes,
    )
    return (*found, {})


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
