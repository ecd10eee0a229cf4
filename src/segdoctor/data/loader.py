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
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from segdoctor.data.augment import (
    AugmentConfig,
    Geometry,
    extract_patch,
    photometric,
    sample_geometry,
)
from segdoctor.data.discover import Pair, PairIndex
from segdoctor.data.io import display_name, read_pair
from segdoctor.data.masks import MaskPolicy, decide_mask_policy, inspect_masks, normalize_mask
from segdoctor.data.normalize import ImageNormalizer, to_channels
from segdoctor.data.sizing import as_size, pad_to_size, round_up
from segdoctor.errors import ConfigError, DataError, check_choice

MAX_FOREGROUND_LOCATIONS = 10_000
"""Foreground pixel coordinates kept per class and image for oversampling."""


@dataclass
class _Sample:
    image: np.ndarray  # (C, H, W) float32, normalized; contiguous planes for fast sampling
    mask: np.ndarray  # (H, W) uint8 or int32, normalized
    foreground: list[np.ndarray]  # per present foreground class: (N, 2) int32 coordinates


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
        if use_multiprocessing and keras.backend.backend() == "jax":
            raise ConfigError(
                "use_multiprocessing=True is not supported on the JAX backend",
                expected="use_multiprocessing=False (thread workers)",
                received="use_multiprocessing=True",
                fix="use workers=N with threads; the loader is numpy-only and releases the GIL "
                "in its heavy steps.",
            )
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if isinstance(pairs, PairIndex):
            pairs = pairs.pairs
        self.pairs: list[Pair] = list(pairs)
        if not self.pairs:
            raise DataError(
                "The dataset has no pairs", expected="at least one image/mask pair", received="none"
            )
        missing = [p.name for p in self.pairs if p.mask is None]
        if missing:
            raise DataError(
                "Some pairs have no mask",
                expected="a mask for every pair in a training/validation dataset",
                received=", ".join(missing[:10]),
                fix="drop unlabelled images from the pairs.",
            )
        if batch_size < 1:
            raise ConfigError("batch_size must be >= 1", expected=">= 1", received=repr(batch_size))
        if not 0 <= foreground_fraction <= 1:
            raise ConfigError(
                "foreground_fraction must be in [0, 1]",
                expected="0 <= foreground_fraction <= 1",
                received=repr(foreground_fraction),
            )
        self.batch_size = int(batch_size)
        self.patch_size = as_size(patch_size)
        self.stride = int(stride)
        if self.stride < 1 or any(s % self.stride for s in self.patch_size):
            raise ConfigError(
                "patch_size must be a multiple of the model stride",
                expected=f"height and width divisible by {self.stride}",
                received=f"patch_size={self.patch_size}",
                fix=f"use e.g. {tuple(round_up(s, max(self.stride, 1)) for s in self.patch_size)}.",
            )
        self.training = bool(training)
        if augment is None:
            augment = training
        if augment is True:
            augment = AugmentConfig()
        self.augment: AugmentConfig = augment or AugmentConfig.none()
        self.foreground_fraction = float(foreground_fraction)
        self.validation = check_choice("validation", validation, ("whole", "center"))
        check_choice("cache", cache, ("auto", True, False))
        self.cache_limit_bytes = int(cache_limit_mb * 2**20) if cache else 0
        self.on_error = check_choice("on_error", on_error, ("raise", "skip"))
        self.max_pixels = max_pixels
        self.seed = int(seed)
        self.channels = channels
        self.normalizer = normalizer or ImageNormalizer()
        self.mask_policy = mask_policy
        self.skipped: list[tuple[str, str]] = []
        self._cache: dict[int, _Sample] = {}
        self._shapes: list[tuple[int, int]] = []
        self._prepare(ignore_index)
        n = len(self.pairs)
        self.samples_per_epoch = int(samples_per_epoch or max(n, self.batch_size))
        self._epoch = 0
        self._served = self._pending = False
        self._lock = threading.Lock()
        self._order_epoch = -1
        self._order = np.arange(n)
        self._val_batches = self._make_val_batches() if not self.training else []

    # ---------------------------------------------------------------- preparation

    def _skip_or_raise(self, pair: Pair, err: DataError) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped.append((pair.name, str(err)))

    def _prepare(self, ignore_index: int | None) -> None:
        """Read every pair once: validate, decide mask policy and channels, fit, cache."""
        raw: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        budget = self.cache_limit_bytes
        good: list[Pair] = []
        shapes: list[tuple[int, int]] = []
        channel_counts: set[int] = set()

        def masks() -> Iterator[tuple[str, np.ndarray]]:
            nonlocal budget
            for pair in self.pairs:
                try:
                    image, mask = read_pair(pair, max_pixels=self.max_pixels)
                    c = image.shape[-1] - (1 if image.shape[-1] in (2, 4) else 0)
                    if self.channels is not None:
                        to_channels(image[:1, :1], self.channels, name=display_name(pair.image))
                except DataError as err:
                    self._skip_or_raise(pair, err)
                    continue
                channel_counts.add(c)
                shapes.append(image.shape[:2])
                cost = image.shape[0] * image.shape[1] * (4 * (self.channels or c) + 4)
                if budget >= cost:
                    raw[len(good)] = (image, mask)
                    budget -= cost
                good.append(pair)
                yield display_name(pair.mask), mask

        if self.mask_policy is None:
            report = inspect_masks(masks())
            self.mask_policy = decide_mask_policy(report, ignore_index=ignore_index)
        else:
            for _ in masks():
                pass
            if ignore_index is not None and ignore_index != self.mask_policy.ignore_index:
                raise ConfigError(
                    "ignore_index differs from the given mask_policy",
                    expected=f"ignore_index={self.mask_policy.ignore_index}",
                    received=f"ignore_index={ignore_index}",
                    fix="set ignore_index on the policy only.",
                )
        if not good:
            raise DataError(
                "Every pair was skipped",
                expected="at least one readable pair",
                received="; ".join(f"{n}: {m}" for n, m in self.skipped[:5]),
            )
        self.pairs, self._shapes = good, shapes
        if self.channels is None:
            self.channels = self._decide_channels(channel_counts)
        if not self.normalizer.fitted:
            self.normalizer = self.normalizer.fit(
                to_channels(self._raw(i, raw)[0], self.channels) for i in range(len(good))
            )
        keep: list[Pair] = []
        cache: dict[int, _Sample] = {}
        keep_shapes = []
        for i, pair in enumerate(good):
            try:
                sample = self._build(pair, *self._raw(i, raw))
            except DataError as err:
                self._skip_or_raise(pair, err)
                continue
            if i in raw:
                cache[len(keep)] = sample
            keep.append(pair)
            keep_shapes.append(shapes[i])
        if not keep:
            raise DataError(
                "Every pair was skipped",
                expected="at least one usable pair",
                received="; ".join(f"{n}: {m}" for n, m in self.skipped[:5]),
            )
        self.pairs, self._shapes, self._cache = keep, keep_shapes, cache

    def _raw(self, i: int, raw: dict) -> tuple[np.ndarray, np.ndarray]:
        if i in raw:
            return raw[i]
        return read_pair(self.pairs[i], max_pixels=self.max_pixels)

    @staticmethod
    def _decide_channels(counts: set[int]) -> int:
        if counts <= {1, 3}:
            return 3 if 3 in counts else 1
        if len(counts) == 1:
            return counts.pop()
        raise DataError(
            "Images have different channel counts that cannot be reconciled",
            expected="gray/RGB/RGBA images, or one common channel count",
            received=f"channel counts {sorted(counts)}",
            fix="pass channels= explicitly, or convert the files.",
        )

    def _build(self, pair: Pair, image: np.ndarray, mask: np.ndarray) -> _Sample:
        policy = self.mask_policy
        assert policy is not None
        image = to_channels(image, self.channels, name=display_name(pair.image))
        norm = np.ascontiguousarray(self.normalizer(image).transpose(2, 0, 1))  # (C, H, W)
        labels = normalize_mask(mask, policy, name=display_name(pair.mask))  # (H, W) int32
        if labels.min() >= 0 and labels.max() <= 255:
            labels = labels.astype(np.uint8)
        return _Sample(norm, labels, self._foreground(labels, pair.name))

    def _foreground(self, labels: np.ndarray, name: str) -> list[np.ndarray]:
        policy = self.mask_policy
        ignore = policy.ignore_index if policy else None
        present = [int(v) for v in np.unique(labels) if v > 0 and v != ignore]
        if policy is not None and policy.keep_instances:
            present = [1] if present else []
            labels = (labels > 0).astype(np.uint8)
        rng = np.random.default_rng([self.seed, len(name), sum(map(ord, name))])
        out = []
        for value in present:
            coords = np.argwhere(labels == value).astype(np.int32)  # (N, 2)
            if len(coords) > MAX_FOREGROUND_LOCATIONS:
                coords = coords[rng.choice(len(coords), MAX_FOREGROUND_LOCATIONS, replace=False)]
            out.append(coords)
        return out

    def _sample(self, i: int) -> _Sample:
        cached = self._cache.get(i)
        if cached is not None:
            return cached
        pair = self.pairs[i]
        return self._build(pair, *read_pair(pair, max_pixels=self.max_pixels))

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

    def for_fit(self):
        """What to pass to ``model.fit``: this dataset, or on TensorFlow a dynamic-shape pipeline.

        Keras hands a PyDataset to TensorFlow as ``tf.data.Dataset.from_generator`` with a
        signature inferred from the first few batches. Whole-image validation batches are sorted
        by size, so that signature would fix H and W to the smallest size and the first larger
        image would stop training ("`generator` yielded an element of shape ..."). On the
        TensorFlow backend, when the validation images come in more than one padded size, this
        returns a ``tf.data.Dataset`` over the same batches that declares H and W unknown.
        """
        if (
            self.training
            or self.validation != "whole"
            or keras.backend.backend() != "tensorflow"
            or len({self._padded_shape(b[0]) for b in self._val_batches}) < 2
        ):
            return self
        import tensorflow as tf

        x, y = self[0]
        signature = (
            tf.TensorSpec((None, None, None, x.shape[-1]), tf.as_dtype(x.dtype)),
            tf.TensorSpec((None, None, None, y.shape[-1]), tf.as_dtype(y.dtype)),
        )

        def batches():
            for i in range(len(self)):
                yield self[i]

        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        # A known length: Keras then counts validation steps instead of warning "ran out of data".
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self)))

    def _padded_shape(self, i: int) -> tuple[int, int]:
        h, w = self._shapes[i]
        return round_up(h, self.stride), round_up(w, self.stride)

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
            img, msk = self._training_patch(sample, force_fg=k >= b - n_fg, rng=rng)
            images[k] = img
            masks[k, ..., 0] = msk
        return images, masks

    def _training_patch(
        self, sample: _Sample, *, force_fg: bool, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        h, w = sample.mask.shape
        ph, pw = self.patch_size
        lo = (min(0, h - ph), min(0, w - pw))
        hi = (max(0, h - ph), max(0, w - pw))
        if force_fg and sample.foreground:
            coords = sample.foreground[int(rng.integers(len(sample.foreground)))]
            r, c = coords[int(rng.integers(len(coords)))]
            start = (
                int(np.clip(r - ph // 2, lo[0], hi[0])),
                int(np.clip(c - pw // 2, lo[1], hi[1])),
            )
        else:
            start = (int(rng.integers(lo[0], hi[0] + 1)), int(rng.integers(lo[1], hi[1] + 1)))
        geo = sample_geometry(self.augment, rng, self.patch_size)
        img, msk = extract_patch(
            sample.image,
            sample.mask,
            start,
            self.patch_size,
            geo,
            image_order=self.augment.image_order,
            fill=self.augment.fill,
            mask_fill=self.mask_fill,
            channels_first=True,
            copy=False,  # copied into the batch below
        )
        img = photometric(img, self.augment, rng)
        return img, msk

    def _make_val_batches(self) -> list[list[int]]:
        if self.validation == "center":
            ids = list(range(len(self.pairs)))
            return [ids[i : i + self.batch_size] for i in range(0, len(ids), self.batch_size)]
        buckets: dict[tuple[int, int], list[int]] = {}
        for i in range(len(self._shapes)):
            buckets.setdefault(self._padded_shape(i), []).append(i)
        batches = []
        for key in sorted(buckets):
            ids = buckets[key]
            batches += [ids[i : i + self.batch_size] for i in range(0, len(ids), self.batch_size)]
        return batches

    def _validation_batch(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        images, masks = [], []
        for i in self._val_batches[idx]:
            sample = self._sample(i)
            if self.validation == "center":
                h, w = sample.mask.shape
                ph, pw = self.patch_size
                start = ((h - ph) // 2, (w - pw) // 2)
                img, msk = extract_patch(
                    sample.image,
                    sample.mask,
                    start,
                    self.patch_size,
                    Geometry(),
                    mask_fill=self.mask_fill,
                    channels_first=True,
                )
            else:
                h, w = sample.mask.shape
                size = (round_up(h, self.stride), round_up(w, self.stride))
                img, _ = pad_to_size(sample.image.transpose(1, 2, 0), size, value=0.0)
                msk, _ = pad_to_size(sample.mask, size, value=self.mask_fill)
            images.append(img)
            masks.append(msk)
        x = np.stack(images).astype(np.float32, copy=False)  # (B, h, w, C)
        y = np.stack(masks).astype(np.int32)[..., None]  # (B, h, w, 1)
        return x, y


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
    from segdoctor.data.split import split_pairs

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
