"""``segdoctor train`` and ``segdoctor lr-find``: the recipe with the doctor attached.

The recipe (:mod:`segdoctor.train.recipe`) knows nothing of the doctor; this layer, above both,
adds :class:`~segdoctor.doctor.DoctorCallback` when ``train.doctor`` is on and, when the loss
became NaN, records the ``nan-loss`` finding in the run's ``doctor.json`` through
:class:`~segdoctor.doctor.Report` (so its summary counts stay right).

Example:
    >>> from segdoctor.train import resolve_config
    >>> config = resolve_config(overrides={"data.path": "data"})  # doctest: +SKIP
    >>> run_training(config, Path("runs/x")).status  # doctest: +SKIP
    'completed'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from segdoctor._io import atomic_write_text, check_writable
from segdoctor.doctor import Report, make_finding
from segdoctor.doctor.callback import DoctorCallback
from segdoctor.jsonsafe import dumps
from segdoctor.train.budget import Deadline
from segdoctor.train.config import RunConfig
from segdoctor.train.data import PreparedData, prepare_data
from segdoctor.train.recipe import RunResult, find_lr, resume_run, train_run
from segdoctor.train.report import plot_lr_find

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


def doctor_callbacks(run_dir: Path) -> Callable[[RunConfig, PreparedData], list]:
    """The callbacks a run gets from the doctor: ``DoctorCallback`` when ``train.doctor`` is on.

    A function of the config and the prepared data (the recipe calls it once both are known):
    the doctor watches the first validation batch and writes ``run_dir/doctor.json``.
    """

    def make(config: RunConfig, prepared: PreparedData) -> list[keras.callbacks.Callback]:
        if not config.train.doctor:
            return []
        sample = prepared.val[0] if len(prepared.val) else None
        return [
            DoctorCallback(report=run_dir / "doctor.json", validation_data=sample, verbose=False)
        ]

    return make


def record_nan_finding(path: Path, event: Mapping[str, Any]) -> Report:
    """Add a ``nan-loss`` finding to the run's doctor report (created if the doctor was off).

    Args:
        path: the run's ``doctor.json``.
        event: what :class:`~segdoctor.train.callbacks.NanGuard` recorded (0-based epoch, batch,
            loss, learning rate).

    Returns:
        The report as written: the previous findings and summary plus the new finding, counted.

    Example:
        >>> record_nan_finding(Path("runs/x/doctor.json"), {"epoch": 2, "batch": 5,
        ...     "loss": "nan", "lr": 0.1}).ids  # doctest: +SKIP
        ['nan-loss']
    """
    evidence = {
        "epoch": event["epoch"] + 1,
        "batch": event["batch"],
        "loss": event["loss"],
        "lr": event["lr"],
    }
    before = (
        Report.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None
    )
    findings = [make_finding("nan-loss", evidence, variant="run")]
    report = Report(
        findings + (before.findings if before else []), before.summary if before else {}
    )
    report.to_json(path)
    return report


def _after_run(result: RunResult) -> RunResult:
    event_path = Path(result.run_dir) / "nan_event.json"
    if result.status == "nan-loss" and event_path.exists():
        event = json.loads(event_path.read_text(encoding="utf-8"))
        record_nan_finding(Path(result.run_dir) / "doctor.json", event)
    return result


def run_training(
    config: RunConfig,
    run_dir: Path,
    log: Log = _print,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    deadline: Deadline | None = None,
) -> RunResult:
    """:func:`~segdoctor.train.recipe.train_run` with the doctor: what ``segdoctor train`` runs.

    ``callbacks`` are the caller's own, run after the recipe's and before the doctor;
    ``deadline``: the command's time budget, started with the command (see train_run).
    """
    run_dir = Path(run_dir)
    doctor = doctor_callbacks(run_dir)
    result = train_run(
        config,
        run_dir,
        log,
        callbacks=lambda c, p: [*callbacks, *doctor(c, p)],
        deadline=deadline,
    )
    return _after_run(result)


def resume_training(
    run_dir: Path,
    extra_epochs: int | None = None,
    log: Log = _print,
    deadline: Deadline | None = None,
) -> RunResult:
    """:func:`~segdoctor.train.recipe.resume_run` with the doctor (``segdoctor train --resume``)."""
    run_dir = Path(run_dir)
    callbacks = doctor_callbacks(run_dir)
    result = resume_run(run_dir, extra_epochs, log, callbacks=callbacks, deadline=deadline)
    return _after_run(result)


def lr_find_command(config: RunConfig, out: Path, log: Log = _print) -> int:
    """``segdoctor lr-find``: write lr_find.png/json into ``out`` and print the suggestion."""
    out = check_writable(out)
    prepared = prepare_data(config, log=log, run_dir=None)
    result = find_lr(config, prepared, steps=80, log=log)
    atomic_write_text(out / "lr_find.json", dumps(result.to_dict(), indent=2))
    plot_lr_find(result.lrs, result.smoothed, result.suggestion, out / "lr_find.png")
    if result.suggestion is None:
        log("The LR range test was inconclusive (too few steps ran before the loss diverged).")
    else:
        log(
            f"Suggested learning rate: {result.suggestion:.3g} "
            f"(loss lowest at {result.min_loss_lr:.3g})"
        )
    log(f"Plot: {out / 'lr_find.png'}")
    return 0
