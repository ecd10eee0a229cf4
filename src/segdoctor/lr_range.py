"""The learning-rate range test (Smith 2017; fastai's ``lr_find``), and reading the learning rate.

One implementation for the training recipe (which picks its learning rate with it) and the
doctor's ``lr-too-high`` / ``lr-too-low`` probe. The learning rate grows exponentially from
``start_lr`` to ``end_lr`` over ``steps`` training steps while the loss is recorded.

One smoothing and one divergence rule, for both callers (measured on the doctor's probe models,
30 steps on one batch, 1e-6 -> 10, against the two rules that were there before):

- **Smoothing**: a bias-corrected exponential moving average of the loss (fastai's form;
  :func:`smooth_losses`): it starts at the first loss itself, not at zero. Its only purpose is to
  average batch-to-batch noise, so its memory follows the noise: ``beta = 0.9`` (:data:`BETA`,
  about ten steps) when every step sees another batch (the recipe), ``0.7``
  (:data:`BETA_ONE_BATCH`) when one batch repeats (the doctor's probe), where there is no batch
  noise and a longer memory only delays the curve (with 0.9, the probe found a Dice-loss model
  diverging at 1.1 instead of 0.62 and missed ``lr-too-high`` at an LR of 1).
- **Divergence** (:func:`diverges`): a loss that is not finite; or, once more than
  :data:`MIN_STEPS` steps ran, a smoothed loss above :data:`DIVERGENCE` (4) times its minimum
  (the recipe's rule), or back above the start after it had clearly fallen below it (the start:
  the mean of the first :data:`MIN_STEPS` losses; clearly: by more than twice their standard
  deviation and 1%). The second arm is the doctor's rule made safe for batch noise: a bounded
  loss (Dice, in [0, 1]) rarely reaches 4x its minimum, so the 4x rule alone saw none of the
  measured Dice-loss models diverge; the margin keeps an easy first batch from passing for
  divergence. For the recipe the arm can only end the test earlier, after the lowest loss seen,
  which with its steepest descent is what the suggestion is made of.

The suggestion (:func:`suggest`) is the learning rate at the minimum of the smoothed loss divided
by 10 (fastai's ``lr_min``); ``steepest_lr`` is where the smoothed loss falls fastest per decade.

With ``max_seconds`` (a share of a time budget) the test times its first steps and, when the
planned steps do not fit, runs fewer: the remaining steps are re-spaced so that the sweep still
ends at ``end_lr``; it stops at once if even the next step would not fit. The model passed in is
trained: give it a throwaway copy.

Example:
    >>> smooth_losses([1.0, 1.0, 1.0])
    [1.0, 1.0, 1.0]
    >>> curve = [1.0, 0.9, 0.8, 0.5, 0.3, 0.2, 0.9]  # 0.9 > 4 x 0.2: diverged
    >>> diverges(curve, curve), diverges(curve[:-1], curve[:-1])
    (True, False)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

BETA = 0.9
"""Smoothing of the loss curve (bias-corrected exponential moving average) over changing batches."""
BETA_ONE_BATCH = 0.7
"""The same smoothing when one batch repeats (no batch noise to average)."""
DIVERGENCE = 4.0
"""The test has diverged when the smoothed loss exceeds this multiple of its minimum..."""
UNSTABLE_RISE = 0.10
"""A sweep over one repeated batch counts as stable until its raw loss first rises this much (10%)
above its lowest value so far; the suggestion is made from that part only (:func:`suggest`). With
one batch the raw loss moves only with the updates, so a rise means the step overshot, and past that
point the sweep measures the optimizer's instability: on TensorFlow a small healthy model (the
doctor's probe tests) rose from 0.569 to 0.697 (22%) at LR 0.04-0.2, then fell to 0.02 by LR 6, and
the steepest descent of the whole sweep (3.3) made Adam at 1e-3 look far too low. In the stable part
the steepest descent lies at LR 0.01-0.03 on TensorFlow and torch. Over changing batches a raw loss
rises with a harder batch, so the recipe's sweep uses the whole curve."""
MIN_STEPS = 5
"""... once more than this many steps ran (a non-finite loss counts at any step); the first this
many losses are the start of the curve."""
FALL_MARGIN = 0.01
"""Smallest fall below the start (a share of it) that counts as having fallen."""
LR_KEYS = ("learning_rate", "lr")
"""History columns of the learning rate: Keras' own callbacks' name (written by segdoctor's
callbacks), then the Keras 2 one."""


def current_lr(optimizer: Any) -> float | None:
    """The optimizer's learning rate now, a constant or a schedule's value (None: unreadable).

    Example:
        >>> round(current_lr(keras.optimizers.Adam(0.01)), 6)
        0.01
        >>> current_lr(None) is None
        True
    """
    if optimizer is None:
        return None
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except Exception:  # an optimizer-like object without a readable rate
        return None


def lr_schedule(optimizer: Any) -> keras.optimizers.schedules.LearningRateSchedule | None:
    """The optimizer's ``LearningRateSchedule``, or None when its rate is a constant (or there
    is no optimizer).

    Example:
        >>> decay = keras.optimizers.schedules.ExponentialDecay(1e-3, 5, 0.5)
        >>> lr_schedule(keras.optimizers.Adam(decay)) is decay, lr_schedule(keras.optimizers.Adam())
        (True, None)
    """
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    return None


def initial_lr(optimizer: Any) -> float | None:
    """The rate training starts with: a ``LearningRateSchedule``'s value at step 0, else the
    optimizer's rate (None: unreadable).

    A copy of the model compiled with the optimizer's configuration (what the doctor's probes
    train) starts its schedule at step 0, whatever step the original reached: judging the
    original's current, decayed value against the copy's updates contradicted itself (a trained
    ``ExponentialDecay`` at 3e-24 "moving the weights by 0.9% a step"; blind test, 2026-12-07).

    Example:
        >>> decay = keras.optimizers.schedules.ExponentialDecay(1e-3, 5, 0.5)
        >>> round(initial_lr(keras.optimizers.Adam(decay)), 6), round(initial_lr(keras.optimizers.Adam(0.01)), 6)
        (0.001, 0.01)
    """
    schedule = lr_schedule(optimizer)
    if schedule is not None:
        try:
            return float(keras.ops.convert_to_numpy(schedule(0)))
        except Exception:  # a schedule that cannot be evaluated outside training
            return None
    return current_lr(optimizer)


def lr_test_steps(allowance_s: float, step_s: float, steps: int, done: int = 0) -> int:
    """Steps of the LR range test that fit in ``allowance_s`` (``done`` already ran).

    Example:
        >>> lr_test_steps(30.0, 1.0, 50, done=3), lr_test_steps(300.0, 1.0, 50, done=3)
        (33, 50)
    """
    if step_s <= 0 or math.isinf(allowance_s):
        return steps
    return max(done, min(steps, done + int(allowance_s // step_s)))


def smooth_losses(losses: Sequence[float], beta: float = BETA) -> list[float]:
    """The bias-corrected exponential moving average of ``losses`` (see the module docstring).

    Example:
        >>> [round(v, 3) for v in smooth_losses([1.0, 0.0])]
        [1.0, 0.474]
    """
    avg, out = 0.0, []
    for step, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**step))
    return out


def diverges(losses: Sequence[float], smoothed: Sequence[float]) -> bool:
    """Whether the test stops at the last step (the divergence rule of the module docstring).

    Args:
        losses: the raw losses so far.
        smoothed: their smoothed curve (:func:`smooth_losses`).

    Example:
        >>> diverges([1.0, float("nan")], [1.0, float("nan")])
        True
        >>> bounded = [0.9] * 5 + [0.7, 0.95]  # fell 22%, then back above the start
        >>> diverges(bounded, bounded), diverges(bounded[:-1], bounded[:-1])
        (True, False)
    """
    last = smoothed[-1]
    if not math.isfinite(last):
        return True
    if len(smoothed) <= MIN_STEPS:
        return False
    lowest = min(smoothed)
    if last > DIVERGENCE * lowest:
        return True
    start = float(np.mean(losses[:MIN_STEPS]))
    margin = max(2 * float(np.std(losses[:MIN_STEPS])), FALL_MARGIN * abs(start))
    return lowest < start - margin and last > start


@dataclass
class LRFindResult:
    """Learning rates tried, raw and smoothed losses, and the suggestion."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None
    min_loss_lr: float | None = None
    steepest_lr: float | None = None
    diverged: bool = False
    diverge_lr: float | None = None  # the learning rate of the step that diverged
    step_seconds: list[float] = field(default_factory=list)
    planned_steps: int | None = None
    steps_cut_to: int | None = None  # fewer steps than planned, to fit a time budget

    @property
    def seconds_per_step(self) -> float | None:
        """Median duration of a training step, the first two (compilation) left out."""
        times = self.step_seconds[2:]
        return float(np.median(times)) if times else None

    def to_dict(self) -> dict:
        return {
            "suggestion": self.suggestion,
            "min_loss_lr": self.min_loss_lr,
            "steepest_lr": self.steepest_lr,
            "diverged": self.diverged,
            "diverge_lr": self.diverge_lr,
            "planned_steps": self.planned_steps,
            "steps_cut_to": self.steps_cut_to,
            "seconds_per_step": self.seconds_per_step,
            "lrs": self.lrs,
            "losses": self.losses,
        }


class _Sweep:
    """The learning rate of each step, re-spaced when a time allowance cuts the steps."""

    def __init__(self, start_lr: float, end_lr: float, steps: int, max_seconds: float | None):
        self.steps = steps
        self.factor = (end_lr / start_lr) ** (1.0 / max(steps - 1, 1))
        self.end_lr = end_lr
        self.lr = start_lr
        self.max_seconds = max_seconds
        self.done = 0
        self.cut_to: int | None = None
        self.out_of_time = False
        self._begun = time.perf_counter()
        self._first_end = self._begun

    def advance(self) -> None:
        """One step ran: the next rate, and fewer steps when the planned ones do not fit."""
        self.done += 1
        self.lr *= self.factor
        if self.max_seconds is None:
            return
        now = time.perf_counter()
        if self.done == 1:
            self._first_end = now  # the first step compiles: the rate is timed from its end
        if self.done < 3:
            return
        # wall time per step (data loading included), not only the step itself
        step_s = (now - self._first_end) / (self.done - 1)
        left = self.max_seconds - (now - self._begun)
        if left < step_s:
            self.out_of_time, self.cut_to = True, self.done
            return
        fit = lr_test_steps(left, step_s, self.steps, done=self.done)
        if fit < self.steps:
            self.steps = self.cut_to = fit
            remaining = max(fit - self.done, 1)
            self.factor = (self.end_lr / self.lr) ** (1.0 / max(remaining - 1, 1))


def suggest(result: LRFindResult, stable_rise: float | None = None) -> LRFindResult:
    """Fill in the suggestion fields of ``result`` from its recorded curve.

    Args:
        result: a recorded sweep.
        stable_rise: for a sweep over one repeated batch, the fraction (:data:`UNSTABLE_RISE`)
            by which the raw loss may rise above its lowest value so far before the rest of the
            sweep is left out of the suggestion. None, for changing batches: the whole curve (a
            raw loss there rises and falls with the batch).

    Example:
        >>> r = suggest(LRFindResult(lrs=[1e-4, 1e-3, 1e-2, 1e-1, 1.0], smoothed=[3, 2, 1, 2, 9]))
        >>> r.min_loss_lr, r.suggestion
        (0.01, 0.001)
    """
    result.min_loss_lr = result.suggestion = result.steepest_lr = None
    end = len(result.smoothed)
    if stable_rise is not None:
        raw = np.asarray(result.losses[:end], float)
        rises = np.flatnonzero(raw > np.minimum.accumulate(raw) * (1 + stable_rise))
        end = int(rises[0]) if len(rises) else end
    if end < 5:
        return result
    lrs = np.asarray(result.lrs[:end])
    smooth = np.asarray(result.smoothed[:end])
    i_min = int(np.argmin(smooth))
    result.min_loss_lr = float(lrs[i_min])
    result.suggestion = float(lrs[i_min] / 10.0)
    if i_min >= 2:
        slope = np.gradient(smooth[: i_min + 1], np.log(lrs[: i_min + 1]))
        result.steepest_lr = float(lrs[int(np.argmin(slope))])
    return result


def lr_range_test(
    model: keras.Model,
    data,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    steps: int = 60,
    max_seconds: float | None = None,
    beta: float = BETA,
    stable_rise: float | None = None,
) -> LRFindResult:
    """Run the range test on a compiled ``model`` with batches from ``data``.

    The steps are ``train_on_batch`` calls, so a model whose training step was already traced
    (by timing it, as a budgeted run does) is not traced again, as ``fit`` would. The model's
    optimizer must hold a constant learning rate (it is set before every step).

    Args:
        model: a compiled model (it is trained: pass a fresh copy, not the one you keep).
        data: batches ``(x, y, ...)``: a ``keras.utils.PyDataset`` or sequence (indexed in turn,
            repeated as needed; ``[(x, y)]`` repeats one batch) or an iterable such as a
            ``tf.data.Dataset``.
        start_lr, end_lr: the range, exponentially spaced.
        steps: number of batches.
        max_seconds: the time the test may take (compilation included); fewer steps when
            needed, the sweep re-spaced to still reach ``end_lr``. ``None``: no limit.
        beta: the smoothing: :data:`BETA` for changing batches, :data:`BETA_ONE_BATCH` when
            ``data`` is one batch.
        stable_rise: :data:`UNSTABLE_RISE` when ``data`` is one batch, else None (:func:`suggest`).

    Returns:
        An :class:`LRFindResult` with ``suggestion`` set when enough steps ran.

    Example:
        >>> result = lr_range_test(model, [(x, y)], end_lr=10.0, steps=30)  # doctest: +SKIP
    """
    sweep = _Sweep(start_lr, end_lr, steps, max_seconds)
    result = LRFindResult(planned_steps=steps)
    batches = _batches(data)
    while sweep.done < sweep.steps:
        x, y = next(batches)
        lr = sweep.lr
        model.optimizer.learning_rate = lr
        started = time.perf_counter()
        out = model.train_on_batch(x, y)  # returns host values: the step has finished
        loss = float(out[0] if isinstance(out, list | tuple) else out)
        result.step_seconds.append(time.perf_counter() - started)
        sweep.advance()
        if _record(result, lr, loss, beta) or sweep.out_of_time:
            break
    result.steps_cut_to = sweep.cut_to
    return suggest(result, stable_rise)


def _record(result: LRFindResult, lr: float, loss: float, beta: float) -> bool:
    """Add one step to ``result``; True when the test diverged (a non-finite loss is not kept)."""
    if math.isfinite(loss):
        result.lrs.append(lr)
        result.losses.append(loss)
        result.smoothed = smooth_losses(result.losses, beta)
    if math.isfinite(loss) and not diverges(result.losses, result.smoothed):
        return False
    result.diverged, result.diverge_lr = True, lr
    return True


def _batches(data) -> Iterator[tuple]:
    """Endless ``(x, y)`` batches of ``data``: indexed in turn (its ``on_epoch_end`` called
    after each pass, as ``fit`` does), or iterated again and again."""
    indexable = hasattr(data, "__getitem__") and hasattr(data, "__len__")
    while True:
        if indexable:
            for i in range(len(data)):
                batch = data[i]
                yield batch[0], batch[1]
            if hasattr(data, "on_epoch_end"):
                data.on_epoch_end()
        else:
            for batch in data:
                yield batch[0], batch[1]
