"""The Dice statistics on torch with a closed-form backward (eager fast path of ``losses``).

Every Dice-family loss is a function of three sums per image and class, ``tp = sum(p t)``, the
predicted mass ``sum(p)`` (``sum(p**2)`` squared) and the true mass ``sum(t)``, so its gradient
with respect to ``p`` is ``d_tp * t + d_pm`` (``+ 2 p d_pm`` squared). torch runs a training
step eagerly: automatic differentiation builds that gradient from a product, a broadcast and a
sum, each a pass over the batch, where ``torch.addcmul`` needs one. On the XLA backends (JAX,
TensorFlow) the compiler fuses the automatic gradient already, so they keep it. Measured in
``benchmarks/bench_losses.py`` (benchmarks/RESULTS.md, losses).

Imported only on the torch backend.
"""

from __future__ import annotations

import torch


class _Masses(torch.autograd.Function):
    """``(B, R, g C)`` probabilities and targets -> ``(3, B, C)``: tp, predicted and true mass."""

    @staticmethod
    def forward(ctx, p, t, group: int, channels: int, squared: bool):  # type: ignore[override]
        def class_sums(x: torch.Tensor) -> torch.Tensor:  # (B, R, g C) -> (B, C)
            return x.sum(1).view(-1, group, channels).sum(1)

        tp = class_sums(p * t)
        pm = class_sums(p * p if squared else p)
        tm = class_sums(t * t if squared else t)
        ctx.save_for_backward(p, t)
        ctx.group, ctx.squared = group, squared
        return torch.stack([tp, pm, tm])

    @staticmethod
    def backward(ctx, upstream):  # type: ignore[override]
        p, t = ctx.saved_tensors
        d_tp, d_pm = (u.repeat(1, ctx.group).unsqueeze(1) for u in upstream[:2])  # (B, 1, g C)
        if ctx.squared:
            grad = torch.addcmul(t * d_tp, p, d_pm, value=2.0)
        else:
            grad = torch.addcmul(d_pm, t, d_tp)  # broadcasts to (B, R, g C)
        return grad, None, None, None, None


def masses(
    p: torch.Tensor, t: torch.Tensor, group: int, channels: int, squared: bool
) -> torch.Tensor:
    """See :class:`_Masses`; ``p`` and ``t`` already in the ``(B, n / g, g C)`` row layout."""
    return _Masses.apply(p, t, group, channels, squared)
