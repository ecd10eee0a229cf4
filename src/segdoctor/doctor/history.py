"""History analysis: explain the curves of a Keras training log (read by :mod:`.history_io`).

Input: a Keras ``CSVLogger`` file, a JSON dump of ``History.history`` (``{"loss": [...], ...}``), or
the dict itself. Keys are Keras' own: ``loss``, ``val_loss``, ``<metric>``, ``val_<metric>`` and
``learning_rate`` (or ``lr``). A Dice-like metric is any key containing ``dice``, ``iou``,
``jaccard``, ``f1`` or ``fscore``. When :class:`~segdoctor.doctor.DoctorCallback` ran, the history also
has ``doctor_pred_fg`` / ``doctor_true_fg``: the predicted and true foreground fraction on a
validation sample, which make ``prediction-collapse`` certain rather than inferred.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.history_io import (  # re-exported: imported from here by callers
    PRED_FG,
    TRUE_FG,
    History,
    is_dice_like,
    load_history,
)
from segdoctor.lr_range import LR_KEYS

__all__ = [
    "LR_KEYS",
    "PRED_FG",
    "TRUE_FG",
    "History",
    "analyze_history",
    "is_dice_like",
    "load_history",
    "nan_loss_findings",
]

VAL_GAP_EPOCH = 0.05
"""``val-better-than-train``: an epoch counts when validation Dice leads training by more."""
VAL_GAP_SHARE = 0.7
"""... in at least this share of the epochs (info)."""
VAL_GAP_WARN = 0.10
"""... and a warning when the median lead over the later two thirds exceeds this: 3x the
run-to-run noise of a final Dice (0.01-0.03 between seeds of one recipe, benchmarks/RESULTS.md)
and 3x the lead of healthy runs once their curves flatten (0.01-0.03, measured)."""


def _pairs(history: History) -> list[tuple[str, str]]:
    """(train_key, val_key) for each Dice-like metric present with its validation twin."""
    return [
        (k, f"val_{k}")
        for k in history
        if not k.startswith("val_") and is_dice_like(k) and f"val_{k}" in history
    ]


def _val_dice_key(history: History) -> str | None:
    keys = [k for k in history if k.startswith("val_") and is_dice_like(k)]
    return keys[0] if keys else None


def _lr_key(history: History) -> str | None:
    return next((k for k in LR_KEYS if k in history), None)


def analyze_history(
    history: str | Path | Mapping[str, Sequence[float]],
    *,
    patience: int | None = None,
    lr_schedule: bool = False,
) -> list[Finding]:
    """Run every history check and return the findings.

    Args:
        history: a path or mapping (see :func:`load_history`).
        patience: epochs without validation gain that count as a plateau (default:
            ``max(5, epochs // 4)``).
        lr_schedule: the rate came from a ``LearningRateSchedule`` (``DoctorCallback`` knows;
            a CSV does not): its drops are the schedule's, so no ``lr-reduced-while-improving``
            (an exponential decay cuts by the same factor every epoch, as ReduceLROnPlateau with
            patience 1 does; second blind test, 2026-12-07).

    Example:
        >>> h = {"loss": [0.9] * 8, "val_loss": [0.9] * 8}
        >>> [f.id for f in analyze_history(h)]
        ['metric-constant']
    """
    h = load_history(history)
    findings: list[Finding] = []
    findings.extend(nan_loss_findings(h))
    for check in (
        _loss_rewards_failure,
        _metric_constant,
        _prediction_collapse,
        _lr_reduced_while_improving,
        _lr_vanished,
        _overfitting,
        _underfitting,
        _plateau,
        _loss_oscillation,
        _val_better_than_train,
    ):
        findings.extend(check(h, patience))
    ids = {f.id for f in findings}
    # A schedule, or a rate gone to zero, explains the cuts: not a misdirected monitor.
    if lr_schedule or "lr-vanished" in ids:
        findings = [f for f in findings if f.id != "lr-reduced-while-improving"]
    # One explanation per symptom: a collapse or a constant metric explains a plateau.
    if ids & {"prediction-collapse", "metric-constant", "overfitting", "underfitting"}:
        findings = [f for f in findings if f.id != "plateau"]
    # A run whose training Dice itself stays low is not memorising: regularising it (the fix of
    # overfitting) is the wrong advice, even when its validation loss rises (blind test,
    # 2026-12-07: images and masks shuffled apart, training Dice 0, both reported).
    if "underfitting" in ids:
        findings = [f for f in findings if f.id != "overfitting"]
    return findings


def nan_loss_findings(
    h: Mapping[str, Sequence[float]],
    policy: str | None = None,
    keys: Sequence[str] = ("loss",),
) -> list[Finding]:
    """``nan-loss``: a loss in the history that is NaN or infinite.

    Args:
        h: the history (``loss``, ``val_loss``, ...).
        policy: the model's dtype policy name when known (``"mixed_float16"`` gets a fix that
            names float16's range).
        keys: the curves to look at. The training loss by default: a log file marks a missing
            validation value (``validation_freq > 1``) as empty, which reads as NaN.

    Example:
        >>> [f.id for f in nan_loss_findings({"loss": [0.9, float("nan")]})]
        ['nan-loss']
    """
    bad = {}
    for key in keys:
        arr = np.asarray(h.get(key, []), dtype=float)
        if len(arr) and not np.all(np.isfinite(arr)):
            bad[key] = int(np.argmax(~np.isfinite(arr))) + 1
    if not bad:
        return []
    first = min(bad.values())
    evidence = {"first_non_finite_epoch": bad, "finite_epochs_before": first - 1}
    if policy:
        evidence["dtype_policy"] = policy
    variant = None
    if policy:
        variant = "mixed-float16" if policy.startswith("mixed_float16") else "policy"
    return [make_finding("nan-loss", evidence, variant=variant)]


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


REWARD_LOSS_FALL = 0.01
"""``loss-wrong-direction`` from a history: the training loss ends under this fraction of its
first epoch's value (and under 0.01)..."""
REWARD_DICE_MAX = 0.02
"""...while every later epoch's training and validation Dice stay at or under this."""


def _loss_rewards_failure(h: History, patience: int | None) -> list[Finding]:
    """The loss went to about 0 while the Dice stayed 0: minimizing it made the model fail.

    A Dice score passed as the loss (``loss=dice_coef`` for ``1 - dice_coef``) is minimized by
    predicting nothing; the command line cannot load a loss defined in the user's script, but the
    history shows it (fifth blind test, F1: the loss from 0.031 to 0.0003 in one epoch, the Dice
    0.000 in every epoch after the first). A loss minimized by a correct prediction cannot reach
    0 with a Dice of 0 unless there is no foreground to find (``empty-masks`` says so).
    """
    if "loss" not in h:
        return []
    loss = _finite(h["loss"])
    dice_keys = [k for k in h if is_dice_like(k) and k not in (PRED_FG, TRUE_FG)]
    if len(loss) < 3 or not dice_keys or loss[0] <= 0:
        return []
    later = [_finite(h[k])[1:] for k in dice_keys]
    if any(len(v) < 2 for v in later):
        return []
    dice_max = max(float(np.max(v)) for v in later)
    low = float(loss[-1]) < min(REWARD_LOSS_FALL * float(loss[0]), 0.01)
    if not low or dice_max > REWARD_DICE_MAX:
        return []
    evidence = {
        "loss_first": float(loss[0]),
        "loss_last": float(loss[-1]),
        "dice_keys": dice_keys,
        "dice_max_after_first_epoch": dice_max,
        "source": "history",
    }
    return [make_finding("loss-wrong-direction", evidence, variant="history")]


def _metric_constant(h: History, patience: int | None) -> list[Finding]:
    out = []
    for key, values in h.items():
        if key in LR_KEYS or key in (PRED_FG, TRUE_FG):
            continue
        arr = _finite(values)
        if len(arr) >= 3 and float(np.ptp(arr)) <= 1e-7 * max(1.0, abs(float(arr[0]))):
            out.append((key, float(arr[0]), len(arr)))
    if not out:
        return []
    keys = [k for k, _, _ in out]
    return [
        make_finding(
            "metric-constant",
            {"metrics": keys, "values": {k: v for k, v, _ in out}, "epochs": out[0][2]},
        )
    ]


def _prediction_collapse(h: History, patience: int | None) -> list[Finding]:
    key = _val_dice_key(h)
    if PRED_FG in h and TRUE_FG in h:
        # Every one of the last 3 epochs collapsed: a freshly initialised network (BatchNorm
        # statistics still settling) predicts almost nothing for an epoch or two, then recovers.
        pred, true = _finite(h[PRED_FG]), _finite(h[TRUE_FG])
        if min(len(pred), len(true)) < 3 or float(np.mean(true[-3:])) <= 0:
            return []
        t = float(np.mean(true[-3:]))
        window = pred[-3:]
        if float(np.max(window)) < 0.1 * t or float(np.min(window)) > max(0.9, 5 * t):
            p = float(np.mean(window))
            kind = "background" if p < t else "foreground"
            return [_collapse(kind, {"pred_foreground": p, "true_foreground": t})]
        return []
    if key is None:
        return []
    vals = _finite(h[key])
    if len(vals) >= 3 and float(np.max(vals[-3:])) <= 0.01:
        return [
            _collapse(
                "background",
                {key: float(vals[-1]), "best": float(np.max(vals)), "epochs": len(vals)},
                confidence=0.7,
            )
        ]
    return []


def _collapse(kind: str, evidence: dict, confidence: float = 1.0) -> Finding:
    return make_finding(
        "prediction-collapse",
        {"predicted_as": kind, **evidence},
        variant="named-class",
        confidence=confidence,
    )


def _plateau_cuts(
    values: np.ndarray, mode: str, patience: int, min_delta: float = 1e-4
) -> list[int]:
    """Epochs whose logged rate a Keras ``ReduceLROnPlateau`` (``cooldown=0``) would have lowered.

    Replays Keras' rule on the monitored values: an epoch better than the best by more than
    ``min_delta`` resets the wait, any other epoch adds one; at ``patience`` the rate is cut at
    the end of that epoch, so it shows in the history from the next epoch on (Keras logs the
    rate an epoch trained with).
    """
    best, wait, cuts = None, 0, []
    for epoch, value in enumerate(values):
        if best is None or (
            value < best - min_delta if mode == "min" else value > best + min_delta
        ):
            best, wait = value, 0
        else:  # NaN included: never an improvement
            wait += 1
            if wait >= patience:
                cuts.append(epoch + 1)
                wait = 0
    return cuts


def _min_mode_replay(lr: np.ndarray, dice: np.ndarray) -> tuple[int, list[int]] | None:
    """``(patience, cuts)`` of a ``mode="min"`` plateau scheduler on this Dice that explains the
    rate's cuts, if one does.

    Only for a plateau scheduler's signature: a rate held for at least two epochs between at
    least two cuts, each by the same factor (the last may be smaller: ``min_lr``). ``None`` when
    no ``mode="min"`` replay puts the cuts exactly where they are, or a ``mode="max"`` one does
    too. The logged rate is the one the epoch trained with (Keras' ``CSVLogger`` after
    ``ReduceLROnPlateau``, which logs before it cuts).
    """
    cuts = [i for i in range(1, len(lr)) if lr[i] != lr[i - 1]]
    if len(cuts) < 2 or any(b - a < 2 for a, b in zip([0, *cuts], cuts, strict=False)):
        return None  # a schedule that moves every epoch (cosine, exponential) is not a plateau
    factors = [lr[i] / lr[i - 1] for i in cuts if lr[i - 1] > 0]
    if len(factors) < len(cuts) or not all(0 < f < 1 for f in factors):
        return None
    if any(abs(f - factors[0]) > 1e-3 * factors[0] for f in factors[:-1]) or factors[-1] < (
        factors[0] * (1 - 1e-3)
    ):
        return None
    matches = {
        mode: patience
        for mode in ("max", "min")
        for patience in range(1, cuts[0] + 1)
        if [c for c in _plateau_cuts(dice, mode, patience) if c <= cuts[-1]] == cuts
    }
    if "min" in matches and "max" not in matches:
        return matches["min"], cuts
    return None


def _lr_reduced_while_improving(h: History, patience: int | None) -> list[Finding]:
    lr_key, dice_key = _lr_key(h), _val_dice_key(h)
    if lr_key is None or dice_key is None:
        return []
    lr, dice = np.asarray(h[lr_key], float), np.asarray(h[dice_key], float)
    n = min(len(lr), len(dice))
    lr, dice = lr[:n], dice[:n]
    replayed = _min_mode_replay(lr, dice)
    if replayed is not None:
        # A min-mode plateau on a rising Dice cuts every `patience` epochs, like a clock: the
        # Dice never falls below its first value, so the scheduler never sees an "improvement".
        replay_patience, cuts = replayed
        return [
            make_finding(
                "lr-reduced-while-improving",
                {
                    "cut_epochs": [i + 1 for i in cuts],
                    "learning_rates": [float(lr[0])] + [float(lr[i]) for i in cuts],
                    "explained_by": f"ReduceLROnPlateau(monitor='{dice_key}', mode='min', "
                    f"patience={replay_patience}) replayed on the logged {dice_key}; mode='max' "
                    "explains none of the cuts",
                    f"{dice_key}_first": float(dice[0]),
                    f"{dice_key}_best": float(np.nanmax(dice)),
                },
                monitor=dice_key,
            )
        ]
    for i in range(3, n):
        # A plateau scheduler holds the rate, then cuts it by a factor; a schedule (cosine, poly,
        # warm-up) changes it a little every epoch and is not a misdirected monitor.
        held = abs(lr[i - 1] - lr[i - 2]) <= 1e-6 * abs(lr[i - 1])
        with np.errstate(divide="ignore", invalid="ignore"):  # a schedule may start at 0
            same_factor = bool(
                abs(lr[i] / lr[i - 1] - lr[i - 1] / lr[i - 2]) < 1e-6
            )  # repeated cuts
        if (held or same_factor) and lr[i] < lr[i - 1] * PLATEAU_CUT:
            recent, before = dice[max(0, i - 2) : i + 1], dice[: max(0, i - 2)]
            if len(before) and np.nanmax(recent) > np.nanmax(before) + 1e-3:
                return [
                    make_finding(
                        "lr-reduced-while-improving",
                        {
                            "epoch": i + 1,
                            "lr_before": float(lr[i - 1]),
                            "lr_after": float(lr[i]),
                            f"{dice_key}_recent": [float(v) for v in recent],
                            f"{dice_key}_best_before": float(np.nanmax(before)),
                        },
                        monitor=dice_key,
                    )
                ]
    return []


def _overfitting(h: History, patience: int | None) -> list[Finding]:
    for train_key, val_key in _pairs(h):
        tr, va = np.asarray(h[train_key], float), np.asarray(h[val_key], float)
        n = min(len(tr), len(va))
        if n < 6:
            continue
        best = int(np.nanargmax(va[:n]))
        after = n - 1 - best
        drop = float(va[best] - np.nanmean(va[n - min(3, after) :])) if after else 0.0
        train_gain = float(tr[n - 1] - tr[best])
        if after >= 3 and drop > 0.02 and train_gain > 0.02:
            return [_overfit_finding(val_key, best, va, tr, train_gain, drop)]
    if "val_loss" in h and "loss" in h:
        tr, va = _finite(h["loss"]), _finite(h["val_loss"])
        n = min(len(tr), len(va))
        if n >= 6:
            best = int(np.argmin(va[:n]))
            rise = (
                float(np.mean(va[max(best + 1, n - 3) : n])) - float(va[best])
                if best < n - 3
                else 0
            )
            span = float(va[0] - va[best]) or 1e-9
            if rise > 0.2 * abs(span) and tr[n - 1] < tr[best] - 1e-4:
                return [
                    _overfit_finding("val_loss", best, va, tr, float(tr[best] - tr[n - 1]), rise)
                ]
    return []


def _overfit_finding(key, best, va, tr, train_gain, drop) -> Finding:
    return make_finding(
        "overfitting",
        {
            "monitored": key,
            "best_epoch": best + 1,
            "best": float(va[best]),
            "last": float(va[-1]),
            "validation_worse_by": drop,
            "training_better_by": train_gain,
        },
    )


VANISHED_FACTOR = 1e-3
"""``lr-vanished``: the rate is under this fraction of its peak..."""
VANISHED_SHARE = 0.5
"""...for at least this share of the epochs (and 3), while the training Dice gained under
:data:`VANISHED_GAIN` over them and ends under :data:`VANISHED_BELOW`. A cosine or step schedule
that ends near 0 spends a few final epochs there, after the model has learned; the second blind
test's fault (ExponentialDecay with ``decay_steps=5`` meant as epochs, 17 steps an epoch) was at
9e-6 of 1e-3 after 2 epochs of 20, training Dice flat at 0.036 (twin: 0.857)."""
VANISHED_GAIN = 0.01
VANISHED_BELOW = 0.8
COMPOUNDING_CUT = 0.1
"""``lr-vanished`` (variant ``compounding``): every epoch's rate is at most this fraction of the
previous one's...."""
COMPOUNDING_EPOCHS = 3
"""...for at least this many epochs after the peak (and below :data:`VANISHED_FACTOR` of it)."""
PLATEAU_CUT = 0.8
"""``lr-reduced-while-improving`` looks at cuts to at most this fraction of the previous rate: a
plateau scheduler cuts by 0.1-0.5; a decay of 0.9-0.95 every epoch is a schedule (fifth blind
test: ``LearningRateScheduler(lambda epoch, lr: lr * 0.9)`` drew the error)."""


def _lr_vanished(h: History, patience: int | None) -> list[Finding]:
    lr_key = _lr_key(h)
    train_keys = [k for k in h if not k.startswith("val_") and is_dice_like(k)]
    if lr_key is None or not train_keys:
        return []
    n = min(len(h[lr_key]), len(h[train_keys[0]]))
    lr = np.asarray(h[lr_key][:n], float)
    tr = np.asarray(h[train_keys[0]][:n], float)
    if n < 4 or not np.all(np.isfinite(lr)) or lr.max() <= 0:
        return []
    peak = int(np.argmax(lr))
    gone = np.flatnonzero(lr[peak:] < lr[peak] * VANISHED_FACTOR)
    if not len(gone):
        return []
    first = peak + int(gone[0])
    with np.errstate(divide="ignore", invalid="ignore"):  # a rate of 0 gives no ratio
        ratios = lr[peak + 1 :] / lr[peak:-1]
    # Cut tenfold and more at every epoch since the peak: a rule that multiplies the rate it is
    # given (LearningRateScheduler(lambda epoch, lr: lr * 0.1) compounds), not a schedule that
    # ends near 0. It has vanished by the time a short run shows it (fifth blind test: 1e-4 to
    # 1e-9 in 6 epochs, training Dice 0).
    compounding = len(ratios) >= COMPOUNDING_EPOCHS and bool(
        np.all(ratios <= COMPOUNDING_CUT * 1.001)  # float32 rates: 0.1 is 0.1000001
    )
    settled = n - first >= max(3, VANISHED_SHARE * n) and bool(
        np.all(lr[first:] < lr[peak] * VANISHED_FACTOR)
    )
    if not settled and not compounding:
        return []
    if not settled:  # too short a run to sit below the bar for long: judged from the first cut
        first = peak + 1
    gain = float(np.nanmax(tr[first:]) - tr[first])
    if gain >= VANISHED_GAIN or float(tr[-1]) >= VANISHED_BELOW:
        return []
    return [
        make_finding(
            "lr-vanished",
            {
                "lr_peak": float(lr[peak]),
                "lr_final": float(lr[-1]),
                "vanished_epoch": first + 1,
                "epochs": n,
                "train_key": train_keys[0],
                "train_at_vanish": float(tr[first]),
                "train_final": float(tr[-1]),
                "train_gain_since": gain,
                **({"cut_per_epoch": float(np.max(ratios))} if compounding else {}),
            },
            variant="compounding" if compounding else None,
        )
    ]


def _underfitting(h: History, patience: int | None) -> list[Finding]:
    for train_key in [k for k in h if not k.startswith("val_") and is_dice_like(k)]:
        tr = _finite(h[train_key])
        if len(tr) < 8:
            continue
        window = max(3, len(tr) // 4)
        gain = float(np.max(tr[-window:]) - np.max(tr[:-window]))
        if float(tr[-1]) < 0.5 and gain < 0.01:
            return [
                make_finding(
                    "underfitting",
                    {
                        train_key: float(tr[-1]),
                        "best": float(np.max(tr)),
                        f"gain_last_{window}_epochs": gain,
                    },
                    confidence=0.8,
                )
            ]
    return []


def _plateau(h: History, patience: int | None) -> list[Finding]:
    key = _val_dice_key(h)
    if key is None:
        return []
    va = np.asarray(h[key], float)
    n = len(va)
    wait = patience or max(5, n // 4)
    if n < wait + 3:
        return []
    best = int(np.nanargmax(va))
    since = n - 1 - best
    if since >= wait:
        return [
            make_finding(
                "plateau",
                {
                    key: float(va[-1]),
                    "best": float(va[best]),
                    "best_epoch": best + 1,
                    "epochs_since_best": since,
                },
                monitor=key,
                confidence=0.7,
            )
        ]
    return []


def _loss_oscillation(h: History, patience: int | None) -> list[Finding]:
    loss = _finite(h.get("loss", []))
    if len(loss) < 6:
        return []
    diffs = np.diff(loss)
    signs = np.sign(diffs[diffs != 0])
    flips = int(np.sum(signs[1:] != signs[:-1])) if len(signs) > 1 else 0
    path = float(np.sum(np.abs(diffs)))
    net = abs(float(loss[-1] - loss[0])) + 1e-12
    if (
        flips >= 0.5 * (len(diffs) - 1)
        and path > 4 * net
        and path > 0.05 * float(np.mean(np.abs(loss)))
    ):
        return [
            make_finding(
                "loss-oscillation",
                {
                    "sign_flips": flips,
                    "epochs": len(loss),
                    "total_variation": path,
                    "net_change": net,
                },
                confidence=0.8,
            )
        ]
    return []


def _val_better_than_train(h: History, patience: int | None) -> list[Finding]:
    """``val-better-than-train``: validation Dice above training Dice through most of the run.

    A Keras training Dice is the running mean of the epoch's batches in training mode (dropout,
    BatchNorm batch statistics, augmentation), the validation Dice the end-of-epoch model in
    inference mode; while the model learns fast, validation leads by a few hundredths (measured:
    up to 0.07 in the first epochs, 0.01-0.03 once the curves flatten, see the troubleshooting
    guide). Info when the validation leads by more than :data:`VAL_GAP_EPOCH` in
    :data:`VAL_GAP_SHARE` of the epochs; a warning when, in addition, its median lead over the
    later two thirds of the run exceeds :data:`VAL_GAP_WARN`: far above that lag and the
    run-to-run noise, train and validation differ (augmentation only on train, an easier
    validation set, leakage).
    """
    for train_key, val_key in _pairs(h):
        tr, va = np.asarray(h[train_key], float), np.asarray(h[val_key], float)
        n = min(len(tr), len(va))
        if n < 4:
            continue
        gap = va[:n] - tr[:n]
        if float(np.nanmean(gap > VAL_GAP_EPOCH)) < VAL_GAP_SHARE:
            continue
        late = gap[n // 3 :]  # once the fast-learning lag has faded
        late_median = float(np.nanmedian(late))
        warn = late_median > VAL_GAP_WARN
        return [
            make_finding(
                "val-better-than-train",
                {
                    "metric": train_key,
                    "mean_gap": float(np.nanmean(gap)),
                    "median_gap_later_epochs": late_median,
                    "epochs_val_better": int(np.sum(gap > VAL_GAP_EPOCH)),
                    "epochs": n,
                    "warning_above": VAL_GAP_WARN,
                },
                variant="large-lead" if warn else None,
                severity="warning" if warn else "info",
                confidence=0.8 if warn else 0.6,
            )
        ]
    return []
