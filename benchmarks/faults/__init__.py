"""Fault cases for ``benchmarks/bench_faults.py``: failures that users of segmentation toolkits report
again and again, each reproduced on real data and paired with its healthy twin.

A :class:`Case` is one small function ``run(ctx) -> Report`` that builds the situation the way a user
meets it (a data folder given to ``diagnose``, or a short plain-Keras ``model.fit`` with
``DoctorCallback``) with the fault planted when ``ctx.faulty`` is true and without it otherwise;
everything else (data, seed, script) is the same. ``expect`` lists the finding ids that name the
fault: the case is detected when one of them is reported at severity warning or error on the
faulty run, and not at that severity or higher on the twin (a finding that fires on both does not
tell the two apart).

Example:
    >>> from benchmarks.faults import CASES
    >>> CASES["mask-jpeg"].expect
    ('mask-lossy-format', 'mask-fractional')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Context:
    """What a case run receives.

    Attributes:
        data_root: folder holding ``dsb2018-nuclei``, ``isbi2012-membrane`` and ``camvid-val``.
        workdir: an empty temporary folder for this run.
        faulty: plant the fault (True) or build the healthy twin (False).
    """

    data_root: Path
    workdir: Path
    faulty: bool
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One fault and its twin.

    Attributes:
        name: short id of the case.
        dataset: the real data set it runs on.
        entry: how the doctor is reached: ``"diagnose(data)"``, ``"diagnose(probe)"`` or
            ``"fit+DoctorCallback"``.
        expect: finding ids that name the fault.
        reported: where users report it (issue trackers), briefly.
        run: builds the situation and returns the doctor's ``Report``.
        cheap: data-only, a few seconds (used by the fast test).
    """

    name: str
    dataset: str
    entry: str
    expect: tuple[str, ...]
    reported: str
    run: Callable[[Context], Any]
    cheap: bool = False


def _all() -> dict[str, Case]:
    from benchmarks.faults import data_cases, fit_cases

    cases = [*data_cases.CASES, *fit_cases.CASES]
    return {case.name: case for case in cases}


def __getattr__(name: str):
    if name == "CASES":
        return _all()
    raise AttributeError(name)


__all__ = ["CASES", "Case", "Context"]
