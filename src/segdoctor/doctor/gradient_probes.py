"""Gradient probes: one backward pass, or one per image, of the compiled loss on the probe batch.

=================== ===================================================================
probe               measured
=================== ===================================================================
vanishing-gradients per-layer ``|grad| / |w|``, first vs last kernel
exploding-gradients a non-finite gradient, or ``|grad| / |w|`` above ``EXPLODE_REL`` (SGD) or
                    ``EXPLODE_REL_ADAPTIVE`` (Adam and other adaptive optimizers)
batch-size-noisy    gradient noise scale ``B_simple = tr(Sigma) / |G|^2`` vs the batch size
=================== ===================================================================

The noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training") is the batch
size at which the gradient's noise and its signal have equal size: far below it, a step follows the
noise more than the gradient. It is estimated from per-image gradients ``g_i`` of the probe images
in inference mode (BatchNorm with its moving statistics, so that the batch gradient is exactly the
mean of the per-image ones; in training mode a batch of one normalizes with its own statistics and
is another function): ``|G|^2`` and ``tr(Sigma)`` from the unbiased estimators of the two-batch-size
method with batch sizes 1 and N, with a bootstrap over the images for a conservative lower bound.

Example:
    >>> findings = probe_gradients(model, x, y)  # doctest: +SKIP
"""

from __future__ import annotations

import math

import keras
import numpy as np

from segdoctor.doctor._grad import model_value_and_grads
from segdoctor.doctor._probe_model import loss_fn as _loss_fn
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

EXPLODE_REL = 10.0
"""``exploding-gradients`` when some kernel's gradient norm exceeds this many times its norm, for
an optimizer whose step grows with the gradient (SGD, with or without momentum)."""
EXPLODE_REL_ADAPTIVE = 100.0
"""The same for adaptive optimizers (Adam, AdamW, RMSprop, Lion, ...), whose step is about the
learning rate whatever the gradient's size: a gradient 10x the weights is no danger to them. In
the blind test of 2026-12-07 two healthy user U-Nets under Adam(1e-3) measured 14 and 22 mid-run
(validation Dice 0.78-0.81); a 12-layer plain network initialised at 2.5x the He scale measures
900-12000 (tests/test_doctor_probes.py)."""


def explode_threshold(model) -> float:
    """:data:`EXPLODE_REL` for SGD (or no optimizer), :data:`EXPLODE_REL_ADAPTIVE` otherwise."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or isinstance(optimizer, keras.optimizers.SGD):
        return EXPLODE_REL
    return EXPLODE_REL_ADAPTIVE


def gradient_stats(model, x, y, *, training: bool = True) -> dict:
    """Per-kernel gradient statistics from one backward pass of the compiled loss.

    Returns:
        ``{"loss", "global_norm", "rel": [|g| / |w| per kernel, input to output], "names",
        "finite"}``; ``finite`` is False when a gradient holds NaN or inf.
    """
    loss, grads = model_value_and_grads(model, _loss_fn(model), x, y, training=training)
    kernels = [
        (v.path, g, np.asarray(v.numpy() if hasattr(v, "numpy") else v))
        for v, g in zip(model.trainable_variables, grads, strict=True)
        if len(v.shape) >= 2
    ]
    finite = all(np.all(np.isfinite(g)) for g in grads)
    sq = sum(float(np.sum(np.square(g, dtype="float64"))) for g in grads) if finite else math.inf
    return {
        "loss": loss,
        "global_norm": math.sqrt(sq),
        "rel": [
            float(np.linalg.norm(g)) / (float(np.linalg.norm(w)) + 1e-12) for _, g, w in kernels
        ],
        "names": [name for name, _, _ in kernels],
        "finite": finite,
    }


def gradient_findings(
    stats: dict, where: str = "probe batch", threshold: float = EXPLODE_REL
) -> list[Finding]:
    """``exploding-gradients`` (``|grad| / |w|`` above ``threshold``, see
    :func:`explode_threshold`) and ``vanishing-gradients`` from :func:`gradient_stats`."""
    rel = stats["rel"]
    if not stats["finite"] or (rel and max(rel) > threshold):
        worst = int(np.argmax(rel)) if rel and stats["finite"] else 0
        return [
            make_finding(
                "exploding-gradients",
                {
                    "finite": stats["finite"],
                    "max_rel_grad": max(rel) if stats["finite"] and rel else "inf/nan",
                    "layer": stats["names"][worst] if stats["names"] else "",
                    "threshold": threshold,
                    "global_grad_norm": stats["global_norm"],
                    "where": where,
                },
            )
        ]
    if len(rel) >= 2 and rel[-1] > 0 and rel[0] < 1e-4 * rel[-1]:
        return [
            make_finding(
                "vanishing-gradients",
                {
                    "first_layer_rel_grad": rel[0],
                    "last_layer_rel_grad": rel[-1],
                    "ratio": rel[0] / rel[-1],
                    "layers": len(rel),
                    "where": where,
                },
            )
        ]
    return []


def probe_gradients(model, x, y) -> list[Finding]:
    """``exploding-gradients`` / ``vanishing-gradients`` from one backward pass (training mode).

    The model's weights are unchanged; on torch and tensorflow the BatchNorm moving statistics
    take one update, as in a training step (run it on a clone to avoid even that).
    """
    return gradient_findings(gradient_stats(model, x, y), threshold=explode_threshold(model))


NOISY_FACTOR = 4.0
"""``batch-size-noisy`` when the noise scale's lower bound exceeds this many times the batch size."""
NOISE_BOOTSTRAP = 200


def gradient_noise_scale(model, x, y, *, seed: int = 0) -> dict:
    """Estimate the simple gradient noise scale from per-image gradients (inference mode).

    Returns:
        ``{"b_simple", "b_simple_low", "grad_sq", "trace_sigma", "images"}``: the estimate, the
        20th percentile of its bootstrap (a negative ``|G|^2`` estimate counts as infinite noise
        scale: the signal is not resolved with this many images), and the two terms.
    """
    loss = _loss_fn(model)
    vectors = []
    for i in range(len(x)):
        _, grads = model_value_and_grads(model, loss, x[i : i + 1], y[i : i + 1], training=False)
        vectors.append(np.concatenate([np.ravel(g) for g in grads]).astype("float32"))
    stacked = np.stack(vectors)
    del vectors
    gram = (stacked.astype("float64") @ stacked.T.astype("float64")) if len(stacked) else None
    del stacked
    n = len(x)

    def estimate(weights: np.ndarray) -> tuple[float, float, float]:
        w = weights / weights.sum()
        mean_sq = float(np.sum(w * np.diag(gram)))  # E|g_i|^2
        sq_mean = float(w @ gram @ w)  # |mean g|^2
        trace = (mean_sq - sq_mean) * n / (n - 1)
        signal = sq_mean - trace / n
        return (trace / signal if signal > 0 else math.inf), signal, trace

    b, signal, trace = estimate(np.ones(n))
    rng = np.random.default_rng(seed)
    boot = [
        estimate(rng.multinomial(n, np.full(n, 1 / n)) + 1e-9)[0] for _ in range(NOISE_BOOTSTRAP)
    ]
    return {
        "b_simple": b,
        "b_simple_low": float(np.percentile(boot, 20)),
        "grad_sq": signal,
        "trace_sigma": trace,
        "images": n,
    }


def probe_noise_scale(model, x, y, batch_size: int | None) -> list[Finding]:
    """``batch-size-noisy``: the gradient noise scale far above the training batch size."""
    if batch_size is None or len(x) < 4:
        return []
    est = gradient_noise_scale(model, x, y)
    if not est["b_simple_low"] > NOISY_FACTOR * batch_size:
        return []

    def show(v: float) -> float | str:
        return round(v, 1) if math.isfinite(v) else f"> {len(x)} (signal not resolved)"

    target = est["b_simple"] if math.isfinite(est["b_simple"]) else NOISY_FACTOR * batch_size
    return [
        make_finding(
            "batch-size-noisy",
            {
                "noise_scale_b_simple": show(est["b_simple"]),
                "noise_scale_lower_bound": show(est["b_simple_low"]),
                "batch_size": batch_size,
                "probe_images": est["images"],
            },
            target_batch=int(min(target, 64 * batch_size)),
            confidence=0.6,
        )
    ]
