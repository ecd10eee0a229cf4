"""Synthetic nuclei-like data for the classic-recipe examples: bright disks on a noisy background.

Small (32x32) so that every example runs in seconds; images are float32 in [0, 1] with shape
(N, 32, 32, 1); masks are float32 0/1 with shape (N, 32, 32, 1).
"""

from __future__ import annotations

import keras
import numpy as np


def disks(n: int = 48, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images with 1-3 disks each, and their binary masks (the disks are off-centre)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    x = np.empty((n, size, size, 1), "float32")
    y = np.zeros((n, size, size, 1), "float32")
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(5, size // 2 - 2, 2)  # upper-left quadrant: flips move them away
            r = rng.integers(3, 6)
            y[i, ..., 0] = np.maximum(y[i, ..., 0], (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
        x[i, ..., 0] = 0.2 + 0.6 * y[i, ..., 0] + rng.normal(0, 0.05, (size, size))
    return np.clip(x, 0, 1), y


def encoder_decoder(inputs, filters: int = 8):
    """A one-level U-Net body: features at full and half resolution, concatenated.

    Its receptive field (about 14 px) spans the disks (6-10 px across); a lone 3 x 3 convolution
    (3 px) would draw ``receptive-field-small`` before the fault each example is about.
    """
    layers = keras.layers
    c1 = layers.Conv2D(filters, 3, padding="same", activation="relu")(inputs)
    c2 = layers.Conv2D(2 * filters, 3, padding="same", activation="relu")(layers.MaxPooling2D()(c1))
    c2 = layers.Conv2D(2 * filters, 3, padding="same", activation="relu")(c2)
    return layers.Concatenate()([layers.UpSampling2D()(c2), c1])
