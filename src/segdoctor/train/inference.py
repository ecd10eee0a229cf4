"""Predicting full-size masks with a trained model.

Models are loaded by :func:`segdoctor.runfiles.load_model` (re-exported here, with
:func:`~segdoctor.runfiles.resolve_model_path`, for the callers that import them from this module).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from segdoctor.runfiles import load_model, resolve_model_path

__all__ = [
    "DEFAULT_STRIDE",
    "MIRRORS",
    "batch_predictor",
    "load_model",
    "mirrored",
    "model_stride",
    "predict_full",
    "resolve_model_path",
    "to_labels",
]

DEFAULT_STRIDE = 32


def model_stride(model: keras.Model) -> int:
    """The factor the input size must be divisible by: 2 ** (number of 2x poolings/stride-2 convs)."""
    downsamples = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        pool = getattr(layer, "pool_size", None)
        strides = getattr(layer, "strides", None)
        if isinstance(layer, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D) and pool:
            downsamples += int(np.log2(pool[0]))
        elif isinstance(layer, keras.layers.Conv2D) and strides and strides[0] > 1:
            downsamples += int(np.log2(strides[0]))
    return 2**downsamples if downsamples else DEFAULT_STRIDE


MIRRORS = ((), (1,), (2,), (1, 2))
"""Axes of an ``(N, H, W, C)`` batch flipped by each test-time mirror: none, up-down, left-right, both."""


def mirrored(predict_fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Test-time augmentation by mirroring: the mean of ``predict_fn`` over the four flips.

    Each flipped copy is predicted (all four in one call), flipped back and averaged, as nnU-Net
    does at inference. The segmentation of a flipped image is the flipped segmentation, so the
    average removes part of the model's variance at four times the computation.
    """

    def predict(batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        stacked = np.concatenate([np.flip(batch, axes) if axes else batch for axes in MIRRORS])
        out = np.asarray(predict_fn(stacked))
        parts = [out[i * n : (i + 1) * n] for i in range(len(MIRRORS))]
        return np.mean(
            [
                np.flip(part, axes) if axes else part
                for part, axes in zip(parts, MIRRORS, strict=True)
            ],
            axis=0,
        )

    return predict


def batch_predictor(model: keras.Model, tta: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """``(B, H, W, C)`` -> the model's main output ``(B, H, W, K)`` as numpy; mirrored if ``tta``."""

    def predict(batch: np.ndarray) -> np.ndarray:
        out = model.predict(batch.astype("float32"), verbose=0)
        return np.asarray(out[0] if isinstance(out, list | tuple) else out)

    return mirrored(predict) if tta else predict


def predict_full(
    model: keras.Model, image: np.ndarray, stride: int | None = None, tta: bool = False
) -> np.ndarray:
    """Predict one normalized image (H, W, C) at its own size: pad to the stride, predict, crop.

    Padding is reflective so the border context looks like image, not a black frame. ``tta``
    averages the four mirrored predictions (:func:`mirrored`).

    Returns:
        (H, W, K) float32 probabilities (or logits, as the model outputs them).
    """
    stride = stride or model_stride(model)
    h, w = image.shape[:2]
    ph, pw = (-h) % stride, (-w) % stride
    padded = np.pad(
        image,
        ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
        mode="reflect" if min(h, w) > 1 else "edge",
    )
    out = batch_predictor(model, tta)(padded[None])[0]
    return out[ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]


def to_labels(
    probabilities: np.ndarray, threshold: float = 0.5, from_logits: bool = False
) -> np.ndarray:
    """(H, W, K) scores -> (H, W) labels: threshold for one channel, argmax otherwise."""
    if probabilities.shape[-1] == 1:
        cut = 0.0 if from_logits else threshold
        return (probabilities[..., 0] > cut).astype(np.int32)
    return np.argmax(probabilities, axis=-1).astype(np.int32)
