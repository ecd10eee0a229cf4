"""Reproduce the calibration numbers behind the doctor's image/mask and split thresholds.

``alignment``: edge-alignment scores (``pair-misaligned``) and best-shift agreement
(``mask-offset``) on aligned real pairs and on planted faults; ``resplits``: how often
``split-channel-order`` and ``split-object-size`` fire over random 80/20 re-splits of the shared
datasets (should be never); ``near-copies``: the copy score of
:mod:`segdoctor.data.near_copies` for the most similar pairs of different images (thumbnails
correlated at :data:`~segdoctor.data.near_copies.CANDIDATE_MIN` or more) and for copies with
changed brightness, contrast, gamma, colour balance, hue, JPEG re-encoding and noise.
docs/troubleshooting.md and the constants' docstrings quote them.

    python benchmarks/calibrate_checks.py --data ../shared/data alignment
    python benchmarks/calibrate_checks.py --data ../shared/data resplits --splits 300
    python benchmarks/calibrate_checks.py --data ../shared/data near-copies
    python benchmarks/calibrate_checks.py --data ../shared/data offsets

``offsets``: how often ``mask-offset``'s common shift (:func:`common_offset`) appears in random
samples of 10-50 aligned pairs, and on all 100 CamVid road masks at 96 x 72 px.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from segdoctor.data import near_copies as nc
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


def _changed(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H, W, C) uint8 through one photometric change."""
    x = image[..., :3].astype(np.float32)
    if kind == "gain-offset-gamma":  # per channel, clipped
        c = x.shape[-1]
        x = np.clip(x * rng.uniform(0.6, 1.4, c) + rng.uniform(-30, 30, c), 0, 255)
        return np.clip(255 * (x / 255) ** rng.uniform(0.6, 1.6), 0, 255).astype(np.uint8)
    if kind == "hue":
        rgb = Image.fromarray(image[..., :3] if image.shape[-1] >= 3 else np.repeat(image, 3, -1))
        hsv = np.asarray(rgb.convert("HSV")).astype(np.int32)
        hsv[..., 0] = (hsv[..., 0] + 25) % 256
        return np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))
    if kind == "jpeg-90":
        import io

        buf = io.BytesIO()
        Image.fromarray(image[..., :3] if image.shape[-1] >= 3 else image[..., 0]).save(
            buf, "JPEG", quality=90
        )
        out = np.asarray(Image.open(buf))
        return out if out.ndim == 3 else out[..., None]
    return np.clip(x + rng.normal(0, 3, x.shape), 0, 255).astype(np.uint8)  # noise, sigma 3


def near_copies(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("dsb2018-nuclei", "camvid-val", "isbi2012-membrane"):
        images = [read_image(f) for f in sorted((root / name / "images").iterdir())]
        thumbs = [nc.thumbnail(i) for i in images]
        scores = []
        for qi, ri, k, _ in nc.best_partners(thumbs[1:], thumbs[:-1]):
            if ri != qi + 1:  # thumbs[1:][qi] is image qi + 1; a partner among the others
                scores.append(nc.copy_score(images[qi + 1], nc.orientations(images[ri])[k]))
        pairs = [(a, b) for i, a in enumerate(thumbs) for b in thumbs[i + 1 :]]
        n_cand = 0
        worst = max(scores, default=float("nan"))
        # every pair of different images above the candidate bar, not only best partners
        cand = [
            (i, j)
            for i in range(len(images))
            for j in range(i + 1, len(images))
            if thumbs[i] is not None and thumbs[j] is not None
            and max(float((thumbs[i].astype(np.float32) * o.astype(np.float32)).sum())
                    for o in nc.orientations(thumbs[j])) >= nc.CANDIDATE_MIN
        ]  # fmt: skip
        distinct = [
            nc.copy_score(images[i], images[j])
            for i, j in cand
            if images[i].shape == images[j].shape
        ]
        n_cand = len(distinct)
        del pairs
        print(f"{name}: {len(images)} images; {n_cand} pairs of different images with "
              f"thumbnails at {nc.CANDIDATE_MIN}+ (same size): copy score max "
              f"{max(distinct, default=float('nan')):.3f}, best partners' max {worst:.3f}")  # fmt: skip
        for label, imgs in (("images", images), ("64 px crops", _centre_crops(images))):
            kept = [(a, nc.orientations(b)[k]) for a, b, k in _distinct_partners(label, imgs)]
            high = [(a, b) for a, b in kept if nc.copy_score(a, b) >= nc.COPY_MIN]
            detail = [nc.detail_score(a, b) for a, b in high]
            print(f"  {label}: {len(high)} best partners of different images at the copy bar; "
                  f"their detail score max {max(detail, default=float('nan')):.3f} "
                  f"(bar {nc.DETAIL_MIN})")  # fmt: skip
        for kind in ("gain-offset-gamma", "hue", "jpeg-90", "noise-3"):
            changed = [(i, _changed(i, kind, rng)) for i in images[:25]]
            got = [nc.copy_score(i, c) for i, c in changed]
            both = [s >= nc.COPY_MIN and nc.detail_score(i, c) >= nc.DETAIL_MIN
                    for s, (i, c) in zip(got, changed, strict=True)]  # fmt: skip
            print(f"  copies, {kind}: copy score min {min(got):.3f}, median "
                  f"{float(np.median(got)):.3f} (bar {nc.COPY_MIN}); found with the detail "
                  f"bar {sum(both)} of {len(both)}")  # fmt: skip


def _centre_crops(images: list, size: int = 64) -> list:
    """The 2 x 2 crops of ``size`` px around each image's centre (the fifth blind test's tiles),
    each tagged with its source image."""
    out = []
    for n, img in enumerate(images):
        cy, cx = img.shape[0] // 2, img.shape[1] // 2
        for dy in (-size, 0):
            for dx in (-size, 0):
                crop = img[cy + dy : cy + dy + size, cx + dx : cx + dx + size]
                if crop.shape[:2] == (size, size):
                    out.append((n, crop))
    return out


def _distinct_partners(label: str, imgs: list):
    """(a, b, orientation) of best thumbnail partners from different source images."""
    tagged = imgs if label != "images" else list(enumerate(imgs))
    thumbs = [nc.thumbnail(i) for _, i in tagged]
    for qi, ri, k, _ in nc.best_partners(thumbs, thumbs, same_set=True):
        (sa, a), (sb, b) = tagged[qi], tagged[ri]
        if sa != sb and a.shape == b.shape:
            yield a, b, k


def offsets(root: Path, draws: int = 2000) -> None:
    isbi, dsb = _pairs(root, "isbi2012-membrane"), _pairs(root, "dsb2018-nuclei")
    sets = {
        "dsb 64 px crops": _tiles(dsb, 64, every=2),
        "isbi 64 px tiles": _tiles(isbi, 64, every=2),
        "camvid road 72x96": _roads(root, 100),
    }
    rng = np.random.default_rng(0)
    for name, pairs in sets.items():
        offs = [best_offset(i, m) for i, m in pairs]
        scored = [o for o in offs if o is not None]
        rates = []
        for n in (10, 14, 20, 30, 50):
            fired = 0
            for _ in range(draws):
                sample = [
                    scored[i] for i in rng.choice(len(scored), min(n, len(scored)), replace=False)
                ]
                fired += common_offset(sample) is not None
            rates.append(f"n={n}: {fired / draws:.3f}")
        print(f"{name}: {len(scored)} pairs scored; all of them: {common_offset(scored)}; "
              f"share of {draws} random samples that fire: {', '.join(rates)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("alignment")
    sub.add_parser("resplits").add_argument("--splits", type=int, default=300)
    sub.add_parser("near-copies")
    sub.add_parser("offsets")
    args = parser.parse_args()
    if args.what == "alignment":
        alignment(args.data)
    elif args.what == "offsets":
        offsets(args.data)
    elif args.what == "near-copies":
        near_copies(args.data)
    else:
        resplits(args.data, args.splits)


if __name__ == "__main__":
    main()
