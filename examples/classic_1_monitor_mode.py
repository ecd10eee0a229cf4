"""Classic recipe 1: a hand-written Dice loss, with ReduceLROnPlateau watching ``val_dice_coef``.

The classic version, as it is commonly written for Keras 2, left ``mode`` at its default: Keras 2
then chose "min" for any metric whose name lacks "acc", so the learning rate was cut while the Dice
was *rising*. Keras 3 raises for ``mode="auto"`` on an unknown metric; the port keeps the bug by
writing the mode Keras 2 chose. The corrected version passes ``mode="max"``.

Run: ``python examples/classic_1_monitor_mode.py [--corrected]``
"""

from __future__ import annotations

import sys

import keras
from keras import ops

from segdoctor.doctor import DoctorCallback

try:
    from examples._synthetic import disks, encoder_decoder
except ImportError:  # run as a script from examples/
    from _synthetic import disks, encoder_decoder


def dice_coef(y_true, y_pred, smooth=1.0):
    """The classic per-image-less Dice *score* (goes up); used as a metric."""
    intersection = ops.sum(y_true * y_pred, axis=(1, 2, 3))  # (B,)
    total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))  # (B,)
    return ops.mean((2.0 * intersection + smooth) / (total + smooth))


def dice_loss(y_true, y_pred):
    """Per-image soft Dice loss with smoothing 1 (this part of the recipe is fine)."""
    intersection = ops.sum(y_true * y_pred, axis=(1, 2, 3))  # (B,)
    total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))  # (B,)
    return 1.0 - (2.0 * intersection + 1.0) / (total + 1.0)


def build_model() -> keras.Model:
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(encoder_decoder(inputs))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(h)
    return keras.Model(inputs, outputs)


def build(corrected: bool):
    """Model, callbacks and data of the recipe."""
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dice_loss, metrics=[dice_coef])
    mode = "max" if corrected else "min"  # Keras 2's "auto" meant "min" here
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_dice_coef", mode=mode, factor=0.5, patience=1
        )
    ]
    x, y = disks(48)
    return model, callbacks, (x, y)


def main(corrected: bool = False, epochs: int = 4, report: str | None = None):
    model, callbacks, (x, y) = build(corrected)
    doctor = DoctorCallback(report=report, verbose=False)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=epochs,
        validation_split=0.25,
        verbose=0,
        callbacks=[doctor, *callbacks],
    )
    return doctor


if __name__ == "__main__":
    print(main("--corrected" in sys.argv).report().to_terminal())
