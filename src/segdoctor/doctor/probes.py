"""Probes: seconds of real computation on a copy of the user's model and a few of their samples.

Every probe runs on a clone (the user's model is never trained or changed) and on one small batch
``x (B, h, w, C) float32``, ``y`` in the format the compiled loss expects.

=================== ===================================================================
probe               measured
=================== ===================================================================
init-loss-anomaly   loss at the current weights vs the loss of a constant 0.5 prediction
nan-loss            a non-finite loss during ``OVERFIT_STEPS`` steps on that batch alone
lr-too-high/-low    LR range test: ``LR_STEPS`` steps with the LR growing 1e-6 -> 10
dead-relu           fraction of ReLU channels that are zero on every pixel of the batch
vanishing-gradients per-layer ``|grad| / |w|``, first vs last kernel
=================== ===================================================================

Not implemented yet (in the catalog with ``implemented=False``): cannot-overfit, exploding-gradients,
bn-train-infer-gap, batch-size-noisy (gradient noise scale, McCandlish et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

OVERFIT_STEPS = 20
OVERFIT_LR = 1e-2
"""The overfit probe uses the model's optimizer class at this LR (the LR itself is probed apart)."""
LR_STEPS = 30
LR_LOW_FACTOR = 1000.0
"""``lr-too-low`` when the configured LR is this many times below the steepest-descent LR."""
LR_LOW_FACTOR = 1000.0
"""``lr-too-low`` when the configured LR is this many times below the steepest-descent LR."""


def _loss_fn(model) -> Callable:
    import keras

    loss = getattr(model, "loss", None)
    if loss is None:
        return keras.losses.BinaryCrossentropy()
    return keras.losses.get(loss) if isinstance(loss, str) else loss


def _clone(model, learning_rate: float | None = None):
    """A copy with the same weights, compiled with the same loss and a fresh optimizer."""
    import keras

    try:  # from the layer config only: clone_model would also deserialize an unregistered loss
        clone = type(model).from_config(model.get_config())
    except Exception:
        clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        config = opt.get_config()
        if learning_rate is not None:
            config["learning_rate"] = learning_rate
        opt = type(opt).from_config(config)
    else:
        opt = keras.optimizers.Adam(learning_rate or 1e-3)
    clone.compile(optimizer=opt, loss=_loss_fn(model))
    return clone


def configured_lr(model) -> float | None:
    """The optimizer's learning rate when it is a number (schedules: None)."""
    import keras

    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    lr = opt.get_config().get("learning_rate")
    if isinstance(lr, (int, float)):
        return float(lr)
    try:
        return float(keras.ops.convert_to_numpy(opt.learning_rate))
    except Exception:
        return None


def _probabilities(model, x) -> np.ndarray:
    import keras

    from segdoctor.doctor.model_checks import output_activation

    p = keras.ops.convert_to_numpy(model(x, training=False)).astype("float64")
    if output_activation(model) == "linear":
        p = (
            1 / (1 + np.exp(-p))
            if p.shape[-1] == 1
            else np.exp(p) / np.exp(p).sum(-1, keepdims=True)
        )
    return p


def _train(model, x, y, steps: int, lrs: list[float] | None = None) -> list[float]:
    losses = []
    for step in range(steps):
        if lrs is not None:
            model.optimizer.learning_rate.assign(lrs[step])
        logs = model.train_on_batch(x, y, return_dict=True)
        losses.append(float(logs["loss"]))
        if not math.isfinite(losses[-1]):
            break
    return losses


def probe_init_loss(model, x, y) -> list[Finding]:
    """``init-loss-anomaly``: loss at the current weights far above a constant 0.5 prediction."""
    import keras

    loss = _loss_fn(model)
    pred = model(x, training=False)
    value = float(keras.ops.convert_to_numpy(keras.ops.mean(loss(y, pred))))
    from segdoctor.doctor.model_checks import output_activation

    half = np.full(
        tuple(pred.shape), 0.5 if pred.shape[-1] == 1 else 1.0 / pred.shape[-1], "float32"
    )
    if output_activation(model) == "linear":
        half = np.zeros_like(half)  # logits of a uniform prediction
    baseline = float(keras.ops.convert_to_numpy(keras.ops.mean(loss(y, half))))
    p = _probabilities(model, x)
    saturated = (
        float(np.mean(np.abs(p - 0.5) > 0.45))
        if p.shape[-1] == 1
        else float(np.mean(p.max(-1) > 0.95))
    )
    if math.isfinite(value) and value > 3 * max(baseline, 1e-6) and saturated > 0.5:
        return [
            make_finding(
                "init-loss-anomaly",
                {
                    "loss_at_init": value,
                    "loss_of_uniform_prediction": baseline,
                    "saturated_pixels": saturated,
                },
                "The untrained model is confidently wrong: its outputs are saturated, so the first "
                "updates fight large gradients or none at all. Use default initialisers "
                "('he_normal' kernels, zero biases) and, for rare foreground, set the last bias to "
                "log(p/(1-p)) with p the foreground fraction.",
            )
        ]
    return []


def probe_overfit(model, x, y) -> tuple[list[Finding], list[float]]:
    """``nan-loss`` from a short run on one batch.

    ``cannot-overfit`` is not emitted yet: on a tiny model trained with BCE on 10% foreground, 60
    steps do not separate an aligned batch from a shuffled one reliably (the Dice of both is still
    near 0); see the catalog's ``implemented`` flag.
    """
    clone = _clone(model, learning_rate=OVERFIT_LR)
    losses = _train(clone, x, y, OVERFIT_STEPS)
    if losses and not math.isfinite(losses[-1]):
        return [
            make_finding(
                "nan-loss",
                {"step": len(losses), "losses_before": [v for v in losses[-4:-1]]},
                "The loss became NaN/inf: a division by zero (Dice without smoothing on empty "
                "masks), log(0) (cross-entropy on probabilities of exactly 0/1: use "
                "from_logits=True), or a learning rate that diverges. Add smooth=1e-5 to the Dice, "
                "and lower the LR.",
            )
        ], losses
    return [], losses


def lr_range_test(model, x, y, lo: float = 1e-6, hi: float = 10.0, steps: int = LR_STEPS) -> dict:
    """Train a clone with the LR growing exponentially from ``lo`` to ``hi``; find where it diverges.

    Returns:
        ``{"lrs", "losses", "steepest_lr", "diverge_lr"}``: ``steepest_lr`` where the smoothed loss
        falls fastest, ``diverge_lr`` the first LR after the lowest loss whose smoothed loss is back
        above the starting loss (or 4x the lowest, or not finite), else None.
    """
    clone = _clone(model, learning_rate=lo)
    lrs = np.geomspace(lo, hi, steps).tolist()
    losses = _train(clone, x, y, steps, lrs)
    smooth, avg = [], None
    for v in losses:
        avg = v if avg is None else 0.7 * avg + 0.3 * v
        smooth.append(avg)
    finite = [(v, i) for i, v in enumerate(smooth) if math.isfinite(v)]
    best_v, best_i = min(finite) if finite else (math.nan, 0)
    diverge = None
    for i, v in enumerate(smooth):
        if i > best_i and (not math.isfinite(v) or v > min(4 * best_v, smooth[0]) + 1e-8):
            diverge = lrs[i]
            break
    slopes = [smooth[i + 1] - smooth[i] for i in range(min(best_i, len(smooth) - 1))]
    steepest = lrs[int(np.argmin(slopes))] if slopes else lrs[best_i]
    return {
        "lrs": lrs[: len(losses)],
        "losses": losses,
        "steepest_lr": steepest,
        "diverge_lr": diverge,
    }


def probe_lr(model, x, y) -> list[Finding]:
    """``lr-too-high`` / ``lr-too-low`` against the configured (numeric) learning rate."""
    lr = configured_lr(model)
    if lr is None:
        return []
    r = lr_range_test(model, x, y)
    ev = {"configured_lr": lr, "steepest_lr": r["steepest_lr"], "diverge_lr": r["diverge_lr"]}
    if r["diverge_lr"] is not None and lr >= r["diverge_lr"]:
        return [
            make_finding(
                "lr-too-high",
                ev,
                f"Use a learning rate near {r['steepest_lr'] / 10:.1e} (a tenth of the LR where the loss falls fastest).",
            )
        ]
    if lr < r["steepest_lr"] / LR_LOW_FACTOR:
        return [
            make_finding(
                "lr-too-low",
                ev,
                f"Raise the learning rate towards {r['steepest_lr'] / 10:.1e}; at {lr:.1e} training barely moves.",
                confidence=0.7,
            )
        ]
    return []


def probe_dead_relu(model, x) -> list[Finding]:
    """``dead-relu``: ReLU channels that output zero on every pixel of every sample."""
    import keras

    from segdoctor.doctor.model_checks import _layers

    outs = []
    for layer in _layers(model):
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", type(layer).__name__.lower())
        if name in ("relu", "ReLU") or type(layer).__name__ == "ReLU":
            outs.append(layer)
    if not outs or not getattr(model, "inputs", None):
        return []
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        tap = keras.Model(inputs, [layer.output for layer in outs])
    except Exception:  # subclassed models have no symbolic graph
        return []
    values = tap(x, training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    dead = total = 0
    worst = []
    for layer, v in zip(outs, values, strict=True):
        v = keras.ops.convert_to_numpy(v)
        alive = np.any(v.reshape(-1, v.shape[-1]) > 0, axis=0)
        dead += int((~alive).sum())
        total += alive.size
        worst.append((layer.name, float(1 - alive.mean())))
    frac = dead / max(total, 1)
    if frac > 0.4:
        return [
            make_finding(
                "dead-relu",
                {
                    "dead_channel_fraction": frac,
                    "channels": total,
                    "worst_layers": [
                        f"{n}: {d:.0%}" for n, d in sorted(worst, key=lambda t: -t[1])[:5]
                    ],
                },
                "Many ReLU channels never activate, so they get no gradient. Lower the learning rate, "
                "use he_normal kernels with zero biases, add BatchNormalization before the ReLU, or "
                "use LeakyReLU(0.1).",
            )
        ]
    return []


def probe_gradients(model, x, y) -> list[Finding]:
    """``vanishing-gradients`` from one backward pass."""
    from segdoctor.doctor._grad import model_value_and_grads

    _, grads = model_value_and_grads(model, _loss_fn(model), x, y)
    kernels = [
        (v.path, g, np.asarray(v.numpy() if hasattr(v, "numpy") else v))
        for v, g in zip(model.trainable_variables, grads, strict=True)
        if len(v.shape) >= 2
    ]
    if not kernels:
        return []
    rel = [float(np.linalg.norm(g)) / (float(np.linalg.norm(w)) + 1e-12) for _, g, w in kernels]
    first, last = rel[0], rel[-1]
    if last > 0 and first < 1e-4 * last:
        return [
            make_finding(
                "vanishing-gradients",
                {
                    "first_layer_rel_grad": first,
                    "last_layer_rel_grad": last,
                    "ratio": first / last,
                    "layers": len(rel),
                },
                "The first layers receive almost no gradient: use ReLU (not sigmoid/tanh) inside the "
                "network, BatchNormalization, skip connections (a U-Net), and he_normal init.",
            )
        ]
    return []


def run_probes(model, x, y, *, batch_size: int | None = None) -> list[Finding]:
    """Run every probe on one batch; see the module docstring.

    Example:
        >>> findings = run_probes(model, x, y)  # doctest: +SKIP
    """
    x, y = np.asarray(x, "float32"), np.asarray(y)
    found = probe_init_loss(model, x, y)
    overfit, _ = probe_overfit(model, x, y)
    found += overfit
    if not any(f.id == "nan-loss" for f in overfit):
        found += probe_lr(model, x, y)
    found += probe_dead_relu(model, x)
    found += probe_gradients(model, x, y)
    return found


def load_probe_batch(
    data: str | Path, model, *, size: int = 64, n: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``n`` pairs, normalize masks as the loader does, resize to ``size`` (or the model's input).

    Returns:
        ``x`` (n, s, s, C) float32 in [0, 1] and ``y`` (n, s, s, 1) float32 class indices (binary
        models get 0/1; softmax models get one-hot (n, s, s, K) when the loss is not sparse).
    """
    from PIL import Image

    from segdoctor.data.discover import discover_pairs
    from segdoctor.data.io import read_image, read_mask
    from segdoctor.data.masks import inspect_masks, normalize_mask
    from segdoctor.doctor.model_checks import output_channels

    index = discover_pairs(data, on_unpaired="skip")
    pairs = index.pairs[:: max(1, len(index.pairs) // n)][:n]
    masks = [read_mask(p.mask) for p in pairs]
    policy = inspect_masks(masks).policy(round_fractional=True)
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else (None, None, None, 1)
    h = shape[1] or size
    w = shape[2] or size
    c = shape[3] or 1
    xs, ys = [], []
    for pair, mask in zip(pairs, masks, strict=True):
        img = read_image(pair.image).astype("float32")  # (H, W, C)
        img = img / (65535.0 if img.max() > 255 else 255.0 if img.max() > 1 else 1.0)
        img = img[..., :c] if img.shape[-1] >= c else np.repeat(img[..., :1], c, axis=-1)
        chans = [
            np.asarray(Image.fromarray(img[..., k]).resize((w, h), Image.BILINEAR))
            for k in range(c)
        ]
        xs.append(np.stack(chans, -1))
        m = normalize_mask(mask, policy).astype("int32")
        ys.append(np.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST)))
    x = np.stack(xs).astype("float32")
    y = np.stack(ys)[..., None].astype("float32")  # (n, h, w, 1)
    k = output_channels(model)
    if k > 1 and "sparse" not in type(_loss_fn(model)).__name__.lower():
        y = np.eye(k, dtype="float32")[y[..., 0].astype(int).clip(0, k - 1)]  # (n, h, w, K)
    return x, y
