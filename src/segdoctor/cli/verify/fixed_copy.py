"""A corrected copy of the data (``--write-fixed OUT``); the user's files are never changed.

Example:
    >>> "mask-lossy-format" in DATA_FIXES
    True
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segdoctor import data as sd
from segdoctor.cli.verify.data_fixes import SnapToLabels, label_set
from segdoctor.cli.verify.plan import DataPlan, plan_data
from segdoctor.cli.verify.results import Labels
from segdoctor.data.io import file_extension
from segdoctor.doctor import Report
from segdoctor.errors import SegdoctorError

SNAPPED = ("mask-fractional", "mask-lossy-format")
"""Finding ids whose masks the copy snaps to the nearest of their labels."""
DATA_FIXES = ("mask-scale-255", *SNAPPED, "duplicate-across-splits", "unreadable-file")
"""Finding ids whose fix ``--write-fixed`` applies to a copy of the data."""


def _check_destination(out: Path, root: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SegdoctorError(
            f"--write-fixed {out} already exists",
            expected="a new (or empty) folder for the corrected copy",
            fix="choose another folder, or remove this one first.",
        )
    folder = root if root.is_dir() else root.parent
    if out.resolve().is_relative_to(folder.resolve()):
        raise SegdoctorError(
            f"--write-fixed {out} is inside the data folder {folder}",
            expected="a folder outside the data (the user's files are never changed)",
            fix="write the copy next to the data, e.g. --write-fixed data-fixed.",
        )


def _fixed_policy(pairs: Sequence[sd.Pair]) -> sd.MaskPolicy | None:
    """The 0/k -> 0/1 decision for the masks, or None when they need no rescaling."""
    masks = ((p.name, sd.read_mask(p.mask)) for p in pairs)
    policy = sd.decide_mask_policy(sd.inspect_masks(masks))
    return policy if policy.kind in ("scale-255", "two-value") else None


def _mask_fix(report: Report, pairs: Sequence[sd.Pair]) -> tuple[Labels | None, dict[str, Any]]:
    """The transform the copy's masks go through, and what it did (for ``fixes.json``)."""
    ids = set(report.ids)
    policy = _fixed_policy(pairs) if "mask-scale-255" in ids else None
    if policy is not None:
        changes = {"masks_rescaled": policy.describe(), "masks_snapped": None}
        return (lambda m: sd.normalize_mask(m, policy)), changes  # (H, W) {0, 1}
    lossy = [f for f in report.findings if f.id in SNAPPED]
    labels = label_set(lossy[0], pairs) if lossy else ()
    if len(labels) >= 2:
        return SnapToLabels(labels), {"masks_rescaled": None, "masks_snapped": list(labels)}
    return None, {"masks_rescaled": None, "masks_snapped": None}


def _dropped_copies(plan: DataPlan) -> set[str]:
    """Training copies of validation images (own split), else every later copy of an image."""
    if plan.has_splits:
        return {train for train, _ in sd.cross_split_duplicates(plan.train, plan.val)}
    return {dup for _, dup in sd.find_duplicates([*plan.train, *plan.val])}


def _copy_pair(pair: sd.Pair, folder: Path, masks: Labels | None) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pair.image, folder / "images" / f"{pair.name}{file_extension(pair.image)}")
    if masks is None:
        shutil.copyfile(pair.mask, folder / "masks" / f"{pair.name}{file_extension(pair.mask)}")
        return
    mask = np.asarray(masks(sd.read_mask(pair.mask)))  # (H, W) class indices
    Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"{pair.name}.png")


def write_fixed_copy(
    data: str | Path, out: str | Path, report: Report, plan: DataPlan | None = None
) -> Path:
    """Write a corrected copy of ``data`` to ``out``, atomically; the originals stay untouched.

    Applies the data fixes of the report's findings (:data:`DATA_FIXES`): masks stored as 0/k
    rewritten as 0/1 PNG, masks with in-between values (bilinear resize, JPEG) snapped to the
    nearest of their labels and written as PNG, the training copies of validation images
    dropped (without a split of its own: every later copy of an image), unreadable pairs left
    out. The copy keeps the data's
    train/val folders when it has them (``images/`` and ``masks/`` otherwise) and lists what
    was changed in ``fixes.json``. It is built in a temporary folder next to ``out`` and renamed
    into place when complete.

    Example:
        >>> # write_fixed_copy("data", "data-fixed", diagnose("data"))
    """
    root, out = Path(data), Path(out)
    _check_destination(out, root)
    ids = set(report.ids)
    plan = plan or plan_data(root, check_readable="unreadable-file" in ids)
    pairs = [*plan.train, *plan.val]
    masks, mask_changes = _mask_fix(report, pairs)
    dropped = _dropped_copies(plan) if "duplicate-across-splits" in ids else set()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for split, group in (("train", plan.train), ("val", plan.val)):
            for pair in group:
                if split == "val" or pair.name not in dropped:
                    _copy_pair(pair, tmp / split if plan.has_splits else tmp, masks)
        changes = {
            "source": str(root),
            **mask_changes,
            "dropped_copies": sorted(dropped),
            "dropped_unreadable": sorted(p.name for p in plan.unreadable),
        }
        (tmp / "fixes.json").write_text(json.dumps(changes, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked above): os.replace needs it gone or empty
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
