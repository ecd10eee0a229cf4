"""The unit of the doctor's output: one :class:`Finding`, with its evidence and its fix.

A finding is immutable and JSON-friendly: ``evidence`` holds plain numbers and strings (never
arrays), so that the JSON report and the terminal view show exactly the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segdoctor.errors import ConfigError, check_choice
from segdoctor.jsonsafe import to_jsonable

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}


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
            raise ConfigError(
                "Finding confidence out of range",
                expected="a number in [0, 1]",
                received=repr(self.confidence),
            )
        # plain JSON types; floats to 6 decimals (6 significant digits below 0.001); NaN/inf -> None
        object.__setattr__(self, "evidence", to_jsonable(dict(self.evidence), digits=6))
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
