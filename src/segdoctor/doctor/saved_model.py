"""``saved-model-not-best``: the model file scores far below the best epoch of its own history.

A checkpoint or an ``EarlyStopping(restore_best_weights=True)`` that watches a Dice in ``'min'``
mode keeps the *worst* epoch; a model saved after ``fit`` without either keeps the last one. The
history looks healthy (its best validation Dice is there), the file the user deploys is not. The
callback sees the callbacks themselves (``monitor-mode``); the command line sees only the files,
so it scores the model on the data's validation images and compares (third blind test, F1: best
validation Dice 0.782, the saved model 0.055, and the command line said nothing).

The user's preprocessing is unknown, so the score is the *highest* over the usual input scalings
(``[0, 1]``, ``[0, 255]``, ``[-1, 1]``, per-image z-score) and over two reductions (the Dice of all
pixels pooled, the mean of per-image Dice), with hard predictions: each choice can only raise the
measured score, so none of them can make the check fire on a model that is as good as its history.
For a multi-channel head the Dice with the background is tried too, and the label the loss or
a metric ignores does not count (fourth blind test: a CamVid model whose ``DiceScore`` averages
11 classes with the background and ignores the void label 11 scored 0.46 without the background,
0.92 in its history; the check called the best epoch's file "not the best"). The check stops at
the first scaling that reaches the bar, so a healthy model costs one pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segdoctor.data.discover import discover_pairs
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.history_io import is_dice_like
from segdoctor.doctor.model_checks import output_channels
from segdoctor.doctor.model_data import ignored_label
from segdoctor.doctor.probes import read_for_model, resize_pair
from segdoctor.metrics.evaluation import confusion_stats, dice_from_stats

MIN_EPOCHS = 3
"""Fewer epochs give no best epoch worth comparing with."""
MIN_BEST = 0.3
"""Below this best validation score the history has nothing the file could have lost."""
GAP_ABS = 0.15
GAP_REL = 0.25
"""The file must score ``max(GAP_ABS, GAP_REL * best)`` below the history's best to fire. On the
34 runs of the second and third blind tests (faults and twins, files outside the repository),
the model file scored by this check and the history's value of the epoch it holds differed by
-0.054 to +0.044 (the doctor reads whole images, hard predictions; the users' metrics ran on
crops, some soft), except where the fault itself made the user's validation differ from the
folder (unscaled or reordered validation arrays: +0.43 and +0.44, the doctor scoring higher)."""
MATCH_TOL = 0.06
"""The file 'matches' the last epoch when it scores at least this little below it (the reading
difference above: -0.054 at worst)."""
MAX_IMAGES = 24
MAX_SIDE = 512
"""Images scored (spread over the validation split) and the largest side kept (centre crop)."""

_SCALINGS: tuple[tuple[str, object], ...] = (
    ("[0, 1]", lambda x: x),
    ("[0, 255]", lambda x: x * 255.0),
    ("[-1, 1]", lambda x: 2.0 * x - 1.0),
    (
        "per-image z-score",
        lambda x: (
            (x - x.mean(axis=(0, 1), keepdims=True)) / (x.std(axis=(0, 1), keepdims=True) + 1e-6)
        ),
    ),
)


def _ignored(model) -> int | None:
    """The label the compiled loss or a metric ignores (``ignore_index``, ``ignore_class``)."""
    for fn in [getattr(model, "loss", None), *_metrics(model)]:
        label = ignored_label(fn)
        if label is not None:
            return label
    return None


def _metrics(model) -> list:
    try:
        return list(getattr(model, "metrics", None) or [])
    except (AttributeError, ValueError, TypeError):
        return []


def _val_key(history: Mapping[str, Sequence[float]]) -> str | None:
    keys = [k for k in history if k.startswith("val_") and is_dice_like(k)]
    return keys[0] if keys else None


def _iou_like(key: str) -> bool:
    low = key.lower()
    return "iou" in low or "io_u" in low or "jaccard" in low


def _multiple(side: int, m: int = 32) -> int:
    return max(m, side - side % m) if side >= m else side


def _scored_pairs(data: str | Path, model) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Up to :data:`MAX_IMAGES` validation images in ``[0, 1]`` with the model's channels, and
    their class-index masks; the third value says which split they came from."""
    index = discover_pairs(data, on_unpaired="skip", strict=False)
    pairs = [p for p in index.pairs if p.mask is not None]
    val = [p for p in pairs if p.split in ("val", "validation")]
    where = "the validation split" if val else "all pairs (the data has no validation split)"
    chosen = (val or pairs)[:: max(1, len(val or pairs) // MAX_IMAGES)][:MAX_IMAGES]
    images, labels = read_for_model(chosen, model)
    return images, labels, where


def _fit_to_model(img: np.ndarray, lab: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop a fully convolutional model's input to a multiple of 32 (pooling levels) of at
    most :data:`MAX_SIDE`; resize to a fixed input size otherwise."""
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else (None, None, None, 1)
    if shape[1] is not None and shape[2] is not None:
        img, lab = resize_pair(img, lab, int(shape[1]), int(shape[2]))
        return img.astype("float32"), lab
    h, w = img.shape[:2]
    ch, cw = _multiple(min(h, MAX_SIDE)), _multiple(min(w, MAX_SIDE))
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top : top + ch, left : left + cw], lab[top : top + ch, left : left + cw]


def _hard(pred: np.ndarray) -> np.ndarray:
    """Class indices from one prediction ``(H, W, K)``: argmax, or a threshold for one channel
    (0.5 on probabilities, 0 on logits)."""
    if pred.shape[-1] > 1:
        return pred.argmax(-1)
    p = pred[..., 0]
    cut = 0.5 if p.min() >= 0.0 and p.max() <= 1.0 else 0.0
    return (p > cut).astype("int32")


def _dice_scores(
    preds: list[np.ndarray], labels: list[np.ndarray], ignore: int | None = None, heads: int = 1
) -> float:
    """The highest of the pooled and the mean per-image Dice over the foreground classes and,
    for a multi-channel head, over all classes with the background (many multi-class Dice
    metrics average it in); pixels labelled ``ignore`` do not count. An image where prediction
    and truth are both empty scores 1. Counts from :func:`segdoctor.metrics.confusion_stats`."""
    kept = [lab[lab != ignore] if ignore is not None else lab for lab in labels]
    top = max([int(p.max(initial=0)) for p in preds] + [int(k.max(initial=0)) for k in kept])
    tp, fp, fn = confusion_stats(labels, preds, max(top + 1, 2), ignore_index=ignore)
    present = [int(c) for c in np.nonzero((tp + fn).sum(axis=0))[0]]  # classes in the truth
    best = _dice_over(tp, fp, fn, [c for c in present if c != 0] or [1])
    if heads > 1:
        best = max(best, _dice_over(tp, fp, fn, sorted({0, *present})))
    return best


def _dice_over(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, classes: list[int]) -> float:
    """The larger of the pooled Dice and the mean per-image Dice over ``classes``; counts
    ``(N, C)`` per image and class."""
    tp, fp, fn = tp[:, classes], fp[:, classes], fn[:, classes]
    pooled = dice_from_stats(tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0), empty="one")
    per_class = dice_from_stats(tp, fp, fn, empty="skip")  # (N, K), NaN: empty on both sides
    scored = ~np.isnan(per_class)
    per_image = np.where(
        scored.any(axis=1),
        np.where(scored, per_class, 0.0).sum(axis=1) / np.maximum(scored.sum(axis=1), 1),
        1.0,
    )
    return max(float(pooled.mean()), float(per_image.mean()))


def _measure(model, data, key: str, bar: float) -> tuple[float | None, list[str], int, str]:
    """The highest score over the scalings (stopping at the first that reaches ``bar``), each
    scaling's score as text, the images scored and where from; None when there is nothing to
    score."""
    images, labels, where = _scored_pairs(data, model)
    if not images:
        return None, [], 0, where
    fitted = [_fit_to_model(img, lab, model) for img, lab in zip(images, labels, strict=True)]
    ignore, heads = _ignored(model), output_channels(model)
    measured, tried = -1.0, []
    for name, scale in _SCALINGS:
        preds = [
            _hard(np.asarray(model.predict_on_batch(scale(img)[None].astype("float32")))[0])
            for img, _ in fitted
        ]
        truth = [lab[: p.shape[0], : p.shape[1]] for p, (_, lab) in zip(preds, fitted, strict=True)]
        dice = _dice_scores(preds, truth, ignore, heads)
        score = dice / (2.0 - dice) if _iou_like(key) else dice
        tried.append(f"{name}: {score:.3f}")
        measured = max(measured, score)
        if measured >= bar:
            break
    return measured, tried, len(fitted), where


def saved_model_findings(
    model, data: str | Path, history: Mapping[str, Sequence[float]]
) -> list[Finding]:
    """Compare the model's score on the data's validation images with its history's best epoch.

    Returns:
        ``[saved-model-not-best]`` when the model scores ``max(GAP_ABS, GAP_REL * best)`` below the
        best validation epoch under every input scaling tried, else ``[]``: an error when the file
        matches an earlier epoch, a warning (variant ``last-epoch``) when it matches the last.
    """
    key = _val_key(history)
    if key is None:
        return []
    values = np.asarray([v for v in history[key] if v is not None], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < MIN_EPOCHS or float(values.max()) < MIN_BEST:
        return []
    best, best_epoch = float(values.max()), int(values.argmax())
    bar = best - max(GAP_ABS, GAP_REL * best)
    try:
        measured, tried, n_images, where = _measure(model, data, key, bar)
    except Exception:  # a model this reading cannot run (several inputs, sizes it refuses,
        return []  # masks it cannot read): say nothing rather than guess
    if measured is None or measured >= bar:
        return []
    nearest = int(np.abs(values - measured).argmin())
    last = len(values) - 1
    # No better than the last epoch: "saved after fit" explains it. Well below the last epoch
    # too: a checkpoint or a restore chose an earlier, worse epoch.
    variant = "last-epoch" if measured >= values[last] - MATCH_TOL else "earlier-epoch"
    evidence = {
        "metric": key,
        "best": round(best, 4),
        "best_epoch": best_epoch + 1,
        "measured": round(measured, 4),
        "images": n_images,
        "scored_on": where,
        "scalings": "; ".join(tried),
        "nearest_epoch": nearest + 1,
        "nearest_value": round(float(values[nearest]), 4),
        "epochs": len(values),
    }
    # A file that is the last epoch is the common "saved after fit" and costs what the curve
    # fell since its best (a warning); one that matches an earlier, worse epoch was kept by a
    # checkpoint or a restore that chose it, which only a wrong direction does (an error).
    severity = "warning" if variant == "last-epoch" else "error"
    return [make_finding("saved-model-not-best", evidence, variant=variant, severity=severity)]
