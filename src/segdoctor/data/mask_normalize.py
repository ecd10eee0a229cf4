"""Apply a :class:`~segdoctor.data.masks.MaskPolicy` to one mask: class indices, checked.

:func:`normalize_mask` (re-exported by :mod:`segdoctor.data.masks`) returns ``int32`` ``(H, W)``
values in ``[0, num_classes)`` or ``ignore_index``; a value the decision does not allow is a
:class:`~segdoctor.errors.DataError` that names the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from segdoctor.data.files import SKIP_HINT
from segdoctor.data.mask_evidence import pack_rgb, unpack_rgb
from segdoctor.errors import DataError

if TYPE_CHECKING:
    from segdoctor.data.masks import MaskPolicy


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
        >>> from segdoctor.data.masks import MaskPolicy
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
        codes = pack_rgb(mask[..., :3])  # (H, W)
        table = np.array([(r << 16) | (g << 8) | b for r, g, b in policy.palette], np.uint32)
        order = np.argsort(table)
        pos = np.searchsorted(table[order], codes).clip(0, len(table) - 1)
        found = table[order][pos] == codes
        if not found.all():
            bad = unpack_rgb(int(codes[~found][0]))
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
