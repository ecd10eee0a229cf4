"""The machine a run trains on: bfloat16 where it pays, devices, optional packages.

Global Keras state set here (the mixed-precision policy, a distribution) is restored by
:func:`segdoctor.train.recipe.train_run` when the run returns.

Example:
    >>> resolve_mixed_precision("off")
    (False, 'Mixed precision (bfloat16): off.')
"""

from __future__ import annotations

import importlib.util

import keras

from segdoctor.errors import ConfigError
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


def resolve_mixed_precision(setting: str) -> tuple[bool, str]:
    """Whether to train with Keras' ``mixed_bfloat16`` policy, and a sentence saying why.

    ``auto`` turns it on where it was measured to pay: the TensorFlow backend on a CPU with native
    bfloat16 units (benchmarks/bench_throughput.py, the default U-Net's training step: 1.9x as
    fast as float32 with AMX; 1.55x (32 filters) and 1.4-2.1x (16) on an AMD EPYC with
    AVX512-BF16 and no AMX). On CPUs without them (AVX2 only) bfloat16 is emulated, so it stays
    off. Weights, the output head, losses and metrics stay float32 in both cases.
    """
    if setting in ("on", "off"):
        return setting == "on", f"Mixed precision (bfloat16): {setting}."
    backend = keras.backend.backend()
    gpu = False
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415 - heavy, optional: only on its own backend

        gpu = bool(tf.config.list_physical_devices("GPU"))
    units = cpu_bf16_units() if backend == "tensorflow" and not gpu else None
    if units:
        return True, (
            f"Mixed precision (bfloat16): on (auto: TensorFlow on a CPU with {units}, where a "
            "step was measured 1.4-2x as fast as in float32; train.mixed_precision=off to keep "
            "float32)."
        )
    native = backend == "tensorflow" and not gpu
    where = (
        "this CPU has no native bfloat16 units"
        if native
        else f"no measured gain on the {backend} backend and this device"
    )
    return False, f"Mixed precision: off (auto: {where})."


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
