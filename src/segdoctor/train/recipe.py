"""The default training recipe: data -> model -> fit -> best model -> evaluation -> report.

The choices, and why:
- Loss: Dice + cross-entropy (nnU-Net's default): Dice targets the overlap directly, cross-entropy
  gives well-behaved gradients early and on empty images.
- Optimizer: AdamW, learning rate from an LR range test when none is given; linear warmup then
  cosine decay (or poly decay as nnU-Net; or a constant rate with ReduceLROnPlateau on val_dice).
- Every callback that watches Dice is told ``mode="max"``: ``mode="auto"`` fails (Keras 3) or
  silently minimizes (Keras 2) a custom metric.
- Checkpoints and history are written atomically every epoch, so a killed run resumes from its last
  completed epoch (``segdoctor train --resume RUN``).
- Deep supervision (``model.deep_supervision``): the same loss on every output, weights halving per
  decoder level (nnU-Net), metrics on the main output; the checkpoints hold the main output only.
- Global Keras state a run changes (the mixed-precision policy, a distribution) is restored when
  it returns, so the caller's later code runs as before.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from segdoctor._io import atomic_write_text, check_writable
from segdoctor.errors import ConfigError, SegdoctorError
from segdoctor.lr_range import lr_range_test
from segdoctor.train import budget as bud
from segdoctor.train import callbacks as cb
from segdoctor.train.budget import Deadline
from segdoctor.train.config import RunConfig, config_from_dict, dump_yaml, load_yaml
from segdoctor.train.data import PreparedData, prepare_data
from segdoctor.train.measure import (
    Measurement,
    clear_session_keeping_run_state,
    measure,
    select_configuration,
    width_candidates,
)

MONITOR = "val_dice"

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


@dataclass
class RunResult:
    """What a training run produced and where it is."""

    run_dir: Path
    status: str
    epochs_run: int
    best_val_dice: float | None
    best_epoch: int | None
    lr: float
    evaluation: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary_text(self) -> str:
        lines = [f"Run folder: {self.run_dir}"]
        if self.best_val_dice is not None:
            lines.append(
                f"Best validation Dice (per-image mean, during training): {self.best_val_dice:.4f} at epoch {self.best_epoch + 1}"
            )
        ev = self.evaluation.get("summary", {})
        if ev:
            lines.append(
                f"Full-size evaluation on {ev.get('n_images')} validation images: "
                f"Dice {ev.get('dice_mean', float('nan')):.4f}, IoU {ev.get('iou_mean', float('nan')):.4f} "
                f"(empty policy: {ev.get('empty_policy')})"
            )
        lines.append(
            f"Stopped: {self.status} after {self.epochs_run} epochs "
            f"(base learning rate {self.lr:.3g}; its decay is in history.csv)"
        )
        lines.extend(f"Note: {n}" for n in self.notes)
        width = max(len(k) for k in self.files) if self.files else 0
        lines.append("Files:")
        lines.extend(f"  {k.ljust(width)}  {p}" for k, p in self.files.items() if Path(p).exists())
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Building blocks


def make_loss(config: RunConfig, prepared: PreparedData) -> keras.losses.Loss:
    """The configured Dice-family loss for the prepared data's mode."""
    from segdoctor import losses

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
    from segdoctor.metrics import DiceScore, IoUScore

    kwargs: dict[str, Any] = {"mode": prepared.mode, "ignore_index": prepared.ignore_index}
    if prepared.mode != "binary":
        kwargs["num_classes"] = prepared.num_classes
    return [DiceScore(name="dice", **kwargs), IoUScore(name="iou", **kwargs)]


def make_model(config: RunConfig, prepared: PreparedData) -> keras.Model:
    """The configured network; with ``model.deep_supervision`` it returns ``[main, aux...]``."""
    from segdoctor.models import create_model

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

    ``epochs`` is the schedule's horizon (default ``train.epochs``); under a time budget it is the
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


def _throwaway_model(config: RunConfig, prepared: PreparedData) -> keras.Model:
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


def find_lr(
    config: RunConfig,
    prepared: PreparedData,
    steps: int = 50,
    log: Log = _print,
    max_seconds: float | None = None,
    model: keras.Model | None = None,
):
    """LR range test on a throwaway model; returns the :class:`LRFindResult`.

    ``max_seconds``: its share of a time budget (fewer steps when they do not fit). ``model``: a
    throwaway model of ``config`` already compiled (and stepped) by a measurement, reused so
    that its training step is not compiled twice."""
    model = model if model is not None else _throwaway_model(config, prepared)
    data = fit_data(model, prepared.train)
    result = lr_range_test(model, data, steps=steps, max_seconds=max_seconds)
    clear_session_keeping_run_state()
    if result.steps_cut_to is not None:
        log(
            f"LR range test: {result.steps_cut_to} of {steps} steps, to keep within its share of "
            f"the time budget ({max_seconds:.0f} s at {result.seconds_per_step or 0:.2f} s a step)."
        )
    return result


BF16_CPU_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}
"""CPU flags (Linux /proc/cpuinfo) of native bfloat16 units, and their names in messages."""


def cpu_bf16_units() -> str | None:
    """The CPU's native bfloat16 units ("AMX" or "AVX512-BF16"), or None (Linux flags).

    Example:
        >>> cpu_bf16_units() in (None, "AMX", "AVX512-BF16")
        True
    """
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((set(line.split()) for line in fh if line.startswith("flags")), set())
    except OSError:
        return None
    return next((name for flag, name in BF16_CPU_FLAGS.items() if flag in flags), None)


def resolve_mixed_precision(setting: str) -> tuple[bool, str]:
    """Whether to train with Keras' ``mixed_bfloat16`` policy, and a sentence saying why.

    ``auto`` turns it on where it was measured to pay: the TensorFlow backend on a CPU with native
    bfloat16 units (benchmarks/bench_throughput.py, the default U-Net's training step: 1.9x as
    fast as float32 with AMX; 1.55x (32 filters) and 1.4-2.1x (16) on an AMD EPYC with
    AVX512-BF16 and no AMX). On CPUs without them (AVX2 only) bfloat16 is emulated, so it stays
    off. Weights, the output head, losses and metrics stay float32 in both cases.
    """
    if setting in ("on", "off"):
        return setting == "on", f"Mixed precision (bfloat16): {setting}."
    backend = keras.backend.backend()
    gpu = False
    if backend == "tensorflow":
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
    units = cpu_bf16_units() if backend == "tensorflow" and not gpu else None
    if units:
        return True, (
            f"Mixed precision (bfloat16): on (auto: TensorFlow on a CPU with {units}, where a "
            "step was measured 1.4-2x as fast as in float32; train.mixed_precision=off to keep "
            "float32)."
        )
    native = backend == "tensorflow" and not gpu
    where = (
        "this CPU has no native bfloat16 units"
        if native
        else f"no measured gain on the {backend} backend and this device"
    )
    return False, f"Mixed precision: off (auto: {where})."


# Adam-family optimizers train normalized U-Nets reliably between these rates. A range test on a
# batch-normalized network often never diverges (BN makes the loss invariant to the scale of the
# weights, so it keeps falling at rates of 1 and more), and "a tenth of the minimum" then lands
# far too high: the suggestion is never taken outside this band.
LR_BAND = {"adamw": (1e-4, 3e-3), "adam": (1e-4, 3e-3), "sgd": (1e-3, 1e-1)}


def choose_lr(result, optimizer: str) -> tuple[float, str]:
    """The learning rate to train with, from an LR range test, and a sentence saying why."""
    low, high = LR_BAND[optimizer]
    candidates = [v for v in (result.suggestion, result.steepest_lr) if v]
    if not candidates:
        lr = float(np.sqrt(low * high))
        return lr, f"The LR range test was inconclusive (too few finite steps); using {lr:.2g}."
    raw = min(candidates)
    lr = float(np.clip(raw, low, high))
    why = (
        f"LR range test: loss lowest at {result.min_loss_lr:.3g}, steepest descent at "
        f"{result.steepest_lr or float('nan'):.3g}"
        + ("" if result.diverged else ", no divergence seen")
        + f"; raw suggestion {raw:.3g}"
    )
    if lr != raw:
        return lr, f"{why}, kept within {low:g}..{high:g} for {optimizer}: using {lr:.3g}."
    return lr, f"{why}: using {lr:.3g}."


def setup_data_parallel(devices: int, log: Log = _print) -> None:
    """Data-parallel training over ``devices`` local devices with Keras' distribution API (JAX).

    Each batch is split over the devices and the gradients are averaged; the model is replicated.
    Multi-host: call ``keras.distribution.initialize()`` (``jax.distributed``) on every host first;
    ``list_devices()`` then returns the devices of all hosts.
    """
    backend = keras.backend.backend()
    if backend != "jax":
        raise ConfigError(
            f"Multi-device training needs the JAX backend (Keras' distribution API); this run uses {backend}",
            expected="KERAS_BACKEND=jax with train.devices > 1",
            fix="run with KERAS_BACKEND=jax, or train on one device (train.devices=1).",
        )
    available = keras.distribution.list_devices()
    if len(available) < devices:
        raise ConfigError(
            f"{devices} devices requested but only {len(available)} found ({', '.join(map(str, available))})",
            fix="on a CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before starting "
            "(`segdoctor train --devices N` does this for you), or request fewer devices.",
        )
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=available[:devices])
    )
    log(f"Data-parallel training on {devices} devices: {', '.join(map(str, available[:devices]))}.")


# ----------------------------------------------------------------------------------------------
# The run


def _budget_schedule(
    config: RunConfig, run_dir: Path, budget: cb.TimeBudget, plan: tuple[float, int, int], log: Log
) -> cb.BudgetSchedule:
    """Refit the schedule to the budget from the timed epochs; run.json records the new horizon.

    ``plan`` = (lr, steps per epoch, horizon in steps)."""
    lr, steps, horizon = plan

    def on_replan(old: int, new: int, epoch_s: float) -> None:
        meta = json.loads((run_dir / "run.json").read_text())
        meta["schedule_steps"] = new
        meta["schedule_epochs"] = math.ceil(new / steps)
        atomic_write_text(run_dir / "run.json", json.dumps(meta, indent=2))
        log(
            f"Epochs take {epoch_s:.0f} s here (median), not what the plan assumed: the "
            f"{config.train.schedule} schedule now spans {new} steps ({new / steps:.1f} epochs) "
            f"instead of {old}, so that it ends with the budget."
        )

    return cb.BudgetSchedule(
        budget,
        planned=horizon,
        max_epochs=config.train.epochs,
        make_schedule=lambda total: make_schedule(config, lr, steps, total_steps=total),
        on_replan=on_replan,
        steps_per_epoch=steps,
    )


def _callbacks(
    config: RunConfig,
    run_dir: Path,
    state: cb.RunState,
    resume: bool,
    prepared: PreparedData,
    model: keras.Model,
    plan: tuple[float, int, int] | None = None,
    log: Log = _print,
    budget: cb.TimeBudget | None = None,
):
    """The recipe's callbacks; ``plan`` = (lr, steps per epoch, horizon in steps) of a new run's
    schedule; ``budget``: the run's time budget, if it has one."""
    t = config.train
    nan_guard = cb.NanGuard()
    items: list[keras.callbacks.Callback] = []
    export = None
    if len(model.outputs) > 1:  # deep supervision: monitor and save the main output
        names = [m.name for m in make_metrics(prepared)]
        items.append(cb.MainOutputLogs(model.output_names[0], names))  # first: renames for all
        export = main_output(model)
    items += [cb.LearningRateLogger(), nan_guard]
    if budget is not None:
        items.append(budget)
        if plan is not None and t.schedule in DECAYING_SCHEDULES:
            # before the checkpoint: last_train.keras then holds the schedule run.json names
            items.append(_budget_schedule(config, run_dir, budget, plan, log))
    checkpoint = cb.RunCheckpoint(run_dir, MONITOR, "max", state, export=export)
    items += [checkpoint, cb.HistoryWriter(run_dir / "history.csv", resume=resume)]
    early = None
    if t.early_stopping_patience:
        early = keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="max", patience=t.early_stopping_patience, verbose=1
        )
        items.append(early)
    if t.schedule == "plateau":
        items.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=MONITOR, mode="max", factor=0.5, patience=5, min_lr=1e-6, verbose=1
            )
        )
    if t.tensorboard:
        items.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return items, nan_guard, early, budget


CallerCallbacks = (
    Sequence[keras.callbacks.Callback]
    | Callable[[RunConfig, PreparedData], Sequence[keras.callbacks.Callback]]
)
"""Callbacks a caller adds to the recipe's: a sequence, or a function of the run's configuration
and prepared data (for callbacks that depend on them, such as the doctor with its validation
sample; a resumed run's configuration is only known once its folder is read)."""


def caller_callbacks(
    callbacks: CallerCallbacks, config: RunConfig, prepared: PreparedData
) -> list[keras.callbacks.Callback]:
    """The caller's callbacks as a list; a function is called with the config and prepared data.

    Example:
        >>> caller_callbacks(lambda config, prepared: [], config=None, prepared=None)
        []
    """
    return list(callbacks(config, prepared) if callable(callbacks) else callbacks)


def _write_run_files(
    run_dir: Path,
    config: RunConfig,
    prepared: PreparedData,
    lr: float,
    lr_result=None,
    schedule_epochs: int | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    atomic_write_text(run_dir / "config.yaml", dump_yaml(config))
    meta = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "lr": lr,
        "schedule_epochs": schedule_epochs or config.train.epochs,
        "mode": prepared.mode,
        "num_classes": prepared.num_classes,
        "channels": prepared.channels,
        "ignore_index": prepared.ignore_index,
        "mask_policy": prepared.policy_json,
        "normalizer": prepared.normalizer_dict,
        "train_names": [p.name for p in prepared.train_pairs],
        "val_names": [p.name for p in prepared.val_pairs],
        **(extra or {}),
    }
    atomic_write_text(run_dir / "run.json", json.dumps(meta, indent=2))
    if lr_result is not None and lr_result.lrs:
        from segdoctor.train.report import plot_lr_find

        atomic_write_text(run_dir / "lr_find.json", json.dumps(lr_result.to_dict(), indent=2))
        plot_lr_find(
            lr_result.lrs, lr_result.smoothed, lr_result.suggestion, run_dir / "lr_find.png"
        )


def check_tensorboard_available() -> None:
    """Keras' TensorBoard callback needs TensorFlow and TensorBoard, whatever the Keras backend.

    It writes its event files with ``tf.summary``, whose writers TensorFlow takes from the
    ``tensorboard`` package (``tensorflow-cpu`` does not install it by itself).
    """

    def found(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    missing = [name for name in ("tensorflow", "tensorboard") if not found(name)]
    if missing:
        raise ConfigError(
            f"train.tensorboard=true needs {' and '.join(missing)}, which "
            + ("is" if len(missing) == 1 else "are")
            + " not installed",
            expected="tensorflow and tensorboard importable: Keras' TensorBoard callback writes "
            "its event files with tf.summary on every backend",
            fix=f"`pip install {' '.join('tensorflow-cpu' if m == 'tensorflow' else m for m in missing)}`"
            ", or set train.tensorboard=false.",
        )


def _resume_checkpoint(run_dir: Path, config: RunConfig) -> Path:
    """The model a resume continues from: with deep supervision the full multi-output one."""
    return run_dir / ("last_train.keras" if config.model.deep_supervision else "last.keras")


def train_run(
    config: RunConfig,
    run_dir: Path,
    log: Log = _print,
    resume: bool = False,
    *,
    callbacks: CallerCallbacks = (),
    deadline: Deadline | None = None,
) -> RunResult:
    """Train ``config`` into ``run_dir`` (or continue it with ``resume=True``).

    The global Keras dtype policy (``train.mixed_precision``) and distribution
    (``train.devices``) the run sets are restored when it returns or fails.

    Args:
        config: the resolved configuration.
        run_dir: the run folder (created; refused when it holds another run unless ``resume``).
        log: where progress messages go.
        resume: continue the run in ``run_dir`` from its last completed epoch.
        callbacks: the caller's callbacks, run after the recipe's (:data:`CallerCallbacks`). The
            recipe adds no doctor of its own: ``segdoctor.cli.train.run_training`` adds
            ``DoctorCallback`` when ``train.doctor`` is on.
        deadline: the command's time budget (:class:`~segdoctor.train.budget.Deadline`), started
            by the caller when the command started, so that everything before this call counts;
            one without a budget (``Deadline(None)``: only the start) gets ``train.max_minutes``
            from that start; default: ``train.max_minutes`` from now. Everything the run does
            (measurements, LR range test, training, final evaluation, report) fits in it.

    Example:
        >>> logger = keras.callbacks.CSVLogger("log.csv")
        >>> train_run(config, Path("runs/x"), callbacks=[logger])  # doctest: +SKIP
    """
    deadline = (deadline or Deadline(None)).with_budget(config.train.max_minutes)
    policy = keras.config.dtype_policy()
    distribution = keras.distribution.distribution()
    try:
        return _train_run(config, run_dir, log, resume, callbacks, deadline)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.distribution.set_distribution(distribution)


def _train_run(
    config: RunConfig,
    run_dir: Path,
    log: Log,
    resume: bool,
    callbacks: CallerCallbacks = (),
    deadline: Deadline | None = None,
) -> RunResult:
    deadline = deadline or Deadline(None)
    if config.train.tensorboard:
        check_tensorboard_available()
    run_dir = check_writable(run_dir)
    state = cb.RunState(run_dir / "state.json")
    if not resume and state.data.get("epoch", -1) >= 0:
        raise SegdoctorError(
            f"{run_dir} already holds a training run (last completed epoch {state.data['epoch'] + 1})",
            expected="an empty or new run folder",
            fix=f"continue it with `segdoctor train --resume {run_dir}`, or choose another --out folder.",
        )
    keras.utils.set_random_seed(config.train.seed)
    if config.train.devices > 1:
        setup_data_parallel(config.train.devices, log)
    use_bf16, why = resolve_mixed_precision(config.train.mixed_precision)
    if use_bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if config.train.mixed_precision == "auto":
        log(why)
    deadline.mark("setup")
    prepared = prepare_data(config, log=log, run_dir=run_dir)
    deadline.mark("data")
    steps = len(prepared.train)
    notes: list[str] = []
    lr_result = None
    sizing, choice = None, None  # measured before training when the run has a time budget
    if resume:
        meta = json.loads((run_dir / "run.json").read_text())
        lr = float(meta["lr"])
        from segdoctor.train.inference import load_model

        model = load_model(_resume_checkpoint(run_dir, config), compile=True)
        initial_epoch = int(state.data["epoch"]) + 1
        log(
            f"Resuming from epoch {initial_epoch + 1} (last completed: {initial_epoch}), learning rate {lr:.3g}."
        )
        note = resume_schedule_note(config, meta)
        if note:
            log(note)
            notes.append(note)
        if deadline.bounded:
            sizing = measure(_throwaway_model, config, prepared, deadline.share(bud.SEARCH_SHARE))
            deadline.mark("configuration")
    else:
        if deadline.bounded:
            config, sizing, choice = _size_to_budget(config, prepared, deadline, log)
            deadline.mark("configuration")
        lr = config.train.lr
        skipped = _lr_test_skipped(config, sizing, deadline)
        if lr is None and skipped:
            lr = float(np.sqrt(np.prod(LR_BAND[config.train.optimizer])))
            log(skipped + f" Using {lr:.2g}, the middle of the {config.train.optimizer} band.")
            notes.append(skipped)
            sizing.model = None
            clear_session_keeping_run_state()  # the measured model is not needed
        elif lr is None:
            log("No learning rate given: running an LR range test (loss vs. learning rate)...")
            lr_result = find_lr(
                config,
                prepared,
                steps=config.train.lr_find_steps,
                log=log,
                max_seconds=deadline.share(bud.LR_TEST_SHARE) if deadline.bounded else None,
                model=sizing.model if sizing is not None else None,
            )
            if sizing is not None:
                sizing.model = None  # the range test trained it; it is freed
            lr, message = choose_lr(lr_result, config.train.optimizer)
            log(message)
            notes.append(message)
            deadline.mark("lr_test")
        horizon = _schedule_horizon(config, prepared, steps, lr_result, log, sizing, deadline)
        keras.utils.set_random_seed(config.train.seed)
        model = make_model(config, prepared)
        compile_model(model, config, prepared, lr, steps, total_steps=horizon)
        initial_epoch = 0
        extra = {"schedule_steps": horizon, "configuration": choice}
        _write_run_files(
            run_dir, config, prepared, lr, lr_result, math.ceil(horizon / steps), extra
        )
    if initial_epoch >= config.train.epochs:
        log(
            f"The run already completed {initial_epoch} of {config.train.epochs} epochs; nothing to do."
        )
    log(
        f"Model: {config.model.name}, {model.count_params():,} parameters; {steps} steps per epoch of {config.data.batch_size} patches {config.data.patch_size}x{config.data.patch_size}."
    )
    plan = None if resume else (lr, steps, horizon)
    budget = _time_budget(deadline, sizing, prepared, lr_result)
    items, nan_guard, early, budget = _callbacks(
        config, run_dir, state, resume, prepared, model, plan, log, budget
    )
    items += caller_callbacks(callbacks, config, prepared)
    state.update(status="running")
    started = time.monotonic()
    history = model.fit(
        fit_data(model, prepared.train),
        validation_data=fit_data(model, prepared.val.for_fit()),
        epochs=config.train.epochs,
        initial_epoch=initial_epoch,
        callbacks=items,
        verbose=config.train.verbose,
    )
    status = "completed"
    if nan_guard.event is not None:
        status = "nan-loss"
        notes.append(
            f"Training stopped at epoch {nan_guard.event['epoch'] + 1}, batch {nan_guard.event['batch']}: the loss became {nan_guard.event['loss']} "
            f"(learning rate {nan_guard.event['lr']:.3g}). The last good checkpoint is kept. Lower the learning rate or check the inputs for NaN/Inf."
        )
        atomic_write_text(run_dir / "nan_event.json", json.dumps(nan_guard.event, indent=2))
    elif budget is not None and budget.triggered:
        status = f"time budget ({deadline.total_s / 60:g} min)"
        notes.extend(_budget_notes(budget))
    elif early is not None and early.stopped_epoch > 0:
        status = "early stopping"
    epochs_run = len(history.history.get("loss", []))
    state.update(status=status)
    log(f"Training took {time.monotonic() - started:.0f} s.")
    deadline.mark("training")
    result = RunResult(
        run_dir=run_dir,
        status=status,
        epochs_run=initial_epoch + epochs_run,
        best_val_dice=state.data.get("best"),
        best_epoch=state.data.get("best_epoch"),
        lr=lr,
        notes=notes,
    )
    if config.train.devices > 1:
        keras.distribution.set_distribution(None)  # evaluate image by image on one device
    from segdoctor.train.evaluate import finish_run

    finish_run(result, prepared, log=log)
    deadline.mark("evaluation")
    if deadline.bounded:
        _record_budget(run_dir, deadline, log)
    return result


SCHEDULE_FILL = 0.95
"""Share of the training time the decaying schedule is planned to fill (steps vary a little)."""


def _size_to_budget(
    config: RunConfig, prepared: PreparedData, deadline: Deadline, log: Log
) -> tuple[RunConfig, Measurement, dict | None]:
    """Time the configuration (and choose the U-Net width where the user left it open)."""
    search_s = deadline.share(bud.SEARCH_SHARE)
    lr_test = config.train.lr is None  # then it runs on the measured model and times the steps
    lr_test_s = deadline.share(bud.LR_TEST_SHARE) if lr_test else 0.0
    if width_candidates(config):
        return select_configuration(
            _throwaway_model, config, prepared, deadline, lr_test_s, search_s, log, keep=lr_test
        )
    steps = 2 if lr_test else 4  # with an LR range test: compile and one step, it times more
    sizing = measure(_throwaway_model, config, prepared, search_s, steps=steps, keep=lr_test)
    kept = {"model.base_filters": config.model.base_filters}
    return config, sizing, {"chosen": kept, "why": "set by the user: not searched"}


def _schedule_horizon(
    config: RunConfig,
    prepared: PreparedData,
    steps: int,
    lr_result,
    log: Log,
    sizing: Measurement | None = None,
    deadline: Deadline | None = None,
) -> int:
    """Steps the LR schedule spans: ``train.epochs`` epochs, or the steps that fit the budget."""
    t = config.train
    if sizing is None or deadline is None or t.schedule not in DECAYING_SCHEDULES:
        return t.epochs * steps
    step_s, compile_s = _measured_step_s(lr_result, sizing)
    n_val = len(prepared.val_pairs)
    reserve = sizing.reserve_s(n_val)
    # the first validation traces the test step once: counted once, like the compilation
    train_s = SCHEDULE_FILL * (deadline.remaining() - reserve - compile_s - sizing.trace_s)
    plan = bud.plan_steps(train_s, step_s, steps, sizing.val_s(n_val), t.epochs)
    if plan.total_steps < t.epochs * steps:
        log(
            f"Time budget {deadline.total_s / 60:g} min, {deadline.remaining():.0f} s left, "
            f"{reserve:.0f} s of it kept for the final evaluation and report; at about "
            f"{step_s:.2f} s per step the {t.schedule} schedule spans the {plan.total_steps} steps "
            f"that fit ({plan.epochs:g} epochs of train.epochs={t.epochs}), so the learning rate "
            "has decayed when the budget ends."
        )
    return plan.total_steps


def _lr_test_skipped(
    config: RunConfig, sizing: Measurement | None, deadline: Deadline
) -> str | None:
    """Why the LR range test is skipped (its share of the budget holds too few steps), or None."""
    if config.train.lr is not None or sizing is None or sizing.step_s <= 0:
        return None
    if not deadline.bounded:
        return None
    share = deadline.share(bud.LR_TEST_SHARE)
    fit = int(share // sizing.step_s)
    if fit >= bud.MIN_LR_TEST_STEPS:
        return None
    return (
        f"LR range test skipped: at {sizing.step_s:.2f} s a step only {fit} steps fit in its "
        f"share of the time budget ({share:.0f} s), fewer than the {bud.MIN_LR_TEST_STEPS} a "
        "usable loss curve needs."
    )


def _measured_step_s(lr_result, sizing: Measurement) -> tuple[float, float]:
    """(seconds a training step takes, extra seconds of the first, compiling one), measured.

    From the LR range test when it ran (its steps are the most), else from the step timing.
    """
    times = getattr(lr_result, "step_seconds", None) or []
    if len(times) >= 2:
        step_s = lr_result.seconds_per_step or float(np.median(times[1:]))
        return step_s, max(sizing.compile_s, times[0] - step_s)
    return sizing.step_s, sizing.compile_s


def _time_budget(
    deadline: Deadline, sizing: Measurement | None, prepared: PreparedData, lr_result
) -> cb.TimeBudget | None:
    """The callback that stops training in time for the final evaluation (None: no budget)."""
    if not deadline.bounded or sizing is None:
        return None
    n_val = len(prepared.val_pairs)
    return cb.TimeBudget(
        deadline=deadline,
        reserve_s=sizing.reserve_s(n_val),
        step_s=_measured_step_s(lr_result, sizing)[0],
        val_s=sizing.val_s(n_val) + sizing.trace_s,  # until a validation is measured
    )


def _budget_notes(budget: cb.TimeBudget) -> list[str]:
    """What stopping for the time budget means for the checkpoints."""
    if budget.stopped_at is None:
        return []
    at = budget.stopped_at
    return [
        f"The time budget stopped training in epoch {at['epoch'] + 1} after {at['steps']} steps "
        f"(a step took {budget.step_s:.2f} s, validation {budget.val_s:.0f} s); that partial "
        "epoch was validated and saved: last.keras holds its last step, best.keras the best "
        "validated model."
    ]


def _record_budget(run_dir: Path, deadline: Deadline, log: Log) -> None:
    """Add the budget and the wall time of each phase to run.json, and say how it went."""
    meta = json.loads((run_dir / "run.json").read_text())
    meta["budget"] = deadline.to_dict()
    atomic_write_text(run_dir / "run.json", json.dumps(meta, indent=2))
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in deadline.phases.items())
    log(f"Time budget: {deadline.elapsed():.0f} s of {deadline.total_s:.0f} s used ({phases}).")


def resume_schedule_note(config: RunConfig, meta: dict) -> str | None:
    """What a resume with more epochs than the saved schedule spans does (None: nothing to say).

    The optimizer, and the schedule inside it, is restored from the checkpoint unchanged: a resumed
    run continues the same curve, so an interrupted run ends exactly as an uninterrupted one would.
    Epochs past the planned horizon therefore train at the schedule's final rate.
    """
    t = config.train
    planned = int(meta.get("schedule_epochs") or t.epochs)
    if t.schedule not in DECAYING_SCHEDULES or t.epochs <= planned:
        return None
    return (
        f"The {t.schedule} learning-rate schedule was planned for {planned} epochs and is resumed "
        f"as saved: epochs {planned + 1}-{t.epochs} train at its final rate. For a full schedule "
        f"over {t.epochs} epochs start a new run with --epochs {t.epochs} (or fine-tune from "
        "best.keras with a new run)."
    )


def resume_run(
    run_dir: Path,
    extra_epochs: int | None = None,
    log: Log = _print,
    *,
    callbacks: CallerCallbacks = (),
    deadline: Deadline | None = None,
) -> RunResult:
    """Continue an interrupted run with its saved configuration (``callbacks``, ``deadline``: see
    train_run; the budget is the saved ``train.max_minutes`` unless ``deadline`` has one)."""
    run_dir = Path(run_dir)
    needed = ["config.yaml", "state.json", "run.json"]
    missing = [n for n in needed if not (run_dir / n).exists()]
    config = None
    if (run_dir / "config.yaml").exists():
        config = config_from_dict(load_yaml(run_dir / "config.yaml"))
    checkpoint = _resume_checkpoint(run_dir, config) if config else run_dir / "last.keras"
    if not checkpoint.exists():
        missing.append(checkpoint.name)
    if missing or config is None:
        raise SegdoctorError(
            f"Cannot resume {run_dir}: {', '.join(missing)} missing",
            expected="a run folder written by `segdoctor train` that completed at least one epoch",
            fix="start a new run with `segdoctor train DATA --out RUN`.",
        )
    if extra_epochs is not None:
        config = replace(config, train=replace(config.train, epochs=extra_epochs))
    return train_run(config, run_dir, log=log, resume=True, callbacks=callbacks, deadline=deadline)
