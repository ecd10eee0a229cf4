"""``epoch-start-wait``: epochs that begin with a long idle wait before their first step.

The :class:`~segdoctor.doctor.callback.DoctorCallback` times, in each epoch after the first (the
first traces and compiles the step), the wall time from the epoch's begin to the end of its first
step, and every later step from the end of the one before. An epoch "waits" when its first step
took :data:`WAIT_STEPS` times the median step and at least :data:`WAIT_MIN_S` longer. Two or more
such epochs make a finding (one is a checkpoint or a busy moment, not a pattern): a warning when the
waits add up to :data:`LOST_SHARE` of the training time, else info.

Where it comes from (benchmarks/RESULTS.md, "The epoch-start stall"): on the TensorFlow backend
Keras turns a ``keras.utils.PyDataset`` into ``tf.data.Dataset.from_generator(...)
.prefetch(AUTOTUNE)``; releasing the previous epoch's iterator waits for tf.data's autotuning
thread, whose sleep grows towards a minute. In 15-minute runs on 2 cores, 3-4 epochs in 10 began
with the machine idle for 38-40 s (steps of 0.5 s): about a tenth of the budget. Other causes look
the same from here: an ``on_epoch_end`` that re-reads or re-indexes the files, a worker pool
restarted every epoch.

Example:
    >>> [f.id for f in epoch_start_findings([40.0, 0.6, 39.0], [0.5] * 200, 300.0)]
    ['epoch-start-wait']
    >>> epoch_start_findings([0.6, 0.5, 0.7], [0.5] * 200, 300.0)
    []
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

WAIT_STEPS = 10.0
"""A first step that takes this many median steps (and :data:`WAIT_MIN_S` more) waited."""
WAIT_MIN_S = 2.0
"""Seconds a first step must exceed the median step by to count as a wait."""
LOST_SHARE = 0.05
"""Share of the training time lost to waits from which the finding is a warning (the measured
stall cost 10%); below it the finding is info."""


def epoch_start_findings(
    first_step_s: Sequence[float], step_s: Sequence[float], train_s: float
) -> list[Finding]:
    """``epoch-start-wait`` from the first-step times of epochs 2, 3, ... and the other steps.

    Args:
        first_step_s: Per epoch after the first, seconds from its begin to its first step's end.
        step_s: The other steps' times (from the previous step's end).
        train_s: Wall seconds of training so far.
    """
    if len(step_s) < 3 or not first_step_s or train_s <= 0:
        return []
    step = float(np.median(step_s))
    waits = [t - step for t in first_step_s if t >= WAIT_STEPS * step and t - step >= WAIT_MIN_S]
    if len(waits) < 2:
        return []  # none, or one slow start (a checkpoint, a busy machine): not a pattern
    lost = float(sum(waits))
    share = lost / train_s
    return [
        make_finding(
            "epoch-start-wait",
            {
                "epochs_that_waited": len(waits),
                "epochs_timed": len(first_step_s),
                "median_wait_s": round(float(np.median(waits)), 2),
                "median_step_s": round(step, 4),
                "lost_s": round(lost, 1),
                "training_s": round(train_s, 1),
                "lost_share": round(share, 4),
                "warn_from_share": LOST_SHARE,
            },
            severity="warning" if share >= LOST_SHARE else "info",
            waited=len(waits),
            timed=len(first_step_s),
            wait=float(np.median(waits)),
            share=share,
        )
    ]
