"""An independent numpy oracle for segdoctor's losses and metrics.

Written from the formulas in docs/losses-and-metrics.md, not from the implementation: float64,
explicit loops over images and classes, pixels selected with boolean masks, and the confusion terms
computed directly as ``sum(p * t)``, ``sum(p * (1 - t))``, ``sum((1 - p) * t)``. Nothing here
imports segdoctor or Keras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EPS = 1e-7


# ---------------------------------------------------------------------------- inputs


def probabilities(y_pred: np.ndarray, mode: str, from_logits: bool) -> np.ndarray:
    x = np.asarray(y_pred, dtype=np.float64)
    if not from_logits:
        return x
    if mode == "multiclass":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-x))


def dense_targets(
    y_true: np.ndarray, mode: str, channels: int, ignore_index: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(target, valid), both (B, *spatial, C): float64 targets and a boolean 'counts' mask."""
    y = np.asarray(y_true, dtype=np.float64)
    sparse = mode == "multiclass" and (y.ndim == 3 or y.shape[-1] == 1)
    if y.ndim == 3:
        y = y[..., None]
    if sparse:
        labels = y[..., 0]
        valid_pixel = (
            np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
        )
        target = np.zeros((*labels.shape, channels))
        for c in range(channels):
            target[..., c] = (labels == c) & valid_pixel
        valid = np.repeat(valid_pixel[..., None], channels, axis=-1)
        return target, valid
    valid = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    target = np.where(valid, y, 0.0)
    if valid.shape[-1] != channels:  # binary labels with one channel
        valid = np.broadcast_to(valid, (*valid.shape[:-1], channels))
    return target, valid


def scored_classes(mode: str, channels: int, include_background: bool) -> list[int]:
    first = 1 if mode == "multiclass" and not include_background else 0
    return list(range(first, channels))


def normalized_weights(classes: list[int], class_weights: Sequence[float] | None) -> np.ndarray:
    w = (
        np.ones(len(classes))
        if class_weights is None
        else np.array([class_weights[c] for c in classes], float)
    )
    return w / w.sum()


def rows(batch: int, per_image: bool) -> list[list[int]]:
    """Which images form each scored row: one per image, or all images pooled."""
    return [[b] for b in range(batch)] if per_image else [list(range(batch))]


def soft_terms(p: np.ndarray, t: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """tp, fp, fn over the pixels of one row and class, counted pixels only."""
    p, t = p[v], t[v]
    return float(np.sum(p * t)), float(np.sum(p * (1 - t))), float(np.sum((1 - p) * t))


# ---------------------------------------------------------------------------- losses


def loss(
    kind: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    mode: str = "binary",
    from_logits: bool = False,
    per_image: bool = True,  # segdoctor.losses.PER_IMAGE
    include_background: bool = False,
    class_weights: Sequence[float] | None = None,
    ignore_index: int | None = None,
    smooth: float = 1.0,
    squared_denominator: bool = False,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    weight_type: str = "square",
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
) -> np.ndarray | float:
    """Reference value of loss ``kind``: per-image losses (B,) or the pooled scalar."""
    channels = y_pred.shape[-1]
    p = probabilities(y_pred, mode, from_logits)
    t, v = dense_targets(y_true, mode, channels, ignore_index)
    classes = scored_classes(mode, channels, include_background)
    w = normalized_weights(classes, class_weights)
    out = []
    for images in rows(p.shape[0], per_image):
        pr, tr, vr = p[images], t[images], v[images]
        terms = [soft_terms(pr[..., c], tr[..., c], vr[..., c]) for c in classes]
        if kind == "gdl":
            out.append(_gdl(terms, classes, class_weights, weight_type, smooth))
            continue
        per_class = []
        for c, (tp, fp, fn) in zip(classes, terms, strict=True):
            if kind in ("tversky", "focal_tversky"):
                score = (2 * tp + smooth) / (2 * tp + 2 * alpha * fp + 2 * beta * fn + smooth)
            elif squared_denominator:
                counted = vr[..., c]
                p_sq = np.sum(pr[..., c][counted] ** 2)
                t_sq = np.sum(tr[..., c][counted] ** 2)
                score = (2 * tp + smooth) / (p_sq + t_sq + smooth)
            else:
                score = (2 * tp + smooth) / (2 * tp + fp + fn + smooth)
            value = 1 - score
            if kind == "focal_tversky":
                value = max(value, EPS) ** gamma
            per_class.append(value)
        row = float(np.dot(w, per_class))
        if kind == "log_cosh_dice":
            row = math.log(math.cosh(row))
        if kind == "dice_ce":
            row = lambda_dice * row + lambda_ce * _cross_entropy(
                pr, tr, vr, y_pred[images], mode, from_logits
            )
        out.append(row)
    return np.array(out) if per_image else out[0]


def _gdl(terms, classes, class_weights, weight_type, smooth) -> float:
    refs = np.array([tp + fn for tp, _, fn in terms])
    raw = []
    for r in refs:
        if r <= 0:
            raw.append(None)
        elif weight_type == "square":
            raw.append(1 / r**2)
        elif weight_type == "simple":
            raw.append(1 / r)
        else:
            raw.append(1.0)
    present = [x for x in raw if x is not None]
    fill = max(present) if present else 1.0
    if weight_type == "uniform":
        fill = 1.0
    wts = np.array([fill if x is None else x for x in raw])
    if class_weights is not None:
        wts = wts * np.array([class_weights[c] for c in classes])
    wts = wts / wts.sum()
    num = sum(wc * 2 * tp for wc, (tp, _, _) in zip(wts, terms, strict=True)) + smooth
    den = sum(wc * (2 * tp + fp + fn) for wc, (tp, fp, fn) in zip(wts, terms, strict=True)) + smooth
    return 1 - num / den


def _cross_entropy(p, t, v, logits, mode, from_logits) -> float:
    if mode == "multiclass":
        if from_logits:
            x = np.asarray(logits, np.float64)
            logp = x - x.max(-1, keepdims=True)
            logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        else:
            logp = np.log(np.clip(p, EPS, 1.0))
        per_pixel = -(t * logp).sum(-1)
        counted = v[..., 0]
        return float(per_pixel[counted].sum() / max(counted.sum(), 1))
    if from_logits:
        x = np.asarray(logits, np.float64)
        per_entry = np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0) - x * t
    else:
        q = np.clip(p, EPS, 1 - EPS)
        per_entry = -(t * np.log(q) + (1 - t) * np.log(1 - q))
    return float(per_entry[v].sum() / max(v.sum(), 1))


def dice_coef(y_true: np.ndarray, y_pred: np.ndarray, smooth: float = 1.0) -> float:
    """The classic Keras 2 formula, everything flattened."""
    t = np.asarray(y_true, np.float64).ravel()
    p = np.asarray(y_pred, np.float64).ravel()
    return float((2 * np.sum(t * p) + smooth) / (np.sum(t) + np.sum(p) + smooth))


# ---------------------------------------------------------------------------- metrics


def hard_predictions(
    y_pred: np.ndarray, mode: str, threshold: float, from_logits: bool
) -> np.ndarray:
    """0/1 (B, *spatial, C) predictions: threshold (strictly greater) or arg-max one-hot.

    The comparison happens in the predictions' own precision, as it does in a model: a float32
    probability of exactly 0.4 is not above a 0.4 threshold, although in float64 it is
    (0.4000000059604645 > 0.4).
    """
    given = np.asarray(y_pred).dtype
    precision = given if given.kind == "f" else np.dtype(np.float64)
    x = np.asarray(y_pred, np.float64)
    if mode == "multiclass":
        winner = np.argmax(x, axis=-1)
        return np.stack([winner == c for c in range(x.shape[-1])], axis=-1).astype(float)
    probs = probabilities(x, mode, from_logits).astype(precision)
    return (probs > precision.type(threshold)).astype(float)


def hard_counts(truth: np.ndarray, pred: np.ndarray, valid: np.ndarray) -> tuple[int, int, int]:
    truth, pred = truth[valid] > 0.5, pred[valid] > 0.5
    return int(np.sum(truth & pred)), int(np.sum(~truth & pred)), int(np.sum(truth & ~pred))


def overlap(kind: str, tp: float, fp: float, fn: float, empty: str) -> float:
    if tp + fp + fn == 0:
        return {"skip": math.nan, "one": 1.0, "zero": 0.0}[empty]
    return 2 * tp / (2 * tp + fp + fn) if kind == "dice" else tp / (tp + fp + fn)


def metric(
    kind: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    mode: str = "binary",
    threshold: float = 0.5,
    from_logits: bool = False,
    per_image: bool = True,
    include_background: bool = False,
    ignore_index: int | None = None,
    empty: str = "skip",
    class_id: int | None = None,
) -> tuple[float, np.ndarray]:
    """(result, per-class scores) of DiceScore / IoUScore over all images given at once."""
    channels = y_pred.shape[-1]
    hard = hard_predictions(y_pred, mode, threshold, from_logits)
    t, v = dense_targets(y_true, mode, channels, ignore_index)
    per_class = np.full(channels, math.nan)
    for c in range(channels):
        counts = [hard_counts(t[b, ..., c], hard[b, ..., c], v[b, ..., c]) for b in range(len(t))]
        if per_image:
            scores = [overlap(kind, *k, empty) for k in counts]
            kept = [s for s in scores if not math.isnan(s)]
            per_class[c] = sum(kept) / len(kept) if kept else math.nan
        else:
            tp, fp, fn = (sum(k[i] for k in counts) for i in range(3))
            per_class[c] = overlap(kind, tp, fp, fn, empty)
    if class_id is not None:
        return float(per_class[class_id]), per_class
    kept = [per_class[c] for c in scored_classes(mode, channels, include_background)]
    kept = [s for s in kept if not math.isnan(s)]
    return (sum(kept) / len(kept) if kept else math.nan), per_class


def label_map_counts(
    y_true: Sequence[np.ndarray], y_pred: Sequence[np.ndarray], num_classes: int, ignore_index=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, fp, fn (N, C) from label maps, one class at a time."""
    n = len(y_true)
    out = [np.zeros((n, num_classes), int) for _ in range(3)]
    for i, (truth, pred) in enumerate(zip(y_true, y_pred, strict=True)):
        valid = np.ones(np.shape(truth), bool) if ignore_index is None else truth != ignore_index
        for c in range(num_classes):
            counts = hard_counts((truth == c).astype(float), (pred == c).astype(float), valid)
            for k in range(3):
                out[k][i, c] = counts[k]
    return out[0], out[1], out[2]
