"""Doctor benchmarks: data-check speed and memory, DoctorCallback overhead, probe time at 256x256.

Run: ``KERAS_BACKEND=torch python benchmarks/bench_doctor.py [--data DIR] [--probe]``.
DIR defaults to ``../shared/data/dsb2018-nuclei`` next to the repository.
"""

from __future__ import annotations

import argparse
import resource
import sys
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


def bench_callback(epochs: int = 3) -> None:
    from examples import classic_1_monitor_mode as ex

    from segdoctor.doctor import DoctorCallback

    model, _, (x, y) = ex.build(corrected=True)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # warm up
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=8, epochs=epochs, validation_split=0.25, verbose=0)
    plain = time.perf_counter() - t0
    doctor = DoctorCallback(verbose=False)
    t0 = time.perf_counter()
    model.fit(
        x, y, batch_size=8, epochs=epochs, validation_split=0.25, verbose=0, callbacks=[doctor]
    )
    with_doctor = time.perf_counter() - t0
    print(
        f"callback: fit {plain:.2f} s plain, {with_doctor:.2f} s with DoctorCallback; "
        f"time inside the callback {doctor.overhead_s:.2f} s "
        f"({100 * doctor.overhead_s / with_doctor:.1f}% of the run; mostly the one-off loss probe)"
    )


def bench_probe(path: Path, size: int = 256) -> None:
    import keras

    from segdoctor.doctor import diagnose

    inputs = keras.Input((size, size, 1))
    h = inputs
    for filters in (16, 32):
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    t0 = time.perf_counter()
    report = diagnose(data=path, model=model, probe=True, probe_size=size, plots=False)
    print(f"probes at {size}x{size}: {time.perf_counter() - t0:.1f} s; findings {report.ids}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "dsb2018-nuclei"
    )
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args()
    bench_data(args.data)
    bench_callback()
    if args.probe:
        bench_probe(args.data)


if __name__ == "__main__":
    main()
