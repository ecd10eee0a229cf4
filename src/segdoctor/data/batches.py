"""Patches and batches of :class:`segdoctor.data.SegmentationDataset` (numpy only, no Keras).

Training: :func:`training_patch` cuts one random (or foreground-centred) patch of a
:class:`~segdoctor.data.prepare.Sample` and augments it. Validation: :func:`validation_batches`
groups the images into batches (by padded size for whole images), :func:`validation_batch`
assembles one batch ``(images float32 (B, h, w, C), masks int32 (B, h, w, 1))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segdoctor.data.augment import (
    AugmentConfig,
    Geometry,
    extract_patch,
    photometric,
    sample_geometry,
)
from segdoctor.data.prepare import Sample
from segdoctor.data.sizing import pad_to_size, round_up


def padded_shape(shape: tuple[int, int], stride: int) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``stride``.

    Example:
        >>> padded_shape((100, 64), 32)
        (128, 64)
    """
    h, w = shape
    return round_up(h, stride), round_up(w, stride)


def training_patch(
    sample: Sample,
    patch_size: tuple[int, int],
    augment: AugmentConfig,
    mask_fill: int,
    *,
    force_fg: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A random patch ``(h, w, C)`` image and ``(h, w)`` mask, centred on foreground when forced."""
    h, w = sample.mask.shape
    ph, pw = patch_size
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
    geo = sample_geometry(augment, rng, patch_size)
    img, msk = extract_patch(
        sample.image,
        sample.mask,
        start,
        patch_size,
        geo,
        image_order=augment.image_order,
        fill=augment.fill,
        mask_fill=mask_fill,
        channels_first=True,
        copy=False,  # copied into the batch by the caller
    )
    img = photometric(img, augment, rng)
    return img, msk


def validation_batches(
    validation: str, shapes: Sequence[tuple[int, int]], batch_size: int, stride: int
) -> list[list[int]]:
    """Indices of each validation batch: in order (``center``), or grouped by padded size.

    Example:
        >>> validation_batches("whole", [(64, 64), (100, 64), (60, 60)], 8, 32)
        [[0, 2], [1]]
    """
    if validation == "center":
        ids = list(range(len(shapes)))
        return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, shape in enumerate(shapes):
        buckets.setdefault(padded_shape(shape, stride), []).append(i)
    batches = []
    for key in sorted(buckets):
        ids = buckets[key]
        batches += [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    return batches


def validation_batch(
    samples: Sequence[Sample],
    validation: str,
    patch_size: tuple[int, int],
    stride: int,
    mask_fill: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(images float32 (B, h, w, C), masks int32 (B, h, w, 1))``: centre patches or padded."""
    images, masks = [], []
    for sample in samples:
        h, w = sample.mask.shape
        if validation == "center":
            ph, pw = patch_size
            start = ((h - ph) // 2, (w - pw) // 2)
            img, msk = extract_patch(
                sample.image,
                sample.mask,
                start,
                patch_size,
                Geometry(),
                mask_fill=mask_fill,
                channels_first=True,
            )
        else:
            size = padded_shape((h, w), stride)
            img, _ = pad_to_size(sample.image.transpose(1, 2, 0), size, value=0.0)
            msk, _ = pad_to_size(sample.mask, size, value=mask_fill)
        images.append(img)
        masks.append(msk)
    x = np.stack(images).astype(np.float32, copy=False)  # (B, h, w, C)
    y = np.stack(masks).astype(np.int32)[..., None]  # (B, h, w, 1)
    return x, y
