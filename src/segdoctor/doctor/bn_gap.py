"""The BatchNorm probe: does the same batch give the same prediction in training and inference?

In training mode BatchNormalization normalizes with the statistics of the current batch; in
inference mode (validation, ``predict``) with its moving averages. When the two disagree, training
Dice looks fine while validation Dice stays low, on the very same images. Causes: tiny batches
(per-batch statistics of 1-2 heterogeneous images), Keras' default ``momentum=0.99`` on a short run
(the moving averages still remember the first weights), or inputs whose statistics shift.

The probe feeds the probe batch in chunks of the training batch size, in training mode (dropout
off, the moving statistics restored afterwards) and in inference mode, and compares the predicted
foregrounds by Dice. An untrained model (moving statistics at their initial 0/1) is skipped: its
inference-mode statistics have not been estimated yet.

Measured (nuclei sample, 8 crops of 64x64, U-Net depth 2 with 8 filters, 40 steps at 1e-2 then 30
at 1e-4): momentum 0.9 and batch 8: agreement 0.995; momentum 0.99: 0.28; batch 1: 0.11.

Disagreement alone does not say which mode is wrong. Given the batch's masks, the probe also
scores both modes against them and stays silent when inference mode is not worse by
:data:`WORSE_BY`: in the blind test of 2026-12-07 a healthy user U-Net (batch norm after ReLU,
momentum 0.9, batch 16, validation Dice 0.81) agreed with itself at 0.64 on 8 probe crops, because
the statistics of 8 crops are not those of the training set; its inference mode was the better one.
"""

from __future__ import annotations

import keras
import numpy as np

from segdoctor.doctor._probe_model import foreground, foreground_dice, no_dropout, probabilities
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.model_checks import all_layers

AGREEMENT_BELOW = 0.7
"""``bn-train-infer-gap`` when training- and inference-mode foregrounds agree less than this."""
MIN_FOREGROUND = 0.005
"""No verdict when both modes predict less than this fraction of foreground pixels."""
WORSE_BY = 0.05
"""With masks: ``bn-train-infer-gap`` only when inference mode's Dice against them is this much
below training mode's (the moving statistics cost Dice; otherwise the batch's own are the odd
ones)."""


def batchnorm_layers(model) -> list:
    """The BatchNormalization layers of a model, nested models included."""
    return [
        layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _untrained(layers) -> bool:
    for layer in layers:
        mean = np.asarray(layer.moving_mean.numpy())
        var = np.asarray(layer.moving_variance.numpy())
        if np.any(mean != 0) or np.any(var != 1):
            return False
    return True


def train_infer_agreement(
    model, x: np.ndarray, batch_size: int, y: np.ndarray | None = None
) -> dict:
    """Training- vs inference-mode predictions of ``x`` fed in chunks of ``batch_size``.

    The model's weights, moving statistics included, are the same afterwards.

    Returns:
        ``{"agreement", "foreground_training_mode", "foreground_inference_mode"}``, and with
        targets ``y`` the foreground Dice of each mode against them (``dice_training_mode``,
        ``dice_inference_mode``).
    """
    saved = model.get_weights()
    try:
        with no_dropout(model):
            p_train = np.concatenate(
                [
                    probabilities(model, x[i : i + batch_size], training=True)
                    for i in range(0, len(x), batch_size)
                ]
            )  # (B, H, W, K)
    finally:
        model.set_weights(saved)  # training-mode calls update the moving statistics
    p_infer = probabilities(model, x, training=False)  # (B, H, W, K)
    result = {
        "agreement": foreground_dice(p_train, p_infer),
        "foreground_training_mode": float(foreground(p_train).mean()),
        "foreground_inference_mode": float(foreground(p_infer).mean()),
    }
    if y is not None:
        result["dice_training_mode"] = foreground_dice(p_train, y)
        result["dice_inference_mode"] = foreground_dice(p_infer, y)
    return result


def probe_bn_gap(
    model, x: np.ndarray, y: np.ndarray | None = None, *, batch_size: int | None = None
) -> list[Finding]:
    """``bn-train-infer-gap`` on a trained model with BatchNormalization.

    Args:
        model: the user's model (unchanged afterwards).
        x: ``(B, H, W, C)`` probe inputs.
        y: their targets (one channel of 0/1, class indices or one-hot); when given, the finding
            also needs inference mode to score :data:`WORSE_BY` below training mode on them.
        batch_size: the training batch size (default: the whole probe batch).
    """
    layers = batchnorm_layers(model)
    if not layers or _untrained(layers):
        return []
    b = max(1, min(batch_size or len(x), len(x)))
    r = train_infer_agreement(model, x, b, y)
    fg = max(r["foreground_training_mode"], r["foreground_inference_mode"])
    if fg < MIN_FOREGROUND or r["agreement"] >= AGREEMENT_BELOW:
        return []
    if y is not None and r["dice_inference_mode"] > r["dice_training_mode"] - WORSE_BY:
        return []  # the moving statistics do not cost Dice on these samples
    momentum = max(float(layer.momentum) for layer in layers)
    advice = ["small-batch"] if b < 4 else []
    slow = {}
    if momentum > 0.95:
        advice.append("slow-momentum")
        slow["momentum_steps"] = round(1 / (1 - momentum))  # steps the moving average spans
    return [
        make_finding(
            "bn-train-infer-gap",
            {
                **r,
                "batch_size": b,
                "batchnorm_layers": len(layers),
                "momentum": momentum,
                "threshold": AGREEMENT_BELOW,
            },
            variant="-".join(advice) or None,
            **slow,
        )
    ]
