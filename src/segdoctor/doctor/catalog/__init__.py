"""The catalog of finding ids: stable names, default severity, title, fix text and documentation anchor.

Ids never change meaning once released; the troubleshooting guide (``docs/troubleshooting.md``) has
one section per id, with the symptom, the cause, how it is detected and the fix. An id whose check is
not implemented yet stays in the catalog with ``implemented=False`` so that no report can mention a
check that cannot fire.

The fix texts live here, next to the titles, as templates filled from a finding's evidence (see
:mod:`.entry`): a check detects and passes numbers, :func:`make_finding` writes the words. The
entries are split by category: :mod:`.data`, :mod:`.model` (model, compile and loss) and
:mod:`.runtime` (probes and training history).
"""

from __future__ import annotations

from typing import Any

from segdoctor.doctor.catalog.data import FILE_ENTRIES, MASK_ENTRIES
from segdoctor.doctor.catalog.entry import DOCS_PAGE, CatalogEntry, placeholders, render
from segdoctor.doctor.catalog.model import MODEL_ENTRIES
from segdoctor.doctor.catalog.runtime import HISTORY_ENTRIES, PROBE_ENTRIES
from segdoctor.doctor.findings import Finding
from segdoctor.errors import ConfigError, did_you_mean

__all__ = [
    "CATALOG",
    "DOCS_PAGE",
    "CatalogEntry",
    "get_entry",
    "implemented_ids",
    "make_finding",
    "placeholders",
    "render",
]

_ENTRIES: tuple[CatalogEntry, ...] = (
    *MASK_ENTRIES,
    *FILE_ENTRIES,
    *MODEL_ENTRIES,
    *PROBE_ENTRIES,
    *HISTORY_ENTRIES,
)

CATALOG: dict[str, CatalogEntry] = {entry.id: entry for entry in _ENTRIES}


def implemented_ids() -> list[str]:
    """Ids that some check in this version can emit."""
    return [entry.id for entry in _ENTRIES if entry.implemented]


def get_entry(finding_id: str) -> CatalogEntry:
    """Look up a catalog entry; unknown ids raise ConfigError with a suggestion."""
    try:
        return CATALOG[finding_id]
    except KeyError:
        raise ConfigError(
            f"Unknown finding id {finding_id!r}",
            expected="an id of segdoctor.doctor.CATALOG",
            received=repr(finding_id),
            fix=f"use a catalog id.{did_you_mean(finding_id, CATALOG)}".strip(),
        ) from None


def make_finding(
    finding_id: str,
    evidence: dict[str, Any],
    fix: str | None = None,
    *,
    variant: str | None = None,
    title: str | None = None,
    severity: str | None = None,
    confidence: float = 1.0,
    **values: Any,
) -> Finding:
    """Build a Finding with the catalog's title, severity and fix text.

    Args:
        finding_id: a catalog id.
        evidence: the measured facts (shown in the report, and available to the templates).
        fix: an explicit fix text; default: the entry's template of ``variant``.
        variant: the branch of the check, when the entry has several fix texts or titles.
        title: overrides the catalog's title (of the variant).
        severity: overrides the catalog's severity.
        confidence: in [0, 1].
        **values: extra template values that are not evidence (a suggested rate, a code line's
            number); they win over evidence keys of the same name.

    Raises:
        ConfigError: unknown id or variant, or a template placeholder without a value.

    Example:
        >>> make_finding("plateau", {"best": 0.5}, monitor="val_dice").fix[:36]
        'Validation Dice stopped improving. L'
        >>> make_finding("plateau", {"epochs_without_gain": 12}, "lower the LR").severity
        'warning'
    """
    entry = get_entry(finding_id)
    fields = {**evidence, **values}
    return Finding(
        id=finding_id,
        severity=severity or entry.severity,
        title=title or entry.render_title(fields, variant),
        evidence=evidence,
        fix=entry.render_fix(fields, variant) if fix is None else fix,
        confidence=confidence,
    )
