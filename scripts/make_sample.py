"""Rebuild the bundled nuclei sample from the 2018 Data Science Bowl subset (CC0).

Usage:
    python scripts/make_sample.py PATH/TO/dsb2018-nuclei src/segdoctor/sample_data/nuclei

Selection is deterministic: images are stratified by (colour mode, size) and taken in name order.
Images larger than 256 pixels on a side are cropped to the 256x256 window holding the most nucleus
pixels; masks stay the 16-bit instance labels they are (0 = background, 1..N = nuclei), cropped with
exactly the same window.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

CROP = 256
QUOTA = {  # (mode, width, height) -> number of images taken
    ("L", 256, 256): 24,
    ("RGB", 320, 256): 10,
    ("L", 360, 360): 7,
    ("L", 696, 520): 7,
}


def best_window(mask: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window with the most foreground pixels."""
    fg = (mask > 0).astype(np.int64)
    integral = np.pad(fg.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = fg.shape
    sums = (
        integral[size : h + 1, size : w + 1]
        - integral[: h + 1 - size, size : w + 1]
        - integral[size : h + 1, : w + 1 - size]
        + integral[: h + 1 - size, : w + 1 - size]
    )
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    taken: dict[tuple, int] = defaultdict(int)
    (args.dest / "images").mkdir(parents=True, exist_ok=True)
    (args.dest / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for image_path in sorted((args.source / "images").glob("*.png")):
        image = Image.open(image_path)
        key = (image.mode, *image.size)
        if taken[key] >= QUOTA.get(key, 0):
            continue
        taken[key] += 1
        mask = np.array(Image.open(args.source / "masks" / image_path.name))
        pixels = np.array(image)
        if max(mask.shape) > 320:
            y, x = best_window(mask, CROP)
            mask = mask[y : y + CROP, x : x + CROP]
            pixels = pixels[y : y + CROP, x : x + CROP]
        Image.fromarray(pixels).save(args.dest / "images" / image_path.name, optimize=True)
        Image.fromarray(mask.astype(np.uint16)).save(args.dest / "masks" / image_path.name)
        rows.append((image_path.stem, image.mode, *pixels.shape[:2], len(np.unique(mask)) - 1))
    with open(args.dest / "index.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "mode", "height", "width", "n_nuclei"])
        writer.writerows(rows)
    shutil.copy(args.source / "PROVENANCE.txt", args.dest / "PROVENANCE-source.txt")
    print(f"wrote {len(rows)} pairs to {args.dest}")


if __name__ == "__main__":
    main()
