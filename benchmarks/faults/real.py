"""Small subsets of the real datasets, read once per process, and folder writers.

Every case of the fault benchmark starts from real pixels: nuclei (2018 Data Science Bowl),
EM membranes (ISBI 2012) or street scenes (CamVid). Images are cropped or resized small so that a
case runs in seconds; masks are always resized with nearest neighbour (except where the fault is
exactly not doing so).

Example:
    >>> pairs = nuclei(data_root, n=8, size=64)  # doctest: +SKIP
    >>> pairs[0].image.shape, pairs[0].mask.max()  # doctest: +SKIP
    ((64, 64), 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class RealPair:
    """One real image (uint8, (H, W) gray or (H, W, 3) RGB) and its mask ((H, W) class indices)."""

    name: str
    image: np.ndarray
    mask: np.ndarray


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".tif", ".jpg"))


def _center_crop(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return a[top : top + size, left : left + size]


def _evenly(items: list, n: int) -> list:
    if n >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n)]


@lru_cache(maxsize=16)
def _nuclei(root: str, n: int, size: int) -> tuple[RealPair, ...]:
    folder = Path(root) / "dsb2018-nuclei"
    out = []
    for path in _evenly(_files(folder / "images"), n):
        image = np.asarray(Image.open(path).convert("L"))  # (H, W) uint8
        labels = np.asarray(Image.open(folder / "masks" / path.name))  # 16-bit instance labels
        out.append(
            RealPair(
                path.stem,
                _center_crop(image, size).copy(),
                (_center_crop(labels, size) > 0).astype(np.uint8),
            )
        )
    return tuple(out)


def nuclei(data_root: Path, n: int = 24, size: int = 64) -> list[RealPair]:
    """``n`` nuclei images (evenly spread over the set), centre crops of ``size``; masks 0/1."""
    return list(_nuclei(str(data_root), n, size))


@lru_cache(maxsize=8)
def _membrane(root: str, n: int, size: int, grid: int) -> tuple[RealPair, ...]:
    folder = Path(root) / "isbi2012-membrane"
    out = []
    for path in _evenly(_files(folder / "images"), n):
        image = _center_crop(np.asarray(Image.open(path).convert("L")), grid * size)
        mask = _center_crop(
            np.asarray(Image.open(folder / "masks" / path.name).convert("L")), grid * size
        )  # {0, 255}
        for i in range(grid):
            for j in range(grid):
                tile = (slice(i * size, (i + 1) * size), slice(j * size, (j + 1) * size))
                name = path.stem if grid == 1 else f"{path.stem}_t{i}{j}"
                out.append(RealPair(name, image[tile].copy(), mask[tile].copy()))
    return tuple(out)


def membrane(data_root: Path, n: int = 16, size: int = 128, grid: int = 1) -> list[RealPair]:
    """ISBI 2012 EM crops; masks exactly as shipped: {0, 255} (255 = cell interior).

    ``grid``: each of the ``n`` images gives ``grid x grid`` adjacent tiles of ``size`` from its
    centre (``n * grid**2`` pairs; the 30 images of the set are few for a validation split).
    """
    return list(_membrane(str(data_root), n, size, grid))


@lru_cache(maxsize=8)
def _streets(root: str, n: int, width: int) -> tuple[RealPair, ...]:
    folder = Path(root) / "camvid-val"
    out = []
    for path in _evenly(_files(folder / "images"), n):
        img = Image.open(path).convert("RGB")
        height = round(img.height * width / img.width)
        image = np.asarray(img.resize((width, height), Image.BILINEAR))
        mask = Image.open(folder / "masks" / path.name)
        out.append(
            RealPair(path.stem, image, np.asarray(mask.resize((width, height), Image.NEAREST)))
        )
    return tuple(out)


def streets(data_root: Path, n: int = 40, width: int = 96) -> list[RealPair]:
    """CamVid scenes resized to ``width`` (nearest for masks); classes 0..11 (11 = void)."""
    return list(_streets(str(data_root), n, width))


# -- writers ---------------------------------------------------------------------------------------


def save_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as PNG (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def write_pairs(
    root: Path, pairs: list[RealPair], *, mask_scale: int = 1, mask_ext: str = ".png"
) -> Path:
    """``root/images/NAME.png`` and ``root/masks/NAME<mask_ext>`` (mask values times ``mask_scale``).

    ``mask_ext=".jpg"`` saves the masks as JPEG (PIL's default quality, 75), as ``cv2.imwrite``
    or ``plt.imsave`` do when the file name says so.
    """
    for pair in pairs:
        save_png(root / "images" / f"{pair.name}.png", pair.image)
        mask = (pair.mask.astype(np.int64) * mask_scale).astype(np.uint8)
        target = root / "masks" / f"{pair.name}{mask_ext}"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(target)
    return root


def write_splits(root: Path, splits: dict[str, list[RealPair]]) -> Path:
    """A ``train/`` + ``val/`` layout, each with ``images/`` and ``masks/``."""
    for split, pairs in splits.items():
        write_pairs(root / split, pairs)
    return root


def stack(pairs: list[RealPair]) -> tuple[np.ndarray, np.ndarray]:
    """``x`` float32 (N, H, W, 1) in [0, 1] and ``y`` float32 (N, H, W, 1) from gray pairs."""
    x = np.stack([p.image for p in pairs]).astype("float32")[..., None] / 255.0
    y = np.stack([p.mask for p in pairs]).astype("float32")[..., None]
    return x, y
