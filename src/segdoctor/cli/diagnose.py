"""``segdoctor diagnose``: print the doctor's report, write JSON/HTML, return the exit status.

Example:
    >>> cli_diagnose("data/", json_path="findings.json")  # doctest: +SKIP
    0
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from segdoctor._io import check_writable
from segdoctor.doctor import diagnose
from segdoctor.errors import SegdoctorError


def cli_diagnose(
    data: str | Path,
    history: str | Path | None = None,
    model: str | Path | None = None,
    probe: bool = False,
    json_path: str | Path | None = None,
    html_path: str | Path | None = None,
    safe_mode: bool = True,
    *,
    console: Any = None,
    probe_size: int = 256,
    batch_size: int | None = None,
) -> int:
    """``segdoctor diagnose``: print the report, write JSON/HTML, return the exit status.

    Returns:
        0 when no finding is an error, 1 when at least one is, 2 when the diagnosis could not run
        (the reason is printed on stderr).
    """
    try:
        for destination in (json_path, html_path):  # refuse before the work, not after it
            if destination is not None:
                check_writable(Path(destination).parent)
        report = diagnose(
            data=data,
            model=model,
            history=history,
            probe=probe,
            plots=html_path is not None,
            safe_mode=safe_mode,
            probe_size=probe_size,
            batch_size=batch_size,
        )
    except SegdoctorError as err:
        print(f"segdoctor: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"segdoctor: error: could not run the diagnosis: {err}", file=sys.stderr)
        return 2
    if console is None:
        console = Console()
    report.to_terminal(console)
    if json_path is not None:
        report.to_json(json_path)
    if html_path is not None:
        report.to_html(html_path)
    return 1 if report.has_errors else 0
