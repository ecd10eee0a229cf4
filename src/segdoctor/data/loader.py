"""The batch loader: a ``keras.utils.PyDataset`` of image/mask patches for ``model.fit``.

Every batch is ``(images, masks)``: ``images`` ``float32 (B, h, w, C)`` normalized,
``masks`` ``int32 (B, h, w, 1)`` with values in ``[0, num_classes)`` or ``ignore_index``.

Training mode (``training=True``):

* each epoch visits the pairs in a new seeded permutation; every batch is full (the last one wraps
  around), so shapes never change;
* each sample is a random patch of ``patch_size``; the last ``round(B * foreground_fraction)``
  samples of every batch are centred on a random foreground pixel (a random foreground class
  first, then a random pixel of it), as nnU-Net does; images smaller than the patch are padded
  (image 0, mask ``mask_fill``);
* joint geometric and photometric augmentation (:mod:`segdoctor.data.augment`);
* deterministic: batch ``i`` of epoch ``e`` depends only on ``(seed, e, i)``, whatever the number of
  workers.

Validation mode (``training=False``), never augmented:

* ``validation="whole"`` (default): whole images, padded at the bottom/right to a multiple of
  ``stride``; batches only group images of the same padded size (so a batch may be smaller than
  ``batch_size``). The padded border is background (or ``ignore_index`` when the mask decision has
  one) and is counted by metrics: crop with :func:`segdoctor.data.unpad` for exact numbers.
* ``validation="center"``: one centre patch of ``patch_size`` per image (padded when smaller).

Decoded, normalized arrays are cached in memory while they fit in ``cache_limit_mb``. Workers are
threads running numpy/scipy only (no Keras calls), which is safe on every backend;
``use_multiprocessing=True`` is refused on JAX, where forked workers can hang.

The work is split by job: :mod:`segdoctor.data.prepare` (read every pair once, decide, cache),
:mod:`segdoctor.data.batches` (patches and batches) and here the Keras ``PyDataset``: epochs,
order, and what ``model.fit`` calls.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import keras
import numpy as np

from segdoctor.data.augment import AugmentConfig
from segdoctor.data.batches import (
    padded_shape,
    training_patch,
    validation_batch,
    validation_batches,
)
from segdoctor.data.discover import Pair, PairIndex
from segdoctor.data.files import ON_ERROR
from segdoctor.data.io import read_pair
from segdoctor.data.masks import MaskPolicy
from segdoctor.data.normalize import ImageNormalizer
from segdoctor.data.prepare import MAX_FOREGROUND_LOCATIONS, Sample, prepare
from segdoctor.data.sizing import as_size, round_up
from segdoctor.data.split import split_pairs
from segdoctor.errors import ConfigError, DataError, check_choice

__all__ = ["MAX_FOREGROUND_LOCATIONS", "SegmentationDataset", "train_val_datasets"]


class SegmentationDataset(keras.utils.PyDataset):
    """Batches of ``(images float32 (B, h, w, C), masks int32 (B, h, w, 1))`` for ``model.fit``.

    Args:
        pairs: Pairs (or a :class:`PairIndex`) with masks.
        batch_size: Samples per batch.
        patch_size: Training (and ``validation="center"``) patch, int or ``(h, w)``; a multiple
            of ``stride``.
        training: Random augmented patches (True) or deterministic validation batches (False).
        augment: ``None`` (default config when training, none otherwise), ``True``, ``False``
            or an :class:`AugmentConfig`.
        foreground_fraction: Fraction of each training batch centred on foreground.
        channels: Channels of every image (``1`` or ``3``; ``None``: 3 if any image is RGB,
            else 1, or the common count of multi-channel data).
        normalizer: An :class:`ImageNormalizer` (default: per-image z-score). A ``dataset``-mode
            normalizer that is not fitted is fitted on these pairs.
        mask_policy: The mask decision (default: inspected from these masks). Pass the
            training set's policy to a validation set.
        ignore_index: Set ``ignore_index`` on the detected policy (e.g. 11 for CamVid void).
        stride: The model's total downsampling factor; validation images are padded to it.
        validation: ``"whole"`` or ``"center"`` (see module docstring).
        cache: ``"auto"``/``True`` (cache while under ``cache_limit_mb``) or ``False``.
        cache_limit_mb: Memory budget of the cache.
        samples_per_epoch: Training samples per epoch (default: the number of pairs, at least
            one batch).
        seed: Seed of everything random.
        on_error: ``"raise"`` stops at the first bad pair with its file name; ``"skip"`` drops bad
            pairs and lists them in :attr:`skipped` (and in :meth:`describe`).
        max_pixels: Pixel limit per image (see :data:`segdoctor.data.io.MAX_PIXELS`).
        workers: Threads preparing batches (``keras.utils.PyDataset``).
        use_multiprocessing: Processes instead of threads (refused on JAX).
        max_queue_size: Batches prepared ahead.

    Example:
        >>> from segdoctor.data import discover_pairs
        >>> from segdoctor.sample_data import sample_path
        >>> ds = SegmentationDataset(discover_pairs(sample_path()).pairs[:4], batch_size=2,
        ...                          patch_size=64)
        >>> x, y = ds[0]
        >>> x.shape[:3], x.dtype, y.shape, y.dtype
        ((2, 64, 64), dtype('float32'), (2, 64, 64, 1), dtype('int32'))
    """

    def __init__(
        self,
        pairs: Sequence[Pair] | PairIndex,
        *,
        batch_size: int = 8,
        patch_size: int | tuple[int, int] = 256,
        training: bool = True,
        augment: AugmentConfig | bool | None = None,
        foreground_fraction: float = 0.33,
        channels: int | None = None,
        normalizer: ImageNormalizer | None = None,
        mask_policy: MaskPolicy | None = None,
        ignore_index: int | None = None,
        stride: int = 32,
        validation: str = "whole",
        cache: bool | str = "auto",
        cache_limit_mb: float = 2048,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        on_error: str = "raise",
        max_pixels: int | None = None,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ) -> None:
        _check_workers(use_multiprocessing)
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        self.pairs: list[Pair] = _labelled_pairs(pairs)
        _check_sizes(batch_size, foreground_fraction)
        self.batch_size = int(batch_size)
        self.patch_size = as_size(patch_size)
        self.stride = int(stride)
        _check_stride(self.patch_size, self.stride)
        self.training = bool(training)
        self.augment: AugmentConfig = _resolve_augment(augment, training)
        self.foreground_fraction = float(foreground_fraction)
        self.validation = check_choice("validation", validation, ("whole", "center"))
        check_choice("cache", cache, ("auto", True, False))
        self.cache_limit_bytes = int(cache_limit_mb * 2**20) if cache else 0
        self.on_error = check_choice("on_error", on_error, ON_ERROR)
        self.max_pixels = max_pixels
        self.seed = int(seed)
        self._prepare_samples(channels, normalizer, mask_policy, ignore_index)
        self.samples_per_epoch = int(samples_per_epoch or max(len(self.pairs), self.batch_size))
        self._reset_order()

    def _prepare_samples(
        self,
        channels: int | None,
        normalizer: ImageNormalizer | None,
        mask_policy: MaskPolicy | None,
        ignore_index: int | None,
    ) -> None:
        """Read every pair once and decide (:func:`segdoctor.data.prepare.prepare`).

        Sets the decisions (:attr:`channels`, :attr:`normalizer`, :attr:`mask_policy`), the
        readable :attr:`pairs`, :attr:`skipped`, the image shapes and the memory cache. Needs
        ``pairs``, ``on_error``, ``max_pixels``, ``cache_limit_bytes`` and ``seed`` set first.

        Args:
            channels: See the class arguments.
            normalizer: See the class arguments (None: per-image z-score).
            mask_policy: See the class arguments.
            ignore_index: See the class arguments.
        """
        prepared = prepare(
            self.pairs,
            channels=channels,
            normalizer=normalizer or ImageNormalizer(),
            mask_policy=mask_policy,
            ignore_index=ignore_index,
            on_error=self.on_error,
            max_pixels=self.max_pixels,
            cache_limit_bytes=self.cache_limit_bytes,
            seed=self.seed,
        )
        self._maker = prepared.maker
        self.channels: int = prepared.maker.channels
        self.normalizer: ImageNormalizer = prepared.maker.normalizer
        self.mask_policy: MaskPolicy = prepared.maker.mask_policy
        self.skipped: list[tuple[str, str]] = prepared.skipped
        self.pairs, self._shapes, self._cache = prepared.pairs, prepared.shapes, prepared.cache

    def _reset_order(self) -> None:
        """Start at epoch 0 with no batch served; group validation images into batches.

        Needs the prepared pairs and shapes (:meth:`_prepare_samples`) and ``batch_size``.
        """
        self._epoch = 0
        self._served = self._pending = False
        self._lock = threading.Lock()
        self._order_epoch = -1
        self._order = np.arange(len(self.pairs))
        self._val_batches = (
            []
            if self.training
            else validation_batches(self.validation, self._shapes, self.batch_size, self.stride)
        )

    def _sample(self, i: int) -> Sample:
        cached = self._cache.get(i)
        if cached is not None:
            return cached
        pair = self.pairs[i]
        return self._maker.build(pair, *read_pair(pair, max_pixels=self.max_pixels))

    # ---------------------------------------------------------------- properties

    @property
    def num_classes(self) -> int:
        """Classes in the normalized masks (2 for binary)."""
        return self.mask_policy.num_classes if self.mask_policy else 2

    @property
    def ignore_index(self) -> int | None:
        """The ignore value of the mask decision, if any."""
        return self.mask_policy.ignore_index if self.mask_policy else None

    @property
    def mask_fill(self) -> int:
        """Mask value of padded pixels: ``ignore_index`` when set, else background 0."""
        return self.ignore_index if self.ignore_index is not None else 0

    @property
    def cached(self) -> int:
        """How many pairs are held in the memory cache."""
        return len(self._cache)

    def describe(self) -> str:
        """Multi-line summary of every decision the loader made."""
        lines = [
            f"{len(self.pairs)} pairs, {'training' if self.training else 'validation'} mode, "
            f"batch {self.batch_size}, patch {self.patch_size[0]}x{self.patch_size[1]}",
            f"masks: {self.mask_policy.describe() if self.mask_policy else 'n/a'}",
            f"images: {self.channels} channel(s); {self.normalizer.describe()}",
            f"cache: {self.cached} of {len(self.pairs)} pairs in memory",
        ]
        if self.skipped:
            lines.append(
                f"skipped {len(self.skipped)} pair(s): "
                + "; ".join(f"{n}: {m}" for n, m in self.skipped)
            )
        return "\n".join(lines)

    # ---------------------------------------------------------------- batches

    def __len__(self) -> int:
        if self.training:
            return math.ceil(self.samples_per_epoch / self.batch_size)
        return len(self._val_batches)

    def set_samples_per_epoch(self, samples: int) -> None:
        """Draw ``samples`` training patches per epoch from the next batch on.

        The recipe lengthens its epochs this way once it has measured the step and validation
        times (:func:`segdoctor.train.budget.epoch_steps`); the epoch's order is drawn again for
        the new length.
        """
        if not self.training:
            raise ValueError("only a training dataset has a number of samples per epoch")
        with self._lock:
            self.samples_per_epoch = max(int(samples), self.batch_size)
            self._order_epoch = -1

    def for_fit(self):
        """What to pass to ``model.fit``: this dataset, or on TensorFlow a ``tf.data`` pipeline.

        On the TensorFlow backend Keras hands a PyDataset to ``model.fit`` as
        ``tf.data.Dataset.from_generator(...).prefetch(AUTOTUNE)``, and two things go wrong:

        * Training: tf.data's autotuning runs an optimization thread that sleeps for a period
          growing towards a minute, and releasing the previous epoch's iterator waits for it. In
          10- and 15-minute runs of the default recipe on 2 cores, 3 of 13 and 4 of 9 epochs
          began with the machine idle for 30-40 s inside that destructor (measured per batch: 1 s of CPU in
          38 s of wall time; the native stack showed ``RootDataset::Iterator::~Iterator`` waiting
          on ``Model::OptimizeLoop``), about a tenth of the budget. Here the batches come through
          a pipeline with autotuning off and a fixed prefetch of two batches, as Keras itself
          does when it runs its own worker threads.
        * Validation: whole-image batches are sorted by size, and the signature Keras infers
          from the first few batches would fix H and W to the smallest size; the first larger
          image would stop training ("`generator` yielded an element of shape ..."). The pipeline
          (autotuning off as well) declares H and W unknown when the validation images come in
          more than one padded size.

        Call it after :meth:`set_samples_per_epoch`: the training pipeline serves the number of
        batches the dataset has when it is made. An epoch ends when its last batch has been
        prepared (the next one draws a new permutation), which is what Keras' ``on_epoch_end``
        does for the PyDataset itself. Other backends get the dataset unchanged.
        """
        if keras.backend.backend() != "tensorflow" or len(self) == 0:
            return self
        if self.training:
            return self._training_pipeline()
        import tensorflow as tf  # noqa: PLC0415 - optional backend, only on TensorFlow

        x, y = self[0]
        sizes = (
            {x.shape[1:3]}
            if self.validation != "whole"
            else {self._padded_shape(b[0]) for b in self._val_batches}
        )
        h, w = sizes.pop() if len(sizes) == 1 else (None, None)
        signature = (
            tf.TensorSpec((None, h, w, x.shape[-1]), tf.as_dtype(x.dtype)),
            tf.TensorSpec((None, h, w, y.shape[-1]), tf.as_dtype(y.dtype)),
        )

        def batches():
            for i in range(len(self)):
                yield self[i]

        return _pipeline(batches, signature, len(self))

    def _training_pipeline(self):
        """The TensorFlow pipeline of :meth:`for_fit` for training batches (fixed shapes)."""
        import tensorflow as tf  # noqa: PLC0415 - optional backend, only on TensorFlow

        n, (ph, pw) = len(self), self.patch_size
        signature = (
            tf.TensorSpec((self.batch_size, ph, pw, self.channels), tf.float32),
            tf.TensorSpec((self.batch_size, ph, pw, 1), tf.int32),
        )

        def epoch():  # one call per epoch: Keras makes a new iterator for each
            for i in range(n):
                yield self[i]
            self.on_epoch_end()

        return _pipeline(epoch, signature, n, prefetch=2)

    def _padded_shape(self, i: int) -> tuple[int, int]:
        return padded_shape(self._shapes[i], self.stride)

    def on_epoch_end(self) -> None:
        """Mark the epoch as finished: the next batch comes from a new permutation/patches.

        Keras may call this more than once per epoch (also when an iterator is reset); the epoch
        only advances once batches have been served since the last advance.
        """
        with self._lock:
            if self._served:
                self._pending = True
                self._served = False

    def on_epoch_begin(self) -> None:
        """Apply a pending epoch advance (called by Keras before each epoch)."""
        self._advance_if_pending()

    def _advance_if_pending(self) -> None:
        with self._lock:
            if self._pending:
                self._epoch += 1
                self._pending = False

    @property
    def epoch(self) -> int:
        """The epoch whose permutation and random patches are served now."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch explicitly (e.g. when resuming training)."""
        with self._lock:
            self._epoch = int(epoch)
            self._pending = self._served = False

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self._epoch:
            n = len(self.pairs)
            reps = math.ceil(len(self) * self.batch_size / n)
            self._order = np.concatenate(
                [
                    np.random.default_rng([self.seed, self._epoch, r]).permutation(n)
                    for r in range(reps)
                ]
            )
            self._order_epoch = self._epoch
        return self._order

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= idx < len(self):
            raise IndexError(f"batch index {idx} out of range for {len(self)} batches")
        if not self.training:
            return self._validation_batch(idx)
        self._advance_if_pending()
        with self._lock:
            self._served = True
            order = self._epoch_order()
            epoch = self._epoch
        rng = np.random.default_rng([self.seed, epoch, idx, 7919])
        b = self.batch_size
        n_fg = round(b * self.foreground_fraction)
        ph, pw = self.patch_size
        images = np.empty((b, ph, pw, self.channels), np.float32)  # (B, h, w, C)
        masks = np.empty((b, ph, pw, 1), np.int32)  # (B, h, w, 1)
        for k in range(b):
            sample = self._sample(int(order[idx * b + k]))
            img, msk = training_patch(
                sample,
                self.patch_size,
                self.augment,
                self.mask_fill,
                force_fg=k >= b - n_fg,
                rng=rng,
            )
            images[k] = img
            masks[k, ..., 0] = msk
        return images, masks

    def _validation_batch(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        samples = [self._sample(i) for i in self._val_batches[idx]]
        return validation_batch(
            samples, self.validation, self.patch_size, self.stride, self.mask_fill
        )


def _pipeline(generator, signature, batches: int, prefetch: int = 0):
    """``tf.data`` over ``generator()`` with autotuning off, ``prefetch`` batches ahead and its
    length declared.

    Autotuning's optimization thread makes releasing an iterator wait up to a minute
    (:meth:`SegmentationDataset.for_fit`); a known length lets Keras count steps instead of
    warning that the data "ran out"."""
    import tensorflow as tf  # noqa: PLC0415 - optional backend, only on TensorFlow

    dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
    if prefetch:
        dataset = dataset.prefetch(prefetch)
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    return dataset.apply(tf.data.experimental.assert_cardinality(batches))


def _resolve_augment(augment: AugmentConfig | bool | None, training: bool) -> AugmentConfig:
    """The augmentation of a loader: ``None`` follows ``training``, ``True`` is the default config.

    Example:
        >>> _resolve_augment(None, training=False) == AugmentConfig.none()
        True
        >>> _resolve_augment(True, training=False) == AugmentConfig()
        True
    """
    if augment is None:
        augment = training
    if augment is True:
        augment = AugmentConfig()
    return augment or AugmentConfig.none()


def _check_workers(use_multiprocessing: bool) -> None:
    if use_multiprocessing and keras.backend.backend() == "jax":
        raise ConfigError(
            "use_multiprocessing=True is not supported on the JAX backend",
            expected="use_multiprocessing=False (thread workers)",
            received="use_multiprocessing=True",
            fix="use workers=N with threads; the loader is numpy-only and releases the GIL "
            "in its heavy steps.",
        )


def _check_sizes(batch_size: int, foreground_fraction: float) -> None:
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1", expected=">= 1", received=repr(batch_size))
    if not 0 <= foreground_fraction <= 1:
        raise ConfigError(
            "foreground_fraction must be in [0, 1]",
            expected="0 <= foreground_fraction <= 1",
            received=repr(foreground_fraction),
        )


def _labelled_pairs(pairs: Sequence[Pair] | PairIndex) -> list[Pair]:
    if isinstance(pairs, PairIndex):
        pairs = pairs.pairs
    pairs = list(pairs)
    if not pairs:
        raise DataError(
            "The dataset has no pairs", expected="at least one image/mask pair", received="none"
        )
    missing = [p.name for p in pairs if p.mask is None]
    if missing:
        raise DataError(
            "Some pairs have no mask",
            expected="a mask for every pair in a training/validation dataset",
            received=", ".join(missing[:10]),
            fix="drop unlabelled images from the pairs.",
        )
    return pairs


def _check_stride(patch_size: tuple[int, int], stride: int) -> None:
    if stride < 1 or any(s % stride for s in patch_size):
        raise ConfigError(
            "patch_size must be a multiple of the model stride",
            expected=f"height and width divisible by {stride}",
            received=f"patch_size={patch_size}",
            fix=f"use e.g. {tuple(round_up(s, max(stride, 1)) for s in patch_size)}.",
        )


def train_val_datasets(
    pairs: Sequence[Pair] | PairIndex,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    group_by=None,
    **kwargs,
) -> tuple[SegmentationDataset, SegmentationDataset]:
    """Split pairs and build a training and a validation dataset that share every decision.

    The mask policy, channel count and (dataset-mode) normalizer are decided on the training
    split and reused for validation. ``kwargs`` go to both :class:`SegmentationDataset`
    constructors (``training``/``augment`` are set per side).

    Example:
        >>> from segdoctor.data import discover_pairs
        >>> from segdoctor.sample_data import sample_path
        >>> tr, va = train_val_datasets(discover_pairs(sample_path()).pairs[:6], patch_size=64)
        >>> tr.mask_policy == va.mask_policy
        True
    """
    if isinstance(pairs, PairIndex):
        pairs = pairs.pairs
    train_pairs, val_pairs = split_pairs(pairs, val_fraction, seed, group_by)
    kwargs.setdefault("seed", seed)
    train = SegmentationDataset(train_pairs, training=True, **kwargs)
    shared = {
        k: v
        for k, v in kwargs.items()
        if k
        not in (
            "augment",
            "samples_per_epoch",
            "mask_policy",
            "normalizer",
            "channels",
            "ignore_index",
        )
    }
    val = SegmentationDataset(
        val_pairs,
        training=False,
        mask_policy=train.mask_policy,
        normalizer=train.normalizer,
        channels=train.channels,
        **shared,
    )
    return train, val
