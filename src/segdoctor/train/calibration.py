"""bfloat16 or float32: measured on the machine at hand, once, and cached per machine.

``train.mixed_precision=auto`` on the TensorFlow backend on a CPU decides from a measurement, not
from a table of CPUs: a small U-Net of segdoctor's own (depth 2, 16 filters, batch 8 of 128x128x3,
Dice + cross-entropy, AdamW: the same layers, loss and optimizer as the recipe's, at a fraction of
the cost) is built under each policy and its training step timed, interleaved, median of
:data:`ROUNDS` x :data:`STEPS` steps after warm-up. bfloat16 is chosen when its step takes at most
:data:`BF16_MAX_RATIO` of the float32 one (bfloat16 keeps 8 bits of mantissa: a change of precision
is only worth a clear gain). On the TensorFlow backend the probe and the default U-Net agree in
direction: on a 2-core Intel Xeon with AMX the probe's bfloat16 step took 0.53 of float32's (0.069
against 0.130 s) and the default U-Net's 0.33 (benchmarks/RESULTS.md); the small probe understates
the gain, never its sign there. On CPUs without native bfloat16 units it is emulated and slower.

The result is cached in ``calibration.json`` under :func:`cache_dir`, keyed by the CPU model, the
cores this process may use, the native bfloat16 units and the versions of Keras and the backend
(:func:`machine_key`): the first run on a machine pays a few seconds (9 s on a 2-core Xeon with AMX),
later runs none. ``SEGDOCTOR_CALIBRATION=off`` skips the measurement (the CPU's flags decide, as
before the calibration existed); ``train.mixed_precision=on|off`` overrides it; deleting the file
measures again.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from segdoctor._io import atomic_write_text
from segdoctor.train.measure import clear_session_keeping_run_state

CALIBRATION_ENV = "SEGDOCTOR_CALIBRATION"
"""Set to ``off`` to skip the measurement (the CPU's flags decide)."""
CACHE_ENV = "SEGDOCTOR_CACHE_DIR"
"""Where ``calibration.json`` lives (default: ``$XDG_CACHE_HOME/segdoctor``, ``~/.cache/segdoctor``)."""
PROBE_VERSION = 1  # part of the key: a changed probe measures again
BF16_MAX_RATIO = 0.9
ROUNDS, STEPS, WARMUP = 3, 2, 2
POLICIES = ("float32", "mixed_bfloat16")

StepTimer = Callable[[], dict[str, float]]
"""``() -> {"float32": s, "mixed_bfloat16": s}``: median seconds of one training step each."""


def cache_dir() -> Path:
    """The folder of segdoctor's per-machine cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segdoctor"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_key(units: str | None) -> str:
    """What the measurement depends on: CPU model, usable cores, bf16 units, library versions."""
    backend = keras.backend.backend()
    version = getattr(__import__(backend), "__version__", "?")
    return (
        f"cpu={_cpu_model()}; cores={_cores()}; bf16_units={units or 'none'}; "
        f"keras={keras.__version__}; {backend}={version}; probe={PROBE_VERSION}"
    )


def time_probe_steps() -> dict[str, float]:
    """Median training-step seconds of the probe U-Net under each policy (see the module doc)."""
    from segdoctor.losses import DiceCELoss  # noqa: PLC0415 - the probe only
    from segdoctor.models import create_model  # noqa: PLC0415

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 128, 128, 3)).astype("float32")
    y = (rng.random((8, 128, 128, 1)) > 0.8).astype("float32")
    previous = keras.config.dtype_policy()
    models = {}
    try:
        for policy in POLICIES:
            keras.config.set_dtype_policy(policy)
            model = create_model("unet", input_shape=(None, None, 3), depth=2, base_filters=16)
            model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=DiceCELoss(mode="binary"))
            models[policy] = model
    finally:
        keras.config.set_dtype_policy(previous)
    times: dict[str, list[float]] = {p: [] for p in POLICIES}
    for model in models.values():
        for _ in range(WARMUP):
            model.train_on_batch(x, y)
    for r in range(ROUNDS):
        for policy in POLICIES if r % 2 == 0 else POLICIES[::-1]:
            for _ in range(STEPS):
                begin = time.perf_counter()
                models[policy].train_on_batch(x, y)
                times[policy].append(time.perf_counter() - begin)
    del models
    clear_session_keeping_run_state()  # free the probe's models and traced steps
    return {p: float(np.median(t)) for p, t in times.items()}


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: measured again and rewritten
    return data if isinstance(data, dict) else {}


def calibrate_precision(
    units: str | None, timer: StepTimer = time_probe_steps, log: Callable[[str], None] | None = None
) -> dict[str, Any] | None:
    """The cached or freshly measured precision record for this machine; None when skipped.

    The record: ``{"key", "float32_s", "mixed_bfloat16_s", "ratio", "bfloat16", "measured_at",
    "cached"}``. A cache that cannot be written is not an error (the next run measures again).
    """
    if os.environ.get(CALIBRATION_ENV, "").lower() in ("off", "0", "false", "no"):
        return None
    key = machine_key(units)
    path = cache_dir() / "calibration.json"
    cache = _read_cache(path)
    entry = cache.get(key)
    if isinstance(entry, dict) and {"float32_s", "mixed_bfloat16_s"} <= entry.keys():
        return {**entry, "key": key, "cached": str(path)}
    if log:
        log(f"Timing bfloat16 against float32 on this machine (once; cached in {path})...")
    seconds = timer()
    fp32, bf16 = seconds["float32"], seconds["mixed_bfloat16"]
    ratio = bf16 / fp32 if fp32 > 0 else float("inf")
    entry = {
        "float32_s": round(fp32, 4),
        "mixed_bfloat16_s": round(bf16, 4),
        "ratio": round(ratio, 3),
        "bfloat16": ratio <= BF16_MAX_RATIO,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({**cache, key: entry}, indent=1))
    except OSError:
        pass
    return {**entry, "key": key, "cached": None}
