"""The evidence behind a mask decision: a streaming tally of masks and the rules that name their kind.

:func:`segdoctor.data.masks.inspect_masks` feeds every mask to a :class:`MaskTally` (memory
independent of the number of masks) and asks :func:`detect_kind` which kind they are. The rules
are a table, tried in order (see :data:`GRAY_KIND_RULES`); the thresholds are documented in
:mod:`segdoctor.data.masks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

MAX_CLASSES = 255
"""Integer masks with a larger label are instance labels (not class indices)."""
INSTANCE_MIN_LABELS = 8
"""Median number of labels per mask from which connected single blobs count as instances."""
INSTANCE_SINGLE_BLOB = 0.9
"""Fraction of labels that must be one connected component for the instance decision."""
MAX_PALETTE_COLORS = 256
"""RGB masks with more distinct colors than this are not palette masks (e.g. saved as JPEG)."""
MAX_TRACKED_VALUES = 100_000
"""Distinct gray values counted at most (arbitrary 32-bit instance ids must not fill memory)."""
COMPONENT_SAMPLE = 32
"""Gray masks whose labels are checked for being one connected blob each."""
_MAX_COMPONENT_LABELS = 20_000


def fmt_value(value: float) -> str:
    """``7`` for integral values, ``0.5`` otherwise.

    Example:
        >>> fmt_value(7.0), fmt_value(0.5)
        ('7', '0.5')
    """
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def fmt_values(values: Iterable[float], limit: int = 12) -> str:
    """``{0, 1, 2}``, shortened after ``limit`` values.

    Example:
        >>> fmt_values([0, 255])
        '{0, 255}'
    """
    vals = [fmt_value(v) for v in values]
    if len(vals) <= limit:
        return "{" + ", ".join(vals) + "}"
    return "{" + ", ".join(vals[:limit]) + f", ... ({len(vals)} values)" + "}"


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` colors -> ``(H, W)`` ``uint32`` codes ``R << 16 | G << 8 | B``."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # (H, W)


def unpack_rgb(code: int) -> tuple[int, int, int]:
    """Inverse of :func:`pack_rgb` for one code.

    Example:
        >>> unpack_rgb(int(pack_rgb(np.array([1, 2, 3]))))
        (1, 2, 3)
    """
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def single_blob_stats(mask: np.ndarray) -> tuple[int, int]:
    """Count labels of ``mask`` (H, W) and how many are one 8-connected component."""
    # Compact the labels to 1..K first: find_objects allocates one slot per label value up to the
    # largest, which for arbitrary 32/64-bit ids (e.g. hashes) would exhaust memory.
    values, compact = np.unique(mask.clip(0, None), return_inverse=True)
    compact = compact.reshape(mask.shape) + (0 if values[0] == 0 else 1)  # (H, W), 0 = background
    objects = ndimage.find_objects(compact)
    total = single = 0
    structure = np.ones((3, 3), bool)
    for value, box in enumerate(objects, start=1):
        if box is None:
            continue
        total += 1
        _, n = ndimage.label(compact[box] == value, structure=structure)
        single += n == 1
    return single, total


def scale255_in_between(counts: dict[float, int], dtypes: set[str]) -> int:
    """Pixels of in-between values in 8-bit masks that are otherwise 0/255 (JPEG, bilinear)."""
    if dtypes != {"uint8"} or 0 not in counts or 255 not in counts:
        return 0
    total = sum(counts.values())
    between = total - counts[0] - counts[255]
    distinct_between = len(counts) - 2
    if between and distinct_between >= 3 and between <= 0.1 * total:
        return between
    return 0


@dataclass
class MaskTally:
    """Running counts over masks, one mask at a time (see :meth:`add`).

    Example:
        >>> tally = MaskTally()
        >>> tally.add(np.array([[0, 255]], np.uint8))
        >>> tally.values, tally.n
        ((0, 255), 1)
    """

    max_colors: int = MAX_PALETTE_COLORS
    n: int = 0
    rgb: int = 0
    gray: int = 0
    counts: dict[float, int] = field(default_factory=dict)
    colors: dict[int, int] = field(default_factory=dict)
    dtypes: set[str] = field(default_factory=set)
    labels_per_mask: list[int] = field(default_factory=list)  # one int per gray mask: small
    single: int = 0
    total: int = 0
    fractional_px: int = 0
    all_px: int = 0
    float_fractional: bool = False
    too_many_colors: bool = False
    first_seen: dict[float, str] = field(default_factory=dict)

    def add(self, mask: np.ndarray, name: str | None = None) -> None:
        """Count one mask, ``(H, W)`` or ``(H, W, 3)``; ``name`` is remembered for new values."""
        mask = np.asarray(mask)
        self.n += 1
        self.dtypes.add(str(mask.dtype))
        self.all_px += mask.shape[0] * mask.shape[1]
        if mask.ndim == 3:
            self._add_rgb(mask)
        else:
            self._add_gray(mask, name)

    def _add_rgb(self, mask: np.ndarray) -> None:
        self.rgb += 1
        codes, cnt = np.unique(pack_rgb(mask[..., :3]), return_counts=True)
        for c, k in zip(codes.tolist(), cnt.tolist(), strict=True):
            self.colors[c] = self.colors.get(c, 0) + k
        if len(self.colors) > 4 * self.max_colors:
            self.too_many_colors = True

    def _add_gray(self, mask: np.ndarray, name: str | None) -> None:
        self.gray += 1
        if mask.dtype.kind == "f":
            frac = mask != np.round(mask)
            if frac.any():
                self.float_fractional = True
                self.fractional_px += int(frac.sum())
        vals, cnt = np.unique(mask, return_counts=True)
        if len(self.counts) < MAX_TRACKED_VALUES:
            for v, k in zip(vals.tolist(), cnt.tolist(), strict=True):
                self.counts[v] = self.counts.get(v, 0) + k
                if name is not None and v not in self.first_seen:
                    self.first_seen[v] = name
        nonzero = int((vals != 0).sum())
        self.labels_per_mask.append(nonzero)
        if (
            mask.dtype.kind in "iu"
            and nonzero >= 2
            and self.total < _MAX_COMPONENT_LABELS
            and self.n <= 4 * COMPONENT_SAMPLE
            and len(self.labels_per_mask) <= COMPONENT_SAMPLE
        ):
            s, t = single_blob_stats(mask)
            self.single += s
            self.total += t

    @property
    def values(self) -> tuple[float, ...]:
        """Distinct gray values seen, sorted."""
        return tuple(sorted(self.counts))

    @property
    def max_value(self) -> float:
        """The largest gray value (0 without gray masks)."""
        return float(max(self.counts)) if self.counts else 0.0

    @property
    def median_labels(self) -> float:
        """Median number of non-zero labels per gray mask."""
        return float(np.median(self.labels_per_mask)) if self.labels_per_mask else 0.0

    @property
    def single_blob_fraction(self) -> float | None:
        """Fraction of sampled labels that are one connected component (None: none sampled)."""
        return self.single / self.total if self.total else None


def _is_instance(tally: MaskTally, max_classes: int) -> bool:
    values = tally.values
    if min(values) < 0:
        return False
    blob = tally.single_blob_fraction
    return tally.max_value > max_classes or (
        blob is not None
        and blob >= INSTANCE_SINGLE_BLOB
        and tally.median_labels >= INSTANCE_MIN_LABELS
    )


GRAY_KIND_RULES: tuple[tuple[str, Callable[[MaskTally, int], bool]], ...] = (
    ("binary", lambda t, _: set(t.values) <= {0, 1}),
    ("scale-255", lambda t, _: set(t.values) == {0, 255}),
    ("two-value", lambda t, _: len(t.values) == 2 and t.values[0] == 0),
    ("instance", _is_instance),
)
"""Kinds of gray masks that are not fractional, tried in order; none fits: ``multiclass``."""


def detect_kind(tally: MaskTally, max_classes: int = MAX_CLASSES) -> tuple[str, float]:
    """The kind of the tallied masks and the fraction of their pixels that are fractional.

    RGB masks are ``palette`` (``fractional`` with too many colors); gray masks are
    ``fractional`` when they hold non-integral floats or 8-bit in-between values of a 0/255 mask,
    else the first rule of :data:`GRAY_KIND_RULES` that fits, else ``multiclass``.

    Example:
        >>> tally = MaskTally()
        >>> tally.add(np.array([[0, 255]], np.uint8))
        >>> detect_kind(tally)
        ('scale-255', 0.0)
    """
    if tally.rgb:
        if tally.too_many_colors or len(tally.colors) > tally.max_colors:
            return "fractional", 1.0
        return "palette", 0.0
    in_between = scale255_in_between(tally.counts, tally.dtypes)
    if tally.float_fractional or in_between:
        return "fractional", (tally.fractional_px + in_between) / max(tally.all_px, 1)
    for kind, fits in GRAY_KIND_RULES:
        if fits(tally, max_classes):
            return kind, 0.0
    return "multiclass", 0.0
