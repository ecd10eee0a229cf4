"""``segdoctor demo``: diagnose the bundled nuclei sample, train a small U-Net, evaluate, report.

The sample's masks are 16-bit instance labels; the doctor says so first, and the recipe converts
them to a foreground mask (label > 0) and says so. The model is deliberately small (16 base filters,
depth 4) and trained on 128x128 patches. ``--minutes`` (default 4) bounds the whole demo, the
diagnosis, LR range test, final evaluation and report included: one deadline, started first.
"""

from __future__ import annotations

import time
from pathlib import Path

from segdoctor._io import atomic_write_text, check_writable
from segdoctor.cli.train import run_training
from segdoctor.doctor import diagnose
from segdoctor.jsonsafe import dumps
from segdoctor.sample_data import sample_path
from segdoctor.train.budget import Deadline
from segdoctor.train.config import resolve_config


def demo_config(data: Path, minutes: float, epochs: int):
    """The demo's configuration: the default recipe at a CPU-friendly size."""
    return resolve_config(
        overrides={
            "data.path": str(data),
            "data.patch_size": "128",
            "data.batch_size": "8",
            "data.samples_per_epoch": "160",
            "model.base_filters": "16",
            "model.depth": "4",
            "train.epochs": str(epochs),
            "train.max_minutes": str(minutes),
            "train.warmup_epochs": "1",
            "train.lr_find_steps": "30",
            "train.early_stopping_patience": "12",
            "train.verbose": "2",
        }
    )


def _section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def run_demo(
    out: Path, minutes: float = 4.0, epochs: int = 40, deadline: Deadline | None = None
) -> int:
    """Diagnose and train on the bundled sample within ``minutes``; returns the exit status.

    ``deadline``: the demo's, when the caller started it earlier (the command's start)."""
    deadline = deadline or Deadline(minutes * 60.0)  # the whole demo, not only training
    started = deadline.start
    data = sample_path("nuclei")
    out = check_writable(out)
    if (out / "state.json").exists():  # a previous demo: start afresh, keep nothing stale
        for name in ("state.json", "history.csv", "best.keras", "last.keras"):
            (out / name).unlink(missing_ok=True)

    _section("1. Diagnose the data (segdoctor diagnose)")
    report = diagnose(data=data)
    print(report.to_terminal(), flush=True)
    atomic_write_text(out / "diagnosis.json", report.to_json())

    _section("2. Train a U-Net (segdoctor train)")
    config = demo_config(data, minutes, epochs)
    result = run_training(config, out, deadline=deadline)

    _section("3. Result")
    print(result.summary_text(), flush=True)
    files = {
        "diagnosis": str(out / "diagnosis.json"),
        **{k: str(v) for k, v in result.files.items()},
    }
    atomic_write_text(
        out / "demo.json",
        dumps(
            {
                "files": files,
                "evaluation": result.evaluation.get("summary", {}),
                "best_val_dice": result.best_val_dice,
            },
            indent=2,
        ),
    )
    print(
        f"\nDemo finished in {time.monotonic() - started:.0f} s. Open {out / 'report.html'} in a browser.",
        flush=True,
    )
    return 0
