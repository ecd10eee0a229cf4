"""Forward + backward time of segdoctor's DiceLoss and DiceCELoss against keras.losses.Dice.

Measures, on the current Keras backend and in the same run:

* ``DiceLoss`` and ``DiceCELoss`` (segdoctor) with the labels users pass: int32 masks
  ``(8, 256, 256, 1)`` for a sigmoid output (binary) and sparse int32 class indices for a 4-class
  softmax output (multiclass), probabilities as predictions (``from_logits=False``); DiceLoss
  also with float32 one-hot labels;
* ``keras.losses.Dice()`` (one score pooled over every pixel and class of the batch, the issue's
  reference), and the Keras loss that computes what each segdoctor loss computes:
  ``keras.losses.Dice(axis=(1, 2, 3))`` (one score per image) for binary DiceLoss (its default
  ``per_image=True``); ``keras.losses.Dice(axis=(1, 2))`` (per image and class, then averaged:
  the default) or ``axis=(0, 1, 2)`` (a score per class pooled over the batch:
  ``per_image=False``) for multi-class DiceLoss, preceded by ``ops.one_hot`` for sparse labels;
  that Keras Dice plus Keras cross-entropy for DiceCELoss.

Each timed call is the loss value plus its gradient with respect to the predictions, executed the
way ``model.fit`` executes it on that backend: eagerly on torch (so segdoctor's eager value checks
are included), ``jax.jit`` on JAX, ``tf.function`` on TensorFlow. Candidates are timed in
interleaved rounds (shuffled order) so that machine load affects all of them alike; the table gives
the median over rounds and the ratio of medians to ``keras.losses.Dice`` on the same shape. With
``--unet`` it also times one training step of the default U-Net (depth 4, 32 base filters,
batch 8, 256x256, binary) and reports each loss as a percentage of that step.

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_losses.py [--rounds 30] [--unet]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "torch")


def _pin_xla_threads(argv: list[str]) -> None:
    """``--threads 1`` on JAX: XLA reads its thread settings once, when jax is imported (by keras).

    With its default thread pool, the CPU time of one millisecond-scale computation varied by
    +-50% between identical candidates in one run (the pool's hand-offs count as CPU time).
    """
    if os.environ["KERAS_BACKEND"] == "jax" and "--threads" in argv[:-1]:
        if argv[argv.index("--threads") + 1] == "1":
            flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


_pin_xla_threads(sys.argv)

import keras  # noqa: E402  (after the thread settings)
import numpy as np  # noqa: E402

from segdoctor.losses import DiceCELoss, DiceLoss  # noqa: E402
from segdoctor.losses import statistics as loss_statistics  # noqa: E402
from segdoctor.models import create_model  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "torch":  # the backend's own module: gradients, compilation, thread settings
    import torch
elif BACKEND == "jax":
    import jax
else:
    import tensorflow as tf

BATCH, SIZE, CLASSES = 8, 256, 4


def _inputs(channels: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Labels in both layouts and softmax/sigmoid probabilities for a (B, H, W, channels) output."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (BATCH, SIZE, SIZE, channels)).astype(np.float32)
    if channels == 1:
        sparse = (rng.random((BATCH, SIZE, SIZE, 1)) > 0.8).astype(np.int32)
        probs = 1.0 / (1.0 + np.exp(-logits))
        dense = sparse.astype(np.float32)
    else:
        sparse = rng.integers(0, channels, (BATCH, SIZE, SIZE, 1)).astype(np.int32)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        probs = e / e.sum(-1, keepdims=True)
        dense = np.eye(channels, dtype=np.float32)[sparse[..., 0]]
    return {"sparse": sparse, "dense": dense, "probs": probs.astype(np.float32)}


def _fwd_bwd(loss: Callable, y_true: np.ndarray, y_pred: np.ndarray) -> Callable[[], float]:
    """A zero-argument callable computing loss and d(loss)/d(y_pred), as model.fit would."""
    if BACKEND == "torch":
        labels = torch.as_tensor(y_true)
        preds = torch.tensor(y_pred, requires_grad=True)

        def step() -> float:
            preds.grad = None
            value = loss(labels, preds)
            value.backward()
            return float(value.detach())

        return step
    if BACKEND == "jax":
        labels, preds = jax.numpy.asarray(y_true), jax.numpy.asarray(y_pred)
        value_and_grad = jax.jit(jax.value_and_grad(lambda p: loss(labels, p)))

        def step() -> float:
            value, grad = value_and_grad(preds)
            grad.block_until_ready()
            return float(value)

        return step
    labels, preds = tf.constant(y_true), tf.constant(y_pred)

    @tf.function
    def value_and_grad(p):
        with tf.GradientTape() as tape:
            tape.watch(p)
            value = loss(labels, p)
        return value, tape.gradient(value, p)

    def step() -> float:
        value, grad = value_and_grad(preds)
        _ = grad.shape
        return float(value)

    return step


def _unet_step_seconds(steps: int) -> float:
    """Median seconds of one training step of the default U-Net at 256x256, batch 8."""
    model = create_model("unet", input_shape=(SIZE, SIZE, 1), depth=4, base_filters=32)
    model.compile(optimizer="adam", loss=DiceCELoss(mode="binary"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype(np.float32)
    y = (rng.random((BATCH, SIZE, SIZE, 1)) > 0.7).astype(np.int32)
    model.train_on_batch(x, y)  # build + warm up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _keras_candidates(channels: int, data: dict) -> list[tuple]:
    """(name, loss, labels, counterpart) rows; counterpart names the Keras loss computing the same."""
    ops = keras.ops
    pooled = keras.losses.Dice()  # one score over every pixel and class of the batch
    if channels == 1:
        image_dice = keras.losses.Dice(axis=(1, 2, 3))  # one score per image: per_image=True
        bce = keras.losses.BinaryCrossentropy()
        image_dice_bce = "keras Dice(axis=(1, 2, 3)) + BinaryCrossentropy"
        return [
            ("keras.losses.Dice", pooled, data["sparse"], None),
            ("keras.losses.Dice(axis=(1, 2, 3))", image_dice, data["sparse"], None),
            (image_dice_bce, lambda y, p: image_dice(y, p) + bce(y, p), data["dense"], None),
            (
                # no cross-entropy computes less than one logarithm per pixel: its value needs
                # sum(log p_true), its gradient 1 / p_true (hard labels; soft ones need two)
                "one log per pixel (what a cross-entropy adds at least)",
                lambda y, p: ops.mean(ops.log(p)),
                data["dense"],
                None,
            ),
            (
                "segdoctor DiceLoss",
                DiceLoss(mode="binary"),
                data["sparse"],
                "keras.losses.Dice(axis=(1, 2, 3))",
            ),
            ("segdoctor DiceCELoss", DiceCELoss(mode="binary"), data["sparse"], image_dice_bce),
        ]
    # keras.losses.Dice with an axis computes what segdoctor's DiceLoss computes: axis=(1, 2) one
    # score per image and class (per_image=True, segdoctor's default), axis=(0, 1, 2) one score per
    # class pooled over the batch (per_image=False, nnU-Net's "batch Dice"); both averaged over the
    # classes by the Loss reduction.
    batch_dice = keras.losses.Dice(axis=(0, 1, 2))
    image_dice = keras.losses.Dice(axis=(1, 2))
    cce = keras.losses.CategoricalCrossentropy()

    def one_hot(y):
        return ops.one_hot(ops.squeeze(y, -1), channels)

    sparse_dice = "keras.losses.Dice(axis=(1, 2)) + one_hot"
    sparse_dice_ce = "keras Dice(axis=(1, 2)) + one_hot + CategoricalCrossentropy"
    return [
        ("keras.losses.Dice", pooled, data["dense"], None),
        ("keras.losses.Dice(axis=(0, 1, 2))", batch_dice, data["dense"], None),
        ("keras.losses.Dice(axis=(1, 2))", image_dice, data["dense"], None),
        (sparse_dice, lambda y, p: image_dice(one_hot(y), p), data["sparse"], None),
        (
            sparse_dice_ce,
            lambda y, p: image_dice(one_hot(y), p) + cce(one_hot(y), p),
            data["sparse"],
            None,
        ),
        (
            "segdoctor DiceLoss, one-hot labels",
            DiceLoss(mode="multiclass"),
            data["dense"],
            "keras.losses.Dice(axis=(1, 2))",
        ),
        (
            "segdoctor DiceLoss(per_image=False), one-hot labels",
            DiceLoss(mode="multiclass", per_image=False),
            data["dense"],
            "keras.losses.Dice(axis=(0, 1, 2))",
        ),
        (
            "segdoctor DiceLoss, sparse labels",
            DiceLoss(mode="multiclass"),
            data["sparse"],
            sparse_dice,
        ),
        (
            "segdoctor DiceCELoss, sparse labels",
            DiceCELoss(mode="multiclass"),
            data["sparse"],
            sparse_dice_ce,
        ),
    ]


def _with_setting(name: str, value: object, loss: Callable) -> Callable:
    """``loss`` computed with the setting ``segdoctor.losses.statistics.<name>`` set to ``value``.

    The setting is read while the computation is built (traced on JAX and TensorFlow, recorded
    for the backward on torch), so it holds for the gradient too.
    """

    def call(y_true, y_pred):
        saved = getattr(loss_statistics, name)
        setattr(loss_statistics, name, value)
        try:
            return loss(y_true, y_pred)
        finally:
            setattr(loss_statistics, name, saved)

    return call


def _ablations(channels: int, data: dict) -> list[tuple]:
    """segdoctor's DiceLoss without each of its two speed measures (``--ablation``)."""
    mode = "binary" if channels == 1 else "multiclass"
    labels = data["sparse"] if channels == 1 else data["dense"]
    rows = [
        (
            "segdoctor DiceLoss, pixels not regrouped",
            _with_setting("REDUCE_ROW", 1, DiceLoss(mode=mode)),
            labels,
            None,
        )
    ]
    if keras.backend.backend() == "torch":  # the closed-form backward is torch's alone
        rows.append(
            (
                "segdoctor DiceLoss, automatic backward",
                _with_setting("CUSTOM_GRADIENT", False, DiceLoss(mode=mode)),
                labels,
                None,
            )
        )
    return rows


def run(
    rounds: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
    ablation: bool = False,
) -> list[dict]:
    cases = []
    for channels in (1, CLASSES):
        data = _inputs(channels)
        shape = f"({BATCH},{SIZE},{SIZE},{channels})"
        candidates = _keras_candidates(channels, data)
        if ablation:
            candidates += _ablations(channels, data)
        cases += [
            (shape, name, _fwd_bwd(loss, y, data["probs"]), counterpart)
            for name, loss, y, counterpart in candidates
        ]
    for case in cases:
        for _ in range(warmup):
            case[2]()
    times: list[list[float]] = [[] for _ in cases]
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        # a new order each round: a rotation would keep each candidate behind the same
        # predecessor, whose freed buffers change what the allocator does next (a loss timed
        # twice under two names differed by 10% that way)
        order = list(range(len(cases)))
        shuffle(order)
        for i in order:
            start = clock()
            cases[i][2]()
            times[i].append(clock() - start)
    rows = []
    for (shape, name, _, counterpart), samples in zip(cases, times, strict=True):
        rows.append(
            {
                "shape": shape,
                "loss": name,
                "counterpart": counterpart,
                "median_s": statistics.median(samples),
            }
        )
    for row in rows:
        same_shape = {r["loss"]: r["median_s"] for r in rows if r["shape"] == row["shape"]}
        row["ratio"] = row["median_s"] / same_shape["keras.losses.Dice"]
        if row["counterpart"]:
            row["ratio_counterpart"] = row["median_s"] / same_shape[row["counterpart"]]
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed interleaved rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per candidate")
    parser.add_argument("--unet", action="store_true", help="also time one U-Net training step")
    parser.add_argument("--unet-steps", type=int, default=3, help="timed U-Net steps")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time; cpu: process CPU time, steadier on a shared machine (use it "
        "with --threads 1, or spinning worker threads count too)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads of torch and TensorFlow; on JAX only 1 is supported (one XLA "
        "thread)",
    )
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also time DiceLoss without regrouped sums, and on torch without its closed-form "
        "backward",
    )
    args = parser.parse_args(argv)

    if args.threads not in (None, 1) and keras.backend.backend() == "jax":
        parser.error(
            f"--threads {args.threads} on JAX: only --threads 1 (one XLA thread) can be set here; "
            "leave it out for XLA's default thread pool"
        )
    if args.threads is not None and BACKEND == "torch":
        torch.set_num_threads(args.threads)
    if args.threads is not None and BACKEND == "tensorflow":
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rows = run(args.rounds, args.warmup, clock, args.ablation)
    step = _unet_step_seconds(args.unet_steps) if args.unet else None
    backend = keras.backend.backend()
    print(f"Date: {datetime.date.today().isoformat()}")
    print(f"Command: KERAS_BACKEND={backend} python {' '.join(sys.argv)}")
    print(
        f"Backend: {backend}; Keras {keras.__version__}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs; rounds={args.rounds}; clock={args.clock}; "
        f"threads={args.threads or 'default'}"
    )
    if step is not None:
        print(f"U-Net training step (depth 4, 32 filters, 8x256x256x1): {step * 1000:.0f} ms")
    print()
    header = (
        f"| backend | shape | loss | forward+backward (median {args.clock} ms) "
        "| vs keras.losses.Dice | vs the Keras loss computing the same |"
    )
    divider = "|---|---|---|---:|---:|---:|"
    if step is not None:
        header += " % of a U-Net step |"
        divider += "---:|"
    print(header)
    print(divider)
    for row in rows:
        line = (
            f"| {backend} | {row['shape']} | {row['loss']} | {row['median_s'] * 1000:.2f} | "
            f"{row['ratio']:.2f}x | "
            + (f"{row['ratio_counterpart']:.2f}x |" if row["counterpart"] else "|")
        )
        if step is not None:
            line += f" {100 * row['median_s'] / step:.1f}% |"
        print(line)
    return rows


if __name__ == "__main__":
    main()
