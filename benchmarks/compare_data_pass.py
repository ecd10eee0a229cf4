"""Time the doctor's data checks (``check_data``) of two versions of segdoctor, interleaved.

Each measurement is a fresh process (imports excluded from the time) with ``PYTHONPATH`` set to
one version's ``src``; rounds alternate the versions so that a machine whose speed drifts treats
both alike. Prints every time and the ratio of medians (new / old) per dataset.

    git worktree add /tmp/old <commit>
    python benchmarks/compare_data_pass.py --old /tmp/old/src --data ../shared/data \\
        dsb2018-nuclei camvid-val
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_TIMED = (
    "import time\n"
    "from segdoctor.doctor.data_checks import check_data\n"
    "t = time.perf_counter()\n"
    "check_data({path!r}, plots=False)\n"
    "print(time.perf_counter() - t)\n"
)


def _time(src: Path, path: Path) -> float:
    env = dict(
        os.environ, PYTHONPATH=str(src), KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "torch")
    )
    out = subprocess.run(
        [sys.executable, "-c", _TIMED.format(path=str(path))],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the other version's src folder")
    parser.add_argument("--new", type=Path, default=REPO / "src")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("datasets", nargs="+")
    args = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for name in args.datasets:
            order = (("old", args.old), ("new", args.new))
            for label, src in order if r % 2 == 0 else order[::-1]:
                t = _time(src, args.data / name)
                times.setdefault((name, label), []).append(t)
                print(f"round {r + 1} {name:20s} {label}: {t:.2f} s", flush=True)
    for name in args.datasets:
        old, new = (statistics.median(times[(name, k)]) for k in ("old", "new"))
        print(f"{name}: median old {old:.2f} s, new {new:.2f} s, new / old {new / old:.2f}")


if __name__ == "__main__":
    main()
