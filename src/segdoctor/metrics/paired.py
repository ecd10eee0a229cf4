"""A paired per-image comparison of two sets of Dice scores (bootstrap interval, sign-flip test).

Example:
    >>> r = paired_difference({"a": 1.0, "b": 0.5}, {"a": 0.5, "b": 0.5})
    >>> r["images"], r["wins"]
    (2, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["BOOTSTRAP_ROUNDS", "paired_difference"]

BOOTSTRAP_ROUNDS = 10_000  # resamples of the paired comparison


def paired_difference(
    fixed: Mapping[str, float],
    diagnosed: Mapping[str, float],
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
    empty_correct: float | None = None,
) -> dict[str, Any]:
    """Per-image paired comparison: mean of ``fixed - diagnosed`` with a bootstrap 95% interval.

    The method of benchmarks/bench_quality.py: images scored by only one side (NaN, e.g. empty
    truth and empty prediction under the skip policy) are left out unless ``empty_correct`` is
    given; the interval is the 2.5 and 97.5 percentiles of the means of ``rounds`` resamples of
    the images; the p-value is a two-sided sign-flip permutation test.

    Args:
        fixed, diagnosed: Dice per image name.
        rounds: Bootstrap and permutation rounds.
        seed: Seed of the resampling.
        empty_correct: The score of a NaN (an empty mask predicted empty) on an image the other
            side scored, e.g. 1.0: one run predicts nothing on an empty mask and the other
            predicts foreground there (Dice 0), which leaving the image out would hide. Images
            NaN on both sides are left out either way (both right: no difference to measure).

    Returns:
        ``images``, ``mean_difference``, ``median_difference``, ``ci95`` ([low, high]), ``wins``,
        ``losses``, ``p_value``, ``empty_scored`` (images scored by ``empty_correct``);
        ``images`` 0 and no other keys when nothing is paired.

    Example:
        >>> r = paired_difference({"a": 1.0, "b": 0.5}, {"a": 0.5, "b": 0.5})
        >>> r["mean_difference"], r["wins"], r["losses"]
        (0.25, 1, 0)
        >>> nan = float("nan")  # "e": an empty mask, predicted empty by the fix only
        >>> paired_difference({"a": 1.0, "e": nan}, {"a": 1.0, "e": 0.0}, empty_correct=1.0)["wins"]
        1
    """

    def scored(a: float, b: float) -> bool:
        return (np.isfinite(a) and np.isfinite(b)) or (
            empty_correct is not None and (np.isfinite(a) or np.isfinite(b))
        )

    def score(v: float) -> float:
        return v if np.isfinite(v) else float(empty_correct)  # type: ignore[arg-type]

    names = sorted(n for n in set(fixed) & set(diagnosed) if scored(fixed[n], diagnosed[n]))
    d = np.array([score(fixed[n]) - score(diagnosed[n]) for n in names], dtype=float)  # (N,)
    if not len(d):
        return {"images": 0}
    rng = np.random.default_rng(seed)
    boot = np.concatenate(
        [
            d[rng.integers(0, len(d), (chunk, len(d)))].mean(axis=1)  # (chunk,)
            for chunk in _chunks(rounds)
        ]
    )
    flips = rng.choice([-1.0, 1.0], size=(rounds, len(d)))  # (rounds, N)
    null = np.abs((flips * d).mean(axis=1))
    return {
        "images": len(d),
        "mean_difference": float(d.mean()),
        "median_difference": float(np.median(d)),
        "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "wins": int((d > 1e-4).sum()),
        "losses": int((d < -1e-4).sum()),
        "p_value": float((1 + (null >= abs(d.mean()) - 1e-12).sum()) / (rounds + 1)),
        "empty_scored": sum(
            not (np.isfinite(fixed[n]) and np.isfinite(diagnosed[n])) for n in names
        ),
    }


def _chunks(rounds: int, size: int = 1000) -> list[int]:
    return [min(size, rounds - start) for start in range(0, rounds, size)]
