"""Run every benchmark (``make bench``) and the slow tests; print each script's own report.

The shared datasets are looked up in $SEGDOCTOR_SHARED_DATA or ../shared/data next to the
repository. Results are not written anywhere automatically: copy the tables that matter into
benchmarks/RESULTS.md with the command, machine and date.

Usage:
    python benchmarks/run_all.py [--quick] [--only NAME[,NAME]]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def shared_data() -> Path | None:
    for candidate in (os.environ.get("SEGDOCTOR_SHARED_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def jobs(quick: bool) -> list[tuple[str, list[str]]]:
    py = sys.executable
    data = shared_data()
    rounds = ["--rounds", "1" if quick else "3"]
    out = [
        (
            "losses",
            [py, str(HERE / "bench_losses.py"), "--threads", "1", "--clock", "cpu", "--ablation"]
            + ([] if quick else ["--unet", "--unet-steps", "2"]),
        ),
        ("loader", [py, str(HERE / "bench_loader.py")]),
        ("doctor", [py, str(HERE / "bench_doctor.py"), "--probe"]),
        (
            "diagnose-scale",
            [py, str(HERE / "bench_doctor.py"), "--only", "scale", "--scale", "1000,10000"],
        ),
        ("throughput", [py, str(HERE / "bench_throughput.py"), *rounds]),
        (
            "profile",
            [py, str(HERE / "profile_step.py"), "--onednn", "--steps", "1" if quick else "3"],
        ),
        ("slow-tests", [py, "-m", "pytest", "-q", "-m", "slow", str(REPO / "tests")]),
    ]
    if data is not None:
        out.append(
            (
                "faults",
                [py, str(HERE / "bench_faults.py"), "--data", str(data)]
                + (["--quick"] if quick else []),
            )
        )
        minutes = "3" if quick else "15"
        out.append(
            (
                "quality",
                [
                    py,
                    str(HERE / "bench_quality.py"),
                    "--data",
                    str(data / "dsb2018-nuclei"),
                    "--minutes",
                    minutes,
                ],
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter budgets")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args()
    wanted = {n for n in args.only.split(",") if n}
    failed = []
    for name, cmd in jobs(args.quick):
        if wanted and name not in wanted:
            continue
        script = Path(cmd[1])
        if script.suffix == ".py" and not script.exists():
            print(f"\n## {name}: {script.name} not present, skipped", flush=True)
            continue
        print(f"\n## {name}\n$ {' '.join(cmd)}", flush=True)
        env = {**os.environ}
        if subprocess.run(cmd, env=env, cwd=REPO).returncode:
            failed.append(name)
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
