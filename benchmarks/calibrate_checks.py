"""Reproduce the calibration numbers behind the doctor's image/mask and split thresholds.

``alignment``: edge-alignment scores (``pair-misaligned``) and best-shift agreement
(``mask-offset``) on aligned real pairs and on planted faults; ``resplits``: how often
``split-channel-order`` and ``split-object-size`` fire over random 80/20 re-splits of the shared
datasets (should be never). docs/troubleshooting.md and the constants' docstrings quote them.

    python benchmarks/calibrate_checks.py --data ../shared/data alignment
    python benchmarks/calibrate_checks.py --data ../shared/data resplits --splits 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from segdoctor.data.io import read_image, read_mask
from segdoctor.doctor import split_checks as sc
from segdoctor.doctor.alignment import alignment_score, best_offset, common_offset
from segdoctor.doctor.data_checks import check_data


def _pairs(root: Path, name: str, n: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    files = sorted((root / name / "images").iterdir())[:n]
    out = []
    for f in files:
        image, mask = read_image(f), read_mask(root / name / "masks" / f.name)
        out.append((image[..., 0] if image.shape[-1] == 1 else image, (mask > 0).astype(np.uint8)))
    return out


def _tiles(pairs, size: int, every: int = 1):
    out = [
        (i[y : y + size, x : x + size], m[y : y + size, x : x + size])
        for i, m in pairs
        for y in range(0, m.shape[0] - size + 1, size)
        for x in range(0, m.shape[1] - size + 1, size)
    ]
    return out[::every]


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(mask)
    out[dy:, dx:] = mask[: mask.shape[0] - dy, : mask.shape[1] - dx]
    return out


def _roads(root: Path, n: int = 40) -> list[tuple[np.ndarray, np.ndarray]]:
    """CamVid scenes at 96 x 72 px, the most common class of all of them as the foreground."""
    paths = sorted((root / "camvid-val" / "images").iterdir())
    pairs = []
    for path in [paths[i] for i in np.linspace(0, len(paths) - 1, n).astype(int)]:
        image = np.asarray(Image.open(path).convert("RGB").resize((96, 72), Image.BILINEAR))
        mask = Image.open(root / "camvid-val" / "masks" / path.name)
        pairs.append((image, np.asarray(mask.resize((96, 72), Image.NEAREST))))
    road = np.bincount(np.concatenate([m.ravel() for _, m in pairs])).argmax()
    return [(i, (m == road).astype(np.uint8)) for i, m in pairs]


def alignment(root: Path) -> None:
    isbi, dsb = _pairs(root, "isbi2012-membrane"), _pairs(root, "dsb2018-nuclei", 120)
    isbi64, dsb64 = _tiles(isbi, 64), _tiles(dsb, 64, every=4)
    sets = {
        "isbi 64 px tiles, aligned": isbi64,
        "dsb 64 px crops, aligned": dsb64,
        "camvid road 72x96, aligned": _roads(root),
        "dsb 64 px crops, masks transposed": [(i, m.T) for i, m in dsb64],
        "dsb 64 px crops, half the images flipped": [
            (np.fliplr(i) if k % 2 else i, m) for k, (i, m) in enumerate(dsb64)
        ],
        "dsb 64 px crops, half the masks shifted (8, 8)": [
            (i, _shift(m, 8, 8) if k % 2 else m) for k, (i, m) in enumerate(dsb64)
        ],
        "isbi 64 px tiles, half the masks shifted (8, 8)": [
            (i, _shift(m, 8, 8) if k % 2 else m) for k, (i, m) in enumerate(isbi64[::4])
        ],
    }
    print(f"{'set':48s} {'n':>5s} {'median':>7s} {'p75':>6s} {'<1.0':>6s} {'<1.15':>6s} agree")
    for name, pairs in sets.items():
        v = np.array([s for i, m in pairs if (s := alignment_score(i, m)) is not None])
        offsets = [best_offset(i, m) for i, m in pairs]
        common = common_offset(offsets)
        agree = "-" if common is None else f"{common[0]} {common[1]}/{common[2]}"
        print(
            f"{name:48s} {len(v):5d} {np.median(v):7.2f} {np.percentile(v, 75):6.2f} "
            f"{np.mean(v < 1.0):6.2f} {np.mean(v < 1.15):6.2f} {agree}"
        )


def resplits(root: Path, splits: int) -> None:
    for name in ("dsb2018-nuclei", "camvid-val", "isbi2012-membrane"):
        _, summary, _ = check_data(root / name, plots=False)
        stats = summary.split_stats
        balance = [s.balance for s in stats if s.balance is not None]
        areas = [s for s in stats if s.object_area is not None]
        fired = {"split-channel-order": 0, "split-object-size": 0}
        for seed in range(splits):
            rng = np.random.default_rng(seed)
            if len(balance) >= 10:
                order = rng.permutation(len(balance))
                cut = int(0.8 * len(order))
                pair = {"train": [balance[i] for i in order[:cut]]}
                pair["val"] = [balance[i] for i in order[cut:]]
                fired["split-channel-order"] += bool(sc.channel_order(pair, "re-split"))
            order = rng.permutation(len(areas))
            cut = int(0.8 * len(order))
            two = (
                sc._Split("train", [areas[i] for i in order[:cut]]),
                sc._Split("val", [areas[i] for i in order[cut:]]),
            )
            fired["split-object-size"] += bool(sc._object_size(two, "re-split"))
        print(f"{name}: {len(balance)} RGB images, {len(areas)} with objects; fired in {splits} "
              f"re-splits: {fired}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("alignment")
    sub.add_parser("resplits").add_argument("--splits", type=int, default=300)
    args = parser.parse_args()
    if args.what == "alignment":
        alignment(args.data)
    else:
        resplits(args.data, args.splits)


if __name__ == "__main__":
    main()
