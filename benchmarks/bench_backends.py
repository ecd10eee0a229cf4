"""Which Keras backend trains segdoctor's U-Net fastest on this machine?

Each backend runs in its own subprocess (Keras picks its backend once per process); rounds are
interleaved (torch, jax, tensorflow, torch, ...) so that a change in machine load hits every backend
alike, and the result is the ratio of median step times. The step is a full training step (forward,
Dice+CE loss, backward, AdamW update) of the default U-Net at 256x256, batch 8, float32.

Usage:
    python benchmarks/bench_backends.py [--rounds 3] [--steps 8] [--size 256] [--batch 8]
        [--backends torch,jax] [--python-tf .venv-tf/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import json, os, sys, time
import numpy as np
import keras
from segdoctor.losses import DiceCELoss
from segdoctor.models import create_model
size, batch, steps, base, depth = (int(v) for v in sys.argv[1:6])
keras.utils.set_random_seed(0)
model = create_model("unet", input_shape=(size, size, 1), depth=depth, base_filters=base)
model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=DiceCELoss(mode="binary"))
rng = np.random.default_rng(0)
x = rng.normal(size=(batch, size, size, 1)).astype("float32")
y = (rng.random((batch, size, size, 1)) > 0.7).astype("int32")
for _ in range(2):  # warm-up (compilation on jax/tensorflow)
    model.train_on_batch(x, y)
times = []
for _ in range(steps):
    t = time.perf_counter()
    model.train_on_batch(x, y)
    times.append(time.perf_counter() - t)
print(json.dumps({"backend": keras.backend.backend(), "params": model.count_params(), "times": times}))
"""


def run(backend: str, python: str, args) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [
        python,
        "-c",
        WORKER,
        str(args.size),
        str(args.batch),
        str(args.steps),
        str(args.base_filters),
        str(args.depth),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"{backend} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--backends", default="torch,jax")
    parser.add_argument(
        "--python-tf", default=None, help="python of an environment with TensorFlow"
    )
    args = parser.parse_args()
    backends = args.backends.split(",")
    times: dict[str, list[float]] = {b: [] for b in backends}
    params = {}
    for r in range(args.rounds):
        for backend in backends:
            python = (
                args.python_tf if backend == "tensorflow" and args.python_tf else sys.executable
            )
            result = run(backend, python, args)
            times[backend].extend(result["times"])
            params[backend] = result["params"]
            print(
                f"round {r + 1}: {backend:10s} median step {statistics.median(result['times']):.3f} s",
                flush=True,
            )
    medians = {b: statistics.median(t) for b, t in times.items()}
    fastest = min(medians, key=medians.get)
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, U-Net depth {args.depth} base {args.base_filters}, {args.size}x{args.size}, batch {args.batch}"
    )
    print(
        "| backend | parameters | median step (s) | images/s | time vs fastest |\n|---|---|---|---|---|"
    )
    for b in backends:
        print(
            f"| {b} | {params[b]:,} | {medians[b]:.3f} | {args.batch / medians[b]:.1f} | {medians[b] / medians[fastest]:.2f}x |"
        )


if __name__ == "__main__":
    main()
