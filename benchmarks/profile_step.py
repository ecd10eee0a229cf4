"""Where one training step's time goes, op by op: segdoctor's U-Net step and its plain PyTorch twin.

The candidates are those of ``bench_throughput.py`` (``keras-tensorflow:bf16``, ``torch-compile:bf16``,
...), built by the same code: the same U-Net, batch, loss and optimizer. Each candidate runs in its own
process, is warmed up, then profiled over ``--steps`` steps with the framework's own profiler:

- TensorFlow: ``tf.profiler.experimental`` writes an XSpace trace; every op execution on the host is
  one event there, named ``name:OpType``. Self time (the event's duration less that of the events it
  encloses on the same thread) is summed per op type and per category.
- PyTorch: ``torch.profiler``'s self CPU time per ``aten::`` op.

With ``--onednn`` the run also sets ``ONEDNN_VERBOSE=1`` and sums oneDNN's own timing of every
primitive it executes (convolutions by implementation, reorders, batch norm, eltwise), which is the
same library under both frameworks: the part of the step that is matrix math on the CPU's matrix units
(``brgconv:avx512_core_amx`` on AMX), and what is not.

The profilers add overhead, so the absolute times are above ``bench_throughput.py``'s; the shares are
what this script is for. On two cores TensorFlow may run two ops at once, so op times can add up to
more than the step's wall time.

Usage:
    python benchmarks/profile_step.py [--candidates keras-tensorflow:bf16,torch-compile:bf16]
        [--steps 3] [--onednn] [--top 25] [--size 256] [--batch 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parent.parent

# Op types (TensorFlow) or aten ops (PyTorch) by what they compute; first match wins.
CATEGORIES = (
    ("convolution", ("conv", "matmul", "mkldnn_convolution", "addmm", "mm")),
    ("batch norm", ("batchnorm", "batch_norm")),
    ("cast", ("cast", "_to_copy", "to_dtype", "aten::to", "copy_")),
    ("layout (transpose, reorder)", ("transpose", "mkltotf", "permute", "contiguous", "reorder")),
    (
        "resize / pooling / concat",
        ("resize", "pool", "concat", "cat", "upsample", "slice", "split"),
    ),
    ("optimizer", ("adam", "apply", "assignvariable", "readvariable", "lerp", "_foreach")),
)


def categorize(op: str, name: str = "") -> str:
    """The category of an op type (``Conv2DBackpropFilter``, ``aten::cat``); ``name`` (the op's
    node name in the graph) only tells the optimizer's updates from the model's own arithmetic."""
    if any(tag in name.lower() for tag in ("adamw", "optimizer")):
        return "optimizer"
    for category, tags in CATEGORIES:
        if any(tag in op.lower() for tag in tags):
            return category
    return "elementwise, loss and other"


# --------------------------------------------------------------------------------------------
# One candidate, in this process.


def profile_candidate(spec: str, args) -> dict:
    import bench_throughput as bt

    kind = spec.split(":")[0]
    step, _ = bt.make_step(spec, args)
    for _ in range(3):
        step()
    plain = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        plain.append(time.perf_counter() - t)
    print("@@onednn-start", flush=True)
    t = time.perf_counter()
    if kind.startswith("torch-"):
        ops = _profile_torch(step, args.steps)
    else:
        ops = _profile_tensorflow(step, args.steps)
    profiled = (time.perf_counter() - t) / args.steps
    print("@@onednn-stop", flush=True)
    return {"candidate": spec, "step_s": sorted(plain)[len(plain) // 2], "profiled_step_s": profiled,
            "ops": ops}  # fmt: skip


def _profile_tensorflow(step, steps: int) -> dict[str, dict]:
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        (path,) = glob.glob(f"{logdir}/plugins/profile/*/*.xplane.pb")
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(path).read_bytes())
    ops: dict[str, dict] = {}
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for name, self_ps in _self_times(line.events, plane.event_metadata):
                if ":" not in name or name.startswith(("Executor", "Eager")):
                    continue  # framework bookkeeping, not an op
                op_name, op_type = name.rsplit(":", 1)
                if op_type == "Run":
                    continue  # a thread pool's share of an op's work: inside that op's own time
                category = categorize(op_type, op_name)
                key = f"{op_type} [optimizer]" if category == "optimizer" else op_type
                entry = ops.setdefault(key, {"s": 0.0, "calls": 0.0, "category": category})
                entry["s"] += self_ps / 1e12 / steps
                entry["calls"] += 1 / steps
    return ops


def _self_times(events, metadata):
    """(name, self time in ps) of the events of one thread's line: nested events are subtracted."""
    stack: list[list] = []  # [end_ps, name, duration_ps, children_ps]
    for e in sorted(events, key=lambda e: (e.offset_ps, -e.duration_ps)):
        while stack and stack[-1][0] <= e.offset_ps:
            _, name, dur, child = stack.pop()
            yield name, max(dur - child, 0)
        if stack:
            stack[-1][3] += e.duration_ps
        name = metadata[e.metadata_id].name.split("#")[0]
        stack.append([e.offset_ps + e.duration_ps, name, e.duration_ps, 0])
    while stack:
        _, name, dur, child = stack.pop()
        yield name, max(dur - child, 0)


def _profile_torch(step, steps: int) -> dict[str, dict]:
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    out = {}
    for ev in prof.key_averages():
        if ev.self_cpu_time_total <= 0:
            continue
        out[ev.key] = {
            "s": ev.self_cpu_time_total / 1e6 / steps,
            "calls": ev.count / steps,
            "category": categorize(ev.key),
        }
    return out


# --------------------------------------------------------------------------------------------
# oneDNN's own timing, from its verbose lines between the markers.


def parse_onednn(text: str, steps: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """oneDNN's time per primitive (s per step), and per convolution propagation [s, GFLOP] per step."""
    inside = False
    totals: dict[str, float] = collections.defaultdict(float)
    convs: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for line in text.splitlines():
        if line.startswith("@@onednn-start"):
            inside = True
        elif line.startswith("@@onednn-stop"):
            inside = False
        elif inside and line.startswith("onednn_verbose") and ",exec," in line:
            fields = line.split(",")
            i = fields.index("exec")
            kind, impl, prop = fields[i + 2], fields[i + 3], fields[i + 4]
            dtype = "bf16" if "bf16" in line else "f32"
            try:
                seconds = float(fields[-1]) / 1000.0 / steps
            except ValueError:
                continue
            totals[f"{kind} {prop} {impl} ({dtype})"] += seconds
            if kind == "convolution":
                entry = convs[f"{prop} ({dtype})"]
                entry[0] += seconds
                entry[1] += conv_gflop(fields[-2]) / steps
    return dict(totals), dict(convs)


def conv_gflop(desc: str) -> float:
    """FLOPs of one convolution pass from oneDNN's problem descriptor (``mb8_ic3oc32_ih256oh256kh3...``).

    Forward, backward-data and backward-weights each do 2 * mb * oc * oh * ow * ic / groups * kh * kw.
    """
    d = {k: int(v) for k, v in re.findall(r"(mb|g|ic|oc|oh|ow|kh|kw)(\d+)", desc)}
    groups = d.get("g", 1)
    ow, kw = d.get("ow", d["oh"]), d.get("kw", d["kh"])
    return 2 * d["mb"] * d["oc"] * d["oh"] * ow * d["ic"] // groups * d["kh"] * kw / 1e9


# --------------------------------------------------------------------------------------------


def report(result: dict, top: int, peak: dict[str, float] | None = None) -> None:
    onednn, convs = result.get("onednn"), result.get("convolutions")
    ops = result["ops"]
    total = sum(v["s"] for v in ops.values())
    print(f"\n## {result['candidate']}: step {result['step_s']:.3f} s unprofiled, "
          f"{result['profiled_step_s']:.3f} s profiled; op self time {total:.3f} s per step")  # fmt: skip
    by_cat: dict[str, float] = collections.defaultdict(float)
    for v in ops.values():
        by_cat[v["category"]] += v["s"]
    print("\n| category | s per step | share of op time |\n|---|---:|---:|")
    for cat, s in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        print(f"| {cat} | {s:.3f} | {s / total:.1%} |")
    print("\n| op | category | calls per step | s per step | share |\n|---|---|---:|---:|---:|")
    for op, v in sorted(ops.items(), key=lambda kv: -kv[1]["s"])[:top]:
        print(
            f"| {op} | {v['category']} | {v['calls']:.0f} | {v['s']:.3f} | {v['s'] / total:.1%} |"
        )
    if onednn:
        dnn = sum(onednn.values())
        print(f"\noneDNN primitives: {dnn:.3f} s per step\n")
        print("| primitive (kind, propagation, implementation, data type) | s per step | share |")
        print("|---|---:|---:|")
        for key, s in sorted(onednn.items(), key=lambda kv: -kv[1])[:top]:
            print(f"| {key} | {s:.3f} | {s / dnn:.1%} |")
    if convs:
        print("\n| convolution pass | s per step | GFLOP per step | GFLOP/s | fraction of peak |")
        print("|---|---:|---:|---:|---:|")
        for key, (s, gflop) in sorted(convs.items(), key=lambda kv: -kv[1][0]):
            rate = gflop / s if s else 0.0
            ref = (peak or {}).get("bfloat16" if "bf16" in key else "float32")
            share = f"{rate / ref:.1%}" if ref else "-"
            print(f"| {key} | {s:.3f} | {gflop:.1f} | {rate:.0f} | {share} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="keras-tensorflow:bf16,torch-compile:bf16")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--onednn", action="store_true", help="also time oneDNN's primitives")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    import bench_throughput as bt

    bt.add_shape_arguments(parser)
    args = parser.parse_args()
    if args.worker:
        print("@@result " + json.dumps(profile_candidate(args.worker, args)), flush=True)
        return
    passthrough = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("steps", *bt.SHAPE_ARGS)]

    peak = bt.measure_peak("cpu")
    print(f"matrix-multiply peak: float32 {peak['float32']:.0f} GFLOP/s, "
          f"bfloat16 {peak['bfloat16']:.0f} GFLOP/s")  # fmt: skip
    results = []
    for spec in args.candidates.split(","):
        env = dict(
            os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        )
        if args.onednn:
            env["ONEDNN_VERBOSE"] = "1"
        cmd = [sys.executable, __file__, *passthrough, "--worker", spec]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@result ")]
        if proc.returncode or not lines:
            sys.exit(f"{spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        result = json.loads(lines[-1].removeprefix("@@result "))
        if args.onednn:
            result["onednn"], result["convolutions"] = parse_onednn(proc.stdout, args.steps)
        result["peak_gflops"] = peak
        report(result, args.top, peak)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
