"""Dataset statistics for the doctor, computed streaming (one pair in memory at a time).

Memory does not grow with image size or pixel count: sums and counts are accumulated, and
intensity percentiles come from a bounded reservoir of sampled pixels. The only per-image record
kept is a small :class:`ImageStats` (a few numbers per image).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from segdoctor.data.discover import Pair, PairIndex
from segdoctor.data.io import display_name, read_mask, read_pair
from segdoctor.data.masks import (
    MaskPolicy,
    MaskReport,
    decide_mask_policy,
    inspect_masks,
    normalize_mask,
)
from segdoctor.data.normalize import _reservoir_add
from segdoctor.errors import DataError, check_choice


@dataclass(frozen=True)
class ImageStats:
    """Per-image numbers.

    Attributes:
        name: Pair name.
        height: Image height.
        width: Image width.
        channels: Stored channel count.
        dtype: Stored image dtype.
        foreground_fraction: Fraction of (non-ignored) pixels that are not background (class 0).
        classes: Classes present in the normalized mask (ignore_index excluded).
        mean: Mean intensity over all channels (stored scale).
        std: Standard deviation of intensity (stored scale).
    """

    name: str
    height: int
    width: int
    channels: int
    dtype: str
    foreground_fraction: float
    classes: tuple[int, ...]
    mean: float
    std: float

    @property
    def empty(self) -> bool:
        """Whether the mask has no foreground at all."""
        return self.foreground_fraction == 0.0


@dataclass
class DatasetStats:
    """What :func:`dataset_stats` found.

    Attributes:
        images: One :class:`ImageStats` per readable pair, in pair order.
        class_pixels: Pixel count per normalized class (ignore_index under its own key).
        channel_mean: Per-channel intensity mean (stored scale; channels of the widest image).
        channel_std: Per-channel intensity standard deviation.
        intensity_min: Smallest intensity seen.
        intensity_max: Largest intensity seen.
        percentiles: Intensity percentiles {0.5, 50, 99.5} from a bounded pixel sample.
        dtypes: Image dtypes and how many images have each.
        mask_policy: The mask decision used.
        mask_report: Evidence from the masks (when the decision was detected).
        skipped: ``(name, message)`` of pairs that could not be read (``on_error="skip"``).
    """

    images: list[ImageStats]
    class_pixels: dict[int, int]
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    intensity_min: float
    intensity_max: float
    percentiles: dict[float, float]
    dtypes: dict[str, int]
    mask_policy: MaskPolicy
    mask_report: MaskReport | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def empty_masks(self) -> list[str]:
        """Names of pairs whose mask has no foreground."""
        return [s.name for s in self.images if s.empty]

    @property
    def sizes(self) -> dict[tuple[int, int], int]:
        """How many images have each ``(height, width)``."""
        out: dict[tuple[int, int], int] = {}
        for s in self.images:
            out[(s.height, s.width)] = out.get((s.height, s.width), 0) + 1
        return out

    @property
    def foreground_fraction(self) -> float:
        """Foreground pixels over all non-ignored pixels of the dataset."""
        ignore = self.mask_policy.ignore_index
        counted = {k: v for k, v in self.class_pixels.items() if k != ignore}
        total = sum(counted.values())
        return (total - counted.get(0, 0)) / total if total else 0.0

    def describe(self) -> str:
        """A short multi-line summary."""
        n = len(self.images)
        sizes = self.sizes
        lines = [
            f"{n} images; {len(sizes)} distinct sizes "
            f"(smallest {min(sizes, key=lambda s: s[0] * s[1])}, "
            f"largest {max(sizes, key=lambda s: s[0] * s[1])})",
            f"masks: {self.mask_policy.describe()}",
            f"foreground: {self.foreground_fraction:.1%} of pixels; "
            f"{len(self.empty_masks)} empty masks",
            f"intensity: min {self.intensity_min:g}, max {self.intensity_max:g}, dtypes "
            + ", ".join(f"{k} x{v}" for k, v in self.dtypes.items()),
        ]
        if self.skipped:
            lines.append(f"skipped: {', '.join(n for n, _ in self.skipped)}")
        return "\n".join(lines)


def dataset_stats(
    pairs: Sequence[Pair] | PairIndex,
    mask_policy: MaskPolicy | None = None,
    *,
    on_error: str = "raise",
    max_pixels: int | None = None,
    pixels_per_image: int = 2_000,
    seed: int = 0,
) -> DatasetStats:
    """Streaming statistics of a dataset: sizes, foreground, classes, intensities.

    Args:
        pairs: Pairs (or a :class:`PairIndex`).
        mask_policy: How to read masks (default: inspected from the masks, which costs one
            extra pass over the mask files).
        on_error: ``"raise"`` stops at the first unreadable pair; ``"skip"`` lists it in
            ``skipped``.
        max_pixels: Pixel limit per image.
        pixels_per_image: Pixels sampled per image for the intensity percentiles.
        seed: Seed of the pixel sample.

    Returns:
        A :class:`DatasetStats`.

    Example:
        >>> from segdoctor.data import discover_pairs
        >>> from segdoctor.sample_data import sample_path
        >>> stats = dataset_stats(discover_pairs(sample_path()).pairs[:3])
        >>> len(stats.images), stats.mask_policy.kind
        (3, 'instance')
    """
    check_choice("on_error", on_error, ("raise", "skip"))
    if isinstance(pairs, PairIndex):
        pairs = pairs.pairs
    pairs = list(pairs)
    skipped: list[tuple[str, str]] = []
    bad: set[str] = set()
    report = None
    if mask_policy is None:

        def masks() -> Iterator[np.ndarray]:
            for pair in pairs:
                try:
                    if pair.mask is None:
                        continue
                    yield read_mask(pair.mask, max_pixels=max_pixels, slice_index=pair.slice_index)
                except DataError as err:
                    if on_error == "raise":
                        raise
                    skipped.append((pair.name, str(err)))
                    bad.add(pair.name)

        report = inspect_masks(masks())
        mask_policy = decide_mask_policy(report)
    rng = np.random.default_rng(seed)
    class_pixels: dict[int, int] = {}
    images: list[ImageStats] = []
    dtypes: dict[str, int] = {}
    sums, sqs, counts_c = np.zeros(0), np.zeros(0), np.zeros(0)
    lo, hi = np.inf, -np.inf
    reservoir, seen = None, 0
    for pair in pairs:
        if pair.name in bad:
            continue
        try:
            image, mask = read_pair(pair, max_pixels=max_pixels)
            labels = (
                None
                if mask is None
                else normalize_mask(mask, mask_policy, name=display_name(pair.mask))
            )
        except DataError as err:
            if on_error == "raise":
                raise
            skipped.append((pair.name, str(err)))
            continue
        flat = image.reshape(-1, image.shape[-1]).astype(np.float64)  # (H*W, C)
        c = flat.shape[1]
        if len(sums) < c:  # a wider image: grow the per-channel accumulators
            sums, sqs, counts_c = (np.pad(a, (0, c - len(a))) for a in (sums, sqs, counts_c))
        sums[:c] += flat.sum(axis=0)
        sqs[:c] += (flat**2).sum(axis=0)
        counts_c[:c] += len(flat)
        lo, hi = min(lo, float(flat.min())), max(hi, float(flat.max()))
        take = min(pixels_per_image, flat.size)
        sample = flat.reshape(-1)[rng.choice(flat.size, take, replace=False)].astype(np.float32)
        reservoir, seen = _reservoir_add(reservoir, seen, sample[:, None], rng)
        dtypes[str(image.dtype)] = dtypes.get(str(image.dtype), 0) + 1
        fg, classes = 0.0, ()
        if labels is not None:
            values, counts = np.unique(labels, return_counts=True)
            for v, k in zip(values.tolist(), counts.tolist(), strict=True):
                class_pixels[v] = class_pixels.get(v, 0) + k
            ignore = mask_policy.ignore_index
            valid = int(counts[values != ignore].sum()) if ignore is not None else labels.size
            foreground = int(
                counts[(values != 0) & (values != (ignore if ignore is not None else 0))].sum()
            )
            fg = foreground / valid if valid else 0.0
            classes = tuple(int(v) for v in values if v != ignore)
        images.append(
            ImageStats(
                pair.name,
                int(image.shape[0]),
                int(image.shape[1]),
                int(image.shape[2]),
                str(image.dtype),
                float(fg),
                classes,
                float(flat.mean()),
                float(flat.std()),
            )
        )
    if not images:
        raise DataError(
            "No pair could be read",
            expected="at least one readable pair",
            received="; ".join(f"{n}: {m}" for n, m in skipped[:5]),
        )
    mean = sums / counts_c
    std = np.sqrt(np.maximum(sqs / counts_c - mean**2, 0.0))
    pct = {p: float(np.percentile(reservoir, p)) for p in (0.5, 50.0, 99.5)}
    return DatasetStats(
        images,
        dict(sorted(class_pixels.items())),
        tuple(float(v) for v in mean),
        tuple(float(v) for v in std),
        lo,
        hi,
        pct,
        dtypes,
        mask_policy,
        report,
        skipped,
    )
