"""Gradients through whichever backend Keras runs on (torch, jax or tensorflow).

Keras 3 has no backend-agnostic ``grad``; the doctor needs two kinds of gradient:

- :func:`value_and_grad` of a scalar function of one tensor (the loss probe: d loss / d y_pred),
- :func:`model_value_and_grads` of a loss with respect to a model's trainable weights (probes).

Both return numpy. A function whose result does not depend on its input in a differentiable way
(``round``, ``>`` then ``cast``) yields an all-zero gradient rather than an error.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import ops


def _backend() -> str:
    return keras.backend.backend()


def _mean(value):
    return ops.mean(ops.cast(value, "float32"))


def value_and_grad(fn: Callable, x: np.ndarray) -> tuple[float, np.ndarray]:
    """``(fn(x), d fn / d x)`` for a scalar-valued ``fn`` (non-scalar results are averaged).

    Example:
        >>> from keras import ops
        >>> v, g = value_and_grad(lambda t: ops.sum(t * t), np.ones((2,), "float32"))
        >>> float(v), g.tolist()
        (2.0, [2.0, 2.0])
    """
    name = _backend()
    x = np.asarray(x, dtype="float32")
    if name == "torch":
        import torch  # noqa: PLC0415 - the running backend only; the others may not be installed

        t = torch.tensor(x, requires_grad=True)
        out = _mean(fn(t))
        if not out.requires_grad:
            return float(out.detach()), np.zeros_like(x)
        (grad,) = torch.autograd.grad(out, [t], allow_unused=True)
        g = np.zeros_like(x) if grad is None else grad.detach().cpu().numpy()
        return float(out.detach()), g
    if name == "jax":
        import jax  # noqa: PLC0415 - the running backend only; the others may not be installed

        val, grad = jax.value_and_grad(lambda t: _mean(fn(t)))(x)
        return float(val), np.asarray(grad)
    if name == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415 - the running backend only; the others may not be installed

        t = tf.Variable(x)
        with tf.GradientTape() as tape:
            out = _mean(fn(t))
        grad = tape.gradient(out, t)
        return float(out), np.zeros_like(x) if grad is None else grad.numpy()
    raise NotImplementedError(f"gradients are not available on the {name!r} backend")


def model_value_and_grads(
    model, loss_fn: Callable, x: np.ndarray, y: np.ndarray, *, training: bool = True
) -> tuple[float, list[np.ndarray]]:
    """Loss and its gradient with respect to ``model.trainable_variables`` on one batch.

    The model's weights are not changed (BatchNorm moving statistics may be updated on torch and
    tensorflow, as in a training step; probes run on a copy of the model).
    """
    name = _backend()
    variables = model.trainable_variables
    if name == "torch":
        import torch  # noqa: PLC0415 - the running backend only; the others may not be installed

        pred = model(x, training=training)
        out = _mean(loss_fn(y, pred))
        grads = torch.autograd.grad(out, [v.value for v in variables], allow_unused=True)
        return float(out.detach()), [
            np.zeros(v.shape, "float32") if g is None else g.detach().cpu().numpy()
            for v, g in zip(variables, grads, strict=True)
        ]
    if name == "jax":
        import jax  # noqa: PLC0415 - the running backend only; the others may not be installed

        non_trainable = [v.value for v in model.non_trainable_variables]

        def f(trainable):
            pred, _ = model.stateless_call(trainable, non_trainable, x, training=training)
            return _mean(loss_fn(y, pred))

        val, grads = jax.value_and_grad(f)([v.value for v in variables])
        return float(val), [np.asarray(g) for g in grads]
    if name == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415 - the running backend only; the others may not be installed

        with tf.GradientTape() as tape:
            pred = model(x, training=training)
            out = _mean(loss_fn(y, pred))
        grads = tape.gradient(out, [v.value for v in variables])
        return float(out), [
            np.zeros(v.shape, "float32") if g is None else np.asarray(g)
            for v, g in zip(variables, grads, strict=True)
        ]
    raise NotImplementedError(f"gradients are not available on the {name!r} backend")
