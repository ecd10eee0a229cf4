"""What the probes need from a model: its loss, a safe copy, its predictions and their Dice.

Every probe works on a copy (:func:`clone`) so that the user's model is never trained or changed.

Example:
    >>> import numpy as np
    >>> t = np.zeros((1, 4, 4, 1)); t[0, :2] = 1
    >>> foreground_dice(t, t)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import keras
import numpy as np

from segdoctor.doctor.model_checks import all_layers, output_activation
from segdoctor.doctor.model_data import ignored_label


def loss_fn(model) -> Callable:
    """The compiled loss as a callable ``(y_true, y_pred) -> loss`` (BCE when not compiled)."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return keras.losses.BinaryCrossentropy()
    return keras.losses.get(loss) if isinstance(loss, str) else loss


def loss_ignore_index(model) -> int | None:
    """The label value the compiled loss ignores (``ignore_index`` of segdoctor's losses,
    ``ignore_class`` of Keras' sparse cross-entropy), or None."""
    return ignored_label(loss_fn(model))


def clone(
    model,
    learning_rate: float | None = None,
    optimizer: str | None = None,
    *,
    fresh: bool = False,
):
    """A copy with the same weights, compiled with the same loss and a fresh optimizer.

    Args:
        model: the user's model.
        learning_rate: overrides the optimizer's learning rate.
        optimizer: ``"adam"`` to use Adam whatever the model's optimizer is; None keeps its class.
        fresh: newly initialised weights (the layers' own initialisers) instead of the model's.
    """
    try:  # from the layer config only: clone_model would also deserialize an unregistered loss
        copy = type(model).from_config(model.get_config())
    except Exception:
        copy = keras.models.clone_model(model)
    if not fresh:
        copy.set_weights(model.get_weights())
    opt = getattr(model, "optimizer", None)
    if optimizer == "adam" or opt is None:
        opt = keras.optimizers.Adam(learning_rate or 1e-3)
    else:
        config = opt.get_config()
        if learning_rate is not None:
            config["learning_rate"] = learning_rate
        opt = type(opt).from_config(config)
    copy.compile(optimizer=opt, loss=loss_fn(model))
    return copy


@contextmanager
def no_dropout(model):
    """Dropout layers pass everything through inside the block (training-mode calls stay exact)."""
    saved = [
        (layer, layer.rate) for layer in all_layers(model) if "Dropout" in type(layer).__name__
    ]
    for layer, _ in saved:
        layer.rate = 0.0
    try:
        yield model
    finally:
        for layer, rate in saved:
            layer.rate = rate


def probabilities(model, x: np.ndarray, *, training: bool = False) -> np.ndarray:
    """Model output as probabilities ``(B, H, W, K)`` float64 (logit outputs get sigmoid/softmax)."""
    p = keras.ops.convert_to_numpy(model(x, training=training)).astype("float64")
    if output_activation(model) == "linear":
        if p.shape[-1] == 1:
            p = 1 / (1 + np.exp(-np.clip(p, -60, 60)))
        else:
            e = np.exp(p - p.max(-1, keepdims=True))
            p = e / e.sum(-1, keepdims=True)
    return p


def foreground(t: np.ndarray) -> np.ndarray:
    """Foreground of a prediction or target ``(B, H, W, K)``: ``> 0.5`` (K = 1) or ``argmax > 0``."""
    t = np.asarray(t)
    return t[..., 0] > 0.5 if t.shape[-1] == 1 else t.argmax(-1) > 0


def foreground_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of the foregrounds of two predictions/targets, pooled over the batch (1.0 if both empty)."""
    fa, fb = foreground(a), foreground(b)
    total = int(fa.sum()) + int(fb.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(fa, fb).sum()) / total
