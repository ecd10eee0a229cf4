"""Prescriptions that change the data itself: how masks are read, which pairs train, the split.

Each prescriber takes a finding, the :class:`~segdoctor.cli.verify.plan.DataPlan` and the user's
model (unused here: these fixes are in the data) and returns a
:class:`~segdoctor.cli.verify.results.Prescription` (how to reproduce the fault, and the fix) or an
:class:`~segdoctor.cli.verify.results.Unverified` saying why it cannot be measured.

Example:
    >>> SnapToLabels((0.0, 255.0))(np.array([[0, 120, 130, 255]])).tolist()
    [[0, 0, 1, 1]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from segdoctor import data as sd
from segdoctor.cli.verify.plan import DataPlan
from segdoctor.cli.verify.results import MIN_IMAGES, Prescription, RunData, Unverified
from segdoctor.data.near_copies import photometric_copies, thumbnail
from segdoctor.data.overlap import block_print, find_overlaps
from segdoctor.data.split import orientation_free_hash
from segdoctor.doctor import Finding
from segdoctor.doctor.alignment import MISALIGNED_BELOW, alignment_score

LABEL_SHARE = 0.002
"""An integer mask value counts as a label (not an interpolation or ringing artifact) when it
covers at least this share of the sampled mask pixels."""
LABEL_SAMPLE = 200
"""Masks read to find the label set of fractional masks."""
MAX_AS_CLASSES = 8
"""Stored values up to this are read as class indices by the as-diagnosed run of a lossy mask
(``num_classes = mask.max() + 1``); above it, as "nonzero is foreground"."""
REPAIR_MAX_PAIRS = 150
"""Largest number of pairs re-paired by content (every image is scored against every mask)."""


def _equals(value: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda labels: np.asarray(labels) == value


def _positive(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels) > 0


def _mask_scale_255(f: Finding, plan: DataPlan, model: Any = None) -> Prescription:
    top = int(max(f.evidence.get("values") or [255]))
    return Prescription(
        f.id,
        f"read the masks as {{0, 1}} ({top} -> 1)",
        f"stored values taken as class indices, {top + 1} classes, as a pipeline that sets "
        "num_classes = mask.max() + 1",
        {"data.mask_policy": "multiclass"},
        {"data.mask_policy": "auto"},
        foreground=_equals(top),
        note=f"`segdoctor train` reads 0/{top} masks right by itself (mask_policy auto): the "
        "comparison shows what the fault costs a pipeline that takes the values as classes; one "
        f"that feeds 0/{top} to a sigmoid loss fails worse, and the recipe cannot be told to do "
        "that. Both runs are scored against the true foreground.",
    )


def _mask_instances(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    top = int(f.evidence.get("max_label") or 0)
    if top > 255:
        return Unverified(
            f.id,
            "not-verifiable",
            f"as diagnosed the network would need {top + 1} output channels (one per instance "
            "label): too large for a short run.",
        )
    return Prescription(
        f.id,
        "read the masks as a binary foreground (label > 0)",
        f"instance labels taken as class indices, {top + 1} classes",
        {"data.mask_policy": "multiclass"},
        {"data.mask_policy": "instance"},
        foreground=_positive,
        note="`segdoctor train` converts instance labels to a foreground by itself (mask_policy "
        "auto): the comparison shows what the fault costs a pipeline that takes the labels as "
        "classes. Both runs are scored against the foreground (label > 0).",
    )


def _photometric_leaks(plan: DataPlan, found: set[str]) -> list[tuple[str, str]]:
    """``(train, val)`` names of validation images that are training images with changed
    brightness, contrast or colour (:mod:`segdoctor.data.near_copies`), beyond ``found``."""
    train, val = list(plan.train), [p for p in plan.val if p.name not in found]

    def reader(pairs):
        return lambda i: sd.read_pair(pairs[i])[0]

    thumbs = [[thumbnail(reader(side)(i)) for i in range(len(side))] for side in (val, train)]
    copies = photometric_copies(thumbs[0], thumbs[1], reader(val), reader(train))
    return [(train[ti].name, val[vi].name) for vi, ti, _ in copies]


def _leak(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    pairs = sd.cross_split_duplicates(plan.train, plan.val, key=orientation_free_hash)
    pairs += _photometric_leaks(plan, {val for _, val in pairs})
    if not pairs:
        return Unverified(
            f.id,
            "not-verifiable",
            "no image is on both sides of the split used here (the copies are within one side), "
            "so dropping them cannot change what validation measures.",
        )
    drop = tuple(sorted({train for train, _ in pairs}))
    return Prescription(
        f.id,
        f"drop the {len(drop)} training copies of validation images",
        f"{len(pairs)} validation image(s) also in training",
        {},
        {},
        drop_train=drop,
        expect="down",
        note="removing a leak should LOWER the validation Dice: the as-diagnosed number measures "
        "memory, not how the model does on new images.",
    )


def _overlap(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    """Drop the training tiles that share a region with a validation tile (expect Dice down)."""
    pairs = [*plan.train, *plan.val]
    prints = [block_print(sd.read_pair(p)[0]) for p in pairs]
    groups = [0] * len(plan.train) + [1] * len(plan.val)
    found = find_overlaps(prints, groups)  # a < b: a is a training tile, b a validation one
    if not found:
        return Unverified(
            f.id,
            "not-verifiable",
            "no training tile shares a region with a validation tile in the split used here, "
            "so dropping tiles cannot change what validation measures.",
        )
    drop = tuple(sorted({pairs[o.a].name for o in found}))
    touched = len({o.b for o in found})
    return Prescription(
        f.id,
        f"drop the {len(drop)} training tiles that share a region with validation tiles",
        f"{touched} validation image(s) share a region with training images",
        {},
        {},
        drop_train=drop,
        expect="down",
        note="removing a leak should LOWER the validation Dice: the as-diagnosed number measures "
        "memory of the shared regions, not how the model does on new images.",
    )


def _unreadable(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    if not plan.unreadable:
        return Unverified(
            f.id,
            "not-verifiable",
            "the unreadable files are not part of any image/mask pair: no run would read them.",
        )
    names = tuple(p.name for p in plan.unreadable)
    return Prescription(
        f.id,
        f"drop the {len(names)} unreadable pair(s)",
        "the unreadable pairs kept in training (segdoctor train without data.on_error=skip)",
        {},
        {},
        extra_train=names,
    )


# ----------------------------------------------------------------------------------------------
# Masks with in-between values (bilinear resize, JPEG): nearest re-thresholding to the labels


class SnapToLabels:
    """Maps every mask value to the index of the nearest label (ties go up: 0.5 -> 1).

    Args:
        labels: The label set the masks were meant to hold, e.g. ``(0, 1)`` or ``(0, 255)``.

    Example:
        >>> SnapToLabels((0.0, 1.0))(np.array([[0.0, 0.49, 0.5, 2.0]])).tolist()
        [[0, 0, 1, 1]]
    """

    def __init__(self, labels: Sequence[float]) -> None:
        self.labels = tuple(sorted(float(v) for v in labels))
        points = np.asarray(self.labels)
        self._middles = (points[:-1] + points[1:]) / 2.0  # (K-1,)

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        values = np.asarray(mask, dtype=np.float64)  # (H, W)
        return np.searchsorted(self._middles, values, side="right").astype(np.int32)


def _nonzero(mask: np.ndarray) -> np.ndarray:
    return (np.asarray(mask, dtype=np.float64) > 0).astype(np.int32)


def label_set(f: Finding, pairs: Sequence[sd.Pair]) -> tuple[float, ...]:
    """The labels the masks were meant to hold: the finding's, else the integer values that
    cover at least :data:`LABEL_SHARE` of the pixels of (up to :data:`LABEL_SAMPLE`) masks.

    Example:
        >>> label_set(Finding("x", "error", "t", {"labels_without_ringing": [0, 1]}, "f"), [])
        (0.0, 1.0)
    """
    given = f.evidence.get("labels_without_ringing")
    if given:
        return tuple(float(v) for v in given)
    counts: dict[float, int] = {}
    for pair in list(pairs)[:LABEL_SAMPLE]:
        mask = sd.read_mask(pair.mask)
        if mask.ndim != 2:  # an RGB mask: no scalar label set
            return ()
        values, n = np.unique(mask, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            counts[float(v)] = counts.get(float(v), 0) + int(c)
    total = sum(counts.values())
    return tuple(
        sorted(v for v, c in counts.items() if v.is_integer() and c >= LABEL_SHARE * total)
    )


def _snap_masks(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    pairs = [*plan.train, *plan.val]
    labels = label_set(f, pairs)
    if len(labels) != 2:
        return Unverified(
            f.id,
            "not-verifiable",
            f"not verifiable yet: only binary masks are re-thresholded (label set found: "
            f"{list(labels) or 'none'}).",
        )
    snap = SnapToLabels(labels)
    top = max(float(np.max(sd.read_mask(p.mask))) for p in pairs[:LABEL_SAMPLE])
    as_classes = top.is_integer() and top <= MAX_AS_CLASSES and f.id == "mask-lossy-format"
    named = ", ".join(f"{v:g}" for v in labels)
    diagnosed_as = (
        f"stored values taken as class indices, {int(top) + 1} classes, as a pipeline that sets "
        "num_classes = mask.max() + 1"
        if as_classes
        else "every value above 0 taken as foreground (mask > 0), as a pipeline that binarizes so"
    )
    data = RunData(
        f"masks snapped to the nearest of {{{named}}}",
        (tuple(plan.train), tuple(plan.val)),
        (tuple(plan.train), tuple(plan.val)),
        diagnosed_masks=None if as_classes else _nonzero,
        fixed_masks=snap,
        truth=tuple(plan.val),
    )
    return Prescription(
        f.id,
        f"re-threshold the masks to their labels {{{named}}} (nearest label; what nearest-"
        "neighbour resizing or a lossless PNG would have stored)",
        diagnosed_as,
        {"data.mask_policy": "multiclass"} if as_classes else {},
        {},
        foreground=snap if as_classes else None,
        data=data,
        note="both runs are scored against the masks snapped to their labels (the best "
        "reconstruction of the true masks); predicted classes of the as-diagnosed run are "
        "snapped the same way. The user's files are not changed (--write-fixed writes a copy).",
    )


def _invalid_values(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    if f.evidence.get("kinds") != "fractional":
        why = "not verifiable yet: only in-between (fractional) values are re-thresholded."
        return Unverified(f.id, "not-verifiable", why)
    return _snap_masks(f, plan)


# ----------------------------------------------------------------------------------------------
# A split whose sides differ (a class absent, empty masks, object size, intensity)


def _stratum(pair: sd.Pair, classes: Sequence[int]) -> tuple[bool, ...]:
    mask = sd.read_mask(pair.mask)
    return (bool(np.any(mask > 0)), *(bool(np.any(mask == c)) for c in classes))


def resplit(
    train: Sequence[sd.Pair],
    val: Sequence[sd.Pair],
    key: Callable[[sd.Pair], tuple],
    seed: int,
    keep_own: bool = True,
) -> tuple[list[sd.Pair], list[sd.Pair]]:
    """Split ``train + val`` again so that every stratum (``key``) has the same validation share.

    With ``keep_own``, validation keeps as many of its own pairs as the share allows (those are
    the images both splits hold out, on which two runs can be compared) and the rest is drawn
    from training; without, each stratum is shuffled whole (both sides mix: for a shift that no
    stratum describes).

    Example:
        >>> t = [sd.Pair(f"t{i}", None, None) for i in range(4)]
        >>> v = [sd.Pair(f"v{i}", None, None) for i in range(4)]
        >>> new_t, new_v = resplit(t, v, lambda p: (p.name[0],), 0)
        >>> sorted(p.name[0] for p in new_v)
        ['t', 't', 'v', 'v']
    """
    rng = np.random.default_rng(seed)
    share = len(val) / max(len(train) + len(val), 1)
    groups: dict[tuple, tuple[list[sd.Pair], list[sd.Pair]]] = {}
    for side, pairs in ((0, val), (1, train)):
        for pair in sorted(pairs, key=lambda p: p.name):
            groups.setdefault(key(pair), ([], []))[side].append(pair)
    new_train: list[sd.Pair] = []
    new_val: list[sd.Pair] = []
    for stratum in sorted(groups):
        own, other = (list(rng.permutation(np.array(g, dtype=object))) for g in groups[stratum])
        members = [*own, *other]  # validation's own pairs first
        if not keep_own:
            members = list(rng.permutation(np.array(members, dtype=object)))
        quota = round(share * len(members))
        new_val += members[:quota]
        new_train += members[quota:]
    return new_train, new_val


RESPLIT_IDS = (
    "split-class-absent",
    "split-empty-masks",
    "split-object-size",
    "split-intensity-shift",
)
"""Findings whose fix is a re-split (one comparison answers all of them)."""
MIXED_SHIFTS = ("split-object-size", "split-intensity-shift")
"""Shifts no stratum describes: the re-split mixes both sides of every stratum."""


def _resplit(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    classes = [int(c) for c in f.evidence.get("classes") or []]
    key = lambda pair: _stratum(pair, classes)  # noqa: E731
    train, val = resplit(plan.train, plan.val, key, 0, keep_own=f.id not in MIXED_SHIFTS)
    kept = tuple(sorted({p.name for p in val} & {p.name for p in plan.val}))
    moved = len(plan.val) - len(kept)
    if not moved:
        why = "a re-split stratified by empty masks and the named classes moves no pair."
        return Unverified(f.id, "not-verifiable", why)
    if len(kept) < MIN_IMAGES:
        return Unverified(
            f.id,
            "not-verifiable",
            f"a stratified re-split keeps only {len(kept)} validation image(s) on the same side: "
            "too few to compare two runs on.",
        )
    what = "empty / non-empty masks" + "".join(f", class {c} present or not" for c in classes)
    what += ", both sides mixed" if f.id in MIXED_SHIFTS else ""
    return Prescription(
        f.id,
        f"re-split train + val stratified by {what} ({moved} pairs change sides)",
        "the data's split as it is" if plan.has_splits else "segdoctor's random split",
        {},
        {},
        data=RunData(
            f"stratified re-split by {what}",
            (tuple(plan.train), tuple(plan.val)),
            (tuple(train), tuple(val)),
            score_names=kept,
        ),
        note=f"both runs are compared on the {len(kept)} validation images that both splits "
        "hold out (neither run trained on them); the re-split's own validation Dice, over "
        "every class, is in the run with the fix.",
    )


# ----------------------------------------------------------------------------------------------
# Images and masks mispaired (sort order): re-pair by content


def _alignment_matrix(pairs: Sequence[sd.Pair]) -> np.ndarray:
    """``S[i, j]``: edge-alignment score of image i with mask j (1.0, chance, when unknown)."""
    images = [sd.read_image(p.image) for p in pairs]
    masks = [sd.read_mask(p.mask) for p in pairs]
    scores = np.ones((len(pairs), len(pairs)))  # (N images, N masks)
    for i, image in enumerate(images):
        for j, mask in enumerate(masks):
            if image.shape[:2] != mask.shape[:2]:
                scores[i, j] = 0.0  # a mask of another size cannot belong to this image
                continue
            s = alignment_score(image, mask)
            scores[i, j] = 1.0 if s is None else s
    return scores


def _repair(f: Finding, plan: DataPlan, model: Any = None) -> Prescription | Unverified:
    pairs = [*plan.train, *plan.val]
    if len(pairs) > REPAIR_MAX_PAIRS:
        why = f"{len(pairs)} pairs: more than {REPAIR_MAX_PAIRS} are not re-paired by content."
        return Unverified(f.id, "not-verifiable", why)
    scores = _alignment_matrix(pairs)  # (N, N)
    rows, cols = linear_sum_assignment(-scores)
    before = float(np.median(np.diag(scores)))
    after = float(np.median(scores[rows, cols]))
    moved = int(np.sum(rows != cols))
    if not moved or after < MISALIGNED_BELOW:
        return Unverified(
            f.id,
            "not-verifiable",
            f"re-pairing by content finds no aligned pairing (median edge score {after:.2f}, "
            f"aligned from {MISALIGNED_BELOW}): the misalignment is not a mix-up of whole "
            "files (a shift or a flip?), see the finding's fix.",
        )
    mask_of = {pairs[i].name: pairs[j].mask for i, j in zip(rows, cols, strict=True)}
    fixed = [tuple(replace(p, mask=mask_of[p.name]) for p in g) for g in (plan.train, plan.val)]
    return Prescription(
        f.id,
        f"re-pair images and masks by content ({moved} of {len(pairs)} masks move; median edge "
        f"score {before:.2f} -> {after:.2f})",
        "the pairs as listed",
        {},
        {},
        foreground=_positive,
        data=RunData(
            "re-paired by content",
            (tuple(plan.train), tuple(plan.val)),
            (fixed[0], fixed[1]),
            truth=fixed[1],
        ),
        note="each image gets the mask whose boundaries follow its edges best (one mask per "
        "image); both runs are scored on the re-paired validation masks (foreground > 0). Check "
        "the pairing with --write-fixed before training on it.",
    )
