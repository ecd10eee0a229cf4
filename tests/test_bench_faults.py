"""The fault benchmark's harness: two cheap real-data cases with their twins, and the scoring rule.

The benchmark itself (benchmarks/bench_faults.py) measures the doctor; these tests make sure the
harness cannot rot silently: a planted fault must still be planted (and found), its twin must still
be healthy, and a finding that fires on both sides must not count as a detection.
"""

from __future__ import annotations

import pytest
from benchmarks.bench_faults import evaluate, summarize
from benchmarks.faults import CASES, Case

from segdoctor.doctor import Finding, Report


@pytest.mark.parametrize("name", ["mask-0-255", "mispaired-listing", "mask-jpeg"])
def test_cheap_case_detected_and_twin_clean(shared_data, name):
    row = evaluate(CASES[name], shared_data)
    assert row["fault"]["crash"] is None and row["twin"]["crash"] is None
    assert row["detected"], row["fault"]["findings"]
    assert row["twin_errors"] == [], row["twin"]["findings"]
    assert max(row["seconds"].values()) < 60


def _fixed(fault: list[Finding], twin: list[Finding]) -> Case:
    return Case(
        "synthetic",
        "none",
        "diagnose(data)",
        ("plateau",),
        "test",
        lambda ctx: Report(fault if ctx.faulty else twin),
    )


def test_finding_on_both_sides_is_not_a_detection(tmp_path):
    warn = Finding("plateau", "warning", "Stalled", {}, "lower the LR")
    row = evaluate(_fixed([warn], [warn]), tmp_path)
    assert not row["detected"]
    assert row["expected_also_on_twin"] == ["plateau"]


def test_info_is_not_a_detection_and_twin_errors_are_counted(tmp_path):
    info = Finding("plateau", "info", "Stalled", {}, "lower the LR")
    error = Finding("metric-constant", "error", "Constant", {}, "check the loss")
    row = evaluate(_fixed([info], [error]), tmp_path)
    assert not row["detected"]
    assert row["twin_errors"] == ["metric-constant"]
    summary = summarize([row])
    assert summary["recall"] == 0.0
    assert summary["twins_with_errors"] == ["synthetic"]


def test_crash_is_reported_not_raised(tmp_path):
    def broken(ctx):
        raise ValueError("the user's script failed")

    case = Case("broken", "none", "fit+DoctorCallback", ("nan-loss",), "test", broken)
    row = evaluate(case, tmp_path)
    assert not row["detected"]
    assert row["fault"]["crash"].startswith("ValueError")


@pytest.mark.slow
def test_fit_case_detected_and_twin_clean(shared_data):
    row = evaluate(CASES["activation-double"], shared_data)
    assert row["detected"], row["fault"]["findings"]
    assert row["twin_errors"] == [], row["twin"]["findings"]
