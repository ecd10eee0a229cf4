"""``DoctorCallback``: the doctor inside any ``model.fit``.

At train begin it checks the compiled model (output, loss behaviour, layers) and the other
callbacks of the same fit; on the first ``PEEK_BATCHES`` batches it checks mask values, input range,
image/mask alignment and the model against the batches (input channels, output channels against
the classes in the masks: :mod:`segdoctor.doctor.model_data`), on every backend: it wraps ``model.train_function`` for those steps only
and reads the batch the step receives (torch) or the elements the step pulls from its iterator (JAX,
TensorFlow), then hands the original step back to Keras; after each epoch it analyses the curves
(with the learning rate and, when a validation sample is given, the predicted foreground fraction);
every ``watch_gradients`` epochs it takes one backward pass of the compiled loss on a few images
(the validation sample, else the first training images it saw) in inference mode, so that no
weight or BatchNorm statistic changes, and checks per-layer ``|grad| / |w|`` (exploding and
vanishing gradients, logged as ``grad_norm``); it prints each finding once, as soon as it is sure;
at the end it writes the report (the same JSON as ``segdoctor diagnose``). It also reports a
NaN/inf loss as soon as an epoch logs one (``nan-loss``, with a float16 fix under a
``mixed_float16`` policy), measures how far the first ``UPDATE_STEPS`` steps move the weights
(``lr-too-high``, :mod:`segdoctor.doctor.update_ratio`), and raises ``dice-includes-background``
to a warning when the median peeked image has less than 10% foreground.

Keras internals it relies on: ``model.train_function`` (replaced by a peeking wrapper for the
first ``PEEK_BATCHES`` steps, then restored), and, to find the sibling callbacks, the
``CallbackList`` in the caller's frame.

A Keras callback has no public handle on the other callbacks. Give them to the doctor
(``DoctorCallback(callbacks=[...])`` or :meth:`DoctorCallback.set_callbacks`); otherwise it finds
the ``CallbackList`` that calls it (the caller's frame, on Keras 3); when that fails it still
catches a misdirected ReduceLROnPlateau or EarlyStopping from its behaviour: the LR is cut, or
training stops, while the validation Dice is still rising.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from segdoctor.data.split import content_hash
from segdoctor.doctor.batch_checks import (
    AlignmentSamples,
    alignment_finding,
    check_batch,
    classes_finding,
    repeated_batches_finding,
)
from segdoctor.doctor.catalog import CATALOG, make_finding
from segdoctor.doctor.epoch_timing import epoch_start_findings
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.history import (
    PRED_FG,
    TRUE_FG,
    analyze_history,
    is_dice_like,
    nan_loss_findings,
)
from segdoctor.doctor.loss_probe import background_severity
from segdoctor.doctor.model_checks import check_model
from segdoctor.doctor.model_data import Targets
from segdoctor.doctor.probes import explode_threshold, gradient_findings, gradient_stats
from segdoctor.doctor.receptive_field import receptive_field, receptive_field_findings
from segdoctor.doctor.report import Report
from segdoctor.doctor.split_checks import channel_balance, channel_order, intensity_shift
from segdoctor.doctor.update_ratio import (
    UPDATE_STEPS,
    kernel_indices,
    low_update_findings,
    optimizer_state,
    relative_update,
    snapshot,
    update_findings,
)
from segdoctor.lr_range import current_lr, lr_schedule

PEEK_BATCHES = 3
REPEEK_BATCHES = 2
"""Training batches peeked at again at the start of the second epoch: a dataset whose
``on_epoch_end`` breaks the pairing (two shuffles, one for the images and one for the masks)
hands the first epoch aligned batches (third blind test, 2026-12-07)."""
GRAD_IMAGES = 4


def _as_numpy(value: Any) -> np.ndarray | None:
    try:
        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:
        return None


def _find_xy(args: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """Find an ``(x, y)`` batch among a train function's arguments (torch: data; jax: [data])."""
    for arg in args:
        candidates = [arg]
        if isinstance(arg, list) and arg:
            candidates.append(arg[0])
        for cand in candidates:
            if isinstance(cand, (tuple, list)) and len(cand) in (2, 3):
                x, y = _as_numpy(cand[0]), _as_numpy(cand[1])
                if x is not None and y is not None and x.ndim == 4 and y.ndim >= 3:
                    return x, y if y.ndim == 4 else y[..., None]
    return None


def _is_iterator(value: Any) -> bool:
    """A Python or tf.data iterator (what the JAX and TensorFlow train steps receive)."""
    return hasattr(value, "__next__") and not isinstance(value, (np.ndarray, tuple, list, dict))


class _PeekingIterator:
    """Forwards ``next()`` to an iterator and shows each element to ``peek`` first.

    The JAX train step calls ``next(iterator)``; the TensorFlow one iterates it in Python when it is
    not a ``tf.data`` iterator (its graph loop resumes once the doctor stops peeking).
    """

    def __init__(self, iterator: Any, peek: Any) -> None:
        self._iterator, self._peek = iterator, peek

    def __iter__(self) -> _PeekingIterator:
        return self

    def __next__(self) -> Any:
        data = next(self._iterator)
        self._peek(data)
        return data


MIN_DELTA_LARGE = 0.01
"""``min_delta`` of an EarlyStopping on a Dice-like metric at or above which a stop while the Dice
still rose is reported (``early-stopping-min-delta``). ``min_delta`` is an absolute change of the
watched value; late in a healthy run validation Dice gains 0.001-0.006 an epoch (the default
recipe on DSB2018, epochs 9-16), so a bar of 0.05 meant as "5%" stops a rising run (sixth blind
test, F5: stopped at epoch 5 of 16, gains of 0.017 and 0.008 uncounted)."""


def _maximises(callback) -> bool:
    """Whether a monitoring callback (EarlyStopping, ModelCheckpoint) treats larger as better."""
    op = getattr(callback, "monitor_op", None)
    if op is not None:
        return getattr(op, "__name__", "") == "greater"
    return getattr(callback, "mode", None) == "max"


class DoctorCallback(keras.callbacks.Callback):
    """Diagnose a training run from inside ``model.fit``.

    Args:
        report: path of the JSON report written at the end of training (None: no file).
        validation_data: optional ``(x, y)`` sample (a few images) to watch predictions on.
        verbose: print each finding once when it is found.
        probe_loss: probe the compiled loss on synthetic cases at train begin (< 1 s).
        watch_gradients: check gradients after the first epoch and then every this many epochs
            (one backward pass on at most ``GRAD_IMAGES`` images); 0 disables it.
        callbacks: the other callbacks of the same ``fit`` (``monitor-mode`` and the stop rule
            read them); None: found from the caller's frame.

    Attributes:
        findings: what was found so far (list of Finding).
        overhead_s: seconds spent in the callback.

    Example:
        >>> cb = DoctorCallback(report="doctor.json")  # doctest: +SKIP
        >>> model.fit(x, y, validation_split=0.2, callbacks=[cb])  # doctest: +SKIP
        >>> cb.report().ids  # doctest: +SKIP
    """

    def __init__(
        self,
        report: str | Path | None = None,
        validation_data: tuple[Any, Any] | None = None,
        verbose: bool = True,
        probe_loss: bool = True,
        watch_gradients: int = 5,
        callbacks: Sequence[Any] | None = None,
    ) -> None:
        super().__init__()
        self._given_callbacks = None if callbacks is None else list(callbacks)
        self.watch_gradients = int(watch_gradients)
        self._grad_batch: tuple[np.ndarray, np.ndarray] | None = None
        self.report_path = None if report is None else Path(report)
        self.validation_data = validation_data
        self.verbose = verbose
        self.probe_loss = probe_loss
        self.findings: list[Finding] = []
        self.history: dict[str, list[float]] = {}
        self.overhead_s = 0.0
        self._seen: set[str] = set()
        self._peeks = {"train_function": 0, "test_function": 0}  # batches seen per step
        self._original_train_function = None
        self._original_test_function = None
        self._siblings: list[Any] | None = None
        self._field: int | None = None  # receptive_field(model), measured at the start
        self._alignment = AlignmentSamples()
        self._later_alignment = AlignmentSamples()  # the second epoch's first batches
        self._batch_digests: list[tuple[int, str]] = []  # (epoch, batch content hash) per peek
        self._targets: list[Targets] = []  # classes seen in the peeked batches
        self._fg_fractions: list[float] = []  # per image of the peeked batches
        # per image: mean, std, channel_balance (RGB images)
        self._train_intensity: dict[str, list] = {"mean": [], "std": [], "balance": []}
        self._val_intensity: dict[str, list] = {"mean": [], "std": [], "balance": []}
        self._shift_checked = False
        self._kernels: list[int] = []  # weights whose first updates are measured (update_ratio)
        self._before: list[np.ndarray] | None = None
        self._update_ratios: list[float] = []
        self._optimizer_state: tuple[float | None, str] | None = None  # (rate, optimizer)
        # epoch-start-wait: wall times of first steps (epoch 2 on) and of the other steps
        self._train_start: float | None = None
        self._epoch_start: float | None = None
        self._epochs_begun = 0
        self._last_step_end: float | None = None
        self._first_step_s: list[float] = []
        self._step_s: list[float] = []

    # -- helpers ---------------------------------------------------------------------------------
    def _emit(self, found: list[Finding]) -> None:
        for f in found:
            if f.id in self._seen:
                continue
            self._seen.add(f.id)
            self.findings.append(f)
            if self.verbose:
                first = f.fix.splitlines()[0] if f.fix else ""
                print(f"[segdoctor] {f.severity.upper()} {f.id}: {f.title}. Fix: {first}")

    def set_callbacks(self, callbacks: Sequence[Any]) -> None:
        """Tell the doctor the other callbacks of the fit (instead of the caller's-frame lookup).

        Example:
            >>> stop = keras.callbacks.EarlyStopping(monitor="val_dice", mode="max")
            >>> doctor = DoctorCallback(verbose=False)
            >>> doctor.set_callbacks([stop])
            >>> model.fit(x, y, callbacks=[stop, doctor])  # doctest: +SKIP
        """
        self._given_callbacks = [c for c in callbacks if c is not self]

    def _sibling_callbacks(self) -> list[Any] | None:
        if self._given_callbacks is not None:
            return [c for c in self._given_callbacks if c is not self]
        frame = inspect.currentframe()
        try:
            for _ in range(6):
                frame = frame.f_back if frame is not None else None
                if frame is None:
                    return None
                owner = frame.f_locals.get("self")
                if isinstance(owner, keras.callbacks.CallbackList):
                    return [c for c in owner.callbacks if c is not self]
            return None
        finally:
            del frame

    def report(self) -> Report:
        """The findings so far as a :class:`Report`."""
        checked = ["model", "callbacks", "history"] + (
            ["batches"] if self._peeks["train_function"] else []
        )
        return Report(
            list(self.findings), {"checked": checked, "epochs": len(self.history.get("loss", []))}
        )

    # -- Keras hooks -----------------------------------------------------------------------------
    def on_train_begin(self, logs=None) -> None:
        start = time.perf_counter()
        self._train_start = start
        self._siblings = self._sibling_callbacks()
        self._emit(check_model(self.model, self._siblings or (), probe_loss_fn=self.probe_loss))
        self._field = receptive_field(self.model)  # two forward passes, before any step
        if getattr(self.model, "optimizer", None) is not None:
            self._kernels = kernel_indices(self.model)
            self._before = snapshot(self.model, self._kernels)
        # Inside the step, never touch ``self.model``: on JAX that property syncs the model's
        # variables with the state the step is about to donate, and the next step then reads
        # deleted buffers. The raw model and weight-free checks are safe.
        self._original_train_function = self._peek_step("train_function", self._peek)
        self._wrap_test_function()
        self.overhead_s += time.perf_counter() - start

    def _peek_step(self, name: str, take, key: str | None = None, limit: int = PEEK_BATCHES) -> Any:
        """Wrap the model's Keras step function ``name`` (``train_function``, ``test_function``)
        so that ``take`` sees its next ``limit`` batches ``(x, y)`` as numpy (counted in
        ``self._peeks[key]``, ``key`` defaulting to ``name``); then the step is handed back to
        Keras. Returns the original step (None when there is none).

        On torch the step receives the batch itself; on JAX and TensorFlow it pulls the batch
        from an iterator, which is wrapped. A batch in a format the doctor does not know stops
        the peeking."""
        model = self._model
        original = getattr(model, name, None)
        if not callable(original):
            return None
        key = key or name
        self._peeks.setdefault(key, 0)

        def done() -> bool:
            return self._peeks[key] >= limit

        def see(batch) -> None:
            if batch is None:
                self._peeks[key] = limit  # not visible: stop trying
            else:
                self._peeks[key] += 1
                take(batch)

        def see_data(data: Any) -> None:  # an item the step pulled from its iterator
            if not done():
                t0 = time.perf_counter()
                see(_find_xy((data,)))
                self.overhead_s += time.perf_counter() - t0

        def peek(*args, **kwargs):
            if done():  # hand the step back to Keras
                setattr(model, name, original)
                return original(*args, **kwargs)
            t0 = time.perf_counter()
            batch = _find_xy(args)
            if batch is None and any(_is_iterator(a) for a in args):
                args = tuple(_PeekingIterator(a, see_data) if _is_iterator(a) else a for a in args)
            else:
                see(batch)
            self.overhead_s += time.perf_counter() - t0
            return original(*args, **kwargs)

        setattr(model, name, peek)
        return original

    def _wrap_test_function(self) -> None:
        """Peek at the first validation batches, as at the training ones: their per-image
        intensities against the training batches' (``split-intensity-shift``: validation scaled
        differently, or drawn from another source, in the user's own pipeline)."""
        make = getattr(self._model, "make_test_function", None)
        if not callable(make):
            return
        try:
            make()  # Keras builds it once and reuses it (JAX returns None: read the attribute)
        except Exception:  # a model Keras cannot evaluate: nothing to peek at
            return
        self._original_test_function = self._peek_step(
            "test_function", lambda batch: self._note_intensities(batch[0], self._val_intensity)
        )

    @staticmethod
    def _note_intensities(x: np.ndarray, into: dict[str, list]) -> None:
        """Per-image mean, standard deviation and red/blue balance of an input batch
        ``(B, H, W, C)``."""
        x = np.asarray(x, "float64")
        flat = x.reshape(len(x), -1)
        into["mean"] += flat.mean(axis=1).tolist()
        into["std"] += flat.std(axis=1).tolist()
        into["balance"] += [b for image in x if (b := channel_balance(image)) is not None]

    def _intensity_shift(self) -> list[Finding]:
        """Once, after the first validation: the training batches' intensities against the
        validation batches' (:func:`segdoctor.doctor.split_checks.intensity_shift`)."""
        if self._shift_checked or not self._val_intensity["mean"]:
            return []
        self._shift_checked = True
        splits = {"training": self._train_intensity, "validation": self._val_intensity}
        source = "first batches of model.fit's training and validation data"
        balances = {name: split["balance"] for name, split in splits.items()}
        return intensity_shift(splits, source) + channel_order(balances, source)

    def _note_digest(self, batch: tuple[np.ndarray, np.ndarray]) -> None:
        """The batch's content hash with its epoch (``batches-repeat``)."""
        digest = content_hash(np.asarray(batch[0])) + content_hash(np.asarray(batch[1]))
        self._batch_digests.append((self._epochs_begun, digest))

    def _peek(self, batch: tuple[np.ndarray, np.ndarray]) -> None:
        self._note_digest(batch)
        self._count_foreground(batch[1])
        self._note_intensities(batch[0], self._train_intensity)
        if self._grad_batch is None:
            self._grad_batch = (batch[0][:GRAD_IMAGES].copy(), batch[1][:GRAD_IMAGES].copy())
        model = self._model  # not self.model: see on_train_begin
        self._emit(
            check_batch(
                batch[0],
                batch[1],
                model,
                alignment_out=self._alignment,
                targets_out=self._targets,
            )
        )
        if self._peeks["train_function"] == PEEK_BATCHES:
            self._pooled_batch_findings()

    def _count_foreground(self, y: np.ndarray) -> None:
        """Foreground pixels of a target batch: ``(B, H, W, 1)`` indices or one-hot ``(B, H, W, K)``."""
        fg = y[..., 0] > 0 if y.shape[-1] == 1 else np.argmax(y, axis=-1) > 0  # (B, H, W)
        self._fg_fractions += fg.reshape(len(fg), -1).mean(axis=1).tolist()

    def _pooled_batch_findings(self) -> None:
        """What needs several batches: alignment, classes the masks never show, and how rare the
        foreground is per image (``dice-includes-background`` is a warning on rare foreground)."""
        self._emit(alignment_finding(self._alignment))
        self._emit(repeated_batches_finding(self._batch_digests))
        where = f"first {self._peeks['train_function']} training batch(es)"
        self._emit(classes_finding(self._model, self._targets, where))
        self._emit(receptive_field_findings(self._field, self._alignment.areas, where))
        if self._fg_fractions:
            share = float(np.median(self._fg_fractions))
            self.findings = [background_severity(f, share) for f in self.findings]

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch_start = time.perf_counter()
        self._epochs_begun += 1
        if self._epochs_begun == 2 and self._peeks["train_function"] == PEEK_BATCHES:
            self._peek_step("train_function", self._repeek, "second_epoch", REPEEK_BATCHES)

    def _repeek(self, batch: tuple[np.ndarray, np.ndarray]) -> None:
        """The second epoch's first batches: still paired, still different from each other?"""
        self._note_digest(batch)
        check_batch(batch[0], batch[1], alignment_out=self._later_alignment)
        if self._peeks["second_epoch"] < REPEEK_BATCHES:
            return
        self._emit(repeated_batches_finding(self._batch_digests))
        if not any(f.id in ("pair-misaligned", "mask-offset") for f in self.findings):
            self._emit(
                alignment_finding(self._later_alignment, "second epoch's batches", later=True)
            )

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        """Step times (``epoch-start-wait``); the first ``UPDATE_STEPS`` steps: how much each one
        moved the weights (``lr-too-high``)."""
        start = time.perf_counter()
        if self._epoch_start is not None:  # the epoch's first step, timed from its begin
            if self._epochs_begun > 1:  # the first epoch's first step traces and compiles
                self._first_step_s.append(start - self._epoch_start)
            self._epoch_start = None
        elif self._last_step_end is not None:
            self._step_s.append(start - self._last_step_end)
        self._last_step_end = start
        if self._before is None:
            return
        after = snapshot(self.model, self._kernels)
        self._update_ratios.append(relative_update(self._before, after))
        self._before = after
        if len(self._update_ratios) >= UPDATE_STEPS:
            self._before = None  # measured: no more copies
            lr, name = optimizer_state(self.model)
            where = f"first {UPDATE_STEPS} training steps"
            self._emit(update_findings(self._update_ratios, lr, name, where))
            self._optimizer_state = (lr, name)  # lr-too-low at the end, if nothing was learned
        self.overhead_s += time.perf_counter() - start

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        start = time.perf_counter()
        logs = logs if logs is not None else {}
        lr = current_lr(self.model.optimizer)
        if lr is not None and "learning_rate" not in logs:
            logs["learning_rate"] = float(lr)
        if self.validation_data is not None:
            x, y = self.validation_data
            out = self.model(np.asarray(x[:16]), training=False)
            p = _as_numpy(out[0] if isinstance(out, (list, tuple)) else out)  # the main output
            y = np.asarray(y[:16])
            pred_fg = (
                float(np.mean(p[..., 0] > 0.5))
                if p.shape[-1] == 1
                else float(np.mean(p.argmax(-1) > 0))
            )
            true_fg = (
                float(np.mean(y[..., 0] > 0))
                if y.shape[-1] == 1
                else float(np.mean(y.argmax(-1) > 0))
            )
            logs[PRED_FG], logs[TRUE_FG] = pred_fg, true_fg
        if self.watch_gradients > 0 and epoch % self.watch_gradients == 0:
            norm = self._check_gradients(epoch)
            if norm is not None:
                logs["grad_norm"] = norm
        for key, value in logs.items():
            v = _as_numpy(value)
            if v is not None and v.size == 1:
                self.history.setdefault(key, []).append(float(v))
        self._emit(self._intensity_shift())
        # Before the curve checks: a NaN loss explains the gradients and curves that follow it.
        self._emit(nan_loss_findings(self.history, self._dtype_policy(), ("loss", "val_loss")))
        sure = [f for f in self._analyze() if f.severity == "error" or f.confidence >= 0.8]
        self._emit(sure)
        self.overhead_s += time.perf_counter() - start

    def _analyze(self) -> list[Finding]:
        """The history checks on the run so far, told whether the rate is a schedule's."""
        optimizer = getattr(self.model, "optimizer", None)
        return analyze_history(self.history, lr_schedule=lr_schedule(optimizer) is not None)

    def _dtype_policy(self) -> str | None:
        """The model's dtype policy name (``"mixed_float16"``, ...), or the global one."""
        policy = getattr(self._model, "dtype_policy", None) or keras.mixed_precision.global_policy()
        return getattr(policy, "name", None)

    def _check_gradients(self, epoch: int) -> float | None:
        """One backward pass on a few images: exploding/vanishing gradients, the global norm."""
        if self.validation_data is not None:
            x, y = self.validation_data
            batch = (np.asarray(x[:GRAD_IMAGES]), np.asarray(y[:GRAD_IMAGES]))
        else:
            batch = self._grad_batch
        if batch is None or getattr(self.model, "loss", None) is None:
            return None
        try:
            stats = gradient_stats(self.model, batch[0], batch[1], training=False)
        except Exception:  # a loss or model the gradient helpers cannot drive: no verdict
            return None
        self._emit(
            gradient_findings(
                stats, where=f"after epoch {epoch + 1}", threshold=explode_threshold(self.model)
            )
        )
        return stats["global_norm"] if stats["finite"] else float("nan")

    def on_train_end(self, logs=None) -> None:
        start = time.perf_counter()
        if self._original_train_function is not None:
            self.model.train_function = self._original_train_function
        if self._original_test_function is not None:  # fewer validation batches than peeks
            self.model.test_function = self._original_test_function
        if 0 < self._peeks["train_function"] < PEEK_BATCHES:
            self._pooled_batch_findings()
        self._emit(self._stopped_while_improving())
        if self._train_start is not None:
            train_s = start - self._train_start
            self._emit(epoch_start_findings(self._first_step_s, self._step_s, train_s))
        if self.history:
            # The report tells what the whole run shows: a curve finding printed mid-run (a dip
            # that looked like overfitting) that the complete history no longer supports is
            # dropped from the report; what still holds is kept with its final evidence.
            final = self._analyze()
            final_ids = {f.id for f in final}
            self.findings = [
                f
                for f in self.findings
                if CATALOG[f.id].category != "history"
                or f.id in final_ids
                or f.id == "monitor-mode"
            ]
            self._seen = {f.id for f in self.findings}
            self._emit(final)
            self._emit(self._low_updates())
        if self.report_path is not None:
            rep = self.report()
            rep.summary["overhead_s"] = round(self.overhead_s, 3)
            rep.to_json(self.report_path)
        self.overhead_s += time.perf_counter() - start

    def _low_updates(self) -> list[Finding]:
        """``lr-too-low`` when the first steps barely moved the weights and nothing was learned."""
        if self._optimizer_state is None:
            return []
        failed = [
            f.id
            for f in self.findings
            if (f.id in ("metric-constant", "prediction-collapse") and f.severity == "error")
            or f.id == "underfitting"
        ]
        lr, name = self._optimizer_state
        where = f"first {UPDATE_STEPS} training steps"
        return low_update_findings(self._update_ratios, lr, name, where, failed)

    def _stopped_while_improving(self) -> list[Finding]:
        """EarlyStopping ended training while the validation Dice was rising.

        With the stopping callback known (the fit's callbacks): ``monitor-mode`` when it watched
        a Dice-like metric in the minimising direction, ``early-stopping-min-delta`` when it
        maximised it with a ``min_delta`` of :data:`MIN_DELTA_LARGE` or more and the Dice made a
        new best within its last ``patience`` epochs (gains too small to count); a stop on
        another quantity, or a normal stop ``patience`` epochs after the best, is silent. With
        the callbacks unknown, only a stop right after a new best (which no maximising
        EarlyStopping with a small ``min_delta`` makes) is reported, naming both causes.
        """
        epochs = self.params.get("epochs") if self.params else None
        keys = [k for k in self.history if k.startswith("val_") and is_dice_like(k)]
        if not keys or not self.model.stop_training or epochs is None:
            return []
        values = self.history[keys[0]]
        if len(values) >= epochs or len(values) < 4:
            return []
        evidence = {"stopped_at_epoch": len(values), "of_epochs": epochs}

        def wrong_mode(confidence: float) -> list[Finding]:
            return [
                make_finding(
                    "monitor-mode",
                    evidence,
                    variant="stopped-early",
                    monitor=keys[0],
                    confidence=confidence,
                )
            ]

        if self._siblings is None:
            if values[-1] <= max(values[:-1]) + 1e-3:
                return []
            evidence |= {f"{keys[0]}_last": values[-3:], "best_before": max(values[:-1])}
            return wrong_mode(0.6)
        stoppers = [
            c
            for c in self._siblings
            if isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch > 0
        ]
        if not stoppers or not is_dice_like(str(stoppers[0].monitor)):
            return []  # stopped by something else, or on another quantity (a loss)
        stopper = stoppers[0]
        patience = max(1, int(getattr(stopper, "patience", 0) or 0))
        recent, before = values[-patience:], values[:-patience]
        if not before or max(recent) <= max(before) + 1e-3:
            return []  # a stop after `patience` epochs without a new best: as designed
        evidence |= {f"{keys[0]}_last": recent, "best_before": max(before), "patience": patience}
        if not _maximises(stopper):
            return wrong_mode(0.9)
        min_delta = abs(float(getattr(stopper, "min_delta", 0.0) or 0.0))
        if min_delta < MIN_DELTA_LARGE:
            return []
        gains = np.diff([max(before), *recent])
        evidence |= {"min_delta": min_delta, "largest_gain": float(np.max(gains))}
        return [
            make_finding(
                "early-stopping-min-delta",
                evidence,
                monitor=stopper.monitor,
                min_delta=min_delta,
                patience=patience,
                confidence=0.8,
            )
        ]
