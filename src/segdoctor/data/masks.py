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

The work is split by job: :mod:`segdoctor.data.mask_evidence` (the streaming tally and the rules
that name the kind), :mod:`segdoctor.data.mask_rules` (one decision rule per kind) and
:mod:`segdoctor.data.mask_normalize` (:func:`normalize_mask`); this module owns the kinds
(:data:`KINDS`), the report and the decision, and every public name of the three.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from segdoctor.data import mask_rules
from segdoctor.data.mask_evidence import (
    INSTANCE_MIN_LABELS,
    INSTANCE_SINGLE_BLOB,
    MAX_CLASSES,
    MAX_PALETTE_COLORS,
    MaskTally,
    detect_kind,
    fmt_value,
    fmt_values,
    unpack_rgb,
)
from segdoctor.data.mask_normalize import normalize_mask
from segdoctor.errors import ConfigError, DataError, check_choice

__all__ = [
    "INSTANCE_MIN_LABELS",
    "INSTANCE_SINGLE_BLOB",
    "KINDS",
    "MAX_CLASSES",
    "MAX_PALETTE_COLORS",
    "MaskPolicy",
    "MaskReport",
    "decide_mask_policy",
    "inspect_masks",
    "normalize_mask",
    "with_ignore_index",
]

KINDS: tuple[str, ...] = (
    "binary",
    "scale-255",
    "two-value",
    "instance",
    "multiclass",
    "palette",
    "fractional",
)
"""Every kind of mask segdoctor knows: the one list (the configuration's choices come from it)."""


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
        parts = [f"value {fmt_value(v)} first in {self.first_seen[v]}" for v in named]
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
        return f"{head}: values {fmt_values(self.values)}"

    def policy(self, **overrides) -> MaskPolicy:
        """The decision for these masks; keywords as in :func:`decide_mask_policy`."""
        return decide_mask_policy(self, **overrides)


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
    tally = MaskTally(max_colors=max_colors)
    for item in masks:
        name, mask = item if isinstance(item, tuple) else (None, item)
        tally.add(mask, name)
    if tally.n == 0:
        raise DataError(
            "No masks to inspect",
            expected="at least one mask",
            received="an empty collection",
            fix="check that the data folder has masks.",
        )
    report = _report(tally)
    report.kind, report.fractional_fraction = detect_kind(tally, max_classes)
    return report


def _report(tally: MaskTally) -> MaskReport:
    """The evidence of a tally as a :class:`MaskReport` (its kind still to be named)."""
    values = tally.values
    report = MaskReport(
        kind="multiclass",
        n_masks=tally.n,
        dtypes=tuple(sorted(tally.dtypes)),
        values=tuple(int(v) if float(v).is_integer() else v for v in values[:1000]),
        value_counts={v: tally.counts[v] for v in values[:1000]},
        max_value=tally.max_value,
        labels_per_mask=tally.median_labels,
        max_labels_per_mask=max(tally.labels_per_mask, default=0),
        single_blob_fraction=tally.single_blob_fraction,
        rgb_masks=tally.rgb,
        gray_masks=tally.gray,
        first_seen=tally.first_seen,
    )
    if tally.rgb:
        ordered = sorted(tally.colors, key=lambda c: (c != 0, c))
        report.colors = tuple(unpack_rgb(c) for c in ordered)
        report.color_counts = {unpack_rgb(c): tally.colors[c] for c in ordered}
    return report


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

    The rule of each kind (:mod:`segdoctor.data.mask_rules`) checks that the masks fit it and
    fills in the decision.

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
    request = mask_rules.Request(
        keep_instances, round_fractional, num_classes, ignore_index, palette
    )
    if kind not in mask_rules.RGB_RULES:
        mask_rules.refuse_rgb(report, kind)
    fields = mask_rules.RULES[kind](report, request)
    return MaskPolicy(**fields, ignore_index=ignore_index, class_names=names, evidence=evidence)


def with_ignore_index(policy: MaskPolicy, ignore_index: int | None) -> MaskPolicy:
    """A copy of ``policy`` with another ``ignore_index``."""
    return replace(policy, ignore_index=ignore_index)
