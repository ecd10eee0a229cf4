"""Building a run's model: network, loss, metrics, learning-rate schedule, optimizer, batches.

- Loss: the configured Dice-family loss, per image (a small object missed next to a large one
  still costs its full share); metrics: Dice and IoU (per-image mean), higher is better.
- Deep supervision (``model.deep_supervision``): the same loss on every output, weights halving
  per decoder level (nnU-Net), metrics on the main output only.
- Schedules: warm-up then cosine decay, poly decay (nnU-Net), or a constant rate; the optimizer
  (AdamW, Adam, SGD with Nesterov momentum) holds its schedule, so it is saved with the model.

Example:
    >>> deep_supervision_weights(["mask", "aux1"])  # 1 : 0.5
    [0.6666666666666666, 0.3333333333333333]
"""

from __future__ import annotations

import re
from typing import Any

import keras

from segdoctor import losses
from segdoctor.metrics import DiceScore, IoUScore
from segdoctor.models import create_model
from segdoctor.train.config import RunConfig
from segdoctor.train.data import PreparedData


def make_loss(config: RunConfig, prepared: PreparedData) -> keras.losses.Loss:
    """The configured Dice-family loss for the prepared data's mode."""
    # Per-image Dice: a small object missed next to a large one still costs its full share
    # (the doctor's dice-batch-pooled finding explains why pooling over the batch hides it).
    kwargs: dict[str, Any] = {
        "mode": prepared.mode,
        "ignore_index": prepared.ignore_index,
        "per_image": True,
    }
    return losses.create_loss(config.train.loss, **kwargs)  # the loss registry


def make_metrics(prepared: PreparedData) -> list[keras.metrics.Metric]:
    """Dice and IoU (per-image mean, empty pairs skipped), higher is better."""
    kwargs: dict[str, Any] = {"mode": prepared.mode, "ignore_index": prepared.ignore_index}
    if prepared.mode != "binary":
        kwargs["num_classes"] = prepared.num_classes
    return [DiceScore(name="dice", **kwargs), IoUScore(name="iou", **kwargs)]


def make_model(config: RunConfig, prepared: PreparedData) -> keras.Model:
    """The configured network; with ``model.deep_supervision`` it returns ``[main, aux...]``."""
    m = config.model
    return create_model(
        m.name,
        input_shape=(None, None, prepared.channels),
        num_classes=prepared.num_classes if prepared.mode != "binary" else 1,
        mode=prepared.mode,
        depth=m.depth,
        base_filters=m.base_filters,
        norm=m.norm,
        dropout=m.dropout,
        **({"residual": m.residual} if m.name == "unet" else {}),
        **({"deep_supervision": True} if m.deep_supervision else {}),
    )


def deep_supervision_weights(output_names: list[str]) -> list[float]:
    """nnU-Net's deep-supervision loss weights: 1 for the main output, halving per level, sum 1.

    The U-Net names its auxiliary heads ``aux{level}`` (level 1 is the decoder level at half
    resolution) and lists them coarsest first, so the weights follow the level in the name; an
    output whose name holds no level counts by its position.

    Example:
        >>> deep_supervision_weights(["mask", "aux2", "aux1"])  # 1 : 0.25 : 0.5
        [0.5714285714285714, 0.14285714285714285, 0.2857142857142857]
    """
    levels = []
    for position, name in enumerate(output_names):
        match = re.fullmatch(r"aux(\d+)", name)
        levels.append(0 if position == 0 else int(match.group(1)) if match else position)
    raw = [0.5**level for level in levels]
    return [w / sum(raw) for w in raw]


def main_output(model: keras.Model) -> keras.Model:
    """The model itself if it has one output, else a single-output view sharing its weights."""
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.outputs[0], name=model.name)


class TargetsPerOutput(keras.utils.PyDataset):
    """Batches ``(x, {output: y, ...})``: the same full-size mask for every output of the model.

    Keras needs one target per output of a multi-output model; the auxiliary heads of segdoctor's
    U-Net are upsampled to full size, so each of them is compared with the batch's own mask.
    """

    def __init__(self, data: keras.utils.PyDataset, output_names: list[str]) -> None:
        super().__init__(
            workers=getattr(data, "workers", 1),
            use_multiprocessing=getattr(data, "use_multiprocessing", False),
            max_queue_size=getattr(data, "max_queue_size", 10),
        )
        self.data = data
        self.output_names = list(output_names)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        batch = self.data[index]
        x, y = batch[0], batch[1]
        return (x, {name: y for name in self.output_names}, *batch[2:])

    def on_epoch_begin(self) -> None:
        self.data.on_epoch_begin()

    def on_epoch_end(self) -> None:
        self.data.on_epoch_end()


def fit_data(model: keras.Model, data: Any) -> Any:
    """``data`` as ``model.fit`` needs it: unchanged for one output, one target per output else."""
    names = list(model.output_names)
    if len(names) == 1:
        return data
    if not isinstance(data, keras.utils.PyDataset) and hasattr(data, "map"):  # tf.data.Dataset
        return data.map(lambda x, y: (x, {name: y for name in names}))
    return TargetsPerOutput(data, names)


def loss_arguments(model: keras.Model, config: RunConfig, prepared: PreparedData) -> dict:
    """``compile`` arguments for the loss and metrics of a single- or multi-output model.

    With several outputs (deep supervision) every output gets the same loss, weighted by
    :func:`deep_supervision_weights`, and the metrics are computed on the main output only
    (Keras logs them as ``<output>_dice``; :class:`~segdoctor.train.callbacks.MainOutputLogs`
    renames them back to ``dice``).
    """
    names = list(model.output_names)
    if len(names) == 1:
        return {"loss": make_loss(config, prepared), "metrics": make_metrics(prepared)}
    return {
        "loss": [make_loss(config, prepared) for _ in names],
        "loss_weights": deep_supervision_weights(names),
        "metrics": {names[0]: make_metrics(prepared)},
    }


DECAYING_SCHEDULES = ("cosine", "poly")
"""Schedules planned over a horizon (fitted to a time budget, refitted, resumed as saved)."""


def make_schedule(
    config: RunConfig,
    lr: float,
    steps_per_epoch: int,
    epochs: int | None = None,
    total_steps: int | None = None,
):
    """The configured learning-rate schedule over ``total_steps`` (default: ``epochs`` epochs,
    default ``train.epochs``).

    A float (constant rate) for ``constant`` and ``plateau``; warm-up then cosine decay to 1% of
    ``lr`` for ``cosine``; polynomial decay (power 0.9, nnU-Net's) for ``poly``.
    """
    t = config.train
    total = max(1, total_steps or (epochs or t.epochs) * steps_per_epoch)
    warmup = min(t.warmup_epochs * steps_per_epoch, total // 2)
    if t.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 10 if warmup else lr,
            decay_steps=max(1, total - warmup),
            alpha=0.01,
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    if t.schedule == "poly":
        return keras.optimizers.schedules.PolynomialDecay(
            lr, decay_steps=total, end_learning_rate=lr * 1e-3, power=0.9
        )
    return lr


def make_optimizer(
    config: RunConfig,
    lr: float,
    steps_per_epoch: int,
    epochs: int | None = None,
    total_steps: int | None = None,
) -> keras.optimizers.Optimizer:
    """AdamW/Adam/SGD with the configured schedule; the schedule is saved with the optimizer.

    ``epochs`` is the schedule's horizon (default ``train.epochs``); under a time budget the
    horizon is ``total_steps``, the steps that fit in the budget
    (:func:`~segdoctor.train.budget.plan_steps`, then refitted to the measured epoch time by
    :class:`~segdoctor.train.callbacks.BudgetSchedule`), so that a cosine or poly decay reaches
    its end when the budget does instead of stopping near the peak learning rate.
    """
    t = config.train
    schedule = make_schedule(config, lr, steps_per_epoch, epochs, total_steps)
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=schedule)
    return keras.optimizers.SGD(learning_rate=schedule, momentum=0.99, nesterov=True)


def compile_model(
    model: keras.Model,
    config: RunConfig,
    prepared: PreparedData,
    lr: float,
    steps_per_epoch: int,
    epochs: int | None = None,
    total_steps: int | None = None,
) -> keras.Model:
    model.compile(
        optimizer=make_optimizer(config, lr, steps_per_epoch, epochs, total_steps),
        **loss_arguments(model, config, prepared),
    )
    return model


def throwaway_model(config: RunConfig, prepared: PreparedData) -> keras.Model:
    """The run's network, compiled with its loss (no metrics) and AdamW at 1e-6, for measuring."""
    keras.utils.set_random_seed(config.train.seed)
    model = make_model(config, prepared)
    arguments = loss_arguments(model, config, prepared)
    arguments.pop("metrics")
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-6, weight_decay=config.train.weight_decay),
        **arguments,
    )
    return model
