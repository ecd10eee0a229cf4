"""Doctor benchmarks: data-check speed and memory, DoctorCallback overhead, probe time at 256x256.

Run: ``KERAS_BACKEND=torch python benchmarks/bench_doctor.py [--data DIR] [--probe]``.
DIR defaults to ``../shared/data/dsb2018-nuclei`` next to the repository.
``--only scale --scale 1000,10000`` times ``segdoctor diagnose`` (a fresh process each) on that
many synthetic 256x256 pairs, written once to ``--synthetic-dir``: wall time and the process's peak
resident memory, to show that time grows linearly and memory stays flat.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bench_data(path: Path) -> None:
    from segdoctor.doctor import diagnose

    t0 = time.perf_counter()
    report = diagnose(data=path, plots=False)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"data checks: {report.summary['pairs']} pairs in {dt:.2f} s; peak RSS {rss:.0f} MiB; top {report.ids[:3]}"
    )


def _nuclei_fit(doctor, epochs: int, patch: int, depth: int) -> float:
    """Seconds of one ``model.fit`` of a fresh U-Net on the bundled nuclei sample."""
    import keras

    from segdoctor.data import SegmentationDataset, discover_pairs
    from segdoctor.losses import DiceCELoss
    from segdoctor.metrics import DiceScore
    from segdoctor.models import create_model
    from segdoctor.sample_data import sample_path

    keras.utils.set_random_seed(0)
    data = SegmentationDataset(
        discover_pairs(sample_path()), batch_size=8, patch_size=patch, channels=1
    )
    model = create_model("unet", input_shape=(patch, patch, 1), depth=depth, base_filters=16)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=DiceCELoss(mode="binary"),
        metrics=[DiceScore(mode="binary", name="dice")],
    )
    callbacks = [doctor] if doctor is not None else []
    t0 = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks)
    return time.perf_counter() - t0


def bench_callback(
    epochs: tuple[int, int] = (2, 6), repeats: int = 3, patch: int = 96, depth: int = 3
) -> None:
    """DoctorCallback overhead: a one-time cost and a per-epoch share, from interleaved fits.

    Fits of ``epochs[0]`` and ``epochs[1]`` epochs, each with and without the callback: the
    difference of the differences is the per-epoch overhead (curves, predictions, gradient
    watching), the rest is paid once (model and loss checks, the first batches; on TensorFlow the
    peeked steps trace the train step once more).
    """
    import statistics

    from segdoctor.doctor import DoctorCallback

    _nuclei_fit(None, 1, patch, depth)  # warm up imports, kernels and the file cache
    times = {(e, d): [] for e in epochs for d in (False, True)}
    for _ in range(repeats):
        for e in epochs:
            times[(e, False)].append(_nuclei_fit(None, e, patch, depth))
            times[(e, True)].append(_nuclei_fit(DoctorCallback(verbose=False), e, patch, depth))
    med = {k: statistics.median(v) for k, v in times.items()}
    short, long = epochs
    plain_epoch = (med[(long, False)] - med[(short, False)]) / (long - short)
    doctor_epoch = (med[(long, True)] - med[(short, True)]) / (long - short)
    once = (med[(short, True)] - med[(short, False)]) - short * (doctor_epoch - plain_epoch)
    print(
        f"callback: U-Net depth {depth}, {patch}x{patch}, batch 8, nuclei sample, {repeats} "
        f"interleaved repeats; fit medians (s): "
        + ", ".join(f"{e} epochs {'doctor' if d else 'plain'} {med[(e, d)]:.2f}" for e, d in med)
    )
    print(
        f"  per epoch: {plain_epoch:.2f} s plain, {doctor_epoch:.2f} s with the doctor "
        f"({100 * (doctor_epoch / plain_epoch - 1):+.1f}%); paid once: {once:.2f} s"
    )


def bench_probe(path: Path, size: int = 256) -> None:
    """``diagnose(..., probe=True)`` on images resized to ``size`` with a U-Net (depth 4, 16 filters)."""
    import keras

    from segdoctor.doctor import diagnose
    from segdoctor.losses import DiceCELoss
    from segdoctor.models import create_model

    for shape in ((None, None, 1), (size, size, 1)):
        keras.utils.set_random_seed(0)
        model = create_model("unet", input_shape=shape, depth=4, base_filters=16)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceCELoss(mode="binary"))
        t0 = time.perf_counter()
        report = diagnose(data=path, model=model, probe=True, probe_size=size, plots=False)
        print(
            f"probes, images at {size}x{size}, U-Net input {shape}: "
            f"{time.perf_counter() - t0:.1f} s; findings {report.ids}; "
            f"skipped for time {report.summary.get('probes_skipped', [])}"
        )


def write_synthetic(root: Path, n: int, size: int = 256) -> Path:
    """``n`` gray image/mask PNG pairs (a few discs on a textured background); kept for reuse."""
    import numpy as np
    from PIL import Image

    folder = root / f"pairs_{n}"
    done = folder / ".complete"
    if done.exists():
        return folder
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    background = (80 + 20 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.float32)
    for i in range(n):
        mask = np.zeros((size, size), bool)
        for _ in range(int(rng.integers(0, 4))):  # some masks are empty
            cy, cx, r = (
                rng.integers(20, size - 20),
                rng.integers(20, size - 20),
                rng.integers(5, 20),
            )
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image = background + 90 * mask + rng.normal(0, 4, size=mask.shape)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
            folder / "images" / f"s{i:05d}.png"
        )
        Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"s{i:05d}.png")
    done.touch()
    return folder


def bench_scale(counts: list[int], root: Path) -> None:
    """``segdoctor diagnose`` on synthetic datasets of growing size: seconds and peak memory."""
    rows = []
    for n in counts:
        t0 = time.perf_counter()
        folder = write_synthetic(root, n)
        made = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "segdoctor.cli", "diagnose", str(folder), "--json", os.devnull]
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise RuntimeError(
                f"diagnose failed on {folder}: {proc.stderr.read().decode()[-2000:]}"
            )
        peak = usage.ru_maxrss / 1024
        rows.append((n, dt, peak))
        print(
            f"diagnose on {n:,} synthetic 256x256 pairs: {dt:.1f} s ({1000 * dt / n:.2f} ms/pair), "
            f"peak RSS {peak:.0f} MiB (data written in {made:.0f} s)",
            flush=True,
        )
    if len(rows) > 1:
        (n0, t0_, m0), (n1, t1, m1) = rows[0], rows[-1]
        print(f"{n1 / n0:.0f}x the pairs: {t1 / t0_:.1f}x the time, {m1 / m0:.2f}x the peak memory")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "dsb2018-nuclei"
    )
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("data", "callback", "probe", "scale"), default=None)
    parser.add_argument("--scale", default="1000,10000", help="pair counts for --only scale")
    parser.add_argument(
        "--synthetic-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "segdoctor-bench-synthetic",
    )
    args = parser.parse_args()
    if args.only == "scale":
        bench_scale([int(n) for n in args.scale.split(",")], args.synthetic_dir)
        return
    if args.only in (None, "data"):
        bench_data(args.data)
    if args.only in (None, "callback"):
        bench_callback(repeats=args.repeats)
    if args.probe or args.only == "probe":
        bench_probe(args.data)


if __name__ == "__main__":
    main()
