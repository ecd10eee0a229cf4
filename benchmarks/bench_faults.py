"""Fault benchmark: does the doctor name the failures users report, and stay quiet on healthy twins?

Each case (``benchmarks/faults/``) plants one failure that users of segmentation toolkits report
again and again, on real data, and builds its healthy twin (the same data and script without the
fault). Both are given to the doctor through its public entry points (``diagnose`` on a data
folder, ``diagnose(..., probe=True)``, or ``DoctorCallback`` in a short ``model.fit``).

A case is *detected* when one of its expected finding ids is reported at severity warning or error
on the faulty run and not at that severity (or higher) on the twin. A *false alarm* is any error on
a twin. Warnings on twins are listed too.

Run: ``KERAS_BACKEND=torch python benchmarks/bench_faults.py [--data DIR] [--cases a,b] [--quick]
[--out results.json] [--verify MINUTES]``. DIR defaults to ``../shared/data`` next to the
repository. ``--quick`` runs only the cheap cases (data folders: seconds). ``--verify`` also proves the prescriptions on each faulty data folder (two short
trainings per fix, ``diagnose --verify``) and reports the fraction of fixable cases where the fix
raised validation Dice measurably; its time is not part of the per-case seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("KERAS_BACKEND", "torch")

SEVERE = ("error", "warning")


def default_data_root() -> Path:
    """``$SEGDOCTOR_SHARED_DATA`` or ``shared/data`` next to the repository."""
    env = os.environ.get("SEGDOCTOR_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _verify(report, folder: str, minutes: float, model=None) -> dict[str, Any]:
    """``--verify`` on the faulty folder (and the case's model, when the user script has one):
    did any applied fix raise validation Dice measurably?"""
    from segdoctor.cli.verify import verify

    t0 = time.perf_counter()
    try:
        result = verify(
            report, data=folder, model=model, max_minutes=minutes, log=lambda *a, **k: None
        )
    except Exception as err:
        return {"crash": f"{type(err).__name__}: {str(err)[:200]}", "fixable": False}
    verified = [
        {
            "finding": v.prescription.finding_id,
            "improved": v.improved,
            "ci95": v.comparison.get("ci95"),
            "mean_difference": v.comparison.get("mean_difference"),
            "diagnosed_still_gaining": v.comparison.get("diagnosed_still_gaining"),
            "seed_noise": v.comparison.get("seed_noise"),
            "replicate_epochs": None if v.replicate is None else v.replicate.epochs,
            "images": v.comparison.get("images", 0),
            "dice": {"as_diagnosed": v.diagnosed.dice_mean, "with_fix": v.fixed.dice_mean},
            "epochs": [v.diagnosed.epochs, v.fixed.epochs],
            "change": v.prescription.change,
            "on_your_model": v.prescription.model is not None,
        }
        for v in result.verified
    ]
    return {
        "fixable": bool(verified),
        "improved": any(v["improved"] for v in verified),
        "verified": verified,
        "unverified": {u.finding_id: u.status for u in result.unverified},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _run_once(case, data_root: Path, faulty: bool, verify_minutes: float = 0.0) -> dict[str, Any]:
    """One run of a case (fault or twin): the findings by id and severity, seconds, any crash.

    With ``verify_minutes`` (faulty runs of cases that diagnose a data folder) the diagnosis is
    also verified (``diagnose --verify``), after the timing.
    """
    import keras
    from benchmarks.faults import Context

    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="segdoctor-fault-") as tmp:
        ctx = Context(data_root=data_root, workdir=Path(tmp), faulty=faulty)
        t0 = time.perf_counter()
        try:
            report = case.run(ctx)
            findings = {f.id: f.severity for f in report.findings}
            crash = None
            if report.summary.get("probes_skipped"):  # cut short by the probes' time budget
                ctx.notes["probes_skipped"] = report.summary["probes_skipped"]
        except Exception as err:  # the doctor refusing or crashing is a result, not a harness bug
            findings = {}
            crash = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            traceback.print_exc(limit=3, file=sys.stderr)
        seconds = time.perf_counter() - t0
        verified = None
        if verify_minutes > 0 and crash is None and "data" in ctx.notes:
            verified = _verify(report, ctx.notes["data"], verify_minutes, ctx.notes.get("model"))
    ctx.notes.pop("data", None)  # a temporary path
    ctx.notes.pop("model", None)  # not JSON
    out = {"findings": findings, "seconds": round(seconds, 2), "crash": crash, "notes": ctx.notes}
    if verified is not None:
        out["verify"] = verified
    return out


def _rank(severity: str | None) -> int:
    return {"error": 2, "warning": 1}.get(severity or "", 0)


def evaluate(case, data_root: Path, verify_minutes: float = 0.0) -> dict[str, Any]:
    """Run a case and its twin; decide detection and false alarms.

    Example:
        >>> from benchmarks.faults import CASES  # doctest: +SKIP
        >>> evaluate(CASES["mask-0-255"], default_data_root())["detected"]  # doctest: +SKIP
        True
    """
    fault = _run_once(case, data_root, True, verify_minutes)
    twin = _run_once(case, data_root, False)
    hits = [
        fid
        for fid in case.expect
        if fault["findings"].get(fid) in SEVERE
        and _rank(fault["findings"][fid]) > _rank(twin["findings"].get(fid))
    ]
    also_on_twin = [
        fid for fid in case.expect if fault["findings"].get(fid) in SEVERE and fid not in hits
    ]
    twin_errors = sorted(k for k, s in twin["findings"].items() if s == "error")
    twin_warnings = sorted(k for k, s in twin["findings"].items() if s == "warning")
    return {
        "case": case.name,
        "dataset": case.dataset,
        "entry": case.entry,
        "reported": case.reported,
        "expect": list(case.expect),
        "detected": bool(hits) and fault["crash"] is None,
        "detected_by": hits,
        "expected_also_on_twin": also_on_twin,
        "fault": fault,
        "twin": twin,
        "twin_errors": twin_errors,
        "twin_warnings": twin_warnings,
        "seconds": {"fault": fault["seconds"], "twin": twin["seconds"]},
    }


def _fmt_findings(findings: dict[str, str]) -> str:
    marks = {"error": "E", "warning": "W", "info": "i"}
    return ", ".join(f"{k}({marks.get(s, s)})" for k, s in findings.items()) or "-"


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per case, then the totals."""
    head = f"{'case':28} {'entry':19} {'detected':9} {'twin err':8} {'s fault':>7} {'s twin':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['case']:28} {r['entry']:19} {'yes' if r['detected'] else 'NO':9} "
            f"{len(r['twin_errors']):<8} {r['seconds']['fault']:7.1f} {r['seconds']['twin']:7.1f}"
        )
        print(f"    expect   {', '.join(r['expect'])}")
        print(f"    fault    {_fmt_findings(r['fault']['findings'])}")
        print(f"    twin     {_fmt_findings(r['twin']['findings'])}")
        for side in ("fault", "twin"):
            if r[side]["crash"]:
                print(f"    {side} CRASHED: {r[side]['crash']}")
        if r["expected_also_on_twin"]:
            print(f"    (also on the twin, not counted: {', '.join(r['expected_also_on_twin'])})")


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Recall, false alarms on twins, the slowest run."""
    n = len(rows)
    detected = sum(r["detected"] for r in rows)
    return {
        "cases": n,
        "detected": detected,
        "recall": round(detected / n, 3) if n else None,
        "missed": [r["case"] for r in rows if not r["detected"]],
        "twins_with_errors": [r["case"] for r in rows if r["twin_errors"]],
        "twin_error_findings": sum(len(r["twin_errors"]) for r in rows),
        "twin_warning_findings": sum(len(r["twin_warnings"]) for r in rows),
        "max_seconds": max(
            (max(r["seconds"]["fault"], r["seconds"]["twin"]) for r in rows), default=0.0
        ),
        "over_60s": [r["case"] for r in rows if max(r["seconds"].values()) > 60],
        **_verify_summary(rows),
    }


def _verify_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    runs = [r["fault"]["verify"] for r in rows if "verify" in r["fault"]]
    if not runs:
        return {}
    fixable = [r for r in runs if r.get("fixable")]
    improved = sum(bool(r.get("improved")) for r in fixable)
    return {
        "verify_cases": len(runs),
        "verify_fixable": len(fixable),
        "verify_improved": improved,
        "verify_improved_fraction": round(improved / len(fixable), 3) if fixable else None,
    }


def _machine() -> dict[str, str]:
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln), cpu
        )
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of the shared datasets")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only the cheap cases (data folders given to diagnose: seconds in all)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--verify",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="also run diagnose --verify (this many minutes) on each faulty data folder",
    )
    args = parser.parse_args(argv)

    from benchmarks.faults import CASES

    if args.list:
        for case in CASES.values():
            print(f"{case.name:28} {case.dataset:18} {case.entry:19} {', '.join(case.expect)}")
        return 0
    data_root = args.data or default_data_root()
    if not data_root.is_dir():
        print(
            f"bench_faults: data folder not found: {data_root}. Pass --data DIR (the folder with "
            "dsb2018-nuclei, isbi2012-membrane, camvid-val) or set SEGDOCTOR_SHARED_DATA.",
            file=sys.stderr,
        )
        return 2
    wanted = [c for c in args.cases.split(",") if c]
    unknown = [c for c in wanted if c not in CASES]
    if unknown:
        print(
            f"bench_faults: unknown case(s) {unknown}; known: {', '.join(CASES)}", file=sys.stderr
        )
        return 2
    cases = [CASES[c] for c in wanted] if wanted else list(CASES.values())
    if args.quick:  # the same cases and data, fewer of them: a smaller case would be another case
        cases = [c for c in cases if c.cheap]
    rows = []
    for case in cases:
        print(f"... {case.name}", file=sys.stderr, flush=True)
        rows.append(evaluate(case, data_root, verify_minutes=args.verify))
    print_table(rows)
    summary = summarize(rows)
    print(
        f"\nrecall {summary['detected']}/{summary['cases']} = {summary['recall']}; "
        f"errors on healthy twins: {summary['twin_error_findings']} "
        f"({', '.join(summary['twins_with_errors']) or 'none'}); warnings on twins: "
        f"{summary['twin_warning_findings']}; slowest run {summary['max_seconds']:.1f} s"
        + (f"; over 60 s: {', '.join(summary['over_60s'])}" if summary["over_60s"] else "")
    )
    if summary["missed"]:
        print(f"missed: {', '.join(summary['missed'])}")
    if "verify_cases" in summary:
        print(
            f"--verify: {summary['verify_fixable']} of {summary['verify_cases']} verified cases had "
            f"a fix segdoctor applies; it raised Dice measurably (interval above 0) in "
            f"{summary['verify_improved']} ({summary['verify_improved_fraction']})"
        )
        for r in rows:
            v = r["fault"].get("verify")
            if v:
                print(f"    {r['case']:28} {v}")
    if args.out is not None:
        payload = {
            "summary": summary,
            "cases": rows,
            "quick": args.quick,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
