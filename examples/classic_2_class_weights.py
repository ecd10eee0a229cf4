"""Classic recipe 2: a class-weighted Dice for imbalance (background vs a rare foreground).

The classic version multiplies each class channel by its weight and then computes *one* Dice over
all pixels and classes. Background pixels outnumber the objects, so the pooled ratio is dominated by
the background and the weights do not weight classes: missing every object costs almost nothing.
The corrected version computes the Dice per image and per class, then takes the weighted mean.

Run: ``python examples/classic_2_class_weights.py [--corrected]``
"""

from __future__ import annotations

import sys

import keras
import numpy as np
from keras import ops

from segdoctor.doctor import DoctorCallback

try:
    from examples._synthetic import disks, encoder_decoder
except ImportError:
    from _synthetic import disks, encoder_decoder

CLASS_WEIGHTS = [0.1, 0.9]  # background, foreground


def weighted_dice_loss_classic(y_true, y_pred, smooth=1.0):
    """Weights applied inside one pooled Dice: the classes are summed together."""
    w = ops.convert_to_tensor(CLASS_WEIGHTS, "float32")  # (C,)
    intersection = ops.sum(w * y_true * y_pred)
    total = ops.sum(w * (y_true + y_pred))
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


def weighted_dice_loss(y_true, y_pred, smooth=1e-5):
    """Dice per image and class (B, C), then the weighted mean over classes."""
    w = ops.convert_to_tensor(CLASS_WEIGHTS, "float32")  # (C,)
    intersection = ops.sum(y_true * y_pred, axis=(1, 2))  # (B, C)
    total = ops.sum(y_true + y_pred, axis=(1, 2))  # (B, C)
    dice = (2.0 * intersection + smooth) / (total + smooth)  # (B, C)
    return 1.0 - ops.sum(dice * w, axis=-1) / ops.sum(w)  # (B,)


def build(corrected: bool):
    inputs = keras.Input((32, 32, 1))
    h = encoder_decoder(inputs)
    outputs = keras.layers.Conv2D(2, 1, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    loss = weighted_dice_loss if corrected else weighted_dice_loss_classic
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    x, y = disks(32)
    y2 = np.concatenate([1 - y, y], axis=-1)  # one-hot (N, 32, 32, 2)
    return model, [], (x, y2)


def main(corrected: bool = False, epochs: int = 2, report: str | None = None):
    model, callbacks, (x, y) = build(corrected)
    doctor = DoctorCallback(report=report, verbose=False)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[doctor, *callbacks])
    return doctor


if __name__ == "__main__":
    print(main("--corrected" in sys.argv).report().to_terminal())
