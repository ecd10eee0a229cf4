"""The records of discovery: :class:`Pair`, :class:`NameClash` and :class:`PairIndex`.

Made by :func:`segdoctor.data.discover_pairs` (see :mod:`segdoctor.data.discover` for the layouts
and the matching rules); importable from ``segdoctor.data`` and ``segdoctor.data.discover``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segdoctor.errors import DataError


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
            text += f"; images without a mask: {names_text(self.unpaired_images)}"
        if self.unpaired_masks:
            text += f"; masks without an image: {names_text(self.unpaired_masks)}"
        if self.ignored:
            text += f"; ignored (unsupported type): {names_text(self.ignored)}"
        if self.clashes:
            text += f"; name clashes: {names_text([c.describe() for c in self.clashes], 5)}"
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
            parts.append(f"images without a mask: {names_text(self.unpaired_images, 50)}")
        if self.unpaired_masks:
            parts.append(f"masks without an image: {names_text(self.unpaired_masks, 50)}")
        raise DataError(
            f"Some files in {self.root} have no counterpart",
            expected="every image to have a mask with the same file stem (and vice versa)",
            received="; ".join(parts),
            fix="add or rename the missing files, or pass on_unpaired='skip' to train on the "
            "complete pairs only (the unpaired files stay listed in the PairIndex).",
        )


def names_text(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")
