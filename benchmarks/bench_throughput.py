"""Training throughput of segdoctor's U-Net on every backend against the same U-Net in plain PyTorch.

One training step = forward, Dice + binary cross-entropy, backward, AdamW update, at 256x256, batch 8,
float32 unless a candidate says otherwise. Candidates:

- ``torch-eager``: the identical architecture written in plain PyTorch (this file only), NCHW.
- ``torch-cl``: the same with the channels_last memory format; ``torch-compile``: torch.compile.
- ``keras-torch``, ``keras-jax``, ``keras-tensorflow``: segdoctor's U-Net built by
  ``segdoctor.models.create_model`` and compiled the way the recipe compiles it (DiceCELoss, AdamW,
  DiceScore and IoUScore metrics), stepped with ``train_on_batch``.

Options after a colon, combinable (``keras-tensorflow:bf16``): ``bf16`` (Keras mixed_bfloat16, or
autocast for plain PyTorch), ``xla`` (Keras ``jit_compile=True``), ``mse`` (Keras: mean squared
error instead of DiceCELoss) and ``nometrics`` (Keras: no Dice/IoU metrics), which together isolate
the cost of the loss and of the metrics, ``t1`` (one CPU thread), ``kerasbn`` (Keras' own
BatchNormalization, as segdoctor used before its layer took TensorFlow's fused kernel).

Every candidate lives in its own worker process (Keras fixes its backend per process), built and
warmed up once; the driver then runs interleaved rounds (a few steps of each candidate in turn, the
order rotated every round), so that a change in machine load hits all of them alike. Reported: the
median step, images/s, the ratio of medians against ``torch-eager``, and the fraction of the
machine's matrix-multiply peak, from the FLOPs of one step (counted by
``torch.utils.flop_counter.FlopCounterMode`` on the PyTorch twin: 2 FLOPs per multiply-add, forward
and backward) and the peak measured here with large ``torch.matmul`` products.

Usage:
    python benchmarks/bench_throughput.py [--candidates LIST] [--rounds 3] [--steps 3]
        [--size 256] [--batch 8] [--depth 4] [--base-filters 32] [--channels 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CANDIDATES = "torch-eager,torch-cl,keras-tensorflow,keras-torch,keras-jax"


# --------------------------------------------------------------------------------------------
# The plain PyTorch twin (benchmark only).


def torch_unet(channels: int, depth: int, base: int):
    """segdoctor's default U-Net, layer for layer, in plain PyTorch."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        layers = []
        for c in (cin, cout):
            layers += [
                nn.Conv2d(c, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1),  # = Keras momentum 0.9
                nn.ReLU(inplace=True),
            ]
        return nn.Sequential(*layers)

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.ModuleList()
            c = channels
            for level in range(depth):
                self.enc.append(block(c, base * 2**level))
                c = base * 2**level
            self.bottleneck = block(c, base * 2**depth)
            c = base * 2**depth
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for level in reversed(range(depth)):
                f = base * 2**level
                self.up.append(nn.ConvTranspose2d(c, f, 2, stride=2))
                self.dec.append(block(2 * f, f))
                c = f
            self.head = nn.Conv2d(c, 1, 1)
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m is not self.head:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

        def forward(self, x):
            skips = []
            for block_ in self.enc:
                x = block_(x)
                skips.append(x)
                x = torch.nn.functional.max_pool2d(x, 2)
            x = self.bottleneck(x)
            for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
                x = dec(torch.cat([up(x), skip], dim=1))
            return torch.sigmoid(self.head(x).float())

    return UNet()


def torch_dice_ce(p, y):
    """Binary cross-entropy plus per-image soft Dice on probabilities (the same work as DiceCELoss)."""
    import torch

    p = p.clamp(1e-7, 1 - 1e-7)
    bce = torch.nn.functional.binary_cross_entropy(p, y)
    inter = (p * y).sum((1, 2, 3))
    denom = p.sum((1, 2, 3)) + y.sum((1, 2, 3))
    return bce + (1 - (2 * inter + 1e-5) / (denom + 1e-5)).mean()


def torch_param_counts(model) -> tuple[int, int]:
    """(trainable, total with BatchNorm moving statistics), counted as Keras counts them."""
    trainable = sum(p.numel() for p in model.parameters())
    stats = sum(
        b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")
    )
    return trainable, trainable + stats


def count_step_flops(args) -> float:
    """FLOPs of one training step (forward + backward) of the twin, at the benchmark's shape."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = torch_unet(args.channels, args.depth, args.base_filters)
    x = torch.randn(args.batch, args.channels, args.size, args.size)
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.7).float()
    counter = FlopCounterMode(display=False)
    with counter:
        torch_dice_ce(model(x), y).backward()
    return float(counter.get_total_flops())


def measure_peak(device: str) -> dict[str, float]:
    """Best-of-N matrix-multiply throughput (GFLOP/s) in float32 and bfloat16."""
    import torch

    n = 8192 if device == "cuda" else 2048
    reps = 10 if device == "cuda" else 6
    out = {}
    kinds = [("float32", torch.float32), ("bfloat16", torch.bfloat16)]
    if device == "cuda":  # cuDNN convolutions and XLA use TF32 for float32 by default on GPUs
        kinds.insert(1, ("tf32", torch.float32))
    for name, dtype in kinds:
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        best = float("inf")
        for i in range(reps + 2):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                best = min(best, time.perf_counter() - t)
        out[name] = 2 * n**3 / best / 1e9
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


# --------------------------------------------------------------------------------------------
# Workers: one process per candidate; "run N" on stdin -> one JSON line of step times on stdout.


def worker(spec: str, args) -> None:
    if "t1" in spec.split(":")[1:]:
        os.environ["OMP_NUM_THREADS"] = "1"
    step, info = make_step(spec, args)
    for _ in range(args.warmup):
        step()
    _emit({"ready": spec, **info})
    for line in sys.stdin:
        n = int(line.split()[1])
        times = []
        for _ in range(n):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        _emit({"times": times})


SHAPE_ARGS = ("size", "batch", "depth", "base_filters", "channels")
"""The options that fix the step's problem (also profile_step.py's)."""


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """``--size --batch --depth --base-filters --channels``: the U-Net and batch of one step."""
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--base-filters", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)


def make_step(spec: str, args):
    """``(step, info)`` of one candidate (``keras-tensorflow:bf16``, ...) on a fixed random batch."""
    import numpy as np

    kind, *opts = spec.split(":")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.size, args.size, args.channels)).astype("float32")
    y = (rng.random((args.batch, args.size, args.size, 1)) > 0.7).astype("float32")
    if kind.startswith("torch-"):
        return _torch_worker(kind, opts, x, y, args)
    return _keras_worker(kind, opts, x, y, args)


def _emit(obj: dict) -> None:
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _torch_worker(kind, opts, x, y, args):
    import torch

    if "t1" in opts:
        torch.set_num_threads(1)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch_unet(args.channels, args.depth, args.base_filters).to(device)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)
    yt = torch.from_numpy(y).permute(0, 3, 1, 2).contiguous().to(device)
    if kind in ("torch-cl", "torch-compile"):
        model = model.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    params = torch_param_counts(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=4e-3)
    net = torch.compile(model) if kind == "torch-compile" else model
    use_bf16 = "bf16" in opts

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
            loss = torch_dice_ce(net(xt), yt)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    info = {
        "framework": f"torch {torch.__version__}",
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(),
        "params": params[1],
        "trainable": params[0],
    }
    return step, info


def _keras_worker(kind, opts, x, y, args):
    backend = kind.removeprefix("keras-")
    os.environ["KERAS_BACKEND"] = backend
    if "t1" in opts and backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from segdoctor.losses import DiceCELoss
    from segdoctor.metrics import DiceScore, IoUScore
    from segdoctor.models import create_model
    from segdoctor.models import unet as unet_module

    if "t1" in opts and backend == "torch":
        import torch

        torch.set_num_threads(1)
    if "bf16" in opts:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if "kerasbn" in opts:
        # This worker's process only: the U-Net builds Keras' own (unfused) BatchNormalization.
        unet_module.BatchNormalization = keras.layers.BatchNormalization
    keras.utils.set_random_seed(0)
    model = create_model(
        "unet",
        input_shape=(None, None, args.channels),  # as the recipe builds it
        depth=args.depth,
        base_filters=args.base_filters,
    )
    loss = "mse" if "mse" in opts else DiceCELoss(mode="binary")
    metrics = [] if "nometrics" in opts else [DiceScore(name="dice"), IoUScore(name="iou")]
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=4e-3),
        loss=loss,
        metrics=metrics,
        jit_compile=True if "xla" in opts else "auto",
    )

    def step():
        return model.train_on_batch(x, y)

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    info = {
        "framework": f"keras {keras.__version__} / {backend} {_version(backend)}",
        "device": _keras_device(backend),
        "params": model.count_params(),
        "trainable": trainable,
    }
    return step, info


def _version(module: str) -> str:
    import importlib

    return getattr(importlib.import_module(module), "__version__", "?")


def _keras_device(backend: str) -> str:
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


import numpy as np  # noqa: E402  (workers use it; imported late so the module docstring leads)

# --------------------------------------------------------------------------------------------
# Driver.


class Worker:
    def __init__(self, spec: str, args) -> None:
        self.spec = spec
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])]
        )
        cmd = [sys.executable, __file__, "--worker", spec, *args.passthrough]
        self.log = tempfile.TemporaryFile(mode="w+")  # the worker's stderr, shown if it fails
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.info: dict = {}
        self.times: list[float] = []

    def read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError(f"{self.spec}: no answer within {timeout:.0f} s")
            line = self.proc.stdout.readline()
            if not line:
                self.log.seek(0)
                tail = self.log.read()[-3000:]
                raise RuntimeError(f"{self.spec}: worker exited ({self.proc.wait()}):\n{tail}")
            if line.startswith("@@"):
                return json.loads(line[2:])

    def run(self, steps: int) -> list[float]:
        self.proc.stdin.write(f"run {steps}\n")
        self.proc.stdin.flush()
        times = self.read(3600)["times"]
        self.times.extend(times)
        return times

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per candidate per round")
    parser.add_argument("--warmup", type=int, default=2)
    add_shape_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.passthrough = [
        f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("warmup", *SHAPE_ARGS)
    ]
    if args.worker:
        worker(args.worker, args)
        return

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    flops = count_step_flops(args)
    print(f"one training step: {flops / 1e9:.1f} GFLOP (forward + backward)", flush=True)
    specs = args.candidates.split(",")
    workers = []
    for spec in specs:  # one at a time: warm-ups (and compilations) do not compete
        w = Worker(spec, args)
        w.info = w.read(1800)
        print(f"ready: {spec} ({w.info['framework']}, {w.info['params']:,} params)", flush=True)
        workers.append(w)
    try:
        for r in range(args.rounds):
            order = workers[r % len(workers) :] + workers[: r % len(workers)]
            for w in order:
                times = w.run(args.steps)
                print(f"round {r + 1}: {w.spec:24s} {statistics.median(times):.4f} s", flush=True)
    finally:
        for w in workers:
            w.close()
    peak = measure_peak(device)
    print(
        f"peak matmul ({device}): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()),
        flush=True,
    )
    fp32_peak = "tf32" if device == "cuda" else "float32"
    baseline = next((w for w in workers if w.spec == "torch-eager"), workers[0])
    base_median = statistics.median(baseline.times)
    rows = []
    for w in workers:
        median = statistics.median(w.times)
        dtype = "bfloat16" if "bf16" in w.spec.split(":")[1:] else fp32_peak
        rows.append(
            {
                "candidate": w.spec,
                "framework": w.info["framework"],
                "params": w.info["params"],
                "trainable": w.info["trainable"],
                "median_step_s": median,
                "images_per_s": args.batch / median,
                "speed_vs_" + baseline.spec: base_median / median,
                "fraction_of_peak": flops / median / (peak[dtype] * 1e9),
                "peak_dtype": dtype,
                "steps": len(w.times),
            }
        )
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"
        + (f", {torch.cuda.get_device_name()}" if device == "cuda" else ""),
        "shape": f"{args.batch}x{args.size}x{args.size}x{args.channels}",
        "unet": f"depth {args.depth}, base filters {args.base_filters}",
        "gflop_per_step": flops / 1e9,
        "peak_gflops": peak,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    print(f"\n{json.dumps(meta)}")
    print(
        f"\n| candidate | framework | params (trainable) | median step (s) | images/s "
        f"| speed vs {baseline.spec} | fraction of {device} peak |\n|---|---|---|---:|---:|---:|---:|"
    )
    for row in rows:
        print(
            f"| {row['candidate']} | {row['framework']} | {row['params']:,} ({row['trainable']:,}) "
            f"| {row['median_step_s']:.4f} | {row['images_per_s']:.1f} "
            f"| {row['speed_vs_' + baseline.spec]:.2f}x "
            f"| {100 * row['fraction_of_peak']:.1f}% ({row['peak_dtype']}) |"
        )
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
