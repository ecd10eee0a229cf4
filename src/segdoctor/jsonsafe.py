"""The one JSON sanitizer: any value segdoctor writes to JSON goes through :func:`to_jsonable`.

JSON has no NaN or infinity (``json.dumps`` writes the non-standard ``NaN``, which browsers and
most other readers refuse). The rule, for every file segdoctor writes (``evaluation.json``, the
``evaluate --json`` output, the doctor's findings and reports, ``run.json``):

* a non-finite float (NaN, +inf, -inf) becomes ``null``: "no value" (an image whose Dice is
  undefined, a loss that diverged);
* numpy scalars and arrays become Python numbers and lists, tuples become lists, mapping keys
  become strings; anything else that JSON cannot hold becomes its ``str()``;
* with ``digits``, floats are rounded for display-sized files (the doctor's evidence).

Example:
    >>> to_jsonable({"dice": [0.5, float("nan")], "lr": float("inf")})
    {'dice': [0.5, None], 'lr': None}
    >>> dumps({"n": 1, "score": float("nan")})
    '{"n": 1, "score": null}'
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "to_jsonable"]


def _round(value: float, digits: int) -> float:
    """``digits`` decimals, or ``digits`` significant digits below 0.001 (1e-7 must not read 0)."""
    return round(value, digits) if abs(value) >= 1e-3 else float(f"{value:.{digits}g}")


def to_jsonable(value: Any, digits: int | None = None) -> Any:
    """``value`` as plain JSON types, every non-finite float replaced by None, recursively.

    Args:
        value: numbers, strings, None, numpy scalars or arrays, and dicts, lists or tuples of them.
        digits: round floats to this many decimals (significant digits below 0.001); None keeps
            them exact.

    Returns:
        A value ``json.dumps(..., allow_nan=False)`` accepts.

    Example:
        >>> import numpy as np
        >>> to_jsonable({"values": np.array([0, 255]), 1: np.float32(0.25)})
        {'values': [0, 255], '1': 0.25}
        >>> to_jsonable([1e-7, 0.1234567, float("-inf")], digits=6)
        [1e-07, 0.123457, None]
    """
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # numpy scalar or array -> Python number or (nested) list
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value if digits is None else _round(value, digits)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, digits) for v in value]
    return str(value)


def dumps(value: Any, indent: int | None = None) -> str:
    """``json.dumps`` of :func:`to_jsonable` (strict JSON: never ``NaN``).

    Example:
        >>> dumps([float("nan"), 2])
        '[null, 2]'
    """
    return json.dumps(to_jsonable(value), indent=indent, allow_nan=False)
