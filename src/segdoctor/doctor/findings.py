"""The unit of the doctor's output: one :class:`Finding`, with its evidence and its fix.

A finding is immutable and JSON-friendly: ``evidence`` holds plain numbers and strings (never
arrays), so that the JSON report and the terminal view show exactly the same facts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from segdoctor.errors import check_choice

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples into plain JSON types.

    Floats keep 6 decimals, or 6 significant digits below 0.001 (a learning rate of 1e-7 must
    not read as 0).
    """
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return round(value, 6) if abs(value) >= 1e-3 else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class Finding:
    """One diagnosis: what is wrong, the numbers that prove it, and how to fix it.

    Args:
        id: stable identifier from :data:`segdoctor.doctor.catalog.CATALOG` (e.g. ``"mask-scale-255"``).
        severity: ``"error"`` (training cannot work as set up), ``"warning"`` (likely hurts the
            validation Dice) or ``"info"`` (worth knowing).
        title: one line, plain words.
        evidence: the measured facts, as plain JSON values.
        fix: a concrete fix; code is given as copy-pasteable code.
        confidence: in [0, 1]; how sure the check is (ranks findings of equal severity).

    Example:
        >>> f = Finding("mask-scale-255", "error", "Masks are 0/255", {"values": [0, 255]},
        ...             "mask = (mask > 127).astype('uint8')")
        >>> f.to_dict()["id"]
        'mask-scale-255'
    """

    id: str
    severity: str
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""
    confidence: float = 1.0

    def __post_init__(self) -> None:
        check_choice("severity", self.severity, SEVERITIES)
        if not 0.0 <= float(self.confidence) <= 1.0:
            from segdoctor.errors import ConfigError

            raise ConfigError(
                "Finding confidence out of range",
                expected="a number in [0, 1]",
                received=repr(self.confidence),
            )
        object.__setattr__(self, "evidence", _plain(dict(self.evidence)))
        object.__setattr__(self, "confidence", float(self.confidence))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the stable schema of one entry of ``report["findings"]``)."""
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "evidence": self.evidence,
            "fix": self.fix,
            "confidence": round(self.confidence, 3),
        }

    def sort_key(self) -> tuple[int, float, str]:
        """Errors first, then warnings, then info; within a severity, most confident first."""
        return (SEVERITY_RANK[self.severity], -self.confidence, self.id)
