"""Read every pair once before training: validate, decide masks and channels, fit, cache.

:func:`prepare` is the first job of :class:`segdoctor.data.SegmentationDataset` (numpy only, no
Keras): it reads each pair, skips or refuses the bad ones (``on_error``), inspects the masks and
decides the :class:`~segdoctor.data.MaskPolicy` (unless one is given), decides the channel count,
fits a ``dataset``-mode normalizer, and builds the :class:`Sample` of every pair, keeping those
that fit in the memory budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from segdoctor.data.discover import Pair
from segdoctor.data.files import ON_ERROR
from segdoctor.data.io import display_name, read_pair
from segdoctor.data.masks import MaskPolicy, decide_mask_policy, inspect_masks, normalize_mask
from segdoctor.data.normalize import ImageNormalizer, to_channels
from segdoctor.errors import ConfigError, DataError, check_choice

MAX_FOREGROUND_LOCATIONS = 10_000
"""Foreground pixel coordinates kept per class and image for oversampling."""


@dataclass
class Sample:
    """One pair, ready for patches."""

    image: np.ndarray  # (C, H, W) float32, normalized; contiguous planes for fast sampling
    mask: np.ndarray  # (H, W) uint8 or int32, normalized
    foreground: list[np.ndarray]  # per present foreground class: (N, 2) int32 coordinates


@dataclass(frozen=True)
class SampleMaker:
    """The decisions every :class:`Sample` is built with.

    Example:
        >>> maker = SampleMaker(1, ImageNormalizer(), MaskPolicy("binary", 2), seed=0)
        >>> image, mask = np.zeros((4, 4, 1), np.uint8), np.eye(4, dtype=np.uint8)
        >>> sample = maker.build(Pair("a", "a.png", "a.png"), image, mask)
        >>> sample.image.shape, len(sample.foreground[0])
        ((1, 4, 4), 4)
    """

    channels: int
    normalizer: ImageNormalizer
    mask_policy: MaskPolicy
    seed: int = 0

    def build(self, pair: Pair, image: np.ndarray, mask: np.ndarray) -> Sample:
        """Channels, normalized image ``(C, H, W)``, mask class indices, foreground locations."""
        image = to_channels(image, self.channels, name=display_name(pair.image))
        norm = np.ascontiguousarray(self.normalizer(image).transpose(2, 0, 1))  # (C, H, W)
        labels = normalize_mask(mask, self.mask_policy, name=display_name(pair.mask))  # (H, W)
        if labels.min() >= 0 and labels.max() <= 255:
            labels = labels.astype(np.uint8)
        return Sample(norm, labels, self.foreground(labels, pair.name))

    def foreground(self, labels: np.ndarray, name: str) -> list[np.ndarray]:
        """Per present foreground class, up to :data:`MAX_FOREGROUND_LOCATIONS` ``(N, 2)`` pixels."""
        policy = self.mask_policy
        ignore = policy.ignore_index
        present = [int(v) for v in np.unique(labels) if v > 0 and v != ignore]
        if policy.keep_instances:
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


@dataclass
class Prepared:
    """What :func:`prepare` decided: the usable pairs, their sizes, the cache and the decisions."""

    pairs: list[Pair]
    shapes: list[tuple[int, int]]
    cache: dict[int, Sample]
    maker: SampleMaker
    skipped: list[tuple[str, str]] = field(default_factory=list)


def decide_channels(counts: set[int]) -> int:
    """One channel count for images with ``counts`` channels (alpha not counted).

    Example:
        >>> decide_channels({1, 3}), decide_channels({1}), decide_channels({4})
        (3, 1, 4)
    """
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


@dataclass
class _FirstPass:
    """Reads each pair once: keeps the readable ones, their sizes, channels and (budget) arrays."""

    channels: int | None
    on_error: str
    max_pixels: int | None
    budget: int
    skipped: list[tuple[str, str]]
    good: list[Pair] = field(default_factory=list)
    shapes: list[tuple[int, int]] = field(default_factory=list)
    channel_counts: set[int] = field(default_factory=set)
    raw: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def skip_or_raise(self, pair: Pair, err: DataError) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped.append((pair.name, str(err)))

    def masks(self, pairs: Sequence[Pair]) -> Iterator[tuple[str, np.ndarray]]:
        """``(mask name, mask)`` of every readable pair, in order."""
        for pair in pairs:
            try:
                image, mask = read_pair(pair, max_pixels=self.max_pixels)
                c = image.shape[-1] - (1 if image.shape[-1] in (2, 4) else 0)
                if self.channels is not None:
                    to_channels(image[:1, :1], self.channels, name=display_name(pair.image))
            except DataError as err:
                self.skip_or_raise(pair, err)
                continue
            self.channel_counts.add(c)
            self.shapes.append(image.shape[:2])
            cost = image.shape[0] * image.shape[1] * (4 * (self.channels or c) + 4)
            if self.budget >= cost:
                self.raw[len(self.good)] = (image, mask)
                self.budget -= cost
            self.good.append(pair)
            yield display_name(pair.mask), mask

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask of readable pair ``i``: kept from the pass, or read again."""
        if i in self.raw:
            return self.raw[i]
        return read_pair(self.good[i], max_pixels=self.max_pixels)


def prepare(
    pairs: Sequence[Pair],
    *,
    channels: int | None,
    normalizer: ImageNormalizer,
    mask_policy: MaskPolicy | None,
    ignore_index: int | None,
    on_error: str = "raise",
    max_pixels: int | None = None,
    cache_limit_bytes: int = 0,
    seed: int = 0,
) -> Prepared:
    """Read every pair once: validate, decide mask policy and channels, fit, cache.

    Raises:
        DataError: a bad pair with ``on_error="raise"`` (named), or no usable pair at all.
        ConfigError: ``ignore_index`` that differs from the given ``mask_policy``.
    """
    check_choice("on_error", on_error, ON_ERROR)
    first = _FirstPass(channels, on_error, max_pixels, cache_limit_bytes, [])
    mask_policy = _decide_policy(first, pairs, mask_policy, ignore_index)
    if not first.good:
        raise DataError(
            "Every pair was skipped",
            expected="at least one readable pair",
            received="; ".join(f"{n}: {m}" for n, m in first.skipped[:5]),
        )
    channels = channels if channels is not None else decide_channels(first.channel_counts)
    if not normalizer.fitted:
        normalizer = normalizer.fit(
            to_channels(first.arrays(i)[0], channels) for i in range(len(first.good))
        )
    maker = SampleMaker(channels, normalizer, mask_policy, seed)
    return _build_all(first, maker)


def _decide_policy(
    first: _FirstPass,
    pairs: Sequence[Pair],
    mask_policy: MaskPolicy | None,
    ignore_index: int | None,
) -> MaskPolicy:
    """Run the first pass; the given mask decision, or one inspected from the masks."""
    if mask_policy is None:
        return decide_mask_policy(inspect_masks(first.masks(pairs)), ignore_index=ignore_index)
    for _ in first.masks(pairs):
        pass
    if ignore_index is not None and ignore_index != mask_policy.ignore_index:
        raise ConfigError(
            "ignore_index differs from the given mask_policy",
            expected=f"ignore_index={mask_policy.ignore_index}",
            received=f"ignore_index={ignore_index}",
            fix="set ignore_index on the policy only.",
        )
    return mask_policy


def _build_all(first: _FirstPass, maker: SampleMaker) -> Prepared:
    """Build every readable pair's sample; cache those whose arrays the first pass kept."""
    keep: list[Pair] = []
    cache: dict[int, Sample] = {}
    keep_shapes = []
    for i, pair in enumerate(first.good):
        try:
            sample = maker.build(pair, *first.arrays(i))
        except DataError as err:
            first.skip_or_raise(pair, err)
            continue
        if i in first.raw:
            cache[len(keep)] = sample
        keep.append(pair)
        keep_shapes.append(first.shapes[i])
    if not keep:
        raise DataError(
            "Every pair was skipped",
            expected="at least one usable pair",
            received="; ".join(f"{n}: {m}" for n, m in first.skipped[:5]),
        )
    return Prepared(keep, keep_shapes, cache, maker, first.skipped)
