"""Findings the fifth blind test (2026-12-07 night) showed wrong or missing: plain-Keras scripts
with one planted fault each and a healthy twin; each test makes the fault fire and keeps the twin
silent."""

from __future__ import annotations

import numpy as np

from segdoctor.doctor import analyze_history


def ids(found) -> set[str]:
    return {f.id for f in found}


def _collapsed_run(lrs: list[float]) -> dict[str, list[float]]:
    n = len(lrs)
    return {
        "dice": [0.07] + [0.0] * (n - 1),
        "loss": [1.45, 1.30, 1.287, 1.285, 1.285, 1.285][:n],
        "val_dice": [0.0] * n,
        "val_loss": [1.37, 1.307, 1.305, 1.305, 1.305, 1.305][:n],
        "learning_rate": lrs,
    }


def test_a_rate_cut_tenfold_every_epoch_is_named_in_a_short_run():
    """LearningRateScheduler(lambda epoch, lr: lr * 0.1), meant as "a tenth of the rate": 1e-4
    to 1e-9 in 6 epochs. Before, lr-vanished needed 3 epochs under a thousandth of the peak and
    said nothing; the run drew only metric-constant and prediction-collapse."""
    rates = list(np.float32(1e-4) * np.float32(0.1) ** np.arange(6, dtype=np.float32))
    [found] = [
        f
        for f in analyze_history(_collapsed_run([float(r) for r in rates]))
        if f.id == "lr-vanished"
    ]
    assert found.severity == "error"
    assert found.evidence["cut_per_epoch"] <= 0.1001
    assert "LearningRateScheduler(lambda epoch, lr: lr * 0.1)" in found.fix


def test_a_tenfold_cut_once_is_not_compounding():
    """One cut of 10x, then a steady rate (a step schedule): not the compounding rule."""
    h = _collapsed_run([1e-3, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4])
    assert "lr-vanished" not in ids(analyze_history(h))


def test_a_decay_of_a_tenth_every_epoch_is_a_schedule_not_a_plateau_cut():
    """The twin: LearningRateScheduler(lambda epoch, lr: lr * 0.9) while Dice rose. Before, the
    repeated 0.9 cut drew lr-reduced-while-improving (an error) blaming a mode='min' plateau
    scheduler; a plateau scheduler cuts by 0.1-0.5."""
    val = [0.0, 0.626, 0.768, 0.791, 0.80, 0.81, 0.815, 0.82]
    h = {
        "dice": [0.01, 0.42, 0.65, 0.72, 0.75, 0.77, 0.78, 0.79],
        "loss": [1.26, 0.83, 0.54, 0.45, 0.42, 0.40, 0.39, 0.38],
        "val_dice": val,
        "val_loss": [0.95, 0.63, 0.48, 0.49, 0.47, 0.46, 0.45, 0.45],
        "learning_rate": [float(np.float32(1e-3) * np.float32(0.9) ** (i + 1)) for i in range(8)],
    }
    found = ids(analyze_history(h))
    assert "lr-reduced-while-improving" not in found and "lr-vanished" not in found
    # a plateau scheduler's halving every epoch while Dice rises still fires
    h["learning_rate"] = [1e-3 * 0.5**i for i in range(8)]
    assert "lr-reduced-while-improving" in ids(analyze_history(h))
