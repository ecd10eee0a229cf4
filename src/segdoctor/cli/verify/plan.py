"""The data both runs of a comparison see: the pairs, split once, written as CSV lists.

Example:
    >>> DataPlan(Path("data"), [], []).has_splits
    False
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from segdoctor import data as sd
from segdoctor.cli.verify.results import Labels
from segdoctor.errors import ConfigError, SegdoctorError

VAL_FRACTION = 0.2
"""Share of the pairs held out for validation when the data has no split of its own."""


@dataclass
class DataPlan:
    """The pairs, split once for every run (the data's own split when it has one).

    Attributes:
        root: The data folder (or CSV).
        train, val: The split (``split_pairs`` with :data:`VAL_FRACTION` and the seed).
        unreadable: Pairs whose image or mask cannot be read (only looked for on request).
        has_splits: Whether the data came with its own train/val split.
    """

    root: Path
    train: list[sd.Pair]
    val: list[sd.Pair]
    unreadable: list[sd.Pair] = field(default_factory=list)
    has_splits: bool = False


def _readable(pair: sd.Pair) -> bool:
    try:
        sd.read_pair(pair)
    except (SegdoctorError, OSError, ValueError):
        return False
    return True


def plan_data(data: str | Path, seed: int = 0, check_readable: bool = False) -> DataPlan:
    """Discover the pairs (leniently, as the doctor does) and split them once.

    Raises:
        ConfigError: 3D volumes or multi-file (nnU-Net multi-channel) images, which the
            verifying runs cannot list yet.
    """
    root = Path(data)
    index = sd.discover_pairs(root, on_unpaired="skip", strict=False)
    special = [p.name for p in index.pairs if p.slice_index is not None or p.channels]
    if special:
        raise ConfigError(
            "--verify cannot use 3D volumes or multi-file images yet",
            expected="2D image files (one file per image and per mask)",
            received=f"{len(special)} such pairs, e.g. {special[0]}",
            fix="run `segdoctor diagnose` without --verify, and apply the fixes by hand.",
        )
    bad = [p for p in index.pairs if not _readable(p)] if check_readable else []
    good = [p for p in index.pairs if p not in bad]
    has_splits = bool(good) and all(p.split in ("train", "val") for p in good)
    train, val = sd.split_pairs(good, VAL_FRACTION, seed=seed)
    return DataPlan(root, train, val, bad, has_splits and bool(train) and bool(val))


def write_csv(path: Path, pairs: Sequence[sd.Pair]) -> Path:
    """Write ``pairs`` as an image,mask CSV list (absolute paths) that the recipe reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask"])
        writer.writerows([[str(p.image.resolve()), str(p.mask.resolve())] for p in pairs])
    return path


def materialize(pairs: Sequence[sd.Pair], masks: Labels | None, folder: Path) -> list[sd.Pair]:
    """``pairs`` with their masks passed through ``masks`` and written as PNG under ``folder``.

    The images stay where they are; None returns the pairs unchanged.

    Example:
        >>> materialize([], None, Path("w"))
        []
    """
    if masks is None:
        return list(pairs)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for pair in pairs:
        labels = np.asarray(masks(sd.read_mask(pair.mask)))  # (H, W) class indices
        path = folder / f"{pair.name}.png"
        Image.fromarray(labels.astype(np.uint8)).save(path)
        out.append(replace(pair, mask=path))
    return out
