"""Full-size evaluation scores images with segdoctor.metrics' per-image scorer, and plots leave
matplotlib's global backend alone."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from segdoctor import data as sd
from segdoctor.train.evaluate import score_images
from tests import reference as ref


def _oracle_rows(truths, preds, num_classes, ignore_index=None):
    """Per-image (Dice, IoU): the mean over foreground classes, by the numpy oracle."""
    tp, fp, fn = ref.label_map_counts(truths, preds, num_classes, ignore_index)
    out = []
    for i in range(len(truths)):
        row = []
        for kind in ("dice", "iou"):
            scores = [
                ref.overlap(kind, tp[i, c], fp[i, c], fn[i, c], "skip")
                for c in range(1, num_classes)
            ]
            kept = [s for s in scores if not math.isnan(s)]
            row.append(sum(kept) / len(kept) if kept else math.nan)
        out.append(row)
    return out


def _real_labels(root, n, seed=0):
    """Masks of a real dataset as label maps, and predictions: 10% of pixels relabelled at random,
    the first prediction empty (an image that scores 0 or is skipped)."""
    index = sd.discover_pairs(root)
    pairs = index.pairs[:n]
    masks = [sd.read_mask(p.mask) for p in pairs]
    policy = sd.decide_mask_policy(sd.inspect_masks(masks))
    truths = [sd.normalize_mask(m, policy).astype(np.int32) for m in masks]
    k = policy.num_classes
    rng = np.random.default_rng(seed)
    preds = [
        np.where(rng.random(t.shape) < 0.1, rng.integers(0, k, t.shape), t).astype(np.int32)
        for t in truths
    ]
    preds[0] = np.zeros_like(preds[0])
    return [p.name for p in pairs], truths, preds, k


@pytest.mark.parametrize(("dataset", "n"), [("dsb2018-nuclei", 24), ("camvid-val", 6)])
def test_scores_on_real_data_match_the_numpy_oracle(shared_data, dataset, n):
    names, truths, preds, k = _real_labels(shared_data / dataset, n)
    summary, rows = score_images(names, truths, preds, k)
    expected = _oracle_rows(truths, preds, k)
    assert [r["name"] for r in rows] == names
    for row, (dice, iou) in zip(rows, expected, strict=True):
        np.testing.assert_allclose([row["dice"], row["iou"]], [dice, iou], rtol=1e-12)
    dices = np.array([d for d, _ in expected])
    assert summary["n_scored"] == int(np.isfinite(dices).sum())
    assert summary["dice_mean"] == pytest.approx(np.nanmean(dices), rel=1e-12)
    if k > 2:  # per-class columns: class k of each image, its mean over images
        tp, fp, fn = ref.label_map_counts(truths, preds, k)
        first = [ref.overlap("dice", tp[0, c], fp[0, c], fn[0, c], "skip") for c in range(1, k)]
        np.testing.assert_allclose([rows[0][f"dice_class{c}"] for c in range(1, k)], first)
        assert f"dice_class{k - 1}_mean" in summary


def test_ignored_pixels_and_empty_images_score_as_the_oracle():
    truth = np.array([[0, 1, 1, 9], [0, 0, 1, 9]])
    pred = np.array([[0, 1, 0, 1], [1, 0, 1, 1]])  # the 9s are ignored: their 1s count nowhere
    empty = np.zeros((2, 4), int)
    summary, rows = score_images(
        ["a", "b", "c"], [truth, empty, empty], [pred, empty, truth.clip(0, 1)], 2, ignore_index=9
    )
    expected = _oracle_rows(
        [truth, empty, empty], [pred, empty, truth.clip(0, 1)], 2, ignore_index=9
    )
    assert (
        rows[0]["dice"] == pytest.approx(expected[0][0]) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    )
    assert math.isnan(rows[1]["dice"])  # both empty: skipped
    assert rows[2]["dice"] == 0.0  # empty truth, predicted object: 0
    assert summary["n_scored"] == 2 and summary["n_images"] == 3


def test_report_plots_leave_the_global_matplotlib_backend_alone(tmp_path):
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "from pathlib import Path\n"
        "from segdoctor.train import report\n"
        "from segdoctor.doctor import plots\n"
        f"out = report.plot_dice_histogram([0.2, 0.9], Path({str(tmp_path)!r}) / 'h.png')\n"
        "png = plots.curves_png({'loss': [1.0, 0.5]}, ['loss'])\n"
        "assert out.read_bytes()[:4] == png[:4] == b'\\x89PNG'\n"
        "import matplotlib.pyplot as plt\n"
        "print(matplotlib.get_backend(), len(plt.get_fignums()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "0"]  # the user's backend, and no figure left in pyplot
