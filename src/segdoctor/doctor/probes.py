"""Probes: seconds of real computation on a copy of the user's model and a few of their samples.

Every probe runs on a clone (the user's model is never trained or changed) and on one small batch
``x (B, h, w, C) float32``, ``y`` in the format the compiled loss expects. A fully convolutional
model (no fixed input size) is probed on crops of :data:`PROBE_CROP` pixels around the foreground,
at the images' own scale, so that probes cost the same at any image size.

=================== ===================================================================
probe               measured
=================== ===================================================================
init-loss-anomaly   loss at the current weights vs the loss of a constant 0.5 prediction
nan-loss            a non-finite loss while fitting that batch alone (:mod:`.overfit`)
cannot-overfit      foreground Dice after fitting that batch, with a wrong-pairing control
lr-too-high/-low    LR range test: ``LR_STEPS`` steps with the LR growing 1e-6 -> 10
dead-relu           fraction of ReLU channels that are zero on every pixel of the batch
vanishing-gradients per-layer ``|grad| / |w|``, first vs last kernel
exploding-gradients a non-finite gradient, or ``|grad| / |w|`` above ``EXPLODE_REL`` (SGD; 10x more
                    for adaptive optimizers)
bn-train-infer-gap  training- vs inference-mode predictions of the batch (:mod:`.bn_gap`)

batch-size-noisy    gradient noise scale ``B_simple = tr(Sigma) / |G|^2`` vs the batch size
=================== ===================================================================

The gradient probes and the noise scale are in :mod:`.gradient_probes`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from segdoctor.data.discover import discover_pairs
from segdoctor.data.io import read_image, read_mask
from segdoctor.data.masks import inspect_masks, normalize_mask
from segdoctor.data.normalize import to_channels
from segdoctor.doctor._probe_model import clone as _clone
from segdoctor.doctor._probe_model import foreground, loss_ignore_index, probabilities
from segdoctor.doctor._probe_model import loss_fn as _loss_fn
from segdoctor.doctor.bn_gap import probe_bn_gap
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.gradient_probes import (
    EXPLODE_REL,
    EXPLODE_REL_ADAPTIVE,
    explode_threshold,
    gradient_findings,
    gradient_noise_scale,
    gradient_stats,
    probe_gradients,
    probe_noise_scale,
)
from segdoctor.doctor.model_checks import (
    all_layers,
    input_channels,
    output_activation,
    output_channels,
)
from segdoctor.doctor.model_data import (
    VOID_LABEL,
    compare_input_channels,
    compare_output_classes,
    targets_from_batch,
    uses_void_label,
)
from segdoctor.doctor.overfit import OVERFIT_STEPS, probe_overfit
from segdoctor.lr_range import BETA_ONE_BATCH, UNSTABLE_RISE, initial_lr
from segdoctor.lr_range import lr_range_test as shared_lr_range_test

LR_STEPS = 30
LR_LOW_FACTOR = 500.0
"""``lr-too-low`` when the configured LR is this many times below the steepest-descent LR.

The steepest descent is looked for in the stable part of the sweep
(:data:`segdoctor.lr_range.UNSTABLE_RISE`), where it lies at 0.02 for the probe tests' models on
all three backends (Adam): 500x below is 4.4e-5, so the learning rates people use with Adam (1e-4
to 1e-3) stay silent and 1e-5 or less is reported. (The factor was 2000 while the steepest descent
was taken over the whole sweep, 1.1-3.3 on those models.)
"""
LR_TOLERANCE = 1e-6
"""Relative tolerance of "the configured LR reached the LR that diverged" (the sweep's last LR is
``hi`` up to rounding: 10.000000000000009 on JAX for 10)."""
PROBE_CROP = 64
"""Side of the crops that fully convolutional models are probed on."""
PROBE_BUDGET_S = 90.0
"""The training probes stop (and give no verdict) past this many seconds."""

__all__ = [  # the gradient probes are re-exported from .gradient_probes
    "EXPLODE_REL",
    "EXPLODE_REL_ADAPTIVE",
    "OVERFIT_STEPS",
    "configured_lr",
    "crop_batch",
    "explode_threshold",
    "gradient_findings",
    "gradient_noise_scale",
    "gradient_stats",
    "load_probe_batch",
    "lr_range_test",
    "probe_bn_gap",
    "probe_dead_relu",
    "probe_gradients",
    "probe_init_loss",
    "probe_lr",
    "probe_noise_scale",
    "probe_overfit",
    "run_probes",
]


def configured_lr(model) -> float | None:
    """The learning rate the model's optimizer starts training with (a schedule's value at step
    0, which the probes' fresh copies use; :func:`segdoctor.lr_range.initial_lr`; None: none).

    Example:
        >>> configured_lr(object()) is None
        True
    """
    return initial_lr(getattr(model, "optimizer", None))


def probe_init_loss(model, x, y) -> list[Finding]:
    """``init-loss-anomaly``: loss at the current weights far above a constant 0.5 prediction."""
    loss = _loss_fn(model)
    pred = model(x, training=False)
    value = float(keras.ops.convert_to_numpy(keras.ops.mean(loss(y, pred))))
    half = np.full(
        tuple(pred.shape), 0.5 if pred.shape[-1] == 1 else 1.0 / pred.shape[-1], "float32"
    )
    if output_activation(model) == "linear":
        half = np.zeros_like(half)  # logits of a uniform prediction
    baseline = float(keras.ops.convert_to_numpy(keras.ops.mean(loss(y, half))))
    p = probabilities(model, x)
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
            )
        ]
    return []


def lr_range_test(
    model, x, y, lo: float = 1e-6, hi: float = 10.0, steps: int = LR_STEPS, *, fresh: bool = False
) -> dict:
    """Train a clone on the batch ``x, y`` with the LR growing exponentially from ``lo`` to ``hi``.

    The range test, its smoothing and its divergence rule are :mod:`segdoctor.lr_range`'s, the
    same as the training recipe's (the smoothing with the memory for one repeated batch).

    Returns:
        ``{"lrs", "losses", "steepest_lr", "diverge_lr"}``: ``steepest_lr`` where the smoothed loss
        falls fastest in the stable part of the sweep (``UNSTABLE_RISE``; the LR of the
        lowest loss when it falls from the start), ``diverge_lr`` the
        LR at which the test diverged (:func:`segdoctor.lr_range.diverges`), else None.

    Example:
        >>> lr_range_test(model, x, y)["diverge_lr"]  # doctest: +SKIP
        0.87
    """
    clone = _clone(model, learning_rate=lo, fresh=fresh)
    result = shared_lr_range_test(
        clone, [(x, y)], lo, hi, steps, beta=BETA_ONE_BATCH, stable_rise=UNSTABLE_RISE
    )
    return {
        "lrs": result.lrs,
        "losses": result.losses,
        "steepest_lr": result.steepest_lr or result.min_loss_lr or lo,
        "diverge_lr": result.diverge_lr,
    }


def probe_lr(model, x, y) -> list[Finding]:
    """``lr-too-high`` / ``lr-too-low`` against the configured (numeric) learning rate."""
    lr = configured_lr(model)
    if lr is None:
        return []
    r = lr_range_test(model, x, y)
    ev = {"configured_lr": lr, "steepest_lr": r["steepest_lr"], "diverge_lr": r["diverge_lr"]}
    if r["diverge_lr"] is not None and lr >= r["diverge_lr"] * (1 - LR_TOLERANCE):
        # A trained model sits in a minimum that any larger step leaves: its sweep diverges
        # sooner than training from initialisation does (second blind test, 2026-12-07: healthy
        # CamVid U-Nets trained at Adam 3e-3, validation Dice 0.55, diverged at 2.4e-3). The
        # rate is too high only if a freshly initialised copy diverges below it too.
        fresh = lr_range_test(model, x, y, fresh=True)
        if fresh["diverge_lr"] is None or lr < fresh["diverge_lr"] * (1 - LR_TOLERANCE):
            return []
        ev["diverge_lr_fresh_weights"] = fresh["diverge_lr"]
        return [make_finding("lr-too-high", ev, suggested_lr=r["steepest_lr"] / 10)]
    if lr < r["steepest_lr"] / LR_LOW_FACTOR:
        return [
            make_finding(
                "lr-too-low",
                ev,
                suggested_lr=r["steepest_lr"] / 10,
                confidence=0.7,
            )
        ]
    return []


def probe_dead_relu(model, x) -> list[Finding]:
    """``dead-relu``: ReLU channels that output zero on every pixel of every sample."""
    outs = []
    for layer in all_layers(model):
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
            )
        ]
    return []


def crop_batch(x: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``(B, H, W, C)`` inputs and their targets to ``size`` squares centred on the foreground.

    Each crop is centred on the centroid of its sample's foreground (the image centre when there
    is none), then moved inside the image. Images not larger than ``size`` are returned unchanged.

    Example:
        >>> x = np.zeros((2, 128, 128, 1), "float32"); y = np.zeros((2, 128, 128, 1), "float32")
        >>> [a.shape for a in crop_batch(x, y, 64)]
        [(2, 64, 64, 1), (2, 64, 64, 1)]
    """
    h, w = x.shape[1:3]
    if h <= size and w <= size:
        return x, y
    ch, cw = min(size, h), min(size, w)
    fg = foreground(y)  # (B, H, W)
    xs, ys = [], []
    for i in range(len(x)):
        rows, cols = np.nonzero(fg[i])
        cy, cx = (rows.mean(), cols.mean()) if len(rows) else (h / 2, w / 2)
        top = int(np.clip(round(cy - ch / 2), 0, h - ch))
        left = int(np.clip(round(cx - cw / 2), 0, w - cw))
        xs.append(x[i, top : top + ch, left : left + cw])
        ys.append(y[i, top : top + ch, left : left + cw])
    return np.stack(xs), np.stack(ys)


def _fully_convolutional(model) -> bool:
    inputs = getattr(model, "inputs", None)
    return bool(inputs) and len(inputs) == 1 and tuple(inputs[0].shape[1:3]) == (None, None)


def _model_vs_probe_batch(model, x, y) -> list[Finding]:
    """The model's input channels and output classes against the probe batch (model_data)."""
    where = "probe batch"
    found = compare_input_channels(
        input_channels(model), {int(x.shape[-1]): len(x)}, where=where, fed_as_is=True
    )
    ignore = loss_ignore_index(model)
    if ignore is None and uses_void_label(
        np.unique(y)
    ):  # 255 next to a few classes: void, not class 255
        ignore = VOID_LABEL
    return found + compare_output_classes(
        output_channels(model),
        targets_from_batch(y, source=where),
        activation=output_activation(model),
        final=False,
        ignore_index=ignore,
    )


def run_probes(
    model,
    x,
    y,
    *,
    batch_size: int | None = None,
    budget_s: float = PROBE_BUDGET_S,
    skipped: list[str] | None = None,
) -> list[Finding]:
    """Run every probe on one batch; see the module docstring.

    Args:
        model: the user's compiled model (never changed).
        x: ``(B, H, W, C)`` float32 inputs.
        y: targets as the loss expects them.
        batch_size: the training batch size (``bn-train-infer-gap``, ``batch-size-noisy``).
        budget_s: seconds the training probes (overfit, LR range test) may take together; a probe
            cut short gives no verdict and is named in ``skipped``.
        skipped: when a list, the names of probes skipped for time are appended to it.

    Example:
        >>> findings = run_probes(model, x, y)  # doctest: +SKIP
    """
    x, y = np.asarray(x, "float32"), np.asarray(y)
    if _fully_convolutional(model):
        x, y = crop_batch(x, y, PROBE_CROP)
    skipped = skipped if skipped is not None else []
    start = time.monotonic()
    found = _model_vs_probe_batch(model, x, y)
    found += probe_init_loss(model, x, y)
    try:
        overfit, losses = probe_overfit(model, x, y, budget_s=budget_s / 2)
    except RuntimeError as err:  # torch refuses a loss with no gradient at all
        skipped.append(f"training probes (training failed: {str(err).splitlines()[0][:120]})")
        overfit, losses = [], []
    found += overfit
    if losses and len(losses) < OVERFIT_STEPS and not overfit:
        skipped.append("cannot-overfit")
    if losses and not any(f.id == "nan-loss" for f in overfit):
        left = budget_s - (time.monotonic() - start)
        per_step = (time.monotonic() - start) / max(len(losses), 1)
        if per_step * LR_STEPS <= left:
            found += probe_lr(model, x, y)
        else:
            skipped.append("lr-range-test")
    found += probe_dead_relu(model, x)
    found += probe_gradients(_clone(model), x, y)
    found += probe_bn_gap(model, x, y, batch_size=batch_size)
    found += probe_noise_scale(model, x, y, batch_size)
    return found


def bit_depth_scale(maxima: list[float]) -> float:
    """The full scale of the images' bit depth, from their largest values: 255 up to 8 bits, else
    ``2**b - 1`` for the smallest camera depth b of 10, 12, 14 or 16 bits that holds them.

    12-bit microscopy in 16-bit files is divided by 4095 by the pipelines that train on it; read
    as 16 bits (divided by 65535) the model sees a sixteenth of its inputs and a trained model
    could not fit its own data (fifth blind test: ``cannot-overfit`` fired on a healthy twin).

    Example:
        >>> bit_depth_scale([200.0]), bit_depth_scale([3000.0, 4095.0]), bit_depth_scale([60000.0])
        (255.0, 4095.0, 65535.0)
    """
    top = max(maxima, default=0.0)
    if top <= 255:
        return 255.0
    bits = next((b for b in (10, 12, 14) if top <= 2**b - 1), 16)
    return float(2**bits - 1)


def read_for_model(pairs, model) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images of ``pairs`` as float32 ``(H, W, C)`` in ``[0, 1]`` (16-bit files divided by the
    full scale of the bit depth they use, :func:`bit_depth_scale`) with the model's input channels
    (extra channels dropped, gray repeated), and their masks as int32 class indices ``(H, W)``,
    normalized as the loader does (0/255 read as 0/1, fractions rounded)."""
    masks = [read_mask(p.mask) for p in pairs]
    policy = inspect_masks(masks).policy(round_fractional=True)
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else (None, None, None, 1)
    c = shape[3] or 1
    images, labels = [], []
    raw = [read_image(pair.image).astype("float32") for pair in pairs]  # (H, W, C)
    full = bit_depth_scale([float(img.max()) for img in raw])
    for img, mask in zip(raw, masks, strict=True):
        img = img / (full if img.max() > 255 else 255.0 if img.max() > 1 else 1.0)
        if c in (1, 3) and img.shape[-1] in (1, 2, 3, 4):  # the loader's conversion (luminance)
            img = to_channels(img, c)
        else:
            img = img[..., :c] if img.shape[-1] >= c else np.repeat(img[..., :1], c, axis=-1)
        images.append(img)
        labels.append(normalize_mask(mask, policy).astype("int32"))  # (H, W)
    return images, labels


def resize_pair(img: np.ndarray, lab: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An image ``(H, W, C)`` resized bilinearly and its label map ``(H, W)`` by nearest
    neighbour to ``h x w`` (a model with a fixed input size)."""
    channels = [
        np.asarray(Image.fromarray(img[..., k]).resize((w, h), Image.BILINEAR))
        for k in range(img.shape[-1])
    ]
    label = np.asarray(Image.fromarray(lab).resize((w, h), Image.NEAREST))
    return np.stack(channels, -1), label


def load_probe_batch(
    data: str | Path, model, *, size: int = 64, n: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``n`` pairs and normalize masks as the loader does; a model with a fixed input size
    gets them resized to it, a fully convolutional one crops of side ``size`` (or the smallest
    image's side) around the foreground at the images' own scale.

    Resizing for a fully convolutional model changed the scale the user's model was trained at:
    in the blind test of 2026-12-07, 64-pixel crops blown up to 256 made a trained U-Net unable to
    refit its own training samples (``cannot-overfit``) and disagree between training and
    inference mode (``bn-train-infer-gap``), on healthy runs.

    Returns:
        ``x`` (n, s, s, C) float32 in [0, 1] and ``y`` (n, s, s, 1) float32 class indices (binary
        models get 0/1; softmax models get one-hot (n, s, s, K) when the loss is not sparse).
    """
    index = discover_pairs(data, on_unpaired="skip", strict=False)
    pairs = index.pairs[:: max(1, len(index.pairs) // n)][:n]
    images, labels = read_for_model(pairs, model)
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else (None, None, None, 1)
    if shape[1] is None and shape[2] is None:  # fully convolutional: the images' own scale
        side = min(size, *(min(img.shape[:2]) for img in images))
        crops = [
            crop_batch(img[None], lab[None, ..., None], side)
            for img, lab in zip(images, labels, strict=True)
        ]
        x = np.concatenate([cx for cx, _ in crops]).astype("float32")
        y = np.concatenate([cy for _, cy in crops]).astype("float32")  # (n, s, s, 1)
    else:
        h, w = shape[1] or size, shape[2] or size
        resized = [resize_pair(img, lab, h, w) for img, lab in zip(images, labels, strict=True)]
        x = np.stack([img for img, _ in resized]).astype("float32")
        y = np.stack([lab for _, lab in resized])[..., None].astype("float32")  # (n, h, w, 1)
    k = output_channels(model)
    sparse = "sparse" in type(_loss_fn(model)).__name__.lower()
    if k > 1 and not sparse and loss_ignore_index(model) is None:  # an ignored label needs sparse
        y = np.eye(k, dtype="float32")[y[..., 0].astype(int).clip(0, k - 1)]  # (n, h, w, K)
    return x, y
