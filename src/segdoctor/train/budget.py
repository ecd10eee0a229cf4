"""The time budget of a whole command, and the decisions planned from it.

``--max-minutes N`` bounds the wall time of the whole command (setup, data preparation, LR range
test, step timing, training, the final evaluation and the report), not only the fit. One
:class:`Deadline` is created when the command starts and handed down; every phase asks it how
much time is left and takes a bounded share:

- the configuration search and the LR range test get at most :data:`SEARCH_SHARE` and
  :data:`LR_TEST_SHARE` of the budget (the range test runs fewer steps when it must);
- the final evaluation and report are reserved from the measured per-image inference time
  (:func:`evaluation_reserve`) and subtracted from the training allowance;
- training stops mid-epoch when the next step and the validation after it would cross the
  training deadline (:func:`must_stop`), and the learning-rate schedule spans the steps that fit
  (:func:`plan_steps`).

Everything here is plain arithmetic on measured seconds (no Keras), so it is tested as pure
functions.

Example:
    >>> clock = iter([0.0, 30.0]).__next__
    >>> deadline = Deadline(120.0, clock=clock)
    >>> deadline.remaining()
    90.0
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

LR_TEST_SHARE = 0.08
"""Largest share of the budget the LR range test may take (it runs fewer steps to fit)."""
MIN_LR_TEST_STEPS = 20
"""Fewest LR range test steps worth running: fewer give no usable loss curve (then it is skipped
and the middle of the optimizer's learning-rate band is used)."""
SEARCH_SHARE = 0.06
"""Largest share of the budget the timing of candidate configurations may take."""
REPORT_S = 8.0
"""Seconds the report takes besides predicting (plots, HTML). Bound from measurement: the whole
final evaluation of the 2-minute demo (model loading, 10 images, plots, HTML) took 5-9 s on 2
busy cores (run.json ``budget.phases_s``)."""
RESERVE_FACTOR = 1.5
"""Safety factor on the predicted evaluation time (image sizes vary; the machine may be busy)."""
EPOCH_END_S = 2.0
"""Seconds an epoch end costs besides validation (checkpoints, history, the doctor's checks)."""
EPOCH_END_SHARE = 0.1
"""Largest share of a budgeted run's training time that epoch ends may take (validation on whole
images plus :data:`EPOCH_END_S`); epochs are lengthened to keep them there (:func:`epoch_steps`).

Measured (2026-12-06, the 2-core EPYC, default recipe on dsb2018-nuclei, 16 filters): an epoch of
16 steps took 11.4 s, of which 8.5 s were steps, 1.4 s the validation of 27 whole images, 0.3 s
the checkpoints, 0.3 s the doctor and the rest Keras' epoch end: a quarter of the budget went to
epoch ends (in the three quality runs of 2026-12-06, 13.4 s an epoch: over 40%)."""
MIN_EPOCHS_WIDER = 60
"""A wider U-Net is chosen only when it still makes this many passes over the training images
in the budget (counted as epochs of one pass each, with a validation after each: the runs below
had such epochs; :func:`epoch_steps` may lengthen them afterwards).

benchmarks/RESULTS.md (quality, 15 minutes on 2 cores, held-out Dice): the 16-filter U-Net scored
0.854-0.876 after 25-27 passes, 0.880-0.888 after 38-46 and 0.882-0.890 after 62-69; the
32-filter one 0.873 after 8-15 passes and 0.877 after 24 (2026-12-06, when this threshold was
25 and the wider net was chosen). No run showed the wider net ahead, so it must reach the pass
count at which the narrow one scored best; the narrower wins otherwise.
"""


def tolerance_s(total_s: float) -> float:
    """How far past the budget a command may end: 5% of it or 30 s, whichever is larger.

    Example:
        >>> tolerance_s(900.0), tolerance_s(240.0)
        (45.0, 30.0)
    """
    return max(0.05 * total_s, 30.0)


class Deadline:
    """The wall-clock deadline of one command, started when the command starts.

    Args:
        total_s: the budget in seconds; ``None`` for no budget (``remaining()`` is infinite).
        clock: a monotonic clock in seconds (tests pass a fake one).
        started: when the command started, on ``clock`` (default: now). A command that learns
            its budget only after reading its configuration records its start first and
            creates the deadline later (:meth:`with_budget`).

    Phases record their wall time with :meth:`mark` (``run.json`` keeps them).

    Example:
        >>> ticks = iter([0.0, 12.0, 12.0, 50.0]).__next__
        >>> d = Deadline.from_minutes(1, clock=ticks)
        >>> d.mark("setup")
        12.0
        >>> d.remaining(), d.phases
        (48.0, {'setup': 12.0})
    """

    def __init__(
        self,
        total_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        self.total_s = None if total_s is None else float(total_s)
        self.clock = clock
        self.start = clock() if started is None else started
        self._last_mark = self.start
        self.phases: dict[str, float] = {}

    @classmethod
    def from_minutes(
        cls, minutes: float | None, clock: Callable[[], float] = time.monotonic
    ) -> Deadline:
        """A deadline ``minutes`` from now (``None``: unbounded)."""
        return cls(None if minutes is None else minutes * 60.0, clock=clock)

    def with_budget(self, minutes: float | None) -> Deadline:
        """This deadline if it has a budget, else one of ``minutes`` from the same start.

        Example:
            >>> ticks = iter([0.0, 5.0]).__next__
            >>> Deadline(None, clock=ticks).with_budget(1).remaining()  # 5 s already gone
            55.0
        """
        if self.bounded or minutes is None:
            return self
        return Deadline(minutes * 60.0, clock=self.clock, started=self.start)

    @property
    def bounded(self) -> bool:
        return self.total_s is not None

    def elapsed(self) -> float:
        """Seconds since the command started."""
        return self.clock() - self.start

    def remaining(self) -> float:
        """Seconds left (negative once past; ``inf`` without a budget)."""
        if self.total_s is None:
            return math.inf
        return self.total_s - self.elapsed()

    def share(self, fraction: float) -> float:
        """At most ``fraction`` of the whole budget, and never more than what is left."""
        if self.total_s is None:
            return math.inf
        return max(0.0, min(fraction * self.total_s, self.remaining()))

    def mark(self, phase: str) -> float:
        """Record the seconds since the previous mark as ``phase`` (added up if repeated)."""
        now = self.clock()
        seconds = now - self._last_mark
        self._last_mark = now
        self.phases[phase] = round(self.phases.get(phase, 0.0) + seconds, 2)
        return seconds

    def to_dict(self) -> dict:
        """The budget, the time spent and the phases, for ``run.json``."""
        return {
            "budget_s": self.total_s,
            "elapsed_s": round(self.elapsed(), 2),
            "phases_s": dict(self.phases),
        }


def evaluation_reserve(
    per_image_s: float, n_images: int, load_s: float = 2.0, report_s: float = REPORT_S
) -> float:
    """Seconds to keep for the final evaluation and report, from the measured inference time.

    Example:
        >>> evaluation_reserve(0.2, 30, load_s=2.0, report_s=8.0)
        19.0
    """
    return load_s + RESERVE_FACTOR * per_image_s * n_images + report_s


@dataclass(frozen=True)
class StepPlan:
    """How many steps the schedule spans, and in how many (fractional) epochs."""

    total_steps: int
    epochs: float
    epoch_s: float


def plan_steps(
    train_s: float,
    step_s: float,
    steps_per_epoch: int,
    val_s: float,
    max_epochs: int,
    epoch_end_s: float = EPOCH_END_S,
) -> StepPlan:
    """The training steps that fit in ``train_s`` seconds, validation and epoch ends counted.

    A partial last epoch counts too (training stops mid-epoch), but it is followed by its own
    validation, so each epoch started costs a validation.

    Example:
        >>> plan_steps(100.0, 1.0, 10, val_s=5.0, max_epochs=50)  # 17 s an epoch: 5 + 15/17
        StepPlan(total_steps=58, epochs=5.8, epoch_s=17.0)
    """
    cap = max_epochs * steps_per_epoch
    epoch_s = step_s * steps_per_epoch + val_s + epoch_end_s
    if math.isinf(train_s) or step_s <= 0:
        return StepPlan(cap, float(max_epochs), epoch_s)
    full = int(max(0.0, train_s) // epoch_s)
    left = max(0.0, train_s) - full * epoch_s - val_s - epoch_end_s
    partial = int(max(0.0, left) // step_s)
    total = max(1, min(cap, full * steps_per_epoch + min(partial, steps_per_epoch - 1)))
    return StepPlan(total, round(total / steps_per_epoch, 2), epoch_s)


def epoch_steps(
    steps: int,
    step_s: float,
    val_s: float,
    epoch_end_s: float = EPOCH_END_S,
    share: float = EPOCH_END_SHARE,
) -> int:
    """Steps per epoch that keep the epoch end within ``share`` of the epoch (at least ``steps``).

    With ``e = val_s + epoch_end_s`` the epoch end's share is ``e / (k * step_s + e)``; it is at
    most ``share`` from ``k = e (1 - share) / (share step_s)`` steps on.

    Example:
        >>> epoch_steps(16, 0.5, 1.4)  # end 3.4 s: 9 x 3.4 / 0.5 = 61.2
        62
        >>> epoch_steps(16, 5.0, 1.4)  # slow steps: one pass over the data is long enough
        16
    """
    if step_s <= 0:
        return steps
    end_s = max(0.0, val_s) + epoch_end_s
    return max(steps, math.ceil(end_s * (1 - share) / (share * step_s) - 1e-9))


def must_stop(remaining_s: float, step_s: float, val_s: float, epoch_end_s: float = EPOCH_END_S):
    """True when one more step and the validation after it would cross the training deadline.

    Example:
        >>> must_stop(10.0, 2.0, 5.0), must_stop(6.0, 2.0, 5.0)
        (False, True)
    """
    return remaining_s < step_s + val_s + epoch_end_s


def wider_may_qualify(passes: float, width: int, wider: int, min_epochs: int = MIN_EPOCHS_WIDER):
    """Whether a U-Net ``wider`` filters wide could still make ``min_epochs`` passes, when one
    ``width`` filters wide makes ``passes``: worth timing only then.

    A step takes at least as much longer as the net is wider (the convolutions' FLOPs grow with
    the square of the width; 2.8-3.5x measured from 16 to 32 filters on 2 cores).

    Example:
        >>> wider_may_qualify(72, 16, 32), wider_may_qualify(130, 16, 32)
        (False, True)
    """
    return passes * width / wider >= min_epochs


@dataclass(frozen=True)
class Candidate:
    """One configuration tried before training, with its measured step time."""

    name: str
    overrides: dict
    step_s: float
    rank: int  # larger = more capacity (preferred when it gets enough epochs)


def choose_configuration(
    candidates: list[Candidate],
    train_s: float,
    steps_per_epoch: int,
    val_s: dict[str, float] | None = None,
    min_epochs: int = MIN_EPOCHS_WIDER,
) -> tuple[Candidate, str]:
    """The candidate expected to give the best validation Dice in the budget, and why.

    The rule (from the measured budget runs, see :data:`MIN_EPOCHS_WIDER`): the one with the most
    capacity that still trains ``min_epochs`` epochs; if none does, the fastest one, which trains
    the most epochs.

    Example:
        >>> c32 = Candidate("32 filters", {"model.base_filters": 32}, 2.5, rank=2)
        >>> c16 = Candidate("16 filters", {"model.base_filters": 16}, 1.0, rank=1)
        >>> choose_configuration([c32, c16], 900.0, 16)[0].name
        '16 filters'
    """
    if not candidates:
        raise ValueError("choose_configuration needs at least one candidate")
    val_s = val_s or {}
    epochs = {
        c.name: plan_steps(train_s, c.step_s, steps_per_epoch, val_s.get(c.name, 0.0), 10**6).epochs
        for c in candidates
    }
    measured = ", ".join(
        f"{c.name}: {c.step_s:.2f} s a step, about {epochs[c.name]:.0f} passes over the data"
        for c in candidates
    )
    enough = [c for c in candidates if epochs[c.name] >= min_epochs]
    if enough:
        chosen = max(enough, key=lambda c: (c.rank, -c.step_s))
        why = f"the widest that still makes >= {min_epochs} passes over the data in the budget"
    else:
        chosen = min(candidates, key=lambda c: c.step_s)
        why = (
            f"none makes {min_epochs} passes over the data in the budget: the fastest, "
            "which makes the most"
        )
    return chosen, f"Configuration: {chosen.name} ({why}; measured {measured})."
