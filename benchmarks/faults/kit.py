"""What a user's short Keras script is made of: a small U-Net, a Dice metric, a fit with the doctor.

Written in plain Keras, as a user would, so that the doctor meets the model the way it meets theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from segdoctor.doctor import DoctorCallback


def small_unet(
    shape: tuple[int, int, int],
    *,
    out_channels: int = 1,
    activation: str | None = "sigmoid",
    batchnorm: bool = True,
    filters: int = 8,
    rescale: float | None = None,
) -> keras.Model:
    """A two-level U-Net: ``(B, H, W, C) -> (B, H, W, out_channels)``; H, W divisible by 2.

    ``rescale``: a ``Rescaling`` layer first (normalization inside the model), e.g. ``1 / 65535``.
    """

    def block(x, f):
        for _ in range(2):
            x = layers.Conv2D(f, 3, padding="same", use_bias=not batchnorm)(x)
            if batchnorm:
                x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return x

    inputs = keras.Input(shape)
    scaled = inputs if rescale is None else layers.Rescaling(rescale)(inputs)
    skip = block(scaled, filters)  # (B, H, W, f)
    deep = block(layers.MaxPooling2D()(skip), 2 * filters)  # (B, H/2, W/2, 2f)
    up = layers.UpSampling2D()(deep)  # (B, H, W, 2f)
    x = block(layers.Concatenate()([up, skip]), filters)
    outputs = layers.Conv2D(out_channels, 1, activation=activation)(x)
    return keras.Model(inputs, outputs)


def dice_coef(y_true, y_pred, smooth: float = 1.0):
    """The Dice coefficient of the classic Keras recipes (pooled over the batch)."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    inter = ops.sum(y_true * y_pred)
    return (2.0 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)


def dice_loss(y_true, y_pred):
    """``1 - dice_coef``: the Dice loss of the classic Keras recipes."""
    return 1.0 - dice_coef(y_true, y_pred)


def fit_with_doctor(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    epochs: int,
    batch_size: int | None = 4,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    doctor_validation: tuple[np.ndarray, np.ndarray] | None = None,
):
    """``model.fit`` with ``DoctorCallback`` attached; returns the doctor's report."""
    doctor = DoctorCallback(verbose=False, validation_data=doctor_validation)
    kwargs: dict[str, Any] = {"epochs": epochs, "verbose": 0}
    if y is not None:
        kwargs["batch_size"] = batch_size
    if validation_data is not None:
        kwargs["validation_data"] = validation_data
    model.fit(x, y, callbacks=[*callbacks, doctor], **kwargs)
    return doctor.report()
