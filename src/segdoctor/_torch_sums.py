"""The Dice statistics on torch with a closed-form backward (eager fast path of ``losses``).

Every Dice-family loss is a function of three sums per image and class, ``tp = sum(p t)``, the
predicted mass ``sum(p)`` (``sum(p**2)`` squared) and the true mass ``sum(t)``, so its gradient
with respect to ``p`` is ``d_tp * t + d_pm`` (``+ 2 p d_pm`` squared). torch runs a training
step eagerly, one kernel and one autograd node per operation: automatic differentiation builds
that gradient from a product, a broadcast and a sum, and the pooled score adds a node per
statistic; here the whole backward is one or two kernels. On the XLA backends (JAX, TensorFlow)
the compiler fuses the automatic gradient already, so they keep it. Measured with
``benchmarks/bench_losses.py --ablation`` (benchmarks/RESULTS.md, losses).

Imported only on the torch backend.
"""

from __future__ import annotations

import torch


class _Masses(torch.autograd.Function):
    """``(B, R, g C)`` probabilities and targets -> tp, predicted and true mass, each ``(N, C)``.

    ``N`` is ``B``, or 1 when ``pooled`` (the batch summed as well).
    """

    @staticmethod
    def forward(ctx, p, t, group: int, channels: int, squared: bool, pooled: bool):  # type: ignore[override]
        def class_sums(x: torch.Tensor) -> torch.Tensor:  # (B, R, g C) -> (N, C)
            sums = x.sum(1).view(-1, group, channels).sum(1)
            return sums.sum(0, keepdim=True) if pooled else sums

        ctx.save_for_backward(p, t)
        ctx.group, ctx.squared = group, squared
        return (
            class_sums(p * t),
            class_sums(p * p if squared else p),
            class_sums(t * t if squared else t),
        )

    @staticmethod
    def backward(ctx, d_tp, d_pm, _d_tm):  # type: ignore[override]
        p, t = ctx.saved_tensors
        # (N, C) -> (N, 1, g C), class minor: broadcasts over the rows (and the batch, pooled)
        if ctx.group > 1:
            d_tp, d_pm = d_tp.repeat(1, ctx.group), d_pm.repeat(1, ctx.group)
        d_tp, d_pm = d_tp.unsqueeze(1), d_pm.unsqueeze(1)
        if ctx.squared:
            grad = torch.addcmul(t * d_tp, p, d_pm, value=2.0)
        elif d_tp.shape[-1] == 1:  # one value per image: addcmul's broadcast is 2x slower here
            grad = (t * d_tp).add_(d_pm)
        else:
            grad = torch.addcmul(d_pm, t, d_tp)
        return grad, None, None, None, None, None


def masses(
    p: torch.Tensor,
    t: torch.Tensor,
    shape: tuple[int, int, int],
    group: int,
    squared: bool,
    pooled: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """See :class:`_Masses`; ``shape`` is the ``(B, n / g, g C)`` row layout of ``p`` and ``t``."""
    channels = shape[-1] // group
    return _Masses.apply(p.reshape(shape), t.reshape(shape), group, channels, squared, pooled)
