"""The rules of the mask decision: one small function per mask kind, looked up in a table.

:func:`segdoctor.data.masks.decide_mask_policy` picks the rule of the detected (or requested)
kind from :data:`RULES`; the rule checks that the masks fit the kind and returns the fields of the
:class:`~segdoctor.data.masks.MaskPolicy` (``kind`` and ``num_classes`` first), or raises a
:class:`~segdoctor.errors.DataError` that says what to change. Every kind of
:data:`segdoctor.data.masks.KINDS` has exactly one rule (a test holds the two together).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segdoctor.data.mask_evidence import MAX_PALETTE_COLORS, fmt_values
from segdoctor.errors import DataError

if TYPE_CHECKING:
    from segdoctor.data.masks import MaskReport


@dataclass(frozen=True)
class Request:
    """What the caller asked of :func:`~segdoctor.data.masks.decide_mask_policy`."""

    keep_instances: bool = False
    round_fractional: bool = False
    num_classes: int | None = None
    ignore_index: int | None = None
    palette: Iterable[Iterable[int]] | None = None


Rule = Callable[["MaskReport", Request], dict[str, Any]]


def fractional(report: MaskReport, request: Request) -> dict[str, Any]:
    """Refused, unless rounding was asked for (then thresholded at the midpoint, with a warning)."""
    evidence = report.describe()
    if not request.round_fractional:
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
        stacklevel=3,  # the caller of decide_mask_policy (or of MaskReport.policy)
    )
    n = 2 if threshold is not None else round(report.max_value) + 1
    return {
        "kind": "fractional",
        "num_classes": request.num_classes or n,
        "round_fractional": True,
        "threshold": threshold,
    }


def palette(report: MaskReport, request: Request) -> dict[str, Any]:
    """RGB masks: every color must be in the class map (default: the colors found)."""
    if not report.rgb_masks:
        raise DataError(
            "A palette was requested but the masks are not RGB",
            expected="(H, W, 3) RGB masks",
            received=report.describe(),
            fix="drop kind='palette'.",
        )
    colors = (
        tuple(tuple(int(v) for v in c) for c in request.palette)
        if request.palette is not None
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
    return {"kind": "palette", "num_classes": request.num_classes or len(colors), "palette": colors}


def binary(report: MaskReport, request: Request) -> dict[str, Any]:
    """Values {0, 1} (and the ignore value)."""
    _require(set(report.values) <= {0, 1} | _opt(request.ignore_index), "binary", "{0, 1}", report)
    return {"kind": "binary", "num_classes": 2}


def two_value(report: MaskReport, request: Request, kind: str = "two-value") -> dict[str, Any]:
    """Values {0, k}: k is the foreground (``scale-255``: k = 255)."""
    values = set(report.values)
    fg = [v for v in values if v not in (0, request.ignore_index)]
    _require(len(fg) == 1 and 0 in values, kind, "{0, k}", report)
    return {"kind": kind, "num_classes": 2, "foreground_value": int(fg[0])}


def scale_255(report: MaskReport, request: Request) -> dict[str, Any]:
    """Values {0, 255}: as :func:`two_value`."""
    return two_value(report, request, "scale-255")


def instance(report: MaskReport, request: Request) -> dict[str, Any]:
    """Instance labels: binary foreground, or the labels kept (``keep_instances``)."""
    n = int(report.max_value) + 1 if request.keep_instances else 2
    return {
        "kind": "instance",
        "num_classes": request.num_classes or n,
        "keep_instances": request.keep_instances,
    }


def multiclass(report: MaskReport, request: Request) -> dict[str, Any]:
    """Class indices: integers >= 0 below ``num_classes`` (default: largest + 1), or ignored."""
    ignore = request.ignore_index
    values = set(report.values)
    bad = sorted(v for v in values if not float(v).is_integer() or (v < 0 and v != ignore))
    if bad:
        raise DataError(
            "The masks hold values that are not class indices",
            expected="integer class indices >= 0"
            + (f" (or ignore_index {ignore})" if ignore is not None else ""),
            received=f"values {fmt_values(bad)}{report.where(bad)}",
            fix="fix these masks, or set ignore_index to the void value (e.g. "
            "--set data.ignore_index=255).",
        )
    labels = [int(v) for v in values if v != ignore]
    n = request.num_classes or max(max(labels, default=0) + 1, 2)  # ignore is never a class
    too_big = sorted(v for v in values if v >= n and v != ignore)
    if too_big:
        raise DataError(
            "Mask values exceed the number of classes",
            expected=f"values 0..{n - 1}" + (f" or {ignore}" if ignore else ""),
            received=f"values {fmt_values(too_big)}{report.where(too_big)}",
            fix="pass the right num_classes (--set data.num_classes=N), set ignore_index for a "
            "void label (--set data.ignore_index=V), or fix these masks.",
        )
    return {"kind": "multiclass", "num_classes": n}


RULES: dict[str, Rule] = {
    "binary": binary,
    "scale-255": scale_255,
    "two-value": two_value,
    "instance": instance,
    "multiclass": multiclass,
    "palette": palette,
    "fractional": fractional,
}
"""Mask kind -> its rule."""
RGB_RULES: frozenset[str] = frozenset({"palette", "fractional"})
"""Kinds whose rule itself handles RGB masks; every other kind refuses them."""


def refuse_rgb(report: MaskReport, kind: str) -> None:
    """Raise for RGB masks under a kind that holds one channel."""
    if report.rgb_masks:
        raise DataError(
            f"Mask kind {kind!r} does not fit RGB masks",
            expected="kind='palette' for RGB masks",
            received=report.describe(),
            fix="drop the kind override, or store class indices in one channel.",
        )


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
