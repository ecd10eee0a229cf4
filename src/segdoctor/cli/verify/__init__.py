"""Proven prescriptions: train as diagnosed and with the fix, and measure the difference.

``segdoctor diagnose DATA --verify`` (or :func:`verify` from Python) takes every error or warning
finding whose fix segdoctor can apply itself and runs the same short training of segdoctor's
recipe (or a fresh copy of the user's model, for fixes to it) on the user's data: once
reproducing the fault ("as diagnosed"), once with the fix, and once more as diagnosed with
another seed. The first two share the seed, the number of epochs and every other setting. Each
run's best model is scored on the same validation images at full size, and the per-image Dice
differences (fix minus diagnosed) give the mean change with a bootstrap 95% interval over the
images. When that interval includes 0 the result says so: "the short run cannot tell the two
apart"; an interval above 0 counts as an improvement only when its lower end also clears what
the as-diagnosed run was still gaining and the difference the other seed made (the seed noise).
The user's files are never changed; ``write_fixed_copy`` writes a corrected copy.

Modules: :mod:`.results` (what is measured and its text), :mod:`.plan` (the pairs and the
split), :mod:`.prescriptions` (finding -> fix), :mod:`.data_fixes` (fixes to the data: masks,
pairs, split), :mod:`.user_model` (fixes to the user's model), :mod:`.runs` (training and
scoring), :mod:`.fixed_copy` (``--write-fixed``). This package sits above ``train`` and
``doctor``; neither of them imports it.

Example:
    >>> from segdoctor.metrics import paired_difference
    >>> paired_difference({"a": 0.9, "b": 0.8, "c": 0.7}, {"a": 0.5, "b": 0.6, "c": 0.4})["images"]
    3
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from segdoctor._io import check_writable
from segdoctor.cli import STARTED
from segdoctor.cli.verify import runs
from segdoctor.cli.verify.data_fixes import SnapToLabels, label_set, resplit
from segdoctor.cli.verify.fixed_copy import DATA_FIXES, write_fixed_copy
from segdoctor.cli.verify.plan import VAL_FRACTION, DataPlan, materialize, plan_data, write_csv
from segdoctor.cli.verify.prescriptions import (
    NOT_VERIFIABLE,
    PRESCRIBERS,
    RECIPE_FIXES_IT,
    prescribe,
)
from segdoctor.cli.verify.results import (
    MIN_IMAGES,
    Log,
    Prescription,
    RunData,
    RunScore,
    Unverified,
    Verification,
    VerifyResult,
    _failed_verdict,
    verdict,
)
from segdoctor.cli.verify.runs import (
    SHORT_RUN,
    _later_run_minutes,
    plan_budget,
    run_config,
    verify_prescription,
)
from segdoctor.cli.verify.user_model import LOGIT_FIXES
from segdoctor.doctor import Report, diagnose
from segdoctor.errors import ConfigError, SegdoctorError
from segdoctor.metrics import paired_difference
from segdoctor.runfiles import load_model


def _inputs(report_or_data: Report | str | Path, data, model, history) -> tuple[Report, Path]:
    if isinstance(report_or_data, Report):
        root = data if data is not None else report_or_data.summary.get("data")
        if root is None:
            raise ConfigError(
                "verify() got a report without its data folder",
                expected="verify(report, data=FOLDER) or verify(FOLDER)",
                fix="pass the data folder the report was made from as data=.",
            )
        return report_or_data, Path(root)
    root = Path(report_or_data)
    return diagnose(data=root, model=model, history=history, plots=False), root


def verify(
    report_or_data: Report | str | Path,
    data: str | Path | None = None,
    *,
    model: Any = None,
    history: Any = None,
    max_minutes: float = 10.0,
    settings: Mapping[str, str] | None = None,
    seed: int = 0,
    work_dir: str | Path | None = None,
    write_fixed: str | Path | None = None,
    verbose: int = 0,
    log: Log = print,
    started: float | None = None,
) -> VerifyResult:
    """Prove the prescriptions of a diagnosis: short trainings per fix, compared per image.

    Args:
        report_or_data: A :class:`~segdoctor.doctor.Report` (then ``data`` defaults to the
            folder it was made from) or a data folder, which is diagnosed first.
        data: The data folder of a report.
        model, history: Passed to :func:`~segdoctor.doctor.diagnose` with a data folder.
        max_minutes: Time for everything; split evenly over the runs. Prescriptions that do
            not fit (:data:`MIN_RUN_MINUTES` a run) are listed as skipped.
        settings: Recipe overrides for every run (``{"data.patch_size": "64"}``), on top of
            :data:`SHORT_RUN`.
        seed: The seed of the split, of both runs and of the bootstrap.
        work_dir: Where the runs are kept; default a temporary folder, removed afterwards.
        write_fixed: Also write a corrected copy of the data there (:func:`write_fixed_copy`).
        verbose: Keras' fit verbosity in the runs (2: one line per epoch).
        log: Progress messages.
        started: ``time.monotonic()`` from which ``max_minutes`` counts (the command passes its
            own start, so that the diagnosis counts too); default: now.

    Returns:
        A :class:`VerifyResult`.

    Example:
        >>> # result = verify("data/", max_minutes=3); print(result.to_text())
    """
    start = time.monotonic() if started is None else started
    report, root = _inputs(report_or_data, data, model, history)
    plan = plan_data(root, seed, check_readable="unreadable-file" in report.ids)
    result = VerifyResult(str(root))
    if write_fixed is not None:
        result.written = str(write_fixed_copy(root, write_fixed, report, plan))
    if isinstance(model, (str, Path)):
        model = load_model(model, compile=True)
    prescriptions, result.unverified = prescribe(report, plan, model)
    if prescriptions:
        keep = work_dir is not None
        work = Path(work_dir) if keep else Path(tempfile.mkdtemp(prefix="segdoctor-verify-"))
        try:
            _run_all(prescriptions, plan, work, result, max_minutes, settings, seed, verbose, log,
                     start)  # fmt: skip
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result


def _run_all(prescriptions, plan, work, result, max_minutes, settings, seed, verbose, log, start):
    _, count = runs.plan_budget(max_minutes, len(prescriptions))
    log(f"Verifying {count} of {len(prescriptions)} prescription(s) in {max_minutes:g} minutes...")
    result.settings = {
        "seed": seed,
        "max_minutes": max_minutes,
        "train_images": len(plan.train),
        "val_images": len(plan.val),
        "recipe": {**runs.SHORT_RUN, **dict(settings or {})},
    }
    for k, p in enumerate(prescriptions):
        left = max_minutes - (time.monotonic() - start) / 60.0
        minutes = max(left, 0.0) / max(count - k, 1)
        shortest = runs.MIN_RUN_MINUTES
        if k >= count or (k and minutes < runs.RUNS * shortest):  # no share, or one overran
            reason = f"--max-minutes {max_minutes:g} leaves no time for it ({runs.RUNS} runs of at "
            reason += f"least {shortest:g} min each); give more minutes."
            result.unverified.append(Unverified(p.finding_id, "skipped", reason))
            continue
        log(f"[{k + 1}/{count}] {p.finding_id}: {p.change}")
        result.verified.append(
            verify_prescription(
                p, plan, work, minutes=minutes, settings=settings, seed=seed, verbose=verbose,
                log=log,
            )
        )  # fmt: skip


def cmd_verify(args: Any) -> int:
    """``segdoctor diagnose DATA --verify [--max-minutes M] [--write-fixed OUT]``.

    Prints the diagnosis, then the verification; ``--json`` gets the verification as
    ``summary["verify"]``. Exit status as ``diagnose``: 0, 1 with an error finding, 2 when it
    could not run.
    """
    try:
        for destination in (args.json, args.html):  # refuse before the work, not after it
            if destination is not None:
                check_writable(Path(destination).parent)
        report = diagnose(
            data=args.data,
            model=args.model,
            history=args.history,
            probe=args.probe,
            plots=args.html is not None,
            safe_mode=not args.unsafe,
            batch_size=args.batch_size,
        )
        report.to_terminal(Console())
        if args.verify:
            model = args.model
            if model is not None:
                model = load_model(model, unsafe=args.unsafe, compile=True)
            result = verify(
                report,
                args.data,
                started=STARTED,
                model=model,
                max_minutes=args.max_minutes,
                write_fixed=args.write_fixed,
                verbose=2,
            )
            print(result.to_text(), flush=True)
            report.summary["verify"] = result.to_dict()
        elif args.write_fixed:
            out = write_fixed_copy(args.data, args.write_fixed, report)
            print(f"Corrected copy of the data written to {out}.")
    except SegdoctorError as err:
        print(f"segdoctor: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"segdoctor: error: could not run the diagnosis: {err}", file=sys.stderr)
        return 2
    if args.json is not None:
        report.to_json(args.json)
    if args.html is not None:
        report.to_html(args.html)
    return 1 if report.has_errors else 0


__all__ = [
    "DATA_FIXES",
    "LOGIT_FIXES",
    "MIN_IMAGES",
    "NOT_VERIFIABLE",
    "PRESCRIBERS",
    "RECIPE_FIXES_IT",
    "SHORT_RUN",
    "VAL_FRACTION",
    "DataPlan",
    "Prescription",
    "RunData",
    "RunScore",
    "SegdoctorError",
    "SnapToLabels",
    "Unverified",
    "Verification",
    "VerifyResult",
    "_failed_verdict",
    "_later_run_minutes",
    "cmd_verify",
    "label_set",
    "materialize",
    "paired_difference",
    "plan_budget",
    "plan_data",
    "prescribe",
    "resplit",
    "run_config",
    "verdict",
    "verify",
    "verify_prescription",
    "write_csv",
    "write_fixed_copy",
]
