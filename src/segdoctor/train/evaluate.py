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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor._io import atomic_write_text
from segdoctor.data import sliding_window_predict
from segdoctor.jsonsafe import dumps
from segdoctor.metrics import per_image_scores
from segdoctor.train import report as rp
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
EMPTY_POLICY_TEXT = (
    "images whose truth and prediction are both empty are skipped; empty truth with a predicted "
    "object scores 0"
)


def hd95(truth: np.ndarray, pred: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance between two binary masks, in pixels.

    NaN when either mask is empty (the distance is undefined there).

    Example:
        >>> a = np.zeros((8, 8), bool); a[2:5, 2:5] = True
        >>> hd95(a, np.roll(a, 2, axis=1))
        2.0
    """
    from scipy import ndimage  # noqa: PLC0415 - slow to import; only for --hausdorff

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
    """Per-image Dice/IoU (and per class for multi-class) plus dataset means.

    The scores are :func:`segdoctor.metrics.per_image_scores` (background not scored, empty
    policy ``"skip"``); an image's Dice is the mean over its scored foreground classes.

    Example:
        >>> t = [np.array([[0, 1], [1, 1]])]; p = [np.array([[0, 1], [0, 1]])]
        >>> summary, rows = score_images(["a"], t, p, num_classes=2)
        >>> round(rows[0]["dice"], 3), summary["n_scored"]
        (0.8, 1)
    """
    scores = per_image_scores(
        list(truths), list(preds), num_classes, ignore_index=ignore_index, empty=EMPTY_POLICY
    )
    image_dice, image_iou = scores.image_dice, scores.image_iou  # (N,) each
    rows: list[dict[str, Any]] = []
    for i, (name, truth, pred) in enumerate(zip(names, truths, preds, strict=True)):
        row: dict[str, Any] = {
            "name": name,
            "dice": float(image_dice[i]),
            "iou": float(image_iou[i]),
            "foreground_fraction": float(np.mean(truth > 0)),
            "predicted_fraction": float(np.mean(pred > 0)),
        }
        if num_classes > 2:
            for k in range(1, num_classes):
                row[f"dice_class{k}"] = float(scores.dice[i, k])
        if hausdorff:
            row["hd95"] = hd95(truth > 0, pred > 0)
        rows.append(row)
    return _summarize(rows, num_classes, hausdorff), rows


def _summarize(rows: Sequence[dict[str, Any]], num_classes: int, hausdorff: bool) -> dict[str, Any]:
    """Dataset means of the per-image rows (NaN rows, the skipped images, left out)."""

    def column(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=float)

    dices = column("dice")
    summary: dict[str, Any] = {
        "n_images": len(rows),
        "n_scored": int(np.isfinite(dices).sum()),
        "dice_mean": _nanmean(dices),
        "dice_median": float(np.nanmedian(dices)) if np.isfinite(dices).any() else float("nan"),
        "iou_mean": _nanmean(column("iou")),
        "empty_policy": EMPTY_POLICY_TEXT,
    }
    if hausdorff:
        summary["hd95_mean"] = _nanmean(column("hd95"))
    if num_classes > 2:
        for k in range(1, num_classes):
            summary[f"dice_class{k}_mean"] = _nanmean(column(f"dice_class{k}"))
    return summary


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Per-image rows as CSV text, one column per key of the first row.

    Example:
        >>> rows_to_csv([{"name": "a", "dice": 0.5}])
        'name,dice\\na,0.5\\n'
    """
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


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
    """After fit: evaluate the best model at full size, draw the plots, write report.html.

    Writes into the run folder: learning_curves.png, evaluation.json, per_image.csv,
    dice_histogram.png, best/worst_cases.png and report.html; ``result.files`` names them and
    ``result.evaluation`` holds the scores.
    """
    run_dir = Path(result.run_dir)
    files = result.files
    files.update(_run_files(run_dir))
    rows_hist = _read_history(run_dir / "history.csv")
    if rows_hist:
        files["learning curves"] = rp.plot_learning_curves(
            rows_hist, run_dir / "learning_curves.png"
        )
    if not files["best model"].exists() or not prepared.val_pairs:
        log("No best model to evaluate (no epoch finished with a finite validation Dice).")
        return
    model = load_model(files["best model"])
    log(f"Evaluating the best model on {len(prepared.val_pairs)} validation images at full size...")
    summary, rows, arrays = evaluate_pairs(
        model,
        prepared.val_pairs,
        prepared.load,
        prepared.num_classes,
        prepared.ignore_index,
        keep=True,
    )
    result.evaluation = {"summary": summary, "per_image": rows}
    atomic_write_text(run_dir / "evaluation.json", dumps(result.evaluation, indent=2))
    atomic_write_text(run_dir / "per_image.csv", rows_to_csv(rows))
    files["evaluation"] = run_dir / "evaluation.json"
    files["per-image scores"] = run_dir / "per_image.csv"
    files["dice histogram"] = rp.plot_dice_histogram(
        [r["dice"] for r in rows], run_dir / "dice_histogram.png"
    )
    files.update(_plot_extremes(run_dir, rows, arrays))
    files["report"] = rp.write_report_html(
        run_dir / "report.html",
        f"segdoctor run: {run_dir.name}",
        _summary_table(result, summary),
        _figures(files, run_dir),
        [prepared.policy.describe(), *result.notes],
        rows,
    )


def _run_files(run_dir: Path) -> dict[str, Path]:
    """The files every run folder lists, whether or not the run got as far as writing them."""
    return {
        "config": run_dir / "config.yaml",
        "history": run_dir / "history.csv",
        "best model": run_dir / "best.keras",
        "last model": run_dir / "last.keras",
        "doctor findings": run_dir / "doctor.json",
        "LR range test": run_dir / "lr_find.png",
    }


def _plot_extremes(
    run_dir: Path, rows: Sequence[dict[str, Any]], arrays: tuple[list, list, list], k: int = 3
) -> dict[str, Path]:
    """Overlays of the ``k`` worst and best scored images (skipped images are left out)."""
    images, truths, preds = arrays
    order = np.argsort([r["dice"] if np.isfinite(r["dice"]) else 2.0 for r in rows])
    scored = [int(i) for i in order if np.isfinite(rows[i]["dice"])]
    k = min(k, len(scored))
    if not k:
        return {}

    def cases(indices: Sequence[int]) -> list[dict[str, Any]]:
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

    return {
        "worst cases": rp.plot_cases(
            cases(scored[:k]), run_dir / "worst_cases.png", "Worst validation images"
        ),
        "best cases": rp.plot_cases(
            cases(scored[::-1][:k]), run_dir / "best_cases.png", "Best validation images"
        ),
    }


def _summary_table(result, summary: dict[str, Any]) -> dict[str, Any]:
    """The report's head table: how the run went and its full-size scores."""
    return {
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


def _figures(files: dict[str, Path], run_dir: Path) -> list[tuple[str, Path]]:
    """(caption, PNG) of the report, in reading order; the LR range test last when it ran."""
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
    return figures


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
