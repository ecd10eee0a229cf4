"""History analysis: each check fires on a realistic history and stays silent on a healthy one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segdoctor.doctor import analyze_history, load_history
from segdoctor.errors import DataError


def healthy(n=30, seed=0):
    """A run that learns: loss falls, Dice rises and saturates, validation a bit below training."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    dice = 0.85 - 0.6 * np.exp(-t / 6) + rng.normal(0, 0.003, n)
    return {
        "loss": list(1 - dice + 0.02),
        "dice_coef": list(dice),
        "val_loss": list(1 - dice + 0.05),
        "val_dice_coef": list(dice - 0.03 + 0.0005 * t),
        "learning_rate": [1e-3] * n,
    }


def ids(h):
    return {f.id for f in analyze_history(h)}


def test_healthy_history_is_silent():
    assert ids(healthy()) == set()


def test_overfitting_fires():
    h = healthy()
    va = np.array(h["val_dice_coef"])
    va[12:] = va[12] - 0.01 * np.arange(18)  # validation falls after epoch 13
    h["val_dice_coef"] = list(va)
    h["dice_coef"] = list(np.array(h["dice_coef"]) + 0.004 * np.arange(30))
    assert "overfitting" in ids(h)


def test_underfitting_fires_and_plateau_is_not_doubled():
    n = 20
    h = {
        "loss": list(np.linspace(0.8, 0.72, n)),
        "dice_coef": list(0.3 + 0.002 * np.sin(np.arange(n))),
        "val_dice_coef": list(0.28 + 0.002 * np.cos(np.arange(n))),
    }
    found = ids(h)
    assert "underfitting" in found and "plateau" not in found


def test_a_run_that_does_not_fit_its_training_data_is_not_called_overfitting():
    n = 20
    h = {  # training Dice stuck near 0; the validation loss rises while the training loss falls
        "loss": list(np.linspace(0.9, 0.6, n)),
        "val_loss": list(np.concatenate([np.linspace(0.9, 0.8, 5), np.linspace(0.82, 1.2, n - 5)])),
        "dice_coef": list(0.01 + 0.001 * np.sin(np.arange(n))),
        "val_dice_coef": list(0.005 + 0.001 * np.cos(np.arange(n))),
    }
    found = ids(h)
    assert "underfitting" in found and "overfitting" not in found
    h["dice_coef"] = list(np.linspace(0.6, 0.95, n))  # fits its training data: overfitting
    assert "overfitting" in ids(h) and "underfitting" not in ids(h)


def test_plateau_fires():
    h = healthy(40)
    va = np.array(h["val_dice_coef"])
    va[15:] = va[15] - 0.002 * (np.arange(25) % 3)  # flat after epoch 16
    h["val_dice_coef"] = list(va)
    assert "plateau" in ids(h)


def test_loss_oscillation_fires():
    h = healthy()
    h["loss"] = list(0.5 + 0.2 * (-1) ** np.arange(30) + 0.001 * np.arange(30))
    assert "loss-oscillation" in ids(h)


def test_prediction_collapse_from_dice_and_from_doctor_stats():
    h = healthy(10)
    h["val_dice_coef"] = [0.0] * 7 + [0.001, 0.0, 0.002]
    assert "prediction-collapse" in ids(h)
    h = healthy(10)
    h["doctor_pred_fg"] = [0.02] * 10
    h["doctor_true_fg"] = [0.1] * 10
    assert "prediction-collapse" not in ids(h)
    h["doctor_pred_fg"] = [0.001] * 10
    found = analyze_history(h)
    collapse = next(f for f in found if f.id == "prediction-collapse")
    assert collapse.evidence["predicted_as"] == "background"


def test_prediction_collapse_silent_while_a_fresh_network_settles():
    """The recipe's first epochs on dsb2018: nothing predicted at epoch 1, then recovery."""
    h = healthy(6)
    h["doctor_true_fg"] = [0.062] * 6
    h["doctor_pred_fg"] = [0.0008, 0.0025]
    h["doctor_true_fg"] = [0.062] * 2
    assert "prediction-collapse" not in ids(h)  # two epochs say nothing yet
    h["doctor_pred_fg"] = [0.0008, 0.0025, 0.044, 0.057, 0.061, 0.036]
    h["doctor_true_fg"] = [0.062] * 6
    assert "prediction-collapse" not in ids(h)


def test_lr_reduced_while_improving_fires_and_silent_on_real_plateau():
    h = healthy(20)
    lr = [1e-3] * 8 + [5e-4] * 12  # cut at epoch 9 while Dice still rises
    h["learning_rate"] = lr
    assert "lr-reduced-while-improving" in ids(h)
    h = healthy(20)
    va = np.array(h["val_dice_coef"])
    va[6:] = va[6]  # plateau from epoch 7; the cut at 12 is legitimate
    h["val_dice_coef"] = list(va)
    h["learning_rate"] = [1e-3] * 12 + [5e-4] * 8
    assert "lr-reduced-while-improving" not in ids(h)


def test_metric_constant_fires():
    h = healthy(8)
    h["dice_coef"] = [0.0731] * 8
    f = next(f for f in analyze_history(h) if f.id == "metric-constant")
    assert f.evidence["metrics"] == ["dice_coef"]


def test_val_better_than_train_fires():
    h = healthy()
    h["val_dice_coef"] = list(np.array(h["dice_coef"]) + 0.1)
    assert "val-better-than-train" in ids(h)


def val_gap(gap, n=30):
    """``healthy()`` with validation Dice = training Dice + ``gap`` (a number or a curve)."""
    h = healthy(n)
    h["val_dice_coef"] = list(np.array(h["dice_coef"]) + gap)
    return h


def severity_of(h, fid):
    return next((f.severity for f in analyze_history(h) if f.id == fid), None)


def test_issue_val_above_train_by_018_in_every_epoch_is_a_warning():
    """The issue's miss: a 0.18 lead in every one of 30 epochs was reported only as info."""
    f = next(f for f in analyze_history(val_gap(0.18)) if f.id == "val-better-than-train")
    assert f.severity == "warning"
    assert f.evidence["epochs_val_better"] == 30
    assert abs(f.evidence["median_gap_later_epochs"] - 0.18) < 1e-6


@pytest.mark.parametrize(
    ("late_gap", "expected"),
    [(0.04, None), (0.06, "info"), (0.09, "info"), (0.099, "info"), (0.101, "warning")],
)
def test_val_better_than_train_severity_around_the_thresholds(late_gap, expected):
    """Info above 0.05 in 70% of the epochs; warning when the later epochs' median lead > 0.10."""
    assert severity_of(val_gap(late_gap), "val-better-than-train") == expected


def test_val_better_than_train_share_of_epochs_threshold():
    # 21 of 30 epochs (70%) lead by 0.2: fires; 20 of 30 (67%): silent
    assert severity_of(val_gap(np.r_[np.zeros(9), np.full(21, 0.2)]), "val-better-than-train")
    assert (
        severity_of(val_gap(np.r_[np.zeros(10), np.full(20, 0.2)]), "val-better-than-train") is None
    )


def test_the_lag_of_a_fast_learning_start_is_not_a_warning():
    """A large early lead that fades (the running training mean lags while the model learns
    fast) stays info even when 70% of the epochs lead by more than 0.05."""
    gap = np.r_[np.full(10, 0.2), np.full(12, 0.07), np.full(8, 0.02)]
    assert severity_of(val_gap(gap), "val-better-than-train") == "info"


def test_load_csvlogger_and_json(tmp_path):
    h = healthy(5)
    csv = tmp_path / "log.csv"
    keys = list(h)
    rows = ["epoch," + ",".join(keys)] + [
        f"{i}," + ",".join(str(h[k][i]) for k in keys) for i in range(5)
    ]
    csv.write_text("\n".join(rows) + "\n")
    assert load_history(csv)["val_dice_coef"] == pytest.approx(h["val_dice_coef"])
    js = tmp_path / "h.json"
    js.write_text(json.dumps(h))
    assert load_history(js).keys() == h.keys()


@pytest.mark.parametrize("text", ["", "hello world\n1 2 3", "{not json", "[1, 2]"])
def test_unknown_history_format_is_a_data_error(tmp_path, text):
    p = tmp_path / "h.txt"
    p.write_text(text)
    with pytest.raises(DataError):
        load_history(p)


def test_a_cosine_schedule_is_not_a_misdirected_plateau_scheduler():
    """Found on segdoctor's own demo run: smooth schedule decay while Dice rises is healthy."""
    import math

    from segdoctor.doctor import analyze_history

    epochs = 18
    lr = [3e-3 * 0.5 * (1 + math.cos(math.pi * e / 40)) for e in range(epochs)]
    dice = [0.5 + 0.4 * (1 - math.exp(-e / 3)) for e in range(epochs)]
    history = {"loss": [1 - d for d in dice], "val_dice": dice, "lr": lr}
    assert "lr-reduced-while-improving" not in [f.id for f in analyze_history(history)]
    cut = {**history, "lr": [1e-3] * 4 + [5e-4] * (epochs - 4)}  # a plateau cut during the rise
    assert "lr-reduced-while-improving" in [f.id for f in analyze_history(cut)]


# The classic recipe of benchmarks/bench_quality.py (16-filter U-Net, seed 0, 2026-11-29): plain
# soft Dice, Adam 1e-3, ReduceLROnPlateau(monitor="val_dice_coef", mode="min", factor=0.1,
# patience=5), as Keras 2's mode="auto" chose for a metric without "acc" in its name.
CLASSIC_VAL_DICE = [
    0.5161, 0.6719, 0.7731, 0.8005, 0.7659, 0.8011, 0.7936, 0.8083, 0.8175, 0.8124, 0.817, 0.808,
    0.812, 0.8162, 0.8185, 0.8142, 0.8128, 0.8115, 0.815, 0.8166, 0.813, 0.8107, 0.8151, 0.8167,
    0.8176, 0.8158, 0.8172, 0.8186,
]  # fmt: skip
CLASSIC_LR = [1e-3] * 6 + [1e-4] * 5 + [1e-5] * 5 + [1e-6] * 5 + [1e-7] * 5 + [1e-8] * 2


def test_a_min_mode_plateau_on_dice_is_recognized_by_replaying_it():
    """No cut of that run came right after a new best (the rising-Dice heuristic stays silent):
    the clockwork of its cuts, every 5 epochs from the first, is what gives the scheduler away."""
    history = {"val_dice_coef": CLASSIC_VAL_DICE, "learning_rate": CLASSIC_LR}
    found = [f for f in analyze_history(history) if f.id == "lr-reduced-while-improving"]
    assert len(found) == 1
    evidence = found[0].evidence
    assert evidence["cut_epochs"] == [7, 12, 17, 22, 27]
    assert "mode='min', patience=5" in evidence["explained_by"]
    assert evidence["learning_rates"][-1] == pytest.approx(1e-8)  # small rates are not rounded to 0
    assert "mode='max'" in found[0].fix


def test_a_max_mode_plateau_and_a_step_schedule_are_not_taken_for_a_min_mode_one():
    from segdoctor.doctor.history import _min_mode_replay, _plateau_cuts

    dice = np.array(CLASSIC_VAL_DICE)
    cuts = _plateau_cuts(dice, "max", 3)  # what a correctly directed scheduler did on this run
    assert len(cuts) >= 2
    lr = [1e-3 * 0.5 ** sum(c <= e for c in cuts) for e in range(len(dice))]
    assert "lr-reduced-while-improving" not in ids(
        {"val_dice_coef": list(dice), "learning_rate": lr}
    )
    # A fixed step schedule (x0.1 every 5 epochs) on a rising Dice is not explained as a
    # min-mode plateau: that one would cut at 5 and 9 (patience 4) or 6 and 11 (patience 5).
    step = np.array([1e-3 * 0.1 ** (e // 5) for e in range(15)])
    rising = 0.8 + 0.005 * np.arange(15)
    assert _min_mode_replay(step, rising) is None
    assert _min_mode_replay(np.array(CLASSIC_LR), np.array(CLASSIC_VAL_DICE))[0] == 5


# Measured (docs/troubleshooting.md, "Severity thresholds and their evidence"): Keras histories of
# a small U-Net on real dsb2018-nuclei crops, 30 epochs, seed 0; logged training and validation Dice.
REAL_HEALTHY = {
    "dice": [0.558, 0.6787, 0.7516, 0.7811, 0.7991, 0.8108, 0.8121, 0.8105, 0.8232, 0.8321,
             0.8315, 0.834, 0.8449, 0.8379, 0.8305, 0.8554, 0.8426, 0.8553, 0.8513, 0.8458,
             0.8522, 0.8537, 0.8667, 0.8584, 0.8527, 0.856, 0.8672, 0.8613, 0.8652, 0.8663],
    "val_dice": [0.5674, 0.753, 0.8147, 0.8414, 0.8476, 0.8531, 0.8609, 0.858, 0.8673, 0.8696,
                 0.8714, 0.8677, 0.877, 0.8748, 0.8789, 0.8796, 0.8752, 0.8798, 0.8798, 0.8635,
                 0.8816, 0.8814, 0.8751, 0.8771, 0.877, 0.8789, 0.8829, 0.8802, 0.8802, 0.8849],
}  # fmt: skip
# The same run with augmentation applied to the images only (half the training images flipped,
# their masks not): the training Dice is scored against misaligned masks, validation is clean.
REAL_IMAGE_ONLY_FLIP = {
    "dice": [0.5471, 0.6104, 0.6526, 0.6736, 0.6809, 0.6884, 0.685, 0.6884, 0.7014, 0.7052,
             0.703, 0.7033, 0.7076, 0.7076, 0.7, 0.7132, 0.7074, 0.7129, 0.7101, 0.7098,
             0.7143, 0.7077, 0.7228, 0.7182, 0.7064, 0.7144, 0.7185, 0.724, 0.7229, 0.7233],
    "val_dice": [0.561, 0.741, 0.794, 0.8195, 0.832, 0.8353, 0.8497, 0.8487, 0.845, 0.8581,
                 0.8588, 0.8532, 0.8598, 0.8652, 0.8543, 0.8629, 0.8683, 0.8592, 0.8645, 0.8478,
                 0.8637, 0.8655, 0.8546, 0.8534, 0.8242, 0.8483, 0.8611, 0.861, 0.8515, 0.8463],
}  # fmt: skip


def test_val_better_than_train_on_measured_real_runs():
    assert severity_of(REAL_HEALTHY, "val-better-than-train") is None
    assert severity_of(REAL_IMAGE_ONLY_FLIP, "val-better-than-train") == "warning"
