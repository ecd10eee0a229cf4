"""Inspect masks, decide explicitly how to read them, and normalize them to class indices.

Nothing here is silent: :func:`inspect_masks` gathers evidence (values, dtypes, colors, how many
labels per mask, whether each label is one connected blob), :func:`decide_mask_policy` turns it into
a :class:`MaskPolicy` whose :meth:`MaskPolicy.describe` says what was found and what will be done,
and :func:`normalize_mask` applies that decision to each mask.

Kinds of masks and the default decision:

============== ================================================ ===================================
kind           detected when                                    normalized to
============== ================================================ ===================================
``binary``     values are a subset of {0, 1}                     unchanged
``scale-255``  values are {0, 255}                               {0, 1} (255 -> 1)
``two-value``  values are {0, k}, k not 1 or 255                 {0, 1} (k -> 1)
``instance``   many labels per mask, each one connected blob,    binary foreground ``label > 0``
               or labels above ``max_classes``                   (or kept, ``keep_instances=True``)
``multiclass`` a few integer values shared by the masks          unchanged; values must be
                                                                 < num_classes or == ignore_index
``palette``    RGB masks with at most ``max_colors`` colors      class indices via a class map
``fractional`` non-integral floats, or 8-bit masks that are      refused (``DataError``); with
               almost all 0/255 with in-between edge values      ``round_fractional=True`` rounded
               (bilinear resize or JPEG)                         (threshold 0.5 / 128), with a
                                                                 warning
============== ================================================ ===================================

Instance detection (documented thresholds): integer masks are instance labels when the largest
label exceeds ``max_classes`` (255), or when at least 90% of the labels in the sampled masks form a
single connected component *and* the median mask has at least 8 labels.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from segdoctor.data.io import SKIP_HINT
from segdoctor.errors import ConfigError, DataError, check_choice

KINDS: tuple[str, ...] = (
    "binary",
    "scale-255",
    "two-value",
    "instance",
    "multiclass",
    "palette",
    "fractional",
)
MAX_CLASSES = 255
"""Integer masks with a larger label are instance labels (not class indices)."""
INSTANCE_MIN_LABELS = 8
"""Median number of labels per mask from which connected single blobs count as instances."""
INSTANCE_SINGLE_BLOB = 0.9
"""Fraction of labels that must be one connected component for the instance decision."""
MAX_PALETTE_COLORS = 256
"""RGB masks with more distinct colors than this are not palette masks (e.g. saved as JPEG)."""
_MAX_TRACKED_VALUES = 100_000
_COMPONENT_SAMPLE = 32


@dataclass
class MaskReport:
    """Evidence gathered from masks by :func:`inspect_masks` (streaming, one mask at a time).

    Attributes:
        kind: The detected kind (see module docstring).
        n_masks: How many masks were inspected.
        dtypes: Storage dtypes seen (e.g. ``("uint16",)``).
        values: Sorted distinct values (gray masks; truncated when there are very many).
        value_counts: Pixel count per value (gray masks).
        max_value: Largest value (gray masks).
        labels_per_mask: Median number of non-zero labels per mask.
        max_labels_per_mask: Largest number of non-zero labels in one mask.
        single_blob_fraction: Fraction of sampled labels that are one connected component.
        fractional_fraction: Fraction of pixels with in-between (fractional) values.
        colors: Distinct RGB colors (palette masks), sorted, black first.
        color_counts: Pixel count per color.
        rgb_masks: Number of masks stored as RGB.
        gray_masks: Number of masks stored as one channel.
        first_seen: For each value (gray masks), the name of the first mask that holds it, when
            the masks were given as ``(name, mask)`` pairs; used to name files in errors.
    """

    kind: str
    n_masks: int
    dtypes: tuple[str, ...]
    values: tuple[int, ...] = ()
    value_counts: dict[int, int] = field(default_factory=dict)
    max_value: float = 0.0
    labels_per_mask: float = 0.0
    max_labels_per_mask: int = 0
    single_blob_fraction: float | None = None
    fractional_fraction: float = 0.0
    colors: tuple[tuple[int, int, int], ...] = ()
    color_counts: dict[tuple[int, int, int], int] = field(default_factory=dict)
    rgb_masks: int = 0
    gray_masks: int = 0
    first_seen: dict[int, str] = field(default_factory=dict)

    def where(self, values: Iterable[float]) -> str:
        """`` (value 7 first in masks/a.png, ...)`` for the named values; ``""`` without names.

        Example:
            >>> r = inspect_masks([("masks/a.png", np.array([[0, 7]], np.uint8))])
            >>> r.where([7])
            ' (value 7 first in masks/a.png)'
        """
        named = [v for v in values if v in self.first_seen][:3]
        parts = [f"value {_fmt_value(v)} first in {self.first_seen[v]}" for v in named]
        return f" ({'; '.join(parts)})" if parts else ""

    def describe(self) -> str:
        """What the masks look like, in one sentence.

        Example:
            >>> import numpy as np
            >>> inspect_masks([np.array([[0, 255]], np.uint8)]).describe()
            '1 masks (uint8): values {0, 255}'
        """
        head = f"{self.n_masks} masks ({', '.join(self.dtypes)})"
        if self.kind == "palette" or (self.rgb_masks and not self.gray_masks):
            return f"{head}: RGB with {len(self.colors)} distinct colors"
        if self.kind == "instance":
            return (
                f"{head}: instance labels, median {self.labels_per_mask:g} labels per mask "
                f"(up to {self.max_labels_per_mask}), largest label {self.max_value:g}"
            )
        if self.kind == "fractional":
            return (
                f"{head}: {self.fractional_fraction:.2%} of pixels have fractional or in-between "
                f"values (largest {self.max_value:g})"
            )
        return f"{head}: values {_fmt_values(self.values)}"

    def policy(self, **overrides) -> MaskPolicy:
        """The decision for these masks; keywords as in :func:`decide_mask_policy`."""
        return decide_mask_policy(self, **overrides)


def _fmt_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _fmt_values(values: Iterable[int], limit: int = 12) -> str:
    vals = [_fmt_value(v) for v in values]
    if len(vals) <= limit:
        return "{" + ", ".join(vals) + "}"
    return "{" + ", ".join(vals[:limit]) + f", ... ({len(vals)} values)" + "}"


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # (H, W)


def _unpack_rgb(code: int) -> tuple[int, int, int]:
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def _single_blob_stats(mask: np.ndarray) -> tuple[int, int]:
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


def inspect_masks(
    masks: Iterable[np.ndarray],
    *,
    max_classes: int = MAX_CLASSES,
    max_colors: int = MAX_PALETTE_COLORS,
) -> MaskReport:
    """Gather evidence about a set of masks, one at a time (memory independent of their count).

    Args:
        masks: Arrays from :func:`read_mask`: ``(H, W)`` integer/float or ``(H, W, 3)`` RGB; or
            ``(name, array)`` pairs, so that errors can name the file that holds a bad value.
        max_classes: Integer masks with a larger label are instance labels.
        max_colors: RGB masks with more colors than this are fractional, not palettes.

    Returns:
        A :class:`MaskReport` with the detected ``kind``.

    Example:
        >>> import numpy as np
        >>> inspect_masks([np.array([[0, 1], [1, 0]], np.uint8)]).kind
        'binary'
    """
    counts: dict[float, int] = {}
    colors: dict[int, int] = {}
    dtypes: set[str] = set()
    labels_per_mask: list[int] = []  # one int per mask: small
    single = total = 0
    n = rgb = gray = 0
    fractional_px = all_px = 0
    float_fractional = False
    too_many = False
    first_seen: dict[float, str] = {}
    for item in masks:
        name, mask = item if isinstance(item, tuple) else (None, item)
        mask = np.asarray(mask)
        n += 1
        dtypes.add(str(mask.dtype))
        all_px += mask.shape[0] * mask.shape[1]
        if mask.ndim == 3:
            rgb += 1
            codes, cnt = np.unique(_pack_rgb(mask[..., :3]), return_counts=True)
            for c, k in zip(codes.tolist(), cnt.tolist(), strict=True):
                colors[c] = colors.get(c, 0) + k
            if len(colors) > 4 * max_colors:
                too_many = True
            continue
        gray += 1
        if mask.dtype.kind == "f":
            frac = mask != np.round(mask)
            if frac.any():
                float_fractional = True
                fractional_px += int(frac.sum())
        vals, cnt = np.unique(mask, return_counts=True)
        if len(counts) < _MAX_TRACKED_VALUES:
            for v, k in zip(vals.tolist(), cnt.tolist(), strict=True):
                counts[v] = counts.get(v, 0) + k
                if name is not None and v not in first_seen:
                    first_seen[v] = name
        nonzero = int((vals != 0).sum())
        labels_per_mask.append(nonzero)
        if (
            mask.dtype.kind in "iu"
            and nonzero >= 2
            and total < 20_000
            and n <= 4 * _COMPONENT_SAMPLE
            and len(labels_per_mask) <= _COMPONENT_SAMPLE
        ):
            s, t = _single_blob_stats(mask)
            single += s
            total += t
    if n == 0:
        raise DataError(
            "No masks to inspect",
            expected="at least one mask",
            received="an empty collection",
            fix="check that the data folder has masks.",
        )
    values = tuple(sorted(counts))
    max_value = float(max(values)) if values else 0.0
    report = MaskReport(
        kind="multiclass",
        n_masks=n,
        dtypes=tuple(sorted(dtypes)),
        values=tuple(int(v) if float(v).is_integer() else v for v in values[:1000]),
        value_counts={v: counts[v] for v in values[:1000]},
        max_value=max_value,
        labels_per_mask=float(np.median(labels_per_mask)) if labels_per_mask else 0.0,
        max_labels_per_mask=max(labels_per_mask, default=0),
        single_blob_fraction=single / total if total else None,
        rgb_masks=rgb,
        gray_masks=gray,
        first_seen=first_seen,
    )
    if rgb:
        ordered = sorted(colors, key=lambda c: (c != 0, c))
        report.colors = tuple(_unpack_rgb(c) for c in ordered)
        report.color_counts = {_unpack_rgb(c): colors[c] for c in ordered}
        report.kind = "fractional" if too_many or len(colors) > max_colors else "palette"
        if report.kind == "fractional":
            report.fractional_fraction = 1.0
        return report
    in_between = _scale255_in_between(counts, dtypes)
    if float_fractional or in_between:
        report.kind = "fractional"
        report.fractional_fraction = (fractional_px + in_between) / max(all_px, 1)
    elif set(values) <= {0, 1}:
        report.kind = "binary"
    elif set(values) == {0, 255}:
        report.kind = "scale-255"
    elif len(values) == 2 and values[0] == 0:
        report.kind = "two-value"
    elif min(values) >= 0 and (
        max_value > max_classes
        or (
            report.single_blob_fraction is not None
            and report.single_blob_fraction >= INSTANCE_SINGLE_BLOB
            and report.labels_per_mask >= INSTANCE_MIN_LABELS
        )
    ):
        report.kind = "instance"
    return report


def _scale255_in_between(counts: dict[float, int], dtypes: set[str]) -> int:
    """Pixels of in-between values in 8-bit masks that are otherwise 0/255 (JPEG, bilinear)."""
    if dtypes != {"uint8"} or 0 not in counts or 255 not in counts:
        return 0
    total = sum(counts.values())
    between = total - counts[0] - counts[255]
    distinct_between = len(counts) - 2
    if between and distinct_between >= 3 and between <= 0.1 * total:
        return between
    return 0


@dataclass(frozen=True)
class MaskPolicy:
    """An explicit decision on how masks become class indices; see :meth:`describe`.

    Attributes:
        kind: One of :data:`KINDS`.
        num_classes: Classes after normalization (2 for binary foreground/background; for kept
            instance labels, the largest label seen + 1).
        foreground_value: ``scale-255``/``two-value``: the stored value meaning foreground.
        keep_instances: ``instance``: keep the labels instead of converting to foreground.
        palette: ``palette``: RGB color of class ``i`` at position ``i``.
        ignore_index: A normalized value excluded from losses and metrics (e.g. CamVid void 11).
        round_fractional: ``fractional``: round instead of refusing.
        threshold: ``fractional`` + rounding: values >= threshold become 1; ``None``: round to the
            nearest integer.
        class_names: Optional names of the classes, in index order.
        evidence: What inspection found (used by :meth:`describe`).

    Example:
        >>> MaskPolicy("scale-255", 2, foreground_value=255).describe()
        'masks are {0, 255}: converted to {0, 1} (255 -> 1)'
    """

    kind: str
    num_classes: int
    foreground_value: int | None = None
    keep_instances: bool = False
    palette: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int | None = None
    round_fractional: bool = False
    threshold: float | None = None
    class_names: tuple[str, ...] = ()
    evidence: str = ""

    def __post_init__(self) -> None:
        check_choice("mask kind", self.kind, KINDS)
        if self.num_classes < 1:
            raise ConfigError(
                "num_classes must be positive",
                expected="an integer >= 1",
                received=repr(self.num_classes),
            )

    @property
    def is_binary(self) -> bool:
        """Whether normalized masks are {0, 1} (one foreground class)."""
        return self.num_classes == 2 and not self.keep_instances

    def describe(self) -> str:
        """Human-readable decision: what the masks are and what is done with them."""
        ev = f" ({self.evidence})" if self.evidence else ""
        ignore = (
            f"; value {self.ignore_index} is ignore_index (excluded from loss and metrics)"
            if self.ignore_index is not None
            else ""
        )
        if self.kind == "binary":
            return f"masks are binary {{0, 1}}{ev}: used as they are{ignore}"
        if self.kind == "scale-255":
            return f"masks are {{0, 255}}{ev}: converted to {{0, 1}} (255 -> 1){ignore}"
        if self.kind == "two-value":
            return (
                f"masks are {{0, {self.foreground_value}}}{ev}: converted to {{0, 1}} "
                f"({self.foreground_value} -> 1){ignore}"
            )
        if self.kind == "instance":
            if self.keep_instances:
                return f"masks are instance labels{ev}: labels kept as they are (on request)"
            return (
                f"masks are instance labels{ev}: converted to a binary foreground mask (label > 0)"
            )
        if self.kind == "palette":
            return (
                f"masks are RGB palette images with {len(self.palette)} colors{ev}: mapped to "
                f"class indices 0..{len(self.palette) - 1} by the class map "
                f"({', '.join(f'{c}->{i}' for i, c in enumerate(self.palette[:6]))}"
                f"{', ...' if len(self.palette) > 6 else ''}){ignore}"
            )
        if self.kind == "fractional":
            how = (
                f"thresholded at {self.threshold:g} to {{0, 1}}"
                if self.threshold is not None
                else "rounded to the nearest integer"
            )
            return (
                f"masks have fractional values{ev}: {how} (on request; check your export){ignore}"
            )
        n = self.num_classes
        return f"masks hold class indices{ev}: {n} classes (0..{n - 1}){ignore}"

    def to_json(self) -> str:
        """The decision as JSON (the class map for palette masks), to store with a run."""
        return json.dumps(
            {
                "kind": self.kind,
                "num_classes": self.num_classes,
                "foreground_value": self.foreground_value,
                "keep_instances": self.keep_instances,
                "palette": [list(c) for c in self.palette],
                "ignore_index": self.ignore_index,
                "round_fractional": self.round_fractional,
                "threshold": self.threshold,
                "class_names": list(self.class_names),
                "evidence": self.evidence,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> MaskPolicy:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        d["palette"] = tuple(tuple(int(v) for v in c) for c in d.get("palette", ()))
        d["class_names"] = tuple(d.get("class_names", ()))
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (e.g. ``run/class_map.json``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path


def decide_mask_policy(
    report: MaskReport,
    *,
    kind: str | None = None,
    keep_instances: bool = False,
    round_fractional: bool = False,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    palette: Iterable[Iterable[int]] | None = None,
    class_names: Iterable[str] | None = None,
) -> MaskPolicy:
    """Turn a :class:`MaskReport` into an explicit :class:`MaskPolicy`.

    Args:
        report: From :func:`inspect_masks`.
        kind: Override the detected kind (e.g. ``"multiclass"`` for class masks detected as
            instances). The masks must still be compatible with it.
        keep_instances: For instance labels, keep the labels instead of a binary foreground.
        round_fractional: Round fractional masks (with a warning) instead of refusing them.
        num_classes: Number of classes (default: the largest value + 1, ``ignore_index`` not
            counted: CamVid 0..11 with ignore 11 has 11 classes, VOC 0..20 + 255 has 21).
        ignore_index: A mask value to exclude from loss and metrics (e.g. 11 for CamVid void).
        palette: For RGB masks, the class map: color of class ``i`` at position ``i``
            (default: the detected colors, black first, then ascending RGB).
        class_names: Optional class names.

    Returns:
        The decision.

    Raises:
        DataError: fractional masks without ``round_fractional``, or an override that does not
            fit the masks.

    Example:
        >>> import numpy as np
        >>> r = inspect_masks([np.tile(np.arange(12, dtype=np.uint8), (4, 2))])  # 2 blobs per value
        >>> decide_mask_policy(r, ignore_index=11).num_classes
        11
    """
    kind = check_choice("mask kind", kind, KINDS) if kind is not None else report.kind
    names = tuple(class_names or ())
    evidence = report.describe()
    common = {"ignore_index": ignore_index, "class_names": names, "evidence": evidence}
    if kind == "fractional":
        if not round_fractional:
            raise DataError(
                "The masks have fractional values",
                expected="integer class indices (or {0, 255})",
                received=evidence,
                fix="masks were probably resized with bilinear interpolation or saved as JPEG: "
                "re-export them as PNG with nearest-neighbour resizing, or pass "
                "round_fractional=True to round them (with a warning).",
            )
        if report.rgb_masks:
            raise DataError(
                "RGB masks with too many colors cannot be rounded to a palette",
                expected=f"at most {MAX_PALETTE_COLORS} distinct colors",
                received=f"{len(report.colors)} colors",
                fix="re-export the masks as PNG (lossless), or pass an explicit palette after "
                "fixing the files.",
            )
        threshold = 0.5 if report.max_value <= 1 else (127.5 if report.max_value <= 255 else None)
        warnings.warn(
            f"segdoctor: fractional mask values ({evidence}) are being rounded on request; "
            "the masks were probably resized bilinearly or saved as JPEG.",
            UserWarning,
            stacklevel=2,
        )
        n = 2 if threshold is not None else round(report.max_value) + 1
        return MaskPolicy(
            "fractional",
            num_classes or n,
            round_fractional=True,
            threshold=threshold,
            **common,
        )
    if kind == "palette":
        if not report.rgb_masks:
            raise DataError(
                "A palette was requested but the masks are not RGB",
                expected="(H, W, 3) RGB masks",
                received=evidence,
                fix="drop kind='palette'.",
            )
        colors = (
            tuple(tuple(int(v) for v in c) for c in palette)
            if palette is not None
            else report.colors
        )
        unknown = [c for c in report.colors if c not in colors]
        if unknown:
            raise DataError(
                "The masks contain colors that are not in the class map",
                expected=f"only the {len(colors)} palette colors",
                received=", ".join(map(str, unknown[:10])),
                fix="add these colors to the palette (or fix the masks).",
            )
        return MaskPolicy("palette", num_classes or len(colors), palette=colors, **common)
    if report.rgb_masks:
        raise DataError(
            f"Mask kind {kind!r} does not fit RGB masks",
            expected="kind='palette' for RGB masks",
            received=evidence,
            fix="drop the kind override, or store class indices in one channel.",
        )
    values = set(report.values)
    if kind == "binary":
        _require(values <= {0, 1} | _opt(ignore_index), kind, "{0, 1}", report)
        return MaskPolicy("binary", 2, **common)
    if kind in ("scale-255", "two-value"):
        fg = [v for v in values if v not in (0, ignore_index)]
        _require(len(fg) == 1 and 0 in values, kind, "{0, k}", report)
        return MaskPolicy(kind, 2, foreground_value=int(fg[0]), **common)
    if kind == "instance":
        n = int(report.max_value) + 1 if keep_instances else 2
        return MaskPolicy("instance", num_classes or n, keep_instances=keep_instances, **common)
    # multiclass
    bad = sorted(v for v in values if not float(v).is_integer() or (v < 0 and v != ignore_index))
    if bad:
        raise DataError(
            "The masks hold values that are not class indices",
            expected="integer class indices >= 0"
            + (f" (or ignore_index {ignore_index})" if ignore_index is not None else ""),
            received=f"values {_fmt_values(bad)}{report.where(bad)}",
            fix="fix these masks, or set ignore_index to the void value (e.g. "
            "--set data.ignore_index=255).",
        )
    labels = [int(v) for v in values if v != ignore_index]
    n = num_classes or max(max(labels, default=0) + 1, 2)  # ignore_index is never a class
    too_big = sorted(v for v in values if v >= n and v != ignore_index)
    if too_big:
        raise DataError(
            "Mask values exceed the number of classes",
            expected=f"values 0..{n - 1}" + (f" or {ignore_index}" if ignore_index else ""),
            received=f"values {_fmt_values(too_big)}{report.where(too_big)}",
            fix="pass the right num_classes (--set data.num_classes=N), set ignore_index for a "
            "void label (--set data.ignore_index=V), or fix these masks.",
        )
    return MaskPolicy("multiclass", n, **common)


def _opt(value: int | None) -> set[int]:
    return set() if value is None else {value}


def _require(ok: bool, kind: str, expected: str, report: MaskReport) -> None:
    if not ok:
        raise DataError(
            f"The masks do not fit mask kind {kind!r}",
            expected=f"values {expected}",
            received=report.describe(),
            fix="drop the kind override and let segdoctor detect it.",
        )


def normalize_mask(mask: np.ndarray, policy: MaskPolicy, *, name: str | None = None) -> np.ndarray:
    """Apply a :class:`MaskPolicy` to one mask.

    Args:
        mask: From :func:`read_mask`, ``(H, W)`` or ``(H, W, 3)``.
        policy: The decision.
        name: File name used in error messages.

    Returns:
        ``int32`` array ``(H, W)`` with values in ``[0, num_classes)`` or ``ignore_index``.

    Raises:
        DataError: a value that the policy does not allow (named with the file).

    Example:
        >>> import numpy as np
        >>> policy = MaskPolicy("instance", 2)
        >>> normalize_mask(np.array([[0, 7], [300, 0]], np.uint16), policy).tolist()
        [[0, 1], [1, 0]]
    """
    mask = np.asarray(mask)
    where = name or "a mask"
    out = _apply(mask, policy, where)  # (H, W) int32
    _check_range(out, policy.num_classes, policy.ignore_index, where)  # the documented promise
    return out


def _apply(mask: np.ndarray, policy: MaskPolicy, where: str) -> np.ndarray:
    if policy.kind == "palette":
        if mask.ndim != 3:
            raise _bad(where, "an RGB palette mask (H, W, 3)", f"shape {mask.shape}")
        codes = _pack_rgb(mask[..., :3])  # (H, W)
        table = np.array([(r << 16) | (g << 8) | b for r, g, b in policy.palette], np.uint32)
        order = np.argsort(table)
        pos = np.searchsorted(table[order], codes).clip(0, len(table) - 1)
        found = table[order][pos] == codes
        if not found.all():
            bad = _unpack_rgb(int(codes[~found][0]))
            raise _bad(where, "only colors of the class map", f"color {bad}")
        return order[pos].astype(np.int32)
    if mask.ndim != 2:
        raise _bad(where, "a single-channel mask (H, W)", f"shape {mask.shape}")
    ignore = policy.ignore_index
    if policy.kind == "fractional":
        if policy.threshold is not None:
            return (mask >= policy.threshold).astype(np.int32)
        rounded = np.rint(mask.astype(np.float64))
        if rounded.size and not (np.abs(rounded) < 2**31).all():
            raise _bad(where, "values that fit a 32-bit label", f"values up to {mask.max()}")
        return rounded.astype(np.int32)
    if mask.dtype.kind == "f":
        raise _bad(where, "integer values", "fractional values (resized bilinearly or JPEG?)")
    if policy.kind in ("scale-255", "two-value"):
        fg = policy.foreground_value
        out = (mask == fg).astype(np.int32)
        if ignore is not None:
            out[mask == ignore] = ignore
        stray = (mask != 0) & (mask != fg) & (mask != (ignore if ignore is not None else 0))
        if stray.any():
            raise _bad(where, f"values {{0, {fg}}}", f"value {int(mask[stray][0])}")
        return out
    if policy.kind == "instance" and not policy.keep_instances:
        return (mask > 0).astype(np.int32)
    if mask.size and (int(mask.min()) < np.iinfo(np.int32).min or int(mask.max()) > 2**31 - 1):
        raise _bad(where, "values that fit a 32-bit label", f"values {mask.min()}..{mask.max()}")
    return mask.astype(np.int32)  # binary, multiclass, kept instance labels: checked by caller


def _check_range(out: np.ndarray, n: int, ignore: int | None, where: str) -> None:
    bad = (out < 0) | (out >= n)
    if ignore is not None:
        bad &= out != ignore
    if bad.any():
        values = np.unique(out[bad])[:8].tolist()
        expected = f"values 0..{n - 1}" + (
            f" or ignore_index {ignore}" if ignore is not None else ""
        )
        raise _bad(where, expected, f"values {values}")


def _bad(where: str, expected: str, received: str) -> DataError:
    return DataError(
        f"Mask {where} does not match the mask decision",
        expected=expected,
        received=received,
        fix=f"fix this mask, {SKIP_HINT}, or inspect all masks again.",
    )


def with_ignore_index(policy: MaskPolicy, ignore_index: int | None) -> MaskPolicy:
    """A copy of ``policy`` with another ``ignore_index``."""
    return replace(policy, ignore_index=ignore_index)
