"""The machine a run trains on: bfloat16 where it pays, devices, optional packages.

Global Keras state set here (the mixed-precision policy, a distribution) is restored by
:func:`segdoctor.train.recipe.train_run` when the run returns.

Example:
    >>> resolve_mixed_precision("off")
    (False, 'Mixed precision (bfloat16): off.')
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import keras

from segdoctor.errors import ConfigError
from segdoctor.train.calibration import (
    CALIBRATION_ENV,
    StepTimer,
    calibrate_precision,
    time_probe_steps,
)
from segdoctor.train.measure import Log, print_log

BF16_CPU_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}
"""CPU flags (Linux /proc/cpuinfo) of native bfloat16 units, and their names in messages."""


def cpu_bf16_units() -> str | None:
    """The CPU's native bfloat16 units ("AMX" or "AVX512-BF16"), or None (Linux flags).

    Example:
        >>> cpu_bf16_units() in (None, "AMX", "AVX512-BF16")
        True
    """
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((set(line.split()) for line in fh if line.startswith("flags")), set())
    except OSError:
        return None
    return next((name for flag, name in BF16_CPU_FLAGS.items() if flag in flags), None)


@dataclass
class PrecisionChoice:
    """Whether a run trains in ``mixed_bfloat16``, why, and the measurement behind it (if any)."""

    bfloat16: bool
    why: str
    measured: dict[str, Any] | None = None  # calibration.calibrate_precision's record

    def to_dict(self) -> dict[str, Any]:
        """What ``run.json`` records under ``precision``."""
        out: dict[str, Any] = {"bfloat16": self.bfloat16, "why": self.why}
        if self.measured:
            out["measured"] = {k: v for k, v in self.measured.items() if k != "cached"}
            out["measured"]["cached"] = bool(self.measured.get("cached"))
        return out


def choose_precision(
    setting: str, log: Log | None = None, timer: StepTimer | None = None
) -> PrecisionChoice:
    """bfloat16 or float32 for ``train.mixed_precision`` (``auto``, ``on`` or ``off``).

    ``auto`` on the TensorFlow backend on a CPU measures both on this machine, once, cached
    (:mod:`segdoctor.train.calibration`; 0.33x the float32 step with AMX, 0.55-0.65x with
    AVX512-BF16 on the default U-Net, benchmarks/RESULTS.md). With the measurement switched off
    (``SEGDOCTOR_CALIBRATION=off``) the CPU's flags decide: on with native bfloat16 units, off
    without (emulated). Other backends and GPUs stay in float32 (not measured there). Weights, the
    output head, losses and metrics stay float32 in every case.
    """
    if setting in ("on", "off"):
        return PrecisionChoice(setting == "on", f"Mixed precision (bfloat16): {setting}.")
    backend = keras.backend.backend()
    gpu = False
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415 - heavy, optional: only on its own backend

        gpu = bool(tf.config.list_physical_devices("GPU"))
    if backend != "tensorflow" or gpu:
        where = "this GPU" if gpu else f"the {backend} backend"
        return PrecisionChoice(False, f"Mixed precision: off (auto: not measured on {where}).")
    units = cpu_bf16_units()
    try:
        record = calibrate_precision(units, timer or time_probe_steps, log)
    except Exception as exc:  # a probe that fails in bfloat16 means float32 for the run
        return PrecisionChoice(
            False,
            f"Mixed precision: off (auto: the bfloat16 timing probe failed: "
            f"{type(exc).__name__}: {exc}).",
        )
    if record is None:
        return _by_flags(units)
    on = bool(record["bfloat16"])
    cached = f"; measured {record['measured_at']}, cached" if record.get("cached") else ""
    why = (
        f"Mixed precision (bfloat16): {'on' if on else 'off'} (auto: measured on this CPU"
        f"{' with ' + units if units else ''}: a small U-Net's training step took "
        f"{record['mixed_bfloat16_s']:.3f} s in bfloat16 and {record['float32_s']:.3f} s in "
        f"float32, {record['ratio']:.2f}x{cached}; train.mixed_precision=on or off to override)."
    )
    return PrecisionChoice(on, why, record)


def _by_flags(units: str | None) -> PrecisionChoice:
    if units:
        return PrecisionChoice(
            True,
            f"Mixed precision (bfloat16): on (auto, not measured: {CALIBRATION_ENV}=off; "
            f"TensorFlow on a CPU with {units}; train.mixed_precision=off to keep float32).",
        )
    return PrecisionChoice(
        False,
        f"Mixed precision: off (auto, not measured: {CALIBRATION_ENV}=off; this CPU has no "
        "native bfloat16 units).",
    )


def resolve_mixed_precision(setting: str) -> tuple[bool, str]:
    """``(bfloat16, why)`` of :func:`choose_precision`."""
    choice = choose_precision(setting)
    return choice.bfloat16, choice.why


def setup_data_parallel(devices: int, log: Log = print_log) -> None:
    """Data-parallel training over ``devices`` local devices with Keras' distribution API (JAX).

    Each batch is split over the devices and the gradients are averaged; the model is replicated.
    Multi-host: call ``keras.distribution.initialize()`` (``jax.distributed``) on every host first;
    ``list_devices()`` then returns the devices of all hosts.
    """
    backend = keras.backend.backend()
    if backend != "jax":
        raise ConfigError(
            f"Multi-device training needs the JAX backend (Keras' distribution API); this run uses {backend}",
            expected="KERAS_BACKEND=jax with train.devices > 1",
            fix="run with KERAS_BACKEND=jax, or train on one device (train.devices=1).",
        )
    available = keras.distribution.list_devices()
    if len(available) < devices:
        raise ConfigError(
            f"{devices} devices requested but only {len(available)} found ({', '.join(map(str, available))})",
            fix="on a CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before starting "
            "(`segdoctor train --devices N` does this for you), or request fewer devices.",
        )
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=available[:devices])
    )
    log(f"Data-parallel training on {devices} devices: {', '.join(map(str, available[:devices]))}.")


def check_tensorboard_available() -> None:
    """Keras' TensorBoard callback needs TensorFlow and TensorBoard, whatever the Keras backend.

    It writes its event files with ``tf.summary``, whose writers TensorFlow takes from the
    ``tensorboard`` package (``tensorflow-cpu`` does not install it by itself).
    """

    def found(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    missing = [name for name in ("tensorflow", "tensorboard") if not found(name)]
    if missing:
        raise ConfigError(
            f"train.tensorboard=true needs {' and '.join(missing)}, which "
            + ("is" if len(missing) == 1 else "are")
            + " not installed",
            expected="tensorflow and tensorboard importable: Keras' TensorBoard callback writes "
            "its event files with tf.summary on every backend",
            fix=f"`pip install {' '.join('tensorflow-cpu' if m == 'tensorflow' else m for m in missing)}`"
            ", or set train.tensorboard=false.",
        )
