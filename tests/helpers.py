"""Small synthetic datasets written to disk for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_disc_dataset(
    root: Path, n: int = 8, size: int = 32, seed: int = 0, scale: int = 1, rgb: bool = False
) -> Path:
    """DATA/images + DATA/masks with one bright disc per image; masks {0, scale}.

    Args:
        root: the folder to create.
        n: number of pairs.
        size: image side in pixels.
        seed: randomness of disc positions and noise.
        scale: the stored foreground value (1, or 255 for the classic 0/255 mistake).
        rgb: write RGB images instead of gray.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
        radius = rng.integers(size // 8, size // 4)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).astype(np.uint8)
        image = (60 + 120 * mask + rng.normal(0, 12, size=mask.shape)).clip(0, 255).astype(np.uint8)
        if rgb:
            image = np.stack([image, image // 2, 255 - image], axis=-1)
        Image.fromarray(image).save(root / "images" / f"case_{i:03d}.png")
        Image.fromarray((mask * scale).astype(np.uint8)).save(root / "masks" / f"case_{i:03d}.png")
    return root


def write_multiclass_dataset(
    root: Path, n: int = 8, size: int = 32, seed: int = 0, void: int | None = None
) -> Path:
    """Gray images with a bright disc (class 1) and a dark square (class 2); optional void border.

    Args:
        root: the folder to create.
        n: number of pairs.
        size: image side in pixels.
        seed: randomness.
        void: when set, a one-pixel border of this label value (an "ignore" class, as CamVid's 11).
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        cy, cx = rng.integers(size // 4, size // 2, size=2)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 8) ** 2] = 1
        sy, sx = rng.integers(size // 2, 3 * size // 4, size=2)
        mask[sy : sy + size // 5, sx : sx + size // 5] = 2
        image = np.choose(mask, [120, 220, 30]).astype(np.float64) + rng.normal(0, 10, mask.shape)
        if void is not None:
            mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = void
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
            root / "images" / f"m_{i:03d}.png"
        )
        Image.fromarray(mask).save(root / "masks" / f"m_{i:03d}.png")
    return root
