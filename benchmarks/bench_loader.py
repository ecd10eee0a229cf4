"""Loader + augmentation throughput at 256x256, against albumentations and a training step.

Measures, on the same machine and in the same run:

1. ``segdoctor``: ``SegmentationDataset`` in training mode with its default augmentation
   (random 256x256 patches with foreground oversampling, flips, rot90, rotation p=0.2, scale
   p=0.2, brightness, contrast, gamma, noise, blur), batch 8, from its in-memory cache of
   decoded + normalized float32 arrays. Single thread (``ds[i]`` in a loop), and with 2 thread
   workers (a thread pool calling ``ds[i]``, as ``PyDataset(workers=2)`` does).
2. ``albumentations`` doing the same transforms with the same probabilities, per sample, then
   stacking the batch; fed (a) the same float32 arrays and (b) uint8 arrays (its fastest input).
   albumentations is not a segdoctor dependency: ``pip install albumentations`` to include it.
3. The rate at which one training step of the default U-Net (depth 4, 32 base filters, batch 8,
   256x256) consumes images on the current Keras backend (``--no-train`` skips it).

Every rate is the median of ``--repeats`` timed runs of ``--batches`` batches, in images/s. The
loader candidates are timed in interleaved rounds (rotating order), so that a change in machine
load affects all of them alike.

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_loader.py [--data DIR] [--out bench_out]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

from segdoctor.data import (
    AugmentConfig,
    SegmentationDataset,
    discover_pairs,
    read_pair,
    to_channels,
)
from segdoctor.sample_data import sample_path

PATCH = 256
BATCH = 8


def _interleaved(candidates: dict, batches: int, repeats: int) -> dict[str, list[float]]:
    """Time every candidate once per round, rotating the order, so load changes hit all alike."""
    for fn in candidates.values():
        fn(0)  # warm up
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            for i in range(batches):
                candidates[name](i)
            rates[name].append(batches * BATCH / (time.perf_counter() - start))
    return rates


def segdoctor_candidates(pairs) -> tuple[dict, SegmentationDataset, ThreadPoolExecutor]:
    ds = SegmentationDataset(pairs, batch_size=BATCH, patch_size=PATCH, seed=0)
    n = len(ds)

    def one(i: int) -> None:
        if i and i % n == 0:
            ds.on_epoch_end()
        ds[i % n]

    pool = ThreadPoolExecutor(2)

    def two(i: int) -> None:  # called once per batch index; overlap pairs of batches
        if i % 2 == 0:
            list(pool.map(one, (i, i + 1)))

    return {"segdoctor (1 thread)": one, "segdoctor (2 threads)": two}, ds, pool


def albumentations_candidates(ds: SegmentationDataset) -> dict:
    try:
        import albumentations as A
        import cv2
    except ImportError:
        return {}
    cfg = AugmentConfig()
    border = cv2.BORDER_CONSTANT
    affine = {"interpolation": cv2.INTER_LINEAR, "mask_interpolation": cv2.INTER_NEAREST}
    transform = A.Compose(
        [
            A.PadIfNeeded(PATCH, PATCH, border_mode=border, fill=0, fill_mask=0),
            A.RandomCrop(PATCH, PATCH),
            A.HorizontalFlip(p=cfg.flip),
            A.VerticalFlip(p=cfg.flip),
            A.RandomRotate90(p=cfg.rot90),
            A.Affine(
                rotate=(-cfg.rotate_degrees, cfg.rotate_degrees),
                p=cfg.rotate,
                border_mode=border,
                **affine,
            ),
            A.Affine(scale=cfg.scale_range, p=cfg.scale, border_mode=border, **affine),
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0, p=cfg.brightness),
            A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.25, p=cfg.contrast),
            A.RandomGamma(gamma_limit=(70, 150), p=cfg.gamma),
            A.GaussNoise(std_range=(0.0, cfg.noise_std), p=cfg.noise),
            A.GaussianBlur(sigma_limit=cfg.blur_sigma, blur_limit=0, p=cfg.blur),
        ],
        seed=0,
    )
    samples = [ds._sample(i) for i in range(len(ds.pairs))]
    # (a) the float32 arrays segdoctor uses, min-max scaled to [0, 1] (albumentations' float range)
    floats = []
    for s in samples:
        hwc = np.ascontiguousarray(s.image.transpose(1, 2, 0))  # cache holds (C, H, W) planes
        lo, hi = hwc.min(), hwc.max()
        floats.append(((hwc - lo) / max(hi - lo, 1e-6)).astype(np.float32))
    # (b) uint8 arrays with the same channel count
    uint8 = [to_channels(read_pair(p)[0], ds.channels) for p in ds.pairs]
    uint8 = [
        u if u.dtype == np.uint8 else (u / max(u.max(), 1) * 255).astype(np.uint8) for u in uint8
    ]
    masks = [s.mask for s in samples]
    rng = np.random.default_rng(0)

    def runner(images):
        def one(_: int) -> None:
            xs, ys = [], []
            for k in rng.integers(0, len(images), BATCH):
                out = transform(image=images[k], mask=masks[k])
                xs.append(out["image"])
                ys.append(out["mask"])
            np.stack(xs).astype(np.float32)
            np.stack(ys).astype(np.int32)

        return one

    return {
        "albumentations (float32)": runner(floats),
        "albumentations (uint8)": runner(uint8),
    }


def bench_training(channels: int, steps: int) -> list[float]:
    import keras

    from segdoctor.models import create_model

    model = create_model("unet", input_shape=(PATCH, PATCH, channels), depth=4, base_filters=32)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, PATCH, PATCH, channels)).astype(np.float32)
    y = (rng.random((BATCH, PATCH, PATCH, 1)) > 0.7).astype(np.float32)
    model.train_on_batch(x, y)  # build + warm up
    rates = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        rates.append(BATCH / (time.perf_counter() - start))
    del keras
    return rates


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="data folder (default: the bundled sample)")
    parser.add_argument("--batches", type=int, default=12, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step rate")
    parser.add_argument("--out", default="bench_out", help="folder for bench_loader.json")
    args = parser.parse_args(argv)

    pairs = discover_pairs(args.data or sample_path()).pairs
    candidates, ds, pool = segdoctor_candidates(pairs)
    candidates.update(albumentations_candidates(ds))
    results = _interleaved(candidates, args.batches, args.repeats)
    pool.shutdown()
    if not args.no_train:
        results["training step (consumes)"] = bench_training(ds.channels, args.train_steps)
    medians = {k: statistics.median(v) for k, v in results.items()}
    import keras

    lines = [
        f"bench_loader: {len(ds.pairs)} pairs from {args.data or 'the bundled sample'}, "
        f"{PATCH}x{PATCH} patches, batch {BATCH}, {ds.channels} channels, "
        f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    ]
    for name, value in medians.items():
        spread = ", ".join(f"{r:.3g}" for r in results[name])
        lines.append(f"  {name:28s} {value:8.1f} images/s   (runs: {spread})")
    ours = medians["segdoctor (1 thread)"]
    ratios = {}
    for other in ("albumentations (float32)", "albumentations (uint8)"):
        if other in medians:
            ratios[f"segdoctor / {other}"] = ours / medians[other]
    if "training step (consumes)" in medians:
        ratios["segdoctor (1 thread) / training step"] = ours / medians["training step (consumes)"]
    if not any("albumentations" in k for k in medians):
        lines.append("  albumentations not installed: `pip install albumentations` to compare")
    for name, value in ratios.items():
        lines.append(f"  ratio of medians {name:40s} {value:6.2f}x")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"rates": results, "medians": medians, "ratios": ratios, "summary": text}
    (out / "bench_loader.json").write_text(json.dumps(payload, indent=2) + "\n")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
