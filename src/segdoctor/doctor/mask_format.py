"""``mask-lossy-format``: masks stored in a lossy format (JPEG), found by the file and by its traces.

A label map must be stored losslessly: JPEG compresses 8x8 blocks of the image in the frequency
domain and rounds the coefficients, so a sharp 0 -> 1 edge comes back with ringing (values
overshooting the labels, and pixels flipped between neighbouring labels) along every object
border. A 0/1 mask saved as JPEG (``cv2.imwrite("m.jpg", mask)``) reads back as 0, 1 and 2: three
"classes". Two signals are used:

- the file: a mask whose bytes start with the JPEG marker ``FF D8 FF`` (whatever its name says) or
  whose name ends in ``.jpg``/``.jpeg``;
- the traces: the values at the top of the label range that are rare (under :data:`RING_SHARE` of
  the pixels) and lie almost only at borders (at least :data:`RING_NEAR_EDGE` of their pixels
  within 2 px of another value). Real classes have an interior; ringing has none.

Measured (24 nuclei masks 64x64, 0/1, saved by PIL as JPEG at quality 75): value 2 holds 0.39%
of the pixels, 96.9% of them within 2 px of another value. The real masks in the shared data:
CamVid's top label (void, 11) 1.5% of the pixels and 56% near an edge; its rarest class (pole,
0.6%) 94% near an edge but below the top; ISBI 2012 (0/255) and DSB 2018 (0/1 after instance
labels are merged) have no rare top value.

Example:
    >>> stats = RingingStats()
    >>> m = np.zeros((64, 64), "uint8"); m[16:48, 16:48] = 1; m[16, 16:48] = 2  # a ringing edge
    >>> stats.add("a.png", "a.png", m)
    >>> stats.ringing_values()
    [2]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

JPEG_MAGIC = b"\xff\xd8\xff"
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
RING_SHARE = 0.01
"""A ringing value holds less than this share of all mask pixels."""
RING_NEAR_EDGE = 0.95
"""... and at least this share of its pixels lie within 2 px of another value."""
RING_MAX_VALUES = 16
"""Masks with more distinct values are not small label maps (instance labels): not inspected."""
EXAMPLES = 5


def lossy_format(path: str | Path | None) -> str | None:
    """``"JPEG"`` when the file is a JPEG (by its first bytes, else by its name), else None.

    Example:
        >>> lossy_format("masks/a.png") is None  # no such file, and a lossless name
        True
    """
    if path is None:
        return None
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(3)
    except OSError:
        head = b""
    if head == JPEG_MAGIC or path.suffix.lower() in LOSSY_SUFFIXES:
        return "JPEG"
    return None


def _near_edge(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels within 2 px (a 3x3 step of a 4-neighbour edge) of another value."""
    edge = np.zeros(mask.shape, bool)
    vertical = mask[1:] != mask[:-1]  # (H-1, W)
    horizontal = mask[:, 1:] != mask[:, :-1]  # (H, W-1)
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    near = edge.copy()  # grow by one pixel in all 8 directions
    near[1:] |= edge[:-1]
    near[:-1] |= edge[1:]
    grown = near.copy()
    grown[:, 1:] |= near[:, :-1]
    grown[:, :-1] |= near[:, 1:]
    return grown


def edge_counts(mask: np.ndarray) -> dict[int, tuple[int, int]] | None:
    """Per value of a small integer label map: ``(pixels, pixels near an edge)``; else None.

    Only 2-D masks holding non-negative integers with at most :data:`RING_MAX_VALUES` values.
    """
    if mask.ndim != 2 or mask.size == 0:
        return None
    if mask.dtype.kind in "bu" and mask.itemsize <= 2:
        # Counting by value directly: 8x faster than np.unique's sort on the usual uint8 and
        # uint16 masks (measured on dsb2018-nuclei's 168 uint16 masks: 0.36 s -> 0.043 s a pass,
        # the same counts; the float path below keeps np.unique).
        labels = mask.astype(np.intp, copy=False).ravel()
        pixels = np.bincount(labels)
        values = np.flatnonzero(pixels)
        if len(values) > RING_MAX_VALUES:
            return None
        near = np.bincount(labels[_near_edge(mask).ravel()], minlength=len(pixels))
        return {int(v): (int(pixels[v]), int(near[v])) for v in values}
    values, inverse = np.unique(mask, return_inverse=True)
    if len(values) > RING_MAX_VALUES or np.any(values < 0) or np.any(values != np.round(values)):
        return None
    inverse = inverse.reshape(mask.shape)
    pixels = np.bincount(inverse.ravel(), minlength=len(values))
    near = np.bincount(inverse[_near_edge(mask)], minlength=len(values))
    return {int(v): (int(p), int(n)) for v, p, n in zip(values, pixels, near, strict=True)}


@dataclass
class RingingStats:
    """Pixel and near-edge counts per mask value over a dataset, and the lossy mask files."""

    pixels: dict[int, int] = field(default_factory=dict)
    near_edge: dict[int, int] = field(default_factory=dict)
    first_seen: dict[int, str] = field(default_factory=dict)
    lossy_files: list[str] = field(default_factory=list)
    masks: int = 0

    def add(self, name: str, path: str | Path | None, mask: np.ndarray | None) -> None:
        """Count one mask (``name`` for the report, ``path`` for the format check)."""
        counts = edge_counts(mask) if mask is not None else None
        self.add_counts(name, lossy_format(path), counts)

    def add_counts(
        self, name: str, lossy: str | None, counts: dict[int, tuple[int, int]] | None
    ) -> None:
        """Count one mask from :func:`lossy_format` and :func:`edge_counts` computed elsewhere."""
        self.masks += 1
        if lossy is not None:
            self.lossy_files.append(name)
        for value, (n, near) in (counts or {}).items():
            self.pixels[value] = self.pixels.get(value, 0) + n
            self.near_edge[value] = self.near_edge.get(value, 0) + near
            self.first_seen.setdefault(value, name)

    def share(self, value: int) -> float:
        total = sum(self.pixels.values())
        return self.pixels.get(value, 0) / total if total else 0.0

    def edge_share(self, value: int) -> float:
        n = self.pixels.get(value, 0)
        return self.near_edge.get(value, 0) / n if n else 0.0

    def ringing_values(self) -> list[int]:
        """The rare, border-only values at the top of the label range (ascending)."""
        found = []
        for value in sorted(self.pixels, reverse=True)[: len(self.pixels) - 1]:  # keep one label
            if self.share(value) >= RING_SHARE or self.edge_share(value) < RING_NEAR_EDGE:
                break
            found.append(value)
        return sorted(found)


def lossy_findings(stats: RingingStats, mask_kind: str | None = None) -> list[Finding]:
    """``mask-lossy-format`` from :class:`RingingStats` (see the module docstring).

    Error: JPEG mask files whose values show the damage (ringing values, or in-between values);
    warning: JPEG masks without visible damage yet, or the traces without a JPEG file (masks
    converted from JPEG to PNG keep the damage).
    """
    ringing = stats.ringing_values()
    damaged = bool(ringing) or mask_kind == "fractional"
    if not stats.lossy_files and not ringing:
        return []
    evidence: dict = {
        "jpeg_masks": len(stats.lossy_files),
        "masks": stats.masks,
        "examples": stats.lossy_files[:EXAMPLES],
    }
    if ringing:
        evidence["ringing_values"] = ringing
        evidence["ringing_share_of_pixels"] = round(sum(stats.share(v) for v in ringing), 5)
        evidence["ringing_near_edge"] = round(min(stats.edge_share(v) for v in ringing), 3)
        evidence["first_seen"] = {v: stats.first_seen[v] for v in ringing}
        labels = sorted(v for v in stats.pixels if v not in ringing)
        evidence["labels_without_ringing"] = labels
        evidence["values_read_as_classes"] = len(stats.pixels)
    return [_finding(stats, ringing, damaged, evidence)]


def _snap_code(top: int) -> str:
    """The line that snaps ringing values back to the labels ``0..top`` (a threshold for 0/255)."""
    if top >= 128:
        return "mask = (mask > 127).astype('uint8')"
    return f"mask = np.clip(mask, 0, {top}).astype('uint8')"


def _finding(stats: RingingStats, ringing: list[int], damaged: bool, evidence: dict) -> Finding:
    snap = _snap_code(max((v for v in stats.pixels if v not in ringing), default=1))
    if stats.lossy_files:
        return make_finding(
            "mask-lossy-format",
            evidence,
            variant=None if ringing else "in-between",
            severity="error" if damaged else "warning",
            snap=snap,
        )
    return make_finding(
        "mask-lossy-format",
        evidence,
        variant="converted",
        severity="warning",
        confidence=0.6,
        snap=snap,
    )
