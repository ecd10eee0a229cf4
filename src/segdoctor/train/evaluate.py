"""Full-size evaluation and prediction, and the end-of-run report.

The ``segdoctor evaluate`` and ``predict`` commands that drive them live in
:mod:`segdoctor.cli.evaluate`.

Scores are computed from confusion statistics (tp, fp, fn per image and class) by
:mod:`segdoctor.metrics`; the empty policy is stated with every mean: an image whose truth and
prediction are both empty is skipped ("skip"), and one with empty truth but a predicted object
scores 0.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor._io import atomic_write_text
from segdoctor.train.inference import (
    batch_predictor,
    load_model,
    model_stride,
    predict_full,
    to_labels,
)

Log = Callable[[str], None]
EMPTY_POLICY = "skip"
SLIDING_THRESHOLD = 1024  # images larger than this on a side are predicted by sliding window


def hd95(truth: np.ndarray, pred: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance between two binary masks, in pixels.

    NaN when either mask is empty (the distance is undefined there).
    """
    from scipy import ndimage

    truth, pred = truth.astype(bool), pred.astype(bool)
    if not truth.any() or not pred.any():
        return float("nan")
    border_t = truth ^ ndimage.binary_erosion(truth)
    border_p = pred ^ ndimage.binary_erosion(pred)
    dist_to_t = ndimage.distance_transform_edt(~border_t)
    dist_to_p = ndimage.distance_transform_edt(~border_p)
    distances = np.concatenate([dist_to_t[border_p], dist_to_p[border_t]])
    return float(np.percentile(distances, 95))


def predict_image(
    model, image: np.ndarray, patch: int | None = None, tta: bool = False
) -> np.ndarray:
    """(H, W, C) normalized -> (H, W, K) scores; sliding window above ``SLIDING_THRESHOLD``.

    ``tta``: the mean over the four mirrored copies (of the image, or of each window).
    """
    stride = model_stride(model)
    if max(image.shape[:2]) <= SLIDING_THRESHOLD:
        return predict_full(model, image, stride, tta=tta)
    from segdoctor.data import sliding_window_predict

    size = patch or 512
    size -= size % stride
    return sliding_window_predict(batch_predictor(model, tta), image, patch=size, overlap=0.25)


def score_images(
    names: Sequence[str],
    truths: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    num_classes: int,
    ignore_index: int | None = None,
    hausdorff: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per-image Dice/IoU (and per class for multi-class) plus dataset means."""
    from segdoctor.metrics import confusion_stats, dice_from_stats, iou_from_stats

    rows: list[dict[str, Any]] = []
    for name, truth, pred in zip(names, truths, preds, strict=True):
        tp, fp, fn = confusion_stats(
            truth[None], pred[None], num_classes, ignore_index=ignore_index
        )  # (1, K)
        dice = np.asarray(dice_from_stats(tp, fp, fn, empty=EMPTY_POLICY))[0]  # (K,)
        iou = np.asarray(iou_from_stats(tp, fp, fn, empty=EMPTY_POLICY))[0]
        fg = slice(1, None)  # background is not scored
        row: dict[str, Any] = {
            "name": name,
            "dice": _nanmean(dice[fg]),
            "iou": _nanmean(iou[fg]),
            "foreground_fraction": float(np.mean(truth > 0)),
            "predicted_fraction": float(np.mean(pred > 0)),
        }
        if num_classes > 2:
            for k in range(1, num_classes):
                row[f"dice_class{k}"] = float(dice[k])
        if hausdorff:
            row["hd95"] = hd95(truth > 0, pred > 0)
        rows.append(row)
    dices = np.array([r["dice"] for r in rows], dtype=float)
    summary: dict[str, Any] = {
        "n_images": len(rows),
        "n_scored": int(np.isfinite(dices).sum()),
        "dice_mean": _nanmean(dices),
        "dice_median": float(np.nanmedian(dices)) if np.isfinite(dices).any() else float("nan"),
        "iou_mean": _nanmean(np.array([r["iou"] for r in rows], dtype=float)),
        "empty_policy": "images whose truth and prediction are both empty are skipped; empty truth with a predicted object scores 0",
    }
    if hausdorff:
        summary["hd95_mean"] = _nanmean(np.array([r["hd95"] for r in rows], dtype=float))
    if num_classes > 2:
        for k in range(1, num_classes):
            summary[f"dice_class{k}_mean"] = _nanmean(
                np.array([r[f"dice_class{k}"] for r in rows], dtype=float)
            )
    return summary, rows


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Per-image rows as CSV text, one column per key of the first row."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN), recursively.

    Example:
        >>> json_safe({"dice": [0.5, float("nan")]})
        {'dice': [0.5, None]}
    """
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def evaluate_pairs(
    model,
    pairs,
    loader: Callable,
    num_classes: int,
    ignore_index=None,
    hausdorff=False,
    keep: bool = False,
    tta: bool = False,
):
    """Predict every pair at full size and score it; optionally keep arrays for plots.

    ``tta``: predict each image as the mean of its four mirrored copies."""
    names, truths, preds, images = [], [], [], []
    for pair in pairs:
        image, truth = loader(pair)
        pred = to_labels(predict_image(model, image, tta=tta))
        names.append(pair.name)
        truths.append(truth)
        preds.append(pred)
        if keep:
            images.append(image)
    summary, rows = score_images(names, truths, preds, num_classes, ignore_index, hausdorff)
    return summary, rows, (images, truths, preds)


def finish_run(result, prepared, log: Log = print) -> None:
    """After fit: evaluate the best model at full size, draw the plots, write report.html."""
    from segdoctor.train import report as rp

    run_dir = Path(result.run_dir)
    files = result.files
    best = run_dir / "best.keras"
    files.update(
        {
            "config": run_dir / "config.yaml",
            "history": run_dir / "history.csv",
            "best model": best,
            "last model": run_dir / "last.keras",
            "doctor findings": run_dir / "doctor.json",
            "LR range test": run_dir / "lr_find.png",
        }
    )
    rows_hist = _read_history(run_dir / "history.csv")
    if rows_hist:
        files["learning curves"] = rp.plot_learning_curves(
            rows_hist, run_dir / "learning_curves.png"
        )
    if not best.exists() or not prepared.val_pairs:
        log("No best model to evaluate (no epoch finished with a finite validation Dice).")
        return
    model = load_model(best)
    log(f"Evaluating the best model on {len(prepared.val_pairs)} validation images at full size...")
    summary, rows, (images, truths, preds) = evaluate_pairs(
        model,
        prepared.val_pairs,
        prepared.load,
        prepared.num_classes,
        prepared.ignore_index,
        keep=True,
    )
    result.evaluation = {"summary": summary, "per_image": rows}
    atomic_write_text(
        run_dir / "evaluation.json", json.dumps(json_safe(result.evaluation), indent=2)
    )
    atomic_write_text(run_dir / "per_image.csv", rows_to_csv(rows))
    files["evaluation"] = run_dir / "evaluation.json"
    files["per-image scores"] = run_dir / "per_image.csv"
    files["dice histogram"] = rp.plot_dice_histogram(
        [r["dice"] for r in rows], run_dir / "dice_histogram.png"
    )
    order = [i for i in np.argsort([r["dice"] if np.isfinite(r["dice"]) else 2.0 for r in rows])]
    scored = [i for i in order if np.isfinite(rows[i]["dice"])]
    k = min(3, len(scored))

    def cases(indices):
        return [
            {
                "name": rows[i]["name"],
                "image": images[i],
                "truth": truths[i],
                "pred": preds[i],
                "dice": rows[i]["dice"],
            }
            for i in indices
        ]

    if k:
        files["worst cases"] = rp.plot_cases(
            cases(scored[:k]), run_dir / "worst_cases.png", "Worst validation images"
        )
        files["best cases"] = rp.plot_cases(
            cases(scored[::-1][:k]), run_dir / "best_cases.png", "Best validation images"
        )
    notes = [prepared.policy.describe(), *result.notes]
    summary_table = {
        "status": result.status,
        "epochs": result.epochs_run,
        "learning rate": result.lr,
        "best val Dice (patches)": result.best_val_dice
        if result.best_val_dice is not None
        else float("nan"),
        "full-size val Dice (mean)": summary["dice_mean"],
        "full-size val IoU (mean)": summary["iou_mean"],
        "validation images": summary["n_images"],
        "empty policy": summary["empty_policy"],
    }
    figures = [
        (caption, files[key])
        for key, caption in [
            ("learning curves", "Learning curves: loss, Dice and learning rate per epoch"),
            ("dice histogram", "Per-image Dice on the validation images (full size)"),
            ("best cases", "Best validation images"),
            ("worst cases", "Worst validation images"),
        ]
        if key in files
    ]
    if (run_dir / "lr_find.png").exists():
        figures.append(("LR range test", run_dir / "lr_find.png"))
    files["report"] = rp.write_report_html(
        run_dir / "report.html",
        f"segdoctor run: {run_dir.name}",
        summary_table,
        figures,
        notes,
        rows,
    )


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
