"""Thread settings of TensorFlow's CPU step, alone and while another process takes a core.

Each setting is a worker process (TensorFlow fixes its thread pools at start) that builds the
recipe's U-Net (depth 4, ``--base-filters``, ``--size``, batch 8, DiceCE + AdamW, mixed_bfloat16
with ``--bf16``), warms up, then runs steps on request; the driver interleaves rounds over the
settings, first alone, then with a competitor: a process spinning on one core (pure Python), as
another job on a shared machine would. Reported: the median step of each setting and condition.

Settings (intra-op / inter-op threads): ``default`` (TensorFlow's: one per core each),
``inter1`` (cores / 1), ``t1`` (1 / 1).

Usage:
    python benchmarks/bench_threads.py [--rounds 3] [--steps 3] [--base-filters 16] [--bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {"default": None, "inter1": (None, 1), "t1": (1, 1)}


def worker(setting: str, args) -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    threads = SETTINGS[setting]
    if threads is not None:
        intra, inter = threads
        tf.config.threading.set_intra_op_parallelism_threads(intra or len(os.sched_getaffinity(0)))
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    if args.bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    from segdoctor.losses import DiceCELoss
    from segdoctor.models import create_model

    model = create_model(
        "unet", input_shape=(args.size, args.size, 3), depth=4, base_filters=args.base_filters
    )
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=DiceCELoss(mode="binary"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, args.size, args.size, 3)).astype("float32")
    y = (rng.random((8, args.size, args.size, 1)) > 0.7).astype("int32")
    for _ in range(2):
        model.train_on_batch(x, y)
    print("ready", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        print(json.dumps(times), flush=True)


def spinner() -> subprocess.Popen:
    """A process that keeps one core busy."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--worker", default=None)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    flags = [f"--size={args.size}", f"--base-filters={args.base_filters}"]
    flags += ["--bf16"] if args.bf16 else []
    procs = {}
    for name in SETTINGS:
        cmd = [sys.executable, __file__, "--worker", name, *flags]
        procs[name] = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    for proc in procs.values():
        assert proc.stdout.readline().strip() == "ready"
    results: dict[str, dict[str, list[float]]] = {}
    for condition in ("alone", "one core taken"):
        spin = spinner() if condition != "alone" else None
        try:
            for r in range(args.rounds):
                order = list(procs)[r % len(procs) :] + list(procs)[: r % len(procs)]
                for name in order:
                    procs[name].stdin.write(f"{args.steps}\n")
                    procs[name].stdin.flush()
                    times = json.loads(procs[name].stdout.readline())
                    results.setdefault(condition, {}).setdefault(name, []).extend(times)
        finally:
            if spin is not None:
                spin.kill()
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    print(json.dumps({"cores": len(os.sched_getaffinity(0)), "load": os.getloadavg()}))
    print("| setting | alone (s) | one core taken (s) | slowdown |\n|---|---:|---:|---:|")
    for name in SETTINGS:
        alone = statistics.median(results["alone"][name])
        busy = statistics.median(results["one core taken"][name])
        print(f"| {name} | {alone:.3f} | {busy:.3f} | {busy / alone:.2f}x |")


if __name__ == "__main__":
    main()
