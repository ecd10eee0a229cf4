"""Plots and the self-contained HTML report of a run folder.

All figures are drawn by :mod:`segdoctor.plotting` (figures on their own Agg canvas: importing this
module leaves matplotlib's global backend alone) and written as PNG; ``report.html`` embeds them as
base64 so it opens offline, from anywhere, and every user-controlled string in it (file names,
class names, paths) is HTML-escaped.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "hist.png"
    >>> plot_dice_histogram([0.5, 0.9, float("nan")], out).exists()
    True
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor._io import atomic_write_text
from segdoctor.plotting import integer_ticks, new_figure, save_png


def _save(fig, path: Path) -> Path:
    return save_png(fig, path, dpi=100, tight=True)


def _column(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])


def plot_learning_curves(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Loss, Dice and learning rate per epoch, train and validation side by side."""
    epochs = _column(rows, "epoch") + 1
    panels = [
        ("loss", "Loss (lower is better)"),
        ("dice", "Dice (higher is better)"),
        ("learning_rate", "Learning rate"),
    ]
    fig, axes = new_figure(1, 3, figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, panels, strict=True):
        if rows and key in rows[0]:
            ax.plot(
                epochs,
                _column(rows, key),
                "o-",
                ms=3,
                label="train" if key != "learning_rate" else "learning rate",
            )
        if rows and f"val_{key}" in rows[0]:
            ax.plot(epochs, _column(rows, f"val_{key}"), "o-", ms=3, label="validation")
        if key == "learning_rate":
            ax.set_yscale("log")
        if key == "dice":
            ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return _save(fig, path)


def plot_dice_histogram(scores: Sequence[float], path: Path, title: str = "Per-image Dice") -> Path:
    """Histogram of per-image Dice on [0, 1] with the mean and median marked."""
    values = np.asarray([s for s in scores if np.isfinite(s)])
    fig, ax = new_figure(figsize=(6, 3.6))
    ax.hist(values, bins=np.linspace(0, 1, 21), color="#4c72b0", edgecolor="white")
    if values.size:
        ax.axvline(values.mean(), color="#c44e52", label=f"mean {values.mean():.3f}")
        ax.axvline(
            np.median(values), color="#55a868", ls="--", label=f"median {np.median(values):.3f}"
        )
        ax.legend()
    ax.set_xlabel("Dice")
    ax.set_ylabel("images")
    ax.set_title(f"{title} (n={values.size})")
    return _save(fig, path)


def _display(image: np.ndarray) -> np.ndarray:
    """(H, W, C) of any dtype -> float (H, W) or (H, W, 3) in [0, 1] for display."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] > 3:
        image = image[..., :3]
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / max(hi - lo, 1e-8), 0, 1)


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB overlay: true positives yellow, false negatives green, false positives red."""
    base = _display(image)
    rgb = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base.copy()
    truth, pred = truth.astype(bool), pred.astype(bool)
    colours = {
        (True, True): (1.0, 0.85, 0.0),
        (True, False): (0.0, 0.8, 0.2),
        (False, True): (0.9, 0.1, 0.1),
    }
    for (t, p), colour in colours.items():
        region = (truth == t) & (pred == p)
        rgb[region] = 0.45 * rgb[region] + 0.55 * np.asarray(colour)
    return rgb


def plot_cases(cases: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Rows of (image, truth, prediction, overlay); each case has name, image, truth, pred, dice."""
    n = max(len(cases), 1)
    fig, axes = new_figure(n, 4, figsize=(12, 3.1 * n), squeeze=False)
    for row, case in zip(axes, cases, strict=False):
        truth = np.asarray(case["truth"]) > 0
        pred = np.asarray(case["pred"]) > 0
        panels = [
            (_display(case["image"]), "image"),
            (truth, "truth"),
            (pred, "prediction"),
            (overlay(case["image"], truth, pred), f"Dice {case['dice']:.3f}"),
        ]
        for ax, (img, label) in zip(row, panels, strict=True):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
            ax.set_title(label if label != "image" else f"{case['name']}", fontsize=9)
            ax.axis("off")
    fig.suptitle(
        f"{title}   (overlay: yellow = correct, green = missed, red = false positive)", fontsize=10
    )
    return _save(fig, path)


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def write_report_html(
    path: Path,
    title: str,
    summary: dict[str, Any],
    figures: Sequence[tuple[str, Path]],
    notes: Sequence[str] = (),
    table: Sequence[dict[str, Any]] = (),
) -> Path:
    """A self-contained HTML page: summary table, notes, figures (embedded), per-image table."""
    esc = html.escape
    rows = "".join(
        f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in summary.items()
    )
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    figs = "".join(
        f"<figure>{_img_tag(p, caption)}<figcaption>{esc(caption)}</figcaption></figure>"
        for caption, p in figures
        if Path(p).exists()
    )
    per_image = ""
    if table:
        head = "".join(f"<th>{esc(str(k))}</th>" for k in table[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in r.values()) + "</tr>"
            for r in table
        )
        per_image = f"<h2>Per image</h2><table class='grid'><tr>{head}</tr>{body}</table>"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}} th,td{{padding:3px 10px;text-align:left;border-bottom:1px solid #ddd}}
figure{{margin:1.5em 0}} img{{max-width:100%}} figcaption{{color:#555;font-size:.9em}}
</style></head><body>
<h1>{esc(title)}</h1>
<table>{rows}</table>
{f"<ul>{note_items}</ul>" if note_items else ""}
{figs}
{per_image}
</body></html>
"""
    return atomic_write_text(path, page)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_lr_find(
    lrs: Sequence[float], losses: Sequence[float], suggestion: float | None, path: Path
) -> Path:
    """Loss against learning rate (log scale) with the suggestion marked."""
    fig, ax = new_figure(figsize=(6, 3.6))
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    if suggestion:
        ax.axvline(suggestion, color="#c44e52", ls="--", label=f"suggested {suggestion:.2e}")
        ax.legend()
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("LR range test")
    ax.grid(alpha=0.3)
    return _save(fig, path)
