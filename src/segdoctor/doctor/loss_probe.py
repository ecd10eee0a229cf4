"""Black-box probing of a loss function on synthetic segmentation cases.

The user's loss is called, never read: whatever it is (a Keras loss, a hand-written Dice, a metric
passed by mistake), its values and gradient on a few canonical cases reveal its behaviour.

Cases, at 32x32 (channels-last, ``C`` output channels; class 0 is background when ``C > 1``):

- ``small``: one 3x3 object (9 pixels) per foreground class; ``large``: one 16x16 object.
- predictions: ``perfect`` (the truth), ``empty`` (all background), ``full`` (all foreground),
  ``inverted`` (1 - truth), ``soft`` (0.5 everywhere).

Predictions are exact probabilities (0 and 1 included); when the loss takes logits
(``from_logits=True``) they are clipped to [1e-3, 1 - 1e-3] and passed as logits. A loss is *Dice-like* when it scores the perfect
prediction near 0 and the inverted one near 1; the ratio checks below apply to Dice-like losses only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from keras import ops

from segdoctor.doctor._grad import value_and_grad
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

SIZE = 32
EPS = 1e-3


@dataclass(frozen=True)
class LossProbe:
    """Measured behaviour of a loss (all values are the mean of what the loss returns)."""

    perfect: float
    empty_small: float  # small object missed entirely
    empty_large: float
    inverted_large: float
    full_small: float
    empty_truth_empty_pred: float
    pooled_batch: float  # batch [small missed, large perfect]
    per_image_mean: float  # mean of the two losses computed one image at a time
    grad_abs_max: float  # at the soft prediction
    sparse_labels: bool
    missed_cost: float = math.nan  # the large object with 32 of its pixels predicted background
    extra_cost: float = math.nan  # ... with 32 background pixels next to it predicted foreground

    @property
    def dice_like(self) -> bool:
        return (
            math.isfinite(self.perfect) and self.perfect < 0.1 and 0.8 <= self.inverted_large <= 1.2
        )


def _truth(kind: str, channels: int) -> np.ndarray:
    """(H, W) class map: object of every foreground class."""
    t = np.zeros((SIZE, SIZE), np.int32)
    classes = max(1, channels - 1)
    if kind == "small":
        for c in range(classes):
            y, x = 4 + 8 * (c % 3), 4 + 8 * (c // 3 % 3)
            t[y : y + 3, x : x + 3] = c + 1
    elif kind == "large":
        t[8:24, 8:24] = 1
    return t


def _onehot(classmap: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return (classmap > 0).astype("float32")[..., None]  # (H, W, 1)
    return np.eye(channels, dtype="float32")[classmap]  # (H, W, C)


def _pred(kind: str, truth: np.ndarray, channels: int) -> np.ndarray:
    onehot = _onehot(truth, channels)
    if kind == "perfect":
        p = onehot
    elif kind == "empty":
        p = _onehot(np.zeros_like(truth), channels)
    elif kind == "full":
        p = _onehot(np.ones_like(truth), channels)
    elif kind == "inverted":
        p = 1.0 - onehot
        if channels > 1:
            p = p / p.sum(-1, keepdims=True)
    else:  # soft
        p = np.full_like(onehot, 0.5 if channels == 1 else 1.0 / channels)
    return p.astype("float32")


def _to_logits(p: np.ndarray, channels: int) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    if channels > 1:
        p = p / p.sum(-1, keepdims=True)
    return (np.log(p / (1 - p)) if channels == 1 else np.log(p)).astype("float32")


class _Caller:
    """Calls the loss with the label format it accepts (dense one-hot, or sparse (B, H, W, 1))."""

    def __init__(self, loss: Callable, channels: int, from_logits: bool) -> None:
        self.loss, self.channels, self.from_logits = loss, channels, from_logits
        self.sparse = False
        try:
            self.value(
                [_truth("large", channels)], [_pred("soft", _truth("large", channels), channels)]
            )
        except Exception:
            if channels == 1:
                raise
            self.sparse = True
            self.value(
                [_truth("large", channels)], [_pred("soft", _truth("large", channels), channels)]
            )

    def _y(self, truths: list[np.ndarray]) -> np.ndarray:
        if self.sparse:
            return np.stack(truths)[..., None].astype("float32")  # (B, H, W, 1)
        return np.stack([_onehot(t, self.channels) for t in truths])  # (B, H, W, C)

    def _p(self, preds: list[np.ndarray]) -> np.ndarray:
        p = np.stack(preds)  # (B, H, W, C)
        return _to_logits(p, self.channels) if self.from_logits else p

    def value(self, truths: list[np.ndarray], preds: list[np.ndarray]) -> float:
        y = ops.convert_to_tensor(self._y(truths))
        out = self.loss(y, ops.convert_to_tensor(self._p(preds)))
        return float(ops.convert_to_numpy(ops.mean(ops.cast(out, "float32"))))

    def grad(self, truths: list[np.ndarray], preds: list[np.ndarray]) -> np.ndarray:
        y = ops.convert_to_tensor(self._y(truths))
        _, g = value_and_grad(lambda p: self.loss(y, p), self._p(preds))
        return g


def measure_loss(
    loss: Callable, *, channels: int = 1, from_logits: bool | None = None
) -> LossProbe:
    """Evaluate ``loss(y_true, y_pred)`` on the synthetic cases and take its gradient.

    Args:
        loss: a Keras loss object or a function ``(y_true, y_pred) -> tensor``.
        channels: output channels of the model (1 = sigmoid binary).
        from_logits: whether the loss takes logits; default: the loss' own ``from_logits``.

    Example:
        >>> import keras
        >>> keras.backend.backend() in ("torch", "jax", "tensorflow") and \\
        ...     measure_loss(keras.losses.Dice()).dice_like
        True
    """
    if from_logits is None:
        from_logits = loss_from_logits(loss) or False
    call = _Caller(loss, channels, from_logits)
    small, large, empty = (_truth(k, channels) for k in ("small", "large", "empty"))
    v = call.value
    pooled = v([small, large], [_pred("empty", small, channels), _pred("perfect", large, channels)])
    per_image = 0.5 * (
        v([small], [_pred("empty", small, channels)])
        + v([large], [_pred("perfect", large, channels)])
    )
    try:
        grad = call.grad(
            [small, large], [_pred("soft", small, channels), _pred("soft", large, channels)]
        )
        grad_max = float(np.max(np.abs(grad))) if np.all(np.isfinite(grad)) else math.inf
    except Exception:  # a backend limitation (e.g. torch + sparse CE on probabilities): unknown
        grad_max = math.nan
    perfect_large = v([large], [_pred("perfect", large, channels)])
    missed, extra = _edge_errors(large, channels)
    return LossProbe(
        perfect=v([small, large], [_pred("perfect", t, channels) for t in (small, large)]),
        empty_small=v([small], [_pred("empty", small, channels)]),
        empty_large=v([large], [_pred("empty", large, channels)]),
        inverted_large=v([large], [_pred("inverted", large, channels)]),
        full_small=v([small], [_pred("full", small, channels)]),
        empty_truth_empty_pred=v([empty], [_pred("empty", empty, channels)]),
        pooled_batch=pooled,
        per_image_mean=per_image,
        grad_abs_max=grad_max,
        sparse_labels=call.sparse,
        missed_cost=v([large], [missed]) - perfect_large,
        extra_cost=v([large], [extra]) - perfect_large,
    )


EDGE_ERRORS = 32
"""Pixels the asymmetry probe gets wrong on each side of the large object's boundary."""
MISSED_OVER_EXTRA = 0.5
"""``loss-favours-background``: a missed foreground pixel costs less than this share of a false
foreground pixel. Plain and focal cross-entropy: 1 by construction; a Dice loss about 1.1 on the
probe's 256-pixel object; inverse-frequency class weights above 1; weights inverted (frequency
over mean, the third blind test's fault: foreground 0.27, background 1.73): 0.16."""


def _edge_errors(truth: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The perfect prediction of ``truth`` with :data:`EDGE_ERRORS` pixels wrong: object pixels
    on its boundary predicted background (missed), and background pixels next to it predicted
    foreground (extra)."""
    fg = truth > 0
    inner = np.argwhere(fg & ~np.roll(fg, 1, 0))[:EDGE_ERRORS]  # its top row(s)
    outer = np.argwhere(~fg & np.roll(fg, -1, 0))[:EDGE_ERRORS]  # the row above it
    missed, extra = truth.copy(), truth.copy()
    missed[tuple(inner.T)] = 0
    extra[tuple(outer.T)] = 1
    return _pred("perfect", missed, channels), _pred("perfect", extra, channels)


def loss_from_logits(loss: object) -> bool | None:
    """The loss' ``from_logits`` setting when it declares one (Keras and segdoctor losses)."""
    for holder in (loss, getattr(loss, "_fn_kwargs", None)):
        if isinstance(holder, dict) and "from_logits" in holder:
            return bool(holder["from_logits"])
        value = getattr(holder, "from_logits", None)
        if isinstance(value, bool):
            return value
    return None


def loss_name(loss: object) -> str:
    """A readable name: the class, function or string the user passed."""
    if isinstance(loss, str):
        return loss
    if hasattr(loss, "__name__"):
        return str(loss.__name__)
    return type(loss).__name__


BACKGROUND_RARE = 0.10
"""``dice-includes-background`` is a warning when the median image has less than this share of
foreground pixels: in such an image predicting nothing already scores a background Dice of
``2(1-f)/(2-f)`` >= 0.947, so a Dice averaged over background and foreground (loss or metric)
gives the trivial answer about half its maximum while the foreground Dice is 0 (a heuristic
threshold; see the guide)."""


def background_severity(finding: Finding, foreground_fraction: float) -> Finding:
    """``dice-includes-background`` raised to a warning when the foreground is rare.

    ``foreground_fraction``: the median over images of their foreground pixel share.

    Example:
        >>> f = make_finding("dice-includes-background", {}, "exclude it")
        >>> background_severity(f, 0.03).severity
        'warning'
    """
    if finding.id != "dice-includes-background" or foreground_fraction >= BACKGROUND_RARE:
        return finding
    trivial = 2 * (1 - foreground_fraction) / (2 - foreground_fraction)
    return make_finding(
        finding.id,
        {
            **finding.evidence,
            "median_foreground_fraction_per_image": round(float(foreground_fraction), 5),
            "background_dice_of_empty_prediction": round(trivial, 4),
            "rare_below": BACKGROUND_RARE,
        },
        finding.fix,
        variant="rare-foreground",
        severity="warning",
        confidence=finding.confidence,
    )


def probe_loss(
    loss: Callable, *, channels: int = 1, from_logits: bool | None = None
) -> list[Finding]:
    """Findings about a loss from its black-box behaviour (see the module docstring).

    Emits: ``loss-not-differentiable``, ``loss-wrong-direction``, ``loss-favours-background``,
    ``dice-smooth-large``,
    ``loss-background-dominated``, ``dice-includes-background``, ``dice-batch-pooled``,
    ``dice-empty-penalized``.

    Example:
        >>> from keras import ops
        >>> def hard_dice(y, p):
        ...     p = ops.round(p)
        ...     return 1 - 2 * ops.sum(y * p) / (ops.sum(y) + ops.sum(p) + 1e-6)
        >>> [f.id for f in probe_loss(hard_dice)][:1]
        ['loss-not-differentiable']
    """
    m = measure_loss(loss, channels=channels, from_logits=from_logits)
    base = {"loss": loss_name(loss), "channels": channels}
    found: list[Finding] = []
    if m.grad_abs_max == 0.0:
        found.append(
            make_finding(
                "loss-not-differentiable",
                {**base, "max_abs_gradient_at_p=0.5": 0.0, "loss_at_p=0.5": None},
            )
        )
    wrong = max(m.empty_large, m.inverted_large)
    if math.isfinite(m.perfect) and m.perfect > wrong + 1e-3:
        evidence = {"loss_perfect": m.perfect, "loss_all_wrong": m.inverted_large}
        evidence["loss_empty"] = m.empty_large
        return [*found, make_finding("loss-wrong-direction", {**base, **evidence})]
    if m.dice_like:
        found += _dice_findings(m, channels, base)
    if (
        channels == 1
        and m.extra_cost > 0
        and math.isfinite(m.missed_cost)
        and m.missed_cost < MISSED_OVER_EXTRA * m.extra_cost
    ):
        evidence = {
            "cost_of_32_missed_foreground_pixels": round(m.missed_cost, 6),
            "cost_of_32_false_foreground_pixels": round(m.extra_cost, 6),
            "ratio": round(m.missed_cost / m.extra_cost, 3),
        }
        found.append(make_finding("loss-favours-background", {**base, **evidence}))
    if (
        math.isfinite(m.per_image_mean)
        and m.per_image_mean > 0
        and m.pooled_batch < 0.5 * m.per_image_mean
    ):
        evidence = {"loss_batch": m.pooled_batch, "mean_of_per_image_losses": m.per_image_mean}
        found.append(make_finding("dice-batch-pooled", {**base, **evidence}))
    return found


def _dice_findings(m: LossProbe, channels: int, base: dict) -> list[Finding]:
    """Smoothing, background and empty-mask findings of a Dice-like loss, relative to its range.

    ``base``: the evidence every finding shares (the loss' name, the channels).
    """
    found = []
    ref = m.inverted_large  # the loss of an all-wrong prediction: its maximum
    ratio = m.empty_small / ref
    if channels == 1 and ratio < 0.5 and m.empty_large / ref > 0.6:
        evidence = {
            "loss_missed_9px_object": m.empty_small,
            "loss_missed_256px_object": m.empty_large,
            "estimated_smooth": 9 * (1 / max(ratio, 1e-6) - 1),
        }
        found.append(make_finding("dice-smooth-large", {**base, **evidence}, maximum=ref))
    if channels > 1 and ratio < 0.2:
        evidence = {"loss_missed_all_objects": m.empty_small, "loss_all_wrong": ref, "ratio": ratio}
        found.append(make_finding("loss-background-dominated", {**base, **evidence}))
    elif channels > 1 and abs(ratio - (channels - 1) / channels) < 0.08 and ratio < 0.9:
        evidence = {"loss_missed_all_objects": m.empty_small, "expected_without_background": ref}
        found.append(make_finding("dice-includes-background", {**base, **evidence}))
    if not math.isfinite(m.empty_truth_empty_pred) or m.empty_truth_empty_pred > 0.5 * ref:
        evidence = {"loss_empty_truth_empty_prediction": m.empty_truth_empty_pred}
        found.append(make_finding("dice-empty-penalized", {**base, **evidence}))
    return found
