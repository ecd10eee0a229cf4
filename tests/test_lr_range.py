"""The one LR range test's rules (segdoctor.lr_range): smoothing, divergence, the LR reader."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segdoctor.lr_range import (
    BETA,
    BETA_ONE_BATCH,
    UNSTABLE_RISE,
    LRFindResult,
    current_lr,
    diverges,
    smooth_losses,
    suggest,
)


def first_divergence(losses: list[float], beta: float) -> int | None:
    """The step at which the test would stop, as lr_range_test applies the rule."""
    for step in range(1, len(losses) + 1):
        if diverges(losses[:step], smooth_losses(losses[:step], beta)):
            return step - 1
    return None


def test_a_bounded_dice_loss_that_falls_then_jumps_back_diverges():
    # the probe's measured Dice-loss curve (rounded): flat, a fall to 0.74, then a dead model at 0.99
    losses = [0.871] * 10 + [0.87, 0.869, 0.866, 0.861, 0.852, 0.836, 0.816, 0.802, 0.805]
    losses += [0.813, 0.738] + [0.987] * 7
    step = first_divergence(losses, BETA_ONE_BATCH)
    assert step is not None and losses[step] == 0.987  # stops on the jump, not before
    assert max(losses) < 4 * min(smooth_losses(losses, BETA_ONE_BATCH))  # the 4x arm alone: never


def test_noise_in_a_flat_start_is_not_divergence():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        flat = list(0.9 + 0.05 * rng.standard_normal(40))  # no learning yet, only batch noise
        flat[0] = 0.8  # an easy first batch: a low start
        assert first_divergence(flat, BETA) is None, seed


def test_a_loss_that_explodes_diverges_and_a_nan_at_once():
    falling = [1.0 - 0.02 * i for i in range(20)]
    assert first_divergence([*falling, 1.5, 3.0, 9.0], BETA) is not None
    assert diverges([1.0, float("nan")], [1.0, float("nan")])
    assert not diverges(falling, smooth_losses(falling))


def test_smoothing_is_bias_corrected():
    assert smooth_losses([2.0]) == [2.0]  # starts at the first loss, not at (1 - beta) * loss
    assert smooth_losses([2.0, 2.0, 2.0], BETA_ONE_BATCH) == pytest.approx([2.0, 2.0, 2.0])


def test_current_lr_reads_constants_and_schedules():
    assert current_lr(keras.optimizers.SGD(0.5)) == pytest.approx(0.5)
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)
    assert current_lr(keras.optimizers.SGD(schedule)) == pytest.approx(1.0)  # step 0
    assert current_lr(None) is None
    assert current_lr(object()) is None


def sweep(losses: list[float]) -> LRFindResult:
    lrs = list(np.geomspace(1e-6, 10.0, len(losses)))
    return LRFindResult(lrs=lrs, losses=losses, smoothed=smooth_losses(losses, BETA_ONE_BATCH))


def test_one_batch_suggestion_ignores_the_sweep_after_its_first_overshoot():
    # TensorFlow's measured shape: a fall, a 22% rise (the step overshot), then a deep second fall
    losses = [0.68] * 8 + [0.66, 0.62, 0.569, 0.64, 0.697, 0.6, 0.3, 0.1, 0.03, 0.02]
    whole, stable = suggest(sweep(losses)), suggest(sweep(losses), stable_rise=UNSTABLE_RISE)
    first_rise = losses.index(0.64)
    assert whole.steepest_lr > whole.lrs[first_rise]  # the second fall, past the overshoot
    assert stable.steepest_lr < stable.lrs[first_rise]  # the first fall
    assert stable.min_loss_lr == stable.lrs[losses.index(0.569)]


def test_a_sweep_without_overshoot_gets_the_same_suggestion_either_way():
    losses = [0.9] * 8 + [0.88, 0.84, 0.7, 0.5, 0.3, 0.2, 0.15, 0.12]  # rises < 10%: none
    whole, stable = suggest(sweep(losses)), suggest(sweep(losses), stable_rise=UNSTABLE_RISE)
    assert (whole.steepest_lr, whole.min_loss_lr) == (stable.steepest_lr, stable.min_loss_lr)
    early = suggest(sweep([0.5, 0.5, 0.6, 0.3, 0.2, 0.1]), stable_rise=UNSTABLE_RISE)
    assert early.steepest_lr is None and early.suggestion is None  # stable part too short
