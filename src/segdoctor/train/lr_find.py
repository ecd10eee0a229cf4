"""Learning-rate range test (Smith 2017; the fastai "lr_find" procedure).

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over ``steps`` batches while the
training loss is recorded; the test stops early once the smoothed loss exceeds ``divergence`` times its
minimum. The suggestion is the learning rate at the minimum of the smoothed loss divided by 10
(fastai's ``lr_min``): a rate that still makes fast progress but sits an order of magnitude below the
point where training starts to diverge. The model passed in is trained, so give it a throwaway copy.

With ``max_seconds`` (a share of a time budget) the test times its first steps and, when the
planned steps do not fit, runs fewer: the remaining steps are re-spaced so that the sweep still
ends at ``end_lr``; it stops at once if even the next step would not fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import keras
import numpy as np

from segdoctor.train.budget import lr_test_steps


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
            "planned_steps": self.planned_steps,
            "steps_cut_to": self.steps_cut_to,
            "seconds_per_step": self.seconds_per_step,
            "lrs": self.lrs,
            "losses": self.losses,
        }


class _RangeTest(keras.callbacks.Callback):
    def __init__(
        self,
        start_lr: float,
        end_lr: float,
        steps: int,
        beta: float,
        divergence: float,
        max_seconds: float | None = None,
    ):
        super().__init__()
        self.steps = steps
        self.factor = (end_lr / start_lr) ** (1.0 / max(steps - 1, 1))
        self.end_lr = end_lr
        self.lr = start_lr
        self.beta = beta
        self.divergence = divergence
        self.max_seconds = max_seconds
        self.result = LRFindResult(planned_steps=steps)
        self._avg = 0.0
        self._step = 0
        self._begun = time.perf_counter()
        self._first_end = self._begun

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._begun = time.perf_counter()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.model.optimizer.learning_rate = self.lr
        self._started = time.perf_counter()

    def _fit_to_time(self) -> None:
        """Fewer steps when the planned ones do not fit in ``max_seconds`` (re-spaced sweep)."""
        if self.max_seconds is None:
            return
        now = time.perf_counter()
        if self._step == 1:
            self._first_end = now  # the first step compiles: the rate is timed from its end
        if self._step < 3:
            return
        # wall time per step (data loading and callbacks included), not only the step itself
        step_s = (now - self._first_end) / (self._step - 1)
        left = self.max_seconds - (now - self._begun)
        if left < step_s:
            self.model.stop_training = True
            self.result.steps_cut_to = self._step
            return
        fit = lr_test_steps(left, step_s, self.steps, done=self._step)
        if fit < self.steps:
            self.steps = fit
            self.result.steps_cut_to = fit
            remaining = max(fit - self._step, 1)
            self.factor = (self.end_lr / self.lr) ** (1.0 / max(remaining - 1, 1))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", math.nan))  # reading it waits for the step
        self.result.step_seconds.append(time.perf_counter() - self._started)
        lr = self.lr
        self._step += 1
        self.lr = lr * self.factor
        self._fit_to_time()
        if not math.isfinite(loss):
            self.result.diverged = True
            self.model.stop_training = True
            return
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smooth = self._avg / (1 - self.beta**self._step)
        self.result.lrs.append(lr)
        self.result.losses.append(loss)
        self.result.smoothed.append(smooth)
        if self._step > 5 and smooth > self.divergence * min(self.result.smoothed):
            self.result.diverged = True
            self.model.stop_training = True
        if self._step >= self.steps:
            self.model.stop_training = True


def suggest(result: LRFindResult) -> LRFindResult:
    """Fill in the suggestion fields of ``result`` from its recorded curve."""
    if len(result.smoothed) < 5:
        return result
    lrs = np.asarray(result.lrs)
    smooth = np.asarray(result.smoothed)
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
    beta: float = 0.9,
    divergence: float = 4.0,
    max_seconds: float | None = None,
) -> LRFindResult:
    """Run the range test on a compiled ``model`` with batches from ``data``.

    The steps are ``train_on_batch`` calls, so a model whose training step was already traced
    (by timing it, as a budgeted run does) is not traced again, as ``fit`` would.

    Args:
        model: a compiled model (it is trained: pass a fresh copy, not the one you keep).
        data: batches ``(x, y, ...)``: a ``keras.utils.PyDataset`` or sequence (indexed in turn,
            repeated as needed) or an iterable such as a ``tf.data.Dataset``.
        start_lr, end_lr: the range, exponentially spaced.
        steps: number of batches.
        beta: smoothing of the loss curve.
        divergence: stop when the smoothed loss exceeds this multiple of its minimum.
        max_seconds: the time the test may take (compilation included); fewer steps when
            needed, the sweep re-spaced to still reach ``end_lr``. ``None``: no limit.

    Returns:
        An :class:`LRFindResult` with ``suggestion`` set when enough steps ran.
    """
    callback = _RangeTest(start_lr, end_lr, steps, beta, divergence, max_seconds)
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    batches = _batches(data)
    for step in range(steps):
        x, y = next(batches)
        callback.on_train_batch_begin(step)
        out = model.train_on_batch(x, y)  # returns host values: the step has finished
        loss = out[0] if isinstance(out, list | tuple) else out
        callback.on_train_batch_end(step, {"loss": float(loss)})
        if model.stop_training:
            break
    model.stop_training = False
    return suggest(callback.result)


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
