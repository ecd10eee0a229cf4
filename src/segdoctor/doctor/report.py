"""A ranked set of findings and its three views: JSON (stable), terminal (rich) and HTML.

JSON schema (version 1, kept stable)::

    {
      "findings": [{"id", "severity", "title", "evidence", "fix", "confidence"}, ...],
      "summary": {"errors": int, "warnings": int, "info": int, "top": id | null,
                  "checked": [str, ...], ...},
      "version": {"segdoctor": str, "schema": 1}
    }

Numbers that are not finite (NaN, inf) are written as ``null`` (:mod:`segdoctor.jsonsafe`).

Findings are ranked: errors first, then warnings, then info; within a severity the most confident
first, then in catalog order (data before model before history: root causes first). The same finding id is reported once (the most severe, most confident instance wins).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from segdoctor import __version__
from segdoctor._io import atomic_write_text as write_text_atomic
from segdoctor.doctor.catalog import CATALOG
from segdoctor.doctor.findings import SEVERITIES, Finding
from segdoctor.jsonsafe import to_jsonable

SCHEMA_VERSION = 1
_COLOURS = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_HTML_COLOURS = {"error": "#b00020", "warning": "#b26a00", "info": "#00607a"}


_ORDER = {fid: n for n, fid in enumerate(CATALOG)}


def is_symptom(finding_id: str) -> bool:
    """Whether a finding says what happened in training (the history) rather than why."""
    entry = CATALOG.get(finding_id)
    return entry is not None and entry.category == "history"


def _key(f: Finding) -> tuple[int, bool, float, int, str]:
    """Severity; then causes before symptoms (a collapsed prediction in the history is explained
    by misaligned training batches, not the other way round: blind test, 2026-12-07); then
    confidence; then catalog order (root causes such as mask values first)."""
    rank, confidence, _ = f.sort_key()
    return (rank, is_symptom(f.id), confidence, _ORDER.get(f.id, len(_ORDER)), f.id)


def _rank(findings: Iterable[Finding]) -> list[Finding]:
    best: dict[str, Finding] = {}
    for finding in sorted(findings, key=_key):
        best.setdefault(finding.id, finding)
    return sorted(best.values(), key=_key)


@dataclass
class Report:
    """The doctor's answer: ranked findings, a summary and the plots that prove them.

    Args:
        findings: any order; duplicates of an id are merged (the most severe kept).
        summary: extra summary fields (what was checked, dataset size, ...).
        plots: PNG figures per finding id (or ``"history"``), as ``[(caption, png_bytes), ...]``.

    Example:
        >>> from segdoctor.doctor import Finding
        >>> r = Report([Finding("plateau", "warning", "Stalled", {"epochs": 9}, "lower the LR")])
        >>> r.has_errors, r.ids
        (False, ['plateau'])
    """

    findings: list[Finding] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.findings = _rank(self.findings)

    # -- queries -------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        """Finding ids in rank order."""
        return [f.id for f in self.findings]

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    def get(self, finding_id: str) -> Finding | None:
        """The finding with this id, or None."""
        return next((f for f in self.findings if f.id == finding_id), None)

    def merged(self, other: Report) -> Report:
        """A new report with the findings, summaries and plots of both."""
        plots = {k: list(v) for k, v in self.plots.items()}
        for key, items in other.plots.items():
            plots.setdefault(key, []).extend(items)
        summary = {**self.summary, **other.summary}
        summary["checked"] = sorted(
            set(self.summary.get("checked", [])) | set(other.summary.get("checked", []))
        )
        return Report([*self.findings, *other.findings], summary, plots)

    def add_plot(self, key: str, caption: str, png: bytes) -> None:
        self.plots.setdefault(key, []).append((caption, png))

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The stable JSON structure (see the module docstring)."""
        counts = {sev: sum(f.severity == sev for f in self.findings) for sev in SEVERITIES}
        summary = {
            **{k: v for k, v in self.summary.items() if k not in ("errors", "warnings", "info")},
            "errors": counts["error"],
            "warnings": counts["warning"],
            "info": counts["info"],
            "top": self.findings[0].id if self.findings else None,
        }
        summary.setdefault("checked", [])
        return {
            "findings": [f.to_dict() for f in self.findings],
            "summary": summary,
            "version": {"segdoctor": __version__, "schema": SCHEMA_VERSION},
        }

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        """Serialize to JSON; with ``path``, also write it atomically."""
        text = json.dumps(to_jsonable(self.to_dict()), indent=indent, allow_nan=False)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict` output (plots are not stored in JSON)."""
        findings = [
            Finding(
                d["id"],
                d["severity"],
                d["title"],
                d["evidence"],
                d["fix"],
                d.get("confidence", 1.0),
            )
            for d in data.get("findings", [])
        ]
        return cls(findings, dict(data.get("summary", {})))

    # -- terminal ------------------------------------------------------------------------------
    def to_terminal(self, console: Any = None, *, width: int = 100) -> str:
        """Render for a terminal with rich; prints to ``console`` when given and returns the text.

        One block per finding: severity, id and title; the evidence on one line; the fix.
        """
        buffer = io.StringIO()
        target = Console(file=buffer, width=width, force_terminal=False, color_system=None)
        d = self.to_dict()["summary"]
        checked = ", ".join(d.get("checked", [])) or "nothing"
        head = f"segdoctor: {d['errors']} error(s), {d['warnings']} warning(s), {d['info']} info"
        blocks: list[Text] = [Text(f"{head}  (checked: {checked})", style="bold")]
        if not self.findings:
            blocks.append(
                Text("No findings: nothing the doctor checks looks wrong.", style="green")
            )
        for n, f in enumerate(self.findings, 1):
            block = Text()
            block.append(f"\n{n}. {f.severity.upper():7s} ", style=_COLOURS[f.severity])
            block.append(f"{f.id}", style="bold")
            block.append(f"  {f.title}\n")
            block.append("   evidence: ", style="dim")
            block.append(_evidence_line(f.evidence) + "\n")
            block.append("   fix: ", style="dim")
            block.append(f.fix.replace("\n", "\n        "))
            entry = CATALOG.get(f.id)
            if entry is not None:
                block.append(f"\n   more: {entry.anchor}", style="dim")
            blocks.append(block)
        for block in blocks:
            target.print(block)
        text = buffer.getvalue()
        if console is not None:
            for block in blocks:
                console.print(block)
        return text

    def __str__(self) -> str:
        return self.to_terminal()

    # -- HTML ----------------------------------------------------------------------------------
    def to_html(self, path: str | Path | None = None) -> str:
        """A self-contained HTML page (plots embedded as base64 PNG; every user string escaped)."""
        d = self.to_dict()
        e = html.escape
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>segdoctor report</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}"
            ".f{border-left:4px solid;padding:.3em .8em;margin:.8em 0}"
            "pre{background:#f4f4f4;padding:.4em;white-space:pre-wrap}"
            "td{padding:0 .6em;vertical-align:top}</style></head><body>",
            _html_fragment(self, d, e),
            "</body></html>",
        ]
        page = "".join(parts)
        if path is not None:
            write_text_atomic(path, page)
        return page

    def _repr_html_(self) -> str:
        """Jupyter shows a Report as its HTML fragment."""
        return _html_fragment(self, self.to_dict(), html.escape)


def _evidence_line(evidence: Mapping[str, Any], limit: int = 240) -> str:
    items = []
    for key, value in evidence.items():
        text = json.dumps(value) if not isinstance(value, str) else value
        if len(text) > 60:
            text = text[:57] + "..."
        items.append(f"{key}={text}")
    line = ", ".join(items)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _img(png: bytes, caption: str, e) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )


def _html_fragment(report: Report, d: Mapping[str, Any], e) -> str:
    s = d["summary"]
    out = [
        "<div class='segdoctor-report'><h2>segdoctor report</h2>",
        f"<p><b>{s['errors']}</b> error(s), <b>{s['warnings']}</b> warning(s), "
        f"<b>{s['info']}</b> info. Checked: {e(', '.join(s.get('checked', [])) or 'nothing')}.</p>",
    ]
    if not report.findings:
        out.append("<p>No findings: nothing the doctor checks looks wrong.</p>")
    for f in report.findings:
        colour = _HTML_COLOURS[f.severity]
        rows = "".join(
            f"<tr><td>{e(str(k))}</td><td>{e(json.dumps(v))}</td></tr>"
            for k, v in f.evidence.items()
        )
        out.append(
            f"<div class='f' style='border-color:{colour}' id='{e(f.id)}'>"
            f"<h3 style='color:{colour}'>{e(f.severity.upper())} · {e(f.id)}: {e(f.title)}</h3>"
            f"<table>{rows}</table><p>Fix:</p><pre>{e(f.fix)}</pre>"
        )
        for caption, png in report.plots.get(f.id, []):
            out.append(_img(png, caption, e))
        out.append("</div>")
    extra: Sequence[tuple[str, bytes]] = [
        item for key, items in report.plots.items() if key not in report.ids for item in items
    ]
    if extra:
        out.append("<h3>Plots</h3>")
        out.extend(_img(png, caption, e) for caption, png in extra)
    out.append("</div>")
    return "".join(out)
