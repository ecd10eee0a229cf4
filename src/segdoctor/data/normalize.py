"""Image channels and intensity normalization.

Channel handling (:func:`to_channels`): an alpha channel (gray+alpha, RGBA) is dropped; gray is
repeated to 3 channels; RGB becomes gray by luminance (0.299 R + 0.587 G + 0.114 B). Gray and
RGB images mixed in one dataset therefore end up with the one channel count the caller chose.

Intensity (:class:`ImageNormalizer`), always to ``float32``:

* ``mode="image"`` (default): per image and channel, clip to percentiles (``clip``), then
  z-score ``(x - mean) / std``. nnU-Net's default for non-CT data.
* ``mode="dataset"``: one clip range and one mean/std per channel for the whole dataset, estimated
  by :meth:`ImageNormalizer.fit` from a bounded random subsample of pixels (memory independent of
  dataset size). Fit it on the training split and reuse it for validation and inference.
* ``mode="none"``: only scaled by the dtype range (uint8 / 255, uint16 / 65535; floats unchanged).

``clip="auto"`` clips to the 0.5 and 99.5 percentiles for 16-bit and float images (as nnU-Net does)
and not for 8-bit images; ``None`` never clips; a ``(low, high)`` pair always clips.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from segdoctor.errors import ConfigError, DataError, check_choice

MODES: tuple[str, ...] = ("image", "dataset", "none")
AUTO_PERCENTILES: tuple[float, float] = (0.5, 99.5)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_EPS = 1e-6


def to_channels(image: np.ndarray, channels: int | None, *, name: str | None = None) -> np.ndarray:
    """Convert an ``(H, W, C)`` image to ``channels`` channels.

    Args:
        image: ``(H, W, C)`` from :func:`segdoctor.data.read_image`.
        channels: Wanted channel count; ``None`` keeps the image as it is.
        name: File name for error messages.

    Returns:
        ``(H, W, channels)``; the dtype is kept except for RGB -> gray (``float32``).

    Raises:
        DataError: a channel count that cannot be converted (e.g. 5 channels to 3).

    Example:
        >>> import numpy as np
        >>> to_channels(np.zeros((2, 2, 1), np.uint8), 3).shape
        (2, 2, 3)
    """
    if channels is None or image.shape[-1] == channels:
        return image
    c = image.shape[-1]
    if c in (2, 4):  # drop alpha
        image = image[..., : c - 1]
        c -= 1
    if c == channels:
        return image
    if c == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)  # (H, W, 3)
    if c == 3 and channels == 1:
        gray = image.astype(np.float32) @ _LUMA  # (H, W)
        return gray[..., None]
    raise DataError(
        f"Image {name or ''} has an unexpected number of channels".replace("  ", " "),
        expected=f"{channels} channel(s) (or gray/RGB/RGBA convertible to it)",
        received=f"{image.shape[-1]} channels, shape {image.shape}",
        fix="pass channels= matching the data, or convert the file.",
    )


def _scale(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


@dataclass(frozen=True)
class ImageNormalizer:
    """Maps an ``(H, W, C)`` image to normalized ``float32``; see the module docstring.

    Attributes:
        mode: ``"image"``, ``"dataset"`` or ``"none"``.
        clip: ``"auto"``, ``None``, or ``(low, high)`` percentiles.
        low: ``dataset`` mode, fitted: per-channel clip lower bounds.
        high: ``dataset`` mode, fitted: per-channel clip upper bounds.
        mean: ``dataset`` mode, fitted: per-channel mean (after clipping).
        std: ``dataset`` mode, fitted: per-channel standard deviation (after clipping).

    Example:
        >>> import numpy as np
        >>> x = ImageNormalizer()(np.arange(16, dtype=np.uint8).reshape(4, 4, 1))
        >>> round(float(x.mean()), 6), round(float(x.std()), 3)
        (0.0, 1.0)
    """

    mode: str = "image"
    clip: str | tuple[float, float] | None = "auto"
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_choice("normalization mode", self.mode, MODES)
        if self.clip is not None and self.clip != "auto":
            lo, hi = self.clip
            if not 0 <= lo < hi <= 100:
                raise ConfigError(
                    "Invalid clip percentiles",
                    expected="0 <= low < high <= 100",
                    received=repr(self.clip),
                )

    @property
    def fitted(self) -> bool:
        """Whether dataset statistics are present (always true outside ``dataset`` mode)."""
        return self.mode != "dataset" or self.mean is not None

    def _percentiles(self, dtype: np.dtype) -> tuple[float, float] | None:
        if self.clip == "auto":
            return None if dtype == np.uint8 else AUTO_PERCENTILES
        return self.clip  # type: ignore[return-value]

    def fit(
        self, images: Iterable[np.ndarray], *, pixels_per_image: int = 20_000, seed: int = 0
    ) -> ImageNormalizer:
        """Estimate dataset statistics from a bounded pixel subsample (``dataset`` mode).

        Args:
            images: ``(H, W, C)`` images with the final channel count.
            pixels_per_image: Pixels sampled from each image.
            seed: Seed of the pixel subsample.

        Returns:
            A fitted copy (``self`` unchanged; other modes return ``self``).
        """
        if self.mode != "dataset":
            return self
        rng = np.random.default_rng(seed)
        reservoir: np.ndarray | None = None  # (N, C) float32, at most _RESERVOIR rows
        seen = 0
        dtype = None
        for image in images:
            flat = image.reshape(-1, image.shape[-1])  # (H*W, C)
            dtype = image.dtype if dtype is None else dtype
            take = min(pixels_per_image, len(flat))
            sample = flat[rng.choice(len(flat), take, replace=False)].astype(np.float32)
            reservoir, seen = _reservoir_add(reservoir, seen, sample, rng)
        if reservoir is None:
            raise DataError(
                "Cannot fit image statistics on an empty dataset",
                expected="at least one image",
                received="none",
            )
        pct = self._percentiles(dtype)
        if pct is not None:
            low = np.percentile(reservoir, pct[0], axis=0)
            high = np.percentile(reservoir, pct[1], axis=0)
            clipped = np.clip(reservoir, low, high)
        else:
            low = high = None
            clipped = reservoir
        mean = clipped.mean(axis=0)
        std = clipped.std(axis=0)
        return replace(
            self,
            low=None if low is None else tuple(float(v) for v in low),
            high=None if high is None else tuple(float(v) for v in high),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Normalize one ``(H, W, C)`` image to ``float32``."""
        if self.mode == "none":
            return image.astype(np.float32) / np.float32(_scale(image.dtype))
        x = image.astype(np.float32)  # (H, W, C)
        if self.mode == "dataset":
            if self.mean is None or self.std is None:
                raise ConfigError(
                    "The dataset normalizer is not fitted",
                    expected="ImageNormalizer(mode='dataset').fit(train_images)",
                    received="no statistics",
                    fix="fit it on the training images, or use mode='image'.",
                )
            if len(self.mean) != x.shape[-1]:
                raise DataError(
                    "Image channel count differs from the fitted statistics",
                    expected=f"{len(self.mean)} channels",
                    received=f"{x.shape[-1]} channels",
                    fix="use the same channels= for training and inference.",
                )
            if self.low is not None and self.high is not None:
                x = np.clip(x, np.float32(self.low), np.float32(self.high))
            mean = np.asarray(self.mean, np.float32)
            std = np.maximum(np.asarray(self.std, np.float32), _EPS)
            return (x - mean) / std
        pct = self._percentiles(image.dtype)
        flat = x.reshape(-1, x.shape[-1])  # (H*W, C)
        if pct is not None:
            low, high = np.percentile(flat, pct, axis=0)
            x = np.clip(x, low.astype(np.float32), high.astype(np.float32))
            flat = x.reshape(-1, x.shape[-1])
        mean = flat.mean(axis=0)
        std = np.maximum(flat.std(axis=0), _EPS)
        return ((x - mean) / std).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        """Plain dict (JSON-able) to store with a run; inverse: :meth:`from_dict`."""
        return {
            "mode": self.mode,
            "clip": list(self.clip) if isinstance(self.clip, tuple) else self.clip,
            "low": self.low,
            "high": self.high,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ImageNormalizer:
        """Rebuild from :meth:`to_dict`."""
        clip = d.get("clip", "auto")
        return cls(
            mode=d.get("mode", "image"),
            clip=tuple(clip) if isinstance(clip, list) else clip,
            low=_floats(d.get("low")),
            high=_floats(d.get("high")),
            mean=_floats(d.get("mean")),
            std=_floats(d.get("std")),
        )

    def describe(self) -> str:
        """One line: how images are normalized."""
        if self.mode == "none":
            return "images scaled to [0, 1] by their dtype range (no z-score)"
        if self.clip == "auto":
            clip = "clipped to the 0.5/99.5 percentiles for 16-bit and float images"
        elif self.clip is None:
            clip = "not clipped"
        else:
            clip = f"clipped to the {self.clip[0]:g}/{self.clip[1]:g} percentiles"
        if self.mode == "image":
            return f"images z-scored per image and channel, {clip}"
        stats = (
            f" (mean {', '.join(f'{m:.3g}' for m in self.mean)}, std "
            f"{', '.join(f'{s:.3g}' for s in self.std or ())})"
            if self.mean
            else " (not fitted yet)"
        )
        return f"images z-scored with dataset statistics{stats}, {clip}"


_RESERVOIR = 1_000_000


def _floats(values) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(x) for x in values)


def _reservoir_add(
    reservoir: np.ndarray | None, seen: int, sample: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Uniform reservoir sampling of rows, at most ``_RESERVOIR`` rows kept."""
    if reservoir is None:
        reservoir = sample[:_RESERVOIR].copy()
        extra = sample[_RESERVOIR:]
        seen = len(reservoir)
    else:
        room = _RESERVOIR - len(reservoir)
        if room > 0:
            reservoir = np.concatenate([reservoir, sample[:room]])
            seen += min(room, len(sample))
            extra = sample[room:]
        else:
            extra = sample
    if len(extra):  # reservoir full: row k of the stream replaces a random slot with p = R / k
        positions = seen + 1 + np.arange(len(extra))
        slots = (rng.random(len(extra)) * positions).astype(np.int64)
        keep = slots < _RESERVOIR
        reservoir[slots[keep]] = extra[keep]
        seen += len(extra)
    return reservoir, seen
