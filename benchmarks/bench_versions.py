"""This tree against an earlier revision of segdoctor, interleaved: did a refactor slow anything?

Each version runs in its own warm worker process (the same Python, the same packages, the same
backend and threads; only ``segdoctor`` differs: the earlier one is extracted with ``git archive``).
Every round asks each worker, in alternating order, for one timing of each task; the report is
the median per task and version and the ratio of medians (this tree / the revision), so load on a
shared machine hits both sides alike.

Tasks (public API only, present in both versions):
  loss       DiceCELoss forward + backward on (8, 256, 256, 1) logits (backend gradient)
  step       one U-Net training step (train_on_batch), depth 3, 16 filters, 4x128x128x1
  read       discover_pairs + read_image/read_mask of every pair of a data folder
  diagnose   the doctor's data checks on that folder (no plots); a version with more checks pays
             for them here, so read this row as cost, not as a regression by itself

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_versions.py --against 7009d2d \
        --data ../shared/data/dsb2018-nuclei --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TASKS = ("loss", "step", "read", "diagnose")


# ---- the worker: runs inside one version's process -------------------------------------------


def _worker(data: str | None) -> None:
    """Answer one JSON line of seconds per task name read from stdin, until EOF."""
    import keras  # here: after the parent chose the backend and the source path
    import numpy as np

    import segdoctor
    from segdoctor.data import discover_pairs, read_image, read_mask
    from segdoctor.doctor import diagnose
    from segdoctor.losses import DiceCELoss
    from segdoctor.models import create_model

    rng = np.random.default_rng(0)
    y = (rng.random((8, 256, 256, 1)) > 0.7).astype("float32")
    logits = rng.normal(size=(8, 256, 256, 1)).astype("float32")
    loss = DiceCELoss(from_logits=True)
    model = create_model("unet", input_shape=(128, 128, 1), depth=3, base_filters=16)
    model.compile(optimizer="adam", loss=DiceCELoss())
    x_step = rng.random((4, 128, 128, 1)).astype("float32")
    y_step = (rng.random((4, 128, 128, 1)) > 0.7).astype("float32")

    def loss_once() -> None:
        keras.ops.convert_to_numpy(_value_and_grad(loss, y, logits))

    def read_once() -> None:
        for pair in discover_pairs(data).pairs:
            read_image(pair.image)
            read_mask(pair.mask)

    tasks = {
        "loss": loss_once,
        "step": lambda: model.train_on_batch(x_step, y_step),
        "read": read_once,
        "diagnose": lambda: diagnose(data=data, plots=False),
    }
    for task in tasks.values():  # warm up: compile, caches, first-call allocations
        if task is not read_once or data:
            task()
    print(json.dumps({"file": segdoctor.__file__}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        start = time.perf_counter()
        tasks[name]()
        print(json.dumps({name: time.perf_counter() - start}), flush=True)


def _value_and_grad(loss, y, logits):
    """The loss's gradient with respect to the logits, on whichever backend Keras runs."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        t = torch.tensor(logits, requires_grad=True)
        loss(torch.tensor(y), t).backward()
        return t.grad
    if backend == "jax":
        import jax

        return jax.grad(lambda p: loss(y, p))(logits)
    import tensorflow as tf

    t = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(y, t)
    return tape.gradient(value, t)


# ---- the parent ---------------------------------------------------------------------------------


def extract(revision: str, into: Path) -> Path:
    """``src/`` of ``revision`` under ``into`` (``git archive``; the working tree is not touched)."""
    archive = into / "src.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "archive", revision, "src"], cwd=REPO, stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def start(src: Path, data: str | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--worker", *(["--data", data] if data else [])]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    where = Path(json.loads(proc.stdout.readline())["file"])  # ready
    if not where.is_relative_to(src):
        raise RuntimeError(f"the worker for {src} imported segdoctor from {where}")
    return proc


def ask(proc: subprocess.Popen, task: str) -> float:
    proc.stdin.write(task + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())[task]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="HEAD~1", help="git revision to compare with")
    parser.add_argument("--data", help="a data folder for the read and diagnose tasks")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.data)
        return {}
    tasks = [t for t in args.tasks.split(",") if t in ("loss", "step") or args.data]
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"this tree": REPO / "src", args.against: extract(args.against, Path(tmp))}
        workers = {name: start(src, args.data) for name, src in versions.items()}
        times: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))
            for task in tasks:
                for name in order:
                    times.setdefault((task, name), []).append(ask(workers[name], task))
        for proc in workers.values():
            proc.stdin.close()
            proc.wait()
    print(f"backend {os.environ.get('KERAS_BACKEND', '?')}, {args.rounds} interleaved rounds")
    print(f"| task | this tree s | {args.against} s | ratio (this / {args.against}) |")
    print("|---|---:|---:|---:|")
    result = {}
    for task in tasks:
        new = statistics.median(times[(task, "this tree")])
        old = statistics.median(times[(task, args.against)])
        result[task] = {"this": new, "against": old, "ratio": new / old}
        print(f"| {task} | {new:.4f} | {old:.4f} | {new / old:.2f} |")
    return result


if __name__ == "__main__":
    main()
