"""The keywords every loss takes, validated once in plain Python, with errors that say how to fix them.

Example:
    >>> make_options(mode="multiclass", class_weights=[0, 1, 2]).class_weights
    (0.0, 1.0, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from segdoctor.errors import ConfigError, check_choice

__all__ = [
    "MODES",
    "PER_IMAGE",
    "VALIDATE_POLICIES",
    "WEIGHT_TYPES",
    "Options",
    "Tensor",
    "as_bool",
    "as_float",
    "as_int",
    "make_options",
]

MODES: tuple[str, ...] = ("binary", "multiclass", "multilabel")
PER_IMAGE = True
"""The default reduction of every loss: one Dice per image, then the mean (``per_image=True``).

The same default as the metrics (``DiceScore``), the recipe and the doctor, which warns
(``dice-batch-pooled``) when a loss pools the batch: pooled, a missed small object next to a large
one barely counts. Pass ``per_image=False`` for nnU-Net's "batch Dice"."""
VALIDATE_POLICIES: tuple[str, ...] = ("first", "always", "never")  # when value checks run
WEIGHT_TYPES: tuple[str, ...] = ("square", "simple", "uniform")

Tensor = Any  # a backend tensor (torch.Tensor, jax.Array, tf.Tensor) or array-like


@dataclass(frozen=True)
class Options:
    """The keywords shared by every loss, validated (build it with :func:`make_options`)."""

    mode: str = "binary"
    from_logits: bool = False
    per_image: bool = PER_IMAGE
    include_background: bool = False
    class_weights: tuple[float, ...] | None = None
    ignore_index: int | None = None
    smooth: float = 1.0
    squared_denominator: bool = False
    num_classes: int | None = None
    validate: bool = True  # run the eager value checks (a per-call switch, not configuration)

    def config(self) -> dict[str, Any]:
        """The options as a Keras config: plain values, without the per-call ``validate``."""
        out = asdict(self)
        del out["validate"]
        if self.class_weights is not None:
            out["class_weights"] = list(self.class_weights)
        return out


def as_bool(name: str, value: object) -> bool:
    """``value`` as a bool; ConfigError for anything but a bool (``1`` is not ``True`` here)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigError(
        f"{name} must be True or False",
        expected="a bool",
        received=repr(value),
        fix=f"pass {name}=True or {name}=False.",
    )


def as_int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` as an int of at least ``minimum``; ConfigError otherwise (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer", received=repr(value))
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}", received=repr(value))
    return int(value)


def as_float(name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite float >= 0 (> 0 with ``positive=True``); ConfigError otherwise."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number", received=repr(value)) from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ConfigError(
            f"{name} must be a finite number {'> 0' if positive else '>= 0'}",
            received=repr(value),
        )
    return number


def _as_weights(class_weights: Sequence[float] | None) -> tuple[float, ...] | None:
    if class_weights is None:
        return None
    if isinstance(class_weights, (str, bytes)) or not hasattr(class_weights, "__len__"):
        raise ConfigError(
            "class_weights must be a sequence with one weight per class",
            received=repr(class_weights),
        )
    weights = tuple(as_float("class_weights entry", w) for w in class_weights)
    if not any(w > 0 for w in weights):
        raise ConfigError("class_weights must contain a positive weight", received=repr(weights))
    return weights


def _as_smooth(smooth: object) -> float:
    value = as_float("smooth", smooth)
    if value == 0:
        raise ConfigError(
            "smooth must be > 0",
            expected="a positive number, for example 1.0",
            received="smooth=0",
            fix="with smooth=0 an empty mask scores 0/0 and false positives on empty images get no "
            "gradient; use a small positive value (1.0 is the default).",
        )
    return value


def make_options(
    mode: str = "binary",
    from_logits: bool = False,
    per_image: bool = PER_IMAGE,
    include_background: bool = False,
    class_weights: Sequence[float] | None = None,
    ignore_index: int | None = None,
    smooth: float = 1.0,
    squared_denominator: bool = False,
    num_classes: int | None = None,
    validate: bool = True,
) -> Options:
    """Validate the shared loss keywords (see :func:`segdoctor.losses.soft_dice_loss`).

    Raises:
        ConfigError: for a value the loss cannot mean, saying how to fix it.
    """
    mode = check_choice("mode", mode, MODES)
    include_background = as_bool("include_background", include_background)
    if include_background and mode != "multiclass":
        raise ConfigError(
            f'include_background=True has no meaning in mode="{mode}"',
            expected='include_background=True only with mode="multiclass" (channel 0 = background)',
            received=f'mode="{mode}", whose channels are all foreground',
            fix="drop include_background, or use a softmax output with one channel per class "
            'including background and mode="multiclass".',
        )
    smooth_value = _as_smooth(smooth)
    weights = _as_weights(class_weights)
    return Options(
        mode=mode,
        from_logits=as_bool("from_logits", from_logits),
        per_image=as_bool("per_image", per_image),
        include_background=include_background,
        class_weights=weights,
        ignore_index=None if ignore_index is None else as_int("ignore_index", ignore_index),
        smooth=smooth_value,
        squared_denominator=as_bool("squared_denominator", squared_denominator),
        num_classes=None if num_classes is None else as_int("num_classes", num_classes, 1),
        validate=as_bool("validate", validate),
    )
