"""Measurements a budgeted run takes before training: step time, inference time, candidates.

Nothing here is guessed: the step time of each candidate configuration is timed on a throwaway
model of it, and the final evaluation's time is predicted from the timed full-size inference of a
few validation images. The decisions built on them are in :mod:`segdoctor.train.budget`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np

from segdoctor.train.budget import (
    MIN_EPOCHS_WIDER,
    Candidate,
    Deadline,
    choose_configuration,
    evaluation_reserve,
    plan_steps,
    wider_may_qualify,
)
from segdoctor.train.config import RunConfig
from segdoctor.train.data import PreparedData
from segdoctor.train.evaluate import evaluate_pairs

Log = Callable[[str], None]
"""Where a run's progress messages go (``print_log`` by default)."""


def print_log(message: str) -> None:
    """Print a progress message at once (the default :data:`Log`)."""
    print(message, flush=True)


Build = Callable[[RunConfig, PreparedData], keras.Model]
"""``(config, prepared) -> compiled throwaway model`` (the recipe's ``_throwaway_model``)."""

WIDTHS = (32, 16)
"""U-Net widths (``model.base_filters``) tried when the user did not set one."""


@dataclass
class Measurement:
    """What a throwaway model of one configuration showed."""

    step_s: float  # median training step, the compiling first step left out
    per_image_s: float | None  # full-size prediction of one validation image (None: not timed)
    trace_s: float  # extra seconds the first prediction took (tracing a new shape)
    seconds: float  # wall time the whole measurement took
    compile_s: float = 0.0  # extra seconds of the first training step (tracing, compilation)
    model: keras.Model | None = None  # the compiled throwaway model, when kept for the LR test

    def val_s(self, n_images: int) -> float:
        """Expected seconds of one validation pass over ``n_images``."""
        return (self.per_image_s or 0.0) * n_images

    def reserve_s(self, n_images: int) -> float:
        """Seconds to keep for the final evaluation and the report."""
        if self.per_image_s is None:
            return evaluation_reserve(0.0, 0)
        return self.trace_s + evaluation_reserve(self.per_image_s, n_images)


def time_steps(model: keras.Model, batch: tuple, steps: int, max_seconds: float) -> list[float]:
    """Seconds of up to ``steps`` training steps on one batch; stops when the next would not fit.

    The first step (tracing and compilation) is always run and returned first.
    """
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(steps):
        begin = time.perf_counter()
        model.train_on_batch(batch[0], batch[1])  # returns host values: the step has finished
        times.append(time.perf_counter() - begin)
        typical = float(np.median(times[1:])) if len(times) > 1 else 0.0
        if len(times) >= 2 and time.perf_counter() - started + typical > max_seconds:
            break
    return times


def time_inference(model: keras.Model, prepared: PreparedData, images: int = 3):
    """(per-image seconds, seconds of tracing to expect) of full-size prediction and scoring.

    Times the final evaluation's own code (:func:`evaluate_pairs`) twice on each of the first
    ``images`` validation images: the second call is the per-image cost, the first one's extra
    time is tracing the predict function for that image size. TensorFlow stops retracing after a
    few sizes, so the expected tracing is twice the largest extra time seen.
    """
    pairs = prepared.val_pairs[:images]
    if not pairs:
        return None, 0.0

    def timed(pair) -> float:
        begin = time.perf_counter()
        evaluate_pairs(model, [pair], prepared.load, prepared.num_classes, prepared.ignore_index)
        return time.perf_counter() - begin

    times = [(timed(pair), timed(pair)) for pair in pairs]  # (with tracing, without)
    trace = max(0.0, *(first - again for first, again in times))
    return float(np.median([again for _, again in times])), 2 * trace


def measure(
    build: Build,
    config: RunConfig,
    prepared: PreparedData,
    max_seconds: float,
    steps: int = 4,
    inference: bool = True,
    keep: bool = False,
) -> Measurement:
    """Time training steps (and full-size inference) of a throwaway model of ``config``.

    ``steps=0`` times inference only (the LR range test then times the steps). ``keep``: return
    the compiled model in the measurement instead of freeing it, so that the LR range test runs
    on it without compiling its training step a second time (15 s on a busy 2-core machine).
    """
    started = time.perf_counter()
    model = build(config, prepared)
    data = prepared.train
    if len(model.outputs) > 1:  # deep supervision: one target per output
        names = list(model.output_names)
        batch = data[0]
        batch = (batch[0], {name: batch[1] for name in names})
    else:
        batch = data[0]
    times = time_steps(model, batch, steps, max_seconds) if steps else []
    per_image, trace = (None, 0.0)
    if inference:
        single = model if len(model.outputs) == 1 else keras.Model(model.inputs, model.outputs[0])
        per_image, trace = time_inference(single, prepared)
    step_s = float(np.median(times[1:])) if len(times) > 1 else times[0] if times else 0.0
    compile_s = max(0.0, times[0] - step_s) if times else 0.0
    if not keep:
        model = None
        clear_session_keeping_run_state()
    seconds = time.perf_counter() - started
    return Measurement(step_s, per_image, trace, seconds, compile_s, model)


def clear_session_keeping_run_state() -> None:
    """Free throwaway models; clear_session() also resets the dtype policy and distribution."""
    policy, distribution = keras.config.dtype_policy(), keras.distribution.distribution()
    keras.backend.clear_session()
    keras.config.set_dtype_policy(policy)
    if distribution is not None:
        keras.distribution.set_distribution(distribution)


def width_candidates(config: RunConfig) -> list[tuple[str, RunConfig, int]]:
    """(name, config, rank) of the widths to try; only the configured one when it is explicit."""
    if config.is_explicit("model.base_filters"):
        return []
    widths = sorted({config.model.base_filters, *WIDTHS}, reverse=True)
    return [
        (f"{w} base filters", replace(config, model=replace(config.model, base_filters=w)), w)
        for w in widths
    ]


def select_configuration(
    build: Build,
    config: RunConfig,
    prepared: PreparedData,
    deadline: Deadline,
    other_s: float,
    search_s: float,
    log: Log,
    keep: bool = False,
) -> tuple[RunConfig, Measurement, dict[str, Any]]:
    """Choose the U-Net width expected to give the best validation Dice in the budget.

    Candidates are timed narrowest first. A wider one is only timed when the narrower one
    trains enough epochs for the wider to have a chance (a wider net is never faster), and while
    the search's share of the budget (``search_s``) lasts. ``other_s``: seconds the phases
    between this search and training take (the LR range test); the final evaluation's time is
    predicted from each candidate's timed inference. ``keep``: the chosen candidate's compiled
    model is returned in its measurement (for the LR range test).

    Returns the chosen configuration, its measurement and a record for ``run.json``.
    """
    n_val = len(prepared.val_pairs)
    spe = len(prepared.train)
    measured: list[tuple[Candidate, RunConfig, Measurement]] = []
    skipped: list[str] = []
    begun = time.perf_counter()
    for name, candidate_config, rank in sorted(width_candidates(config), key=lambda c: c[2]):
        left = search_s - (time.perf_counter() - begun)
        if measured:
            prev = measured[-1]
            train_s = deadline.remaining() - other_s - prev[2].reserve_s(n_val)
            epochs = plan_steps(train_s, prev[0].step_s, spe, prev[2].val_s(n_val), 10**6).epochs
            if not wider_may_qualify(epochs, prev[0].rank, rank):
                skipped.append(
                    f"{name}: not timed ({prev[0].name} trains {epochs:.0f} passes, so this one, "
                    f"at least {rank / prev[0].rank:g}x slower a step, fewer than {MIN_EPOCHS_WIDER})"
                )
                continue
            if left < 2 * prev[2].seconds:
                skipped.append(f"{name}: not timed (the search's share of the budget is used)")
                continue
        m = measure(build, candidate_config, prepared, max(left, 0.0), keep=keep)
        overrides = {"model.base_filters": rank}
        measured.append((Candidate(name, overrides, m.step_s, rank), candidate_config, m))
    candidates = [c for c, _, _ in measured]
    reserve = max(m.reserve_s(n_val) for _, _, m in measured)
    train_s = deadline.remaining() - other_s - reserve
    val_s = {c.name: m.val_s(n_val) for c, _, m in measured}
    chosen, why = choose_configuration(candidates, train_s, spe, val_s)
    if skipped:
        why += " " + "; ".join(skipped) + "."
    log(why)
    chosen_config, chosen_m = next((cfg, m) for c, cfg, m in measured if c is chosen)
    for _, _, m in measured:  # only the chosen model is kept (for the LR range test)
        if m is not chosen_m:
            m.model = None
    record = {
        "chosen": chosen.overrides,
        "why": why,
        "candidates": {c.name: {"step_s": round(c.step_s, 3)} for c in candidates},
        "skipped": skipped,
    }
    return chosen_config, chosen_m, record
