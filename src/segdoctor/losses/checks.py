"""Eager-only value checks: skipped while a backend traces or compiles the computation.

Shapes are checked everywhere (:mod:`segdoctor.losses.targets`); values need concrete tensors, so
label ranges and probabilities-vs-logits are checked only in eager execution. The metrics use the
same checks.

Example:
    >>> import numpy as np
    >>> is_eager(np.zeros(2))
    True
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from segdoctor.errors import ConfigError, DataError
from segdoctor.losses.options import Tensor

# The backend's own module, for what keras.ops cannot tell: whether a value is being traced. The
# backend is fixed once Keras is imported, and Keras has already imported this module.
BACKEND = keras.backend.backend()
if BACKEND == "jax":
    import jax
elif BACKEND == "tensorflow":
    import tensorflow as tf
elif BACKEND == "torch":
    import torch

__all__ = ["as_float32", "check_label_values", "check_probabilities", "is_eager"]

_PROB_TOLERANCE = 1e-3  # probabilities may overshoot [0, 1] by rounding (bfloat16 softmax)


def as_float32(x: Tensor) -> Tensor:
    """``x`` as a float32 tensor; no cast op when it already is one (each Keras op dispatch costs
    tens of microseconds on an eager backend, more than a small loss's arithmetic).

    Example:
        >>> import numpy as np
        >>> str(as_float32(np.zeros(2, "int32")).dtype).endswith("float32")
        True
    """
    dtype = getattr(x, "dtype", None)
    if (
        dtype is not None
        and not isinstance(x, np.ndarray)  # numpy arrays become backend tensors (torch needs them)
        and keras.backend.standardize_dtype(dtype) == "float32"
    ):
        return x
    return ops.cast(x, "float32")


def is_eager(x: Tensor) -> bool:
    """True when ``x`` holds concrete values that can be inspected without breaking a trace."""
    if BACKEND == "jax":
        return not isinstance(x, jax.core.Tracer)
    if BACKEND == "tensorflow":
        return bool(tf.executing_eagerly())
    if BACKEND == "torch":
        return not torch.compiler.is_compiling()
    return True


def _minmax(x: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum and maximum of ``x`` (one pass over memory on torch)."""
    x = ops.convert_to_tensor(x)
    if BACKEND == "torch":
        result = torch.aminmax(x)
        return result.min, result.max
    return ops.min(x), ops.max(x)


def _scalars(*values: Tensor) -> list[float] | None:
    """Fetch several scalar tensors to the host in one transfer; None while tracing.

    Inside ``jax.jit`` even reductions of concrete arrays are staged out as tracers, so the result
    is what tells whether values can be read.
    """
    stacked = ops.stack(list(values))
    if not is_eager(stacked):
        return None
    return [float(v) for v in ops.convert_to_numpy(stacked)]


def _check_sparse_values(kept: Tensor, channels: int) -> None:
    """Sparse class labels: whole numbers in ``[0, channels)``."""
    found = _scalars(*_minmax(kept), ops.max(ops.abs(kept - ops.round(kept))))
    if found is None:
        return
    lo, hi, frac = found
    if frac > 0:
        raise DataError(
            "Sparse class labels must be whole numbers",
            received=f"a label with fractional part {frac:g}",
            fix="pass integer class indices (or one-hot labels with one channel per class).",
        )
    if lo < 0 or hi >= channels:
        raise DataError(
            f"Class labels must lie in [0, {channels}) for a {channels}-channel output",
            expected=f"integers 0..{channels - 1}, plus ignore_index if set",
            received=f"labels from {lo:g} to {hi:g}",
            fix="give the model one output channel per class, or pass ignore_index=<label> "
            "for a void/ignore label.",
        )


def check_label_values(
    labels: Tensor, valid: Tensor | None, *, mode: str, sparse: bool, channels: int
) -> None:
    """Raise DataError for label values the mode cannot mean. Eager execution only.

    Args:
        labels: float32 ``(B, *spatial, 1 or C)`` labels.
        valid: boolean mask of the pixels that count (``None``: all of them).
        mode: "binary", "multiclass" or "multilabel".
        sparse: the labels are class indices (multiclass), not 0/1 masks.
        channels: channels of the prediction.

    Example:
        >>> import numpy as np
        >>> check_label_values(np.array([0.0, 1.0]), None, mode="binary", sparse=False, channels=1)
    """
    if not is_eager(labels):
        return
    kept = labels if valid is None else ops.where(valid, labels, 0.0)
    if sparse:
        _check_sparse_values(kept, channels)
        return
    found = _scalars(*_minmax(kept))
    if found is None:
        return
    lo, hi = found
    if lo < 0 or hi > 1:
        hint = (
            "masks stored as 0/255 must be divided by 255 (segdoctor.data.normalize_mask does it)"
            if hi == 255
            else "class indices need mode='multiclass'"
        )
        raise DataError(
            f'Labels must be 0/1 masks in mode="{mode}" (soft labels in [0, 1] are allowed)',
            received=f"values from {lo:g} to {hi:g}",
            fix=f"{hint}; if {hi:g} marks pixels to ignore, pass ignore_index={hi:g}.",
        )


def check_probabilities(y_pred: Tensor, mode: str) -> None:
    """Raise ConfigError when y_pred, said to hold probabilities, is clearly logits.

    Runs in eager execution only (a no-op while a backend traces a compiled step).

    Example:
        >>> import numpy as np
        >>> check_probabilities(np.array([0.2, 0.9]), "binary")   # fine: nothing happens
    """
    if not is_eager(y_pred):
        return
    found = _scalars(*_minmax(y_pred))
    if found is None:
        return
    lo, hi = found
    if lo < -_PROB_TOLERANCE or hi > 1 + _PROB_TOLERANCE:
        activation = "softmax" if mode == "multiclass" else "sigmoid"
        raise ConfigError(
            "from_logits=False but y_pred has values outside [0, 1]",
            expected="probabilities in [0, 1]",
            received=f"values from {lo:.4g} to {hi:.4g} (these look like logits)",
            fix=f"pass from_logits=True, or end the model with a {activation} activation.",
        )
