"""Data checks on a folder of images and masks, in one streaming pass.

Memory does not depend on the number of pairs: each pair is read, summarized into a few numbers
and dropped; a few threads read ahead (a bounded window, in order), since decoding images releases
the GIL. Mask kinds are decided by :func:`segdoctor.data.masks.inspect_masks` (the same rules
the loader uses), so the doctor and training never disagree about what a mask means.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from segdoctor.data.discover import discover_pairs
from segdoctor.data.io import display_name, read_image, read_mask
from segdoctor.data.masks import decide_mask_policy, inspect_masks
from segdoctor.data.near_copies import content_box
from segdoctor.data.split import content_hash
from segdoctor.doctor.alignment import (
    MISALIGNED_BELOW,
    alignment_score,
    best_offset,
    misaligned,
    offset_finding,
)
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.format_checks import format_findings, image_format
from segdoctor.doctor.mask_format import RingingStats, edge_counts, lossy_findings, lossy_format
from segdoctor.doctor.model_data import VOID_LABEL, uses_void_label
from segdoctor.doctor.outlines import outline_counts, outline_evidence, outlines_found
from segdoctor.doctor.plots import histogram_png
from segdoctor.doctor.split_checks import check_splits, discovery_findings, pair_stats
from segdoctor.errors import DataError, SegdoctorError

ALIGNMENT_SAMPLE = 32
"""Pairs whose edge alignment is measured (evenly spread over the dataset)."""
EMPTY_WARN = 0.3
"""Fraction of empty masks from which ``empty-masks`` fires."""
IMBALANCE_BELOW = 0.02
"""Foreground pixel fraction under which ``class-imbalance`` fires."""


@dataclass
class DataSummary:
    """Numbers gathered in the pass (also reported in ``Report.summary``)."""

    root: str
    layout: str
    n_pairs: int = 0
    mask_kind: str = ""
    mask_description: str = ""
    num_classes: int | None = None
    foreground_fractions: list[float] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    shape_mismatch: list[tuple[str, Any, Any]] = field(default_factory=list)
    constant: list[str] = field(default_factory=list)
    padding: list[tuple[str, float]] = field(default_factory=list)  # images with edge bars
    # (name, (outlines, components judged)) of the alignment sample: outlines.outline_counts
    outlines: list[tuple[str, tuple[int, int]]] = field(default_factory=list)
    palette_masks: list[str] = field(default_factory=list)  # palette ('P') mask files
    # the first of them that holds a label: (name, flat RGB palette, its pixels)
    palette_example: tuple[str, list[int], Any] | None = None
    alignment: list[tuple[str, float]] = field(default_factory=list)
    offsets: list[tuple[str, tuple[tuple[int, int], float]]] = field(default_factory=list)
    hashes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    split_stats: list[Any] = field(default_factory=list)  # split_checks.PairStats per pair
    formats: list[Any] = field(default_factory=list)  # format_checks.ImageFormat per image
    ringing: RingingStats = field(default_factory=RingingStats)  # mask_format: lossy masks
    topology: list[tuple[str, float, int, int]] = field(
        default_factory=list
    )  # name, fg, objects, holes

    def to_dict(self) -> dict[str, Any]:
        fg = np.asarray(self.foreground_fractions) if self.foreground_fractions else np.zeros(1)
        return {
            "data": self.root,
            "layout": self.layout,
            "pairs": self.n_pairs,
            "masks": self.mask_description,
            "num_classes": self.num_classes,
            "foreground_fraction_median": float(np.median(fg)),
        }


def _foreground(mask: np.ndarray) -> np.ndarray:
    if mask.ndim == 3:
        return np.any(mask != 0, axis=-1)  # (H, W): non-black is foreground
    return mask != 0


READ_THREADS = min(4, (os.cpu_count() or 1) + 1)
"""Threads reading and summarizing pairs (image decoding releases the GIL)."""
READ_AHEAD = 4 * READ_THREADS
"""Pairs in flight at most: memory stays flat however many pairs there are."""


@dataclass
class _PairRecord:
    name: str
    split: str
    mask_name: str = ""
    mask: np.ndarray | None = None
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    fg_fraction: float = 0.0
    shape_mismatch: tuple[Any, Any] | None = None
    alignment: float | None = None
    offset: tuple[tuple[int, int], float] | None = None  # alignment.best_offset
    constant: bool = False
    digest: str | None = None
    stats: Any = None  # split_checks.PairStats
    image_format: Any = None
    mask_lossy: str | None = None  # "JPEG" for a lossy mask file
    mask_edges: dict[int, tuple[int, int]] | None = None  # mask_format.edge_counts
    regions: tuple[int, int] = (0, 0)  # connected regions of the foreground, of the background
    on_padding: float | None = None  # share of the foreground on constant edge bars (if any)
    palette: list[int] | None = None  # a palette ('P') mask file: its palette (flat RGB)
    outlines: tuple[int, int] | None = None  # outlines.outline_counts (alignment sample)


PADDING_MIN_AREA = 0.02
"""Constant rows and columns along the image's edges (letterbox or padding bars) count from this
share of the image's area (a 1 px black frame does not)."""
PADDING_FG_MIN = 0.02
"""A pair has 'foreground on padding' when at least this share of its mask's foreground lies on
its image's bars..."""
PADDING_MIN_PAIRS = 3
"""...and ``mask-on-padding`` fires from this many such pairs."""


def foreground_on_padding(image: np.ndarray, fg: np.ndarray) -> float | None:
    """The share of the foreground ``fg`` that lies on the image's constant edge bars (letterbox
    or padding, :func:`~segdoctor.data.near_copies.content_box`); None when the bars cover under
    :data:`PADDING_MIN_AREA` of the image.

    Example:
        >>> img = np.zeros((10, 10), np.uint8); img[2:8] = 1 + np.arange(10)  # bars: rows 0-1, 8-9
        >>> fg = np.zeros((10, 10), bool); fg[0:4, 0:5] = True
        >>> foreground_on_padding(img, fg)
        0.5
    """
    edges = (image[0], image[-1], image[:, 0], image[:, -1])
    if not any(np.all(edge == edge[0]) for edge in edges):  # no constant edge line: no bars
        return None  # (the whole-image box below costs 6 ms a CamVid frame; this, microseconds)
    rows, cols = content_box(image)
    content = np.zeros(fg.shape, bool)
    content[rows, cols] = True
    if 1.0 - content.mean() < PADDING_MIN_AREA:
        return None
    total = int(fg.sum())
    return float((fg & ~content).sum()) / total if total else None


def _read_pair(pair, measure_alignment: bool) -> _PairRecord:
    """Everything the checks need from one pair (runs in a worker thread)."""
    record = _PairRecord(pair.name, pair.split or "")
    try:
        image = read_image(pair.image, slice_index=pair.slice_index)  # (H, W, C)
    except (SegdoctorError, OSError, ValueError) as err:
        record.unreadable.append((str(pair.image), str(err)[:160]))
        image = None
    if image is not None:
        record.image_format = image_format(display_name(pair.image), pair.image, image)
    try:
        mask = read_mask(pair.mask, slice_index=pair.slice_index)  # (H, W) or (H, W, 3)
    except (SegdoctorError, OSError, ValueError) as err:
        record.unreadable.append((str(pair.mask), str(err)[:160]))
        return record
    record.mask, record.mask_name = mask, display_name(pair.mask)
    record.palette = _palette(pair.mask)
    record.mask_lossy, record.mask_edges = lossy_format(pair.mask), edge_counts(mask)
    fg = _foreground(mask)
    record.fg_fraction = float(fg.mean())
    record.regions = (ndimage.label(fg)[1], ndimage.label(~fg)[1])
    if image is not None:
        if image.shape[:2] != mask.shape[:2]:
            record.shape_mismatch = (image.shape[:2], mask.shape[:2])
        elif measure_alignment and record.fg_fraction > 0:
            record.alignment = alignment_score(image, mask)
            record.offset = best_offset(image, mask)
            record.outlines = outline_counts(image, fg)
        record.constant = float(np.ptp(image)) == 0.0
        record.digest = content_hash(image)
        if not record.constant and record.fg_fraction > 0:
            record.on_padding = foreground_on_padding(image, fg)
    record.stats = pair_stats(pair, image, mask, record.digest)
    return record


def _records(index, sample: set[int]) -> Iterator[_PairRecord]:
    """:func:`_read_pair` over every pair, in order, with at most ``READ_AHEAD`` in flight."""
    pairs = index.pairs
    if READ_THREADS <= 1:
        for i, pair in enumerate(pairs):
            yield _read_pair(pair, i in sample)
        return
    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="segdoctor-read") as pool:
        pending: deque = deque()
        for i, pair in enumerate(pairs):
            pending.append(pool.submit(_read_pair, pair, i in sample))
            if len(pending) >= READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _stream(index, summary: DataSummary, sample: set[int]) -> Iterator[tuple[str, np.ndarray]]:
    for record in _records(index, sample):
        summary.unreadable += record.unreadable
        if record.image_format is not None:
            summary.formats.append(record.image_format)
        if record.mask is None:
            continue
        summary.n_pairs += 1
        summary.foreground_fractions.append(record.fg_fraction)
        summary.topology.append((record.name, record.fg_fraction, *record.regions))
        if record.fg_fraction == 0:
            summary.empty.append(record.name)
        if record.shape_mismatch is not None:
            summary.shape_mismatch.append((record.name, *record.shape_mismatch))
        if record.alignment is not None:
            summary.alignment.append((record.name, record.alignment))
        if record.offset is not None:
            summary.offsets.append((record.name, record.offset))
        if record.constant:
            summary.constant.append(record.name)
        if record.on_padding is not None:
            summary.padding.append((record.name, record.on_padding))
        if record.outlines is not None:
            summary.outlines.append((record.name, record.outlines))
        if record.palette is not None:
            summary.palette_masks.append(record.mask_name)
            if summary.palette_example is None and record.fg_fraction > 0:
                summary.palette_example = (record.mask_name, record.palette, record.mask)
        if record.digest is not None:
            summary.hashes.setdefault(record.digest, []).append((record.split, record.name))
        summary.split_stats.append(record.stats)
        summary.ringing.add_counts(record.mask_name, record.mask_lossy, record.mask_edges)
        yield record.mask_name, record.mask  # named, so findings can say which file holds a value


def check_data(root: str | Path, *, plots: bool = True) -> tuple[list[Finding], DataSummary, dict]:
    """Run every data check on a data folder (any layout :func:`discover_pairs` knows).

    Returns:
        ``(findings, summary, plots)`` where plots maps finding ids to ``[(caption, png)]``.

    Raises:
        DataError: the folder is missing, empty or has no recognizable layout.

    Example:
        >>> from segdoctor.sample_data import sample_path  # doctest: +SKIP
        >>> findings, summary, _ = check_data(sample_path())  # doctest: +SKIP
    """
    index = discover_pairs(root, on_unpaired="skip", strict=False)  # clashes become findings
    summary = DataSummary(root=str(root), layout=index.layout)
    n = len(index.pairs)
    sample = (
        set(np.linspace(0, n - 1, min(n, ALIGNMENT_SAMPLE)).astype(int).tolist()) if n else set()
    )
    found: list[Finding] = []
    report = None
    if n:
        masks = _stream(index, summary, sample)
        try:
            report = inspect_masks(masks)
        except DataError:  # no readable mask at all: reported below as unreadable-file
            report = None
        for _ in masks:  # drain (inspect_masks may stop early)
            pass
    if report is not None:
        summary.mask_kind = report.kind
        summary.mask_description = report.describe()
        found += _mask_findings(report, summary)
        found += lossy_findings(summary.ringing, report.kind)
        found += _policy_findings(report)
    found += _pair_findings(index, summary)
    found += discovery_findings(index)
    found += _content_findings(summary)
    found += check_splits(index, summary.split_stats, report.kind if report is not None else None)
    found += format_findings(summary.formats)
    return found, summary, (_plots(report, summary) if plots and report is not None else {})


def _policy_findings(report) -> list[Finding]:
    """Masks that training would refuse (e.g. negative values) must not pass the doctor silently."""
    try:
        decide_mask_policy(report)
    except SegdoctorError as err:
        return [
            make_finding(
                "mask-invalid-values",
                {"problem": err.what, "received": err.received or "", "kinds": report.kind},
                err.fix or None,  # the policy's own fix, else the catalog's
            )
        ]
    return []


_BINARY_LIKE = ("binary", "scale-255", "two-value", "instance")
"""Mask kinds that training turns into two classes (background, foreground)."""


def _mask_findings(report, summary: DataSummary) -> list[Finding]:
    """What the mask inspection says (kind, absent classes, foreground share); sets num_classes."""
    found = _kind_findings(report)
    if report.kind in _BINARY_LIKE:
        summary.num_classes = 2
        found += _foreground_findings(np.asarray(summary.foreground_fractions))
        found += _inverted_findings(summary.topology)
    elif report.kind == "multiclass" and report.values:
        void = _void_label(report)
        if void is not None:
            found.append(void)
            summary.num_classes = max(int(v) for v in report.values if v != VOID_LABEL) + 1
        else:
            summary.num_classes = int(report.max_value) + 1
            found += _absent_classes(report)
    return found


def _void_label(report) -> Finding | None:
    """``mask-void-label``: masks of class indices plus the value 255 far above them."""
    values = [int(v) for v in report.values]
    if not uses_void_label(values):
        return None
    others = [v for v in values if v != VOID_LABEL]
    counts = report.value_counts
    total = sum(counts.values()) or 1
    evidence = {
        "values": values[:12],
        "classes": len(set(others) | {0}),
        "void_fraction_of_pixels": round(counts.get(VOID_LABEL, 0) / total, 4),
        "class_fraction_of_pixels": {
            str(v): round(counts.get(v, 0) / total, 4) for v in others[:12]
        },
        "first_mask_with_void": report.first_seen.get(VOID_LABEL),
    }
    return make_finding("mask-void-label", evidence)


def _kind_findings(report) -> list[Finding]:
    """The finding of a mask kind that is not class indices (0/255, instances, in-between, RGB)."""
    dtypes = list(report.dtypes)
    if report.kind in ("scale-255", "two-value"):
        evidence = {"values": list(report.values[:12]), "masks": report.n_masks, "dtypes": dtypes}
        return [
            make_finding("mask-scale-255", evidence, variant="folder", top=int(report.max_value))
        ]
    if report.kind == "instance":
        evidence = {
            "description": report.describe(),
            "median_labels_per_mask": report.labels_per_mask,
            "max_label": report.max_value,
            "single_blob_fraction": report.single_blob_fraction,
            "dtypes": dtypes,
        }
        return [make_finding("mask-instance-labels", evidence)]
    if report.kind == "fractional":
        evidence = {
            "description": report.describe(),
            "fraction_of_pixels": report.fractional_fraction,
            "dtypes": dtypes,
        }
        return [make_finding("mask-fractional", evidence)]
    if report.kind == "palette":
        evidence = {"colors": [list(c) for c in report.colors[:12]], "n_colors": len(report.colors)}
        return [make_finding("mask-rgb-palette", evidence)]
    return []


def _absent_classes(report) -> list[Finding]:
    """``class-absent``: indices below the largest one that no mask holds."""
    absent = sorted(set(range(int(report.max_value) + 1)) - {int(v) for v in report.values})
    if not absent:
        return []
    stray = report.where([v for v in report.values if v > absent[0]]).strip(" ()")
    evidence = {
        "absent_classes": absent,
        "present": list(report.values[:12]),
        "stray_values": stray,
    }
    return [make_finding("class-absent", evidence)]


def _foreground_findings(fg: np.ndarray) -> list[Finding]:
    """``mask-foreground-majority`` or ``class-imbalance`` from the per-mask foreground shares."""
    if not len(fg):
        return []
    nonempty = fg[fg > 0]
    overall = float(fg.mean())
    if len(nonempty) and float(np.median(nonempty)) > 0.5:
        evidence = {"median_foreground_fraction": float(np.median(nonempty)), "masks": len(fg)}
        return [make_finding("mask-foreground-majority", evidence, confidence=0.6)]
    if overall < IMBALANCE_BELOW:
        return [make_finding("class-imbalance", {"foreground_fraction": overall, "masks": len(fg)})]
    return []


INVERTED_MIN_HOLES = 3
"""A mask looks inverted when its foreground covers over half of it and its background falls
into at least this many regions, 3x as many as the foreground's: one region with the objects cut
out as holes."""
INVERTED_MAJORITY = 0.6
"""...and at least this share of the dataset's non-empty masks mark the objects themselves (fewer
foreground regions than background ones is never the rule: membranes, where the foreground is
most of the image, make the whole dataset look alike and stay silent)."""
INVERTED_MIN_SHARE = 0.03
"""...and the inverted-looking masks are at least 2 and this share of the non-empty ones. In the
second blind test (2026-12-07) 27% of 270 nuclei masks were inverted (foreground 0.81 against
0.19) and nothing named it; dsb2018-nuclei, isbi2012-membrane and the sample data: 0 masks."""


def _inverted_findings(topology: list[tuple[str, float, int, int]]) -> list[Finding]:
    """``mask-inverted-some`` from each mask's foreground share and region counts."""
    masks = [t for t in topology if t[1] > 0]
    if len(masks) < 10:
        return []
    objects = [t for t in masks if t[1] < 0.5 and t[2] >= t[3]]
    inverted = [
        t for t in masks if t[1] > 0.5 and t[3] >= INVERTED_MIN_HOLES and t[3] >= 3 * max(t[2], 1)
    ]
    if len(objects) < INVERTED_MAJORITY * len(masks):
        return []
    if len(inverted) < max(2, INVERTED_MIN_SHARE * len(masks)):
        return []
    evidence = {
        "masks": len(masks),
        "inverted": len(inverted),
        "names": [t[0] for t in inverted[:10]],
        "foreground_median_inverted": float(np.median([t[1] for t in inverted])),
        "foreground_median_others": float(np.median([t[1] for t in objects])),
        "holes_median_inverted": float(np.median([t[3] for t in inverted])),
        "objects_median_others": float(np.median([t[2] for t in objects])),
    }
    return [make_finding("mask-inverted-some", evidence, examples=", ".join(evidence["names"][:3]))]


def _pair_findings(index, summary: DataSummary) -> list[Finding]:
    found = []
    if index.unpaired_images or index.unpaired_masks:
        found.append(
            make_finding(
                "pair-missing",
                {
                    "images_without_mask": list(index.unpaired_images[:10]),
                    "masks_without_image": list(index.unpaired_masks[:10]),
                    "counts": [len(index.unpaired_images), len(index.unpaired_masks)],
                },
            )
        )
    if summary.shape_mismatch:
        found.append(
            make_finding(
                "pair-shape-mismatch",
                {
                    "pairs": [
                        f"{n}: image {a} vs mask {b}" for n, a, b in summary.shape_mismatch[:10]
                    ],
                    "count": len(summary.shape_mismatch),
                },
            )
        )
    found_low, median, low = misaligned(s for _, s in summary.alignment)
    if found_low:
        worst = sorted(summary.alignment, key=lambda t: t[1])[:5]
        found.append(
            make_finding(
                "pair-misaligned",
                {
                    "median_alignment_score": median,
                    "misaligned_fraction": low,
                    "threshold": MISALIGNED_BELOW,
                    "pairs_measured": len(summary.alignment),
                    "lowest": [f"{n}: {s:.2f}" for n, s in worst],
                },
                confidence=0.8,
            )
        )
    found += offset_finding(summary.offsets, "data folder")
    return found


def _relative(path: str, root: str) -> str:
    """``path`` relative to the data folder (``val/images/a.png``), else as given."""
    try:
        return str(Path(path).relative_to(Path(root) if Path(root).is_dir() else Path(root).parent))
    except ValueError:
        return path


PALETTE_SUFFIXES = (".png", ".gif", ".bmp", ".tif", ".tiff")
"""Mask formats that can store a palette ('P' mode)."""


def _palette(path) -> list[int] | None:
    """The palette of a palette-mode ('P') image file (flat RGB list), None for any other file
    (the header only is read)."""
    if Path(path).suffix.lower() not in PALETTE_SUFFIXES:  # NIfTI, NPY: no palette
        return None
    try:
        with Image.open(path) as im:
            return list(im.getpalette() or []) if im.mode == "P" else None
    except (OSError, ValueError):  # not an image PIL opens (NIfTI, NPY): no palette
        return None


def _luminance(rgb: Sequence[int]) -> float:
    """PIL's convert('L') of one colour (ITU-R 601-2), in [0, 1]."""
    r, g, b = rgb
    return round((r * 299 + g * 587 + b * 114) / 1000 / 255, 3)


def _palette_findings(summary: DataSummary) -> list[Finding]:
    """``mask-palette-file`` (info): mask files stored as palette PNGs, whose pixels are class
    indices only when read as such; the command line raises it to a warning when the history
    says the model never learned (``api``)."""
    if not summary.palette_masks:
        return []
    name, palette, mask = summary.palette_example or (summary.palette_masks[0], [], None)
    labels = [int(v) for v in np.unique(mask)[:8]] if mask is not None and mask.ndim == 2 else []
    as_gray = {
        str(v): _luminance(palette[3 * v : 3 * v + 3]) for v in labels if len(palette) >= 3 * v + 3
    }
    evidence = {
        "masks": len(summary.palette_masks),
        "of": summary.n_pairs,
        "example": name,
        "labels": labels,
        "read_as_gray": as_gray,
    }
    return [make_finding("mask-palette-file", evidence)]


def _padding_findings(summary: DataSummary) -> list[Finding]:
    """``mask-on-padding``: masks with foreground where their image is a constant edge bar."""
    hit = [(name, share) for name, share in summary.padding if share >= PADDING_FG_MIN]
    if len(hit) < PADDING_MIN_PAIRS:
        return []
    shares = [share for _, share in hit]
    evidence = {
        "pairs": len(hit),
        "of_pairs_with_bars": len(summary.padding),
        "of": summary.n_pairs,
        "names": [name for name, _ in hit[:10]],
        "median_foreground_on_bars": round(float(np.median(shares)), 3),
        "threshold": PADDING_FG_MIN,
    }
    return [make_finding("mask-on-padding", evidence)]


def _outline_findings(summary: DataSummary) -> list[Finding]:
    """``mask-outlines``: masks that draw their objects' boundaries instead of filling them."""
    counts = [c for _, c in summary.outlines]
    if not outlines_found(counts):
        return []
    return [make_finding("mask-outlines", outline_evidence(summary.outlines, "data folder"))]


def _content_findings(summary: DataSummary) -> list[Finding]:
    found = []
    n = summary.n_pairs
    if summary.unreadable:
        found.append(
            make_finding(
                "unreadable-file",
                {
                    "files": [_relative(p, summary.root) for p, _ in summary.unreadable[:10]],
                    "count": len(summary.unreadable),
                    "reasons": [
                        f"{_relative(p, summary.root)}: {e}" for p, e in summary.unreadable[:5]
                    ],
                },
            )
        )
    found += _padding_findings(summary)
    found += _outline_findings(summary)
    found += _palette_findings(summary)
    if summary.constant:
        found.append(
            make_finding(
                "input-constant",
                {"images": summary.constant[:10], "count": len(summary.constant)},
                severity="error" if len(summary.constant) > 0.1 * max(n, 1) else "warning",
            )
        )
    if n and summary.empty and len(summary.empty) / n >= EMPTY_WARN:
        found.append(
            make_finding(
                "empty-masks",
                {
                    "empty": len(summary.empty),
                    "of": n,
                    "fraction": len(summary.empty) / n,
                    "examples": summary.empty[:5],
                },
            )
        )
    return found  # duplicates: split_checks (duplicate-across-splits)


def _plots(report, summary: DataSummary) -> dict[str, list[tuple[str, bytes]]]:
    out: dict[str, list[tuple[str, bytes]]] = {}
    if report.value_counts and report.kind in (
        "scale-255",
        "two-value",
        "instance",
        "fractional",
        "multiclass",
    ):
        items = list(report.value_counts.items())[:40]
        png = histogram_png([v for v, _ in items], [c for _, c in items], "mask values (pixels)")
        for key in ("mask-scale-255", "mask-instance-labels", "mask-fractional", "class-absent"):
            out[key] = [("Pixel count per mask value", png)]
    if summary.foreground_fractions:
        counts, edges = np.histogram(summary.foreground_fractions, bins=10, range=(0, 1))
        png = histogram_png(
            [f"{e:.1f}" for e in edges[:-1]], counts + 0.5, "foreground fraction per mask"
        )
        for key in ("empty-masks", "class-imbalance", "mask-foreground-majority"):
            out[key] = [("Masks per foreground fraction", png)]
    return out
