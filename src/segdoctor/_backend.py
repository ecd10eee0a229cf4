"""Keras backend selection.

Keras 3 reads ``KERAS_BACKEND`` once, at ``import keras``. When the variable is unset and the
default backend (TensorFlow) is not installed, ``import keras`` fails. segdoctor therefore picks a
backend *before* Keras is imported, and never overrides a choice the user made.

Order of preference when ``KERAS_BACKEND`` is unset: tensorflow, torch, jax. On a 2-core CPU the
default U-Net (256x256, batch 8, float32) trains 2.1x faster on the TensorFlow backend than on
torch and 6x faster than on JAX (``benchmarks/bench_throughput.py``; results in
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import importlib.util
import os
import sys

PREFERENCE: tuple[str, ...] = ("tensorflow", "torch", "jax")
_SOURCE: dict[str, str] = {}


def installed_backends() -> list[str]:
    """Backends whose framework can be imported, in order of preference."""
    return [name for name in PREFERENCE if importlib.util.find_spec(name) is not None]


def ensure_backend() -> str:
    """Make sure ``KERAS_BACKEND`` names a usable backend before Keras is imported.

    Returns:
        The backend name that Keras will use.

    Example:
        >>> from segdoctor._backend import ensure_backend
        >>> ensure_backend() in ("torch", "jax", "tensorflow", "numpy")
        True
    """
    keras = sys.modules.get("keras")
    if keras is not None:  # too late to choose: report what Keras already uses
        _SOURCE.setdefault("backend", "already imported")
        return keras.backend.backend()
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        _SOURCE.setdefault("backend", "KERAS_BACKEND")  # keep "auto" when we set it ourselves
        return chosen
    available = installed_backends()
    if not available:
        # Leave Keras to report its own error at import time, with our advice added by callers.
        _SOURCE["backend"] = "none installed"
        return "tensorflow"
    os.environ["KERAS_BACKEND"] = available[0]
    if available[0] == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    _SOURCE["backend"] = "auto"
    return available[0]


def describe_backend() -> str:
    """A one-line, human-readable statement of which backend is used and why."""
    name = ensure_backend()
    source = _SOURCE.get("backend", "auto")
    if source == "KERAS_BACKEND":
        return f"Keras backend: {name} (from KERAS_BACKEND)"
    if source == "already imported":
        return f"Keras backend: {name} (Keras was already imported)"
    if source == "none installed":
        return (
            "No Keras backend is installed: install one with "
            "`pip install 'segdoctor[tensorflow]'` (or [torch], [jax])."
        )
    return (
        f"Keras backend: {name} (KERAS_BACKEND unset; picked the fastest installed backend "
        "for training on CPU; set KERAS_BACKEND to choose)"
    )
