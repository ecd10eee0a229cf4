"""Inference choices on finished quality runs: test-time mirroring and a tuned threshold.

For each run folder of ``bench_quality.py`` (``DIR/default``, ``DIR/classic``), the best model
predicts the run's validation images and the 33 held-out images, as is and with test-time
mirroring (``--tta``: the mean of the four flips). Reported: held-out mean Dice at the 0.5
threshold, the paired held-out difference mirroring - plain (bootstrap 95% interval, sign-flip
p-value), and the threshold that maximizes the validation Dice with what it gives on the held-out
images (does a threshold tuned on validation transfer?), and the held-out Dice after a clean-up
of the 0.5 labels (holes filled, predicted components under ``MIN_COMPONENT_PX`` removed).
``--checkpoint last`` scores ``last.keras`` instead of ``best.keras``. Binary models only.

``--by-split`` instead asks where a model falls short: its mean Dice on its own training images,
its validation images and the held-out ones, each split by kind of image (gray or RGB, from the
dataset's ``index.csv`` when it has an ``is_gray`` column), with the predicted foreground area
over the true one (below 1: the model draws objects too small or misses them). A model that also
falls short on its training images is underfitted there, not only failing to generalize.

Usage:
    python benchmarks/bench_inference.py --data ../shared/data/dsb2018-nuclei DIR/default DIR/classic
    python benchmarks/bench_inference.py --data ../shared/data/dsb2018-nuclei --by-split DIR/default
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_quality import paired, write_split_csv
from scipy import ndimage

from segdoctor.train.config import resolve_config
from segdoctor.train.data import load_pair, prepare_data
from segdoctor.train.evaluate import predict_image, score_images
from segdoctor.train.inference import load_model

THRESHOLDS = np.round(np.arange(0.2, 0.81, 0.05), 2)
MIN_COMPONENT_PX = 20


def cleaned(labels: np.ndarray) -> np.ndarray:
    """Holes filled, then predicted components under ``MIN_COMPONENT_PX`` pixels removed."""
    components, _ = ndimage.label(ndimage.binary_fill_holes(labels > 0))
    keep = np.bincount(components.ravel()) >= MIN_COMPONENT_PX
    keep[0] = False
    return keep[components].astype(np.int32)


def dice_at(probs, samples, threshold: float, post=None) -> tuple[float, dict]:
    """Mean per-image Dice of thresholded one-channel probabilities, and each image's Dice."""
    names = [name for name, _, _ in samples]
    truths = [truth for _, _, truth in samples]
    labels = [(p[..., 0] > threshold).astype(np.int32) for p in probs]
    labels = [post(label) for label in labels] if post else labels
    summary, rows = score_images(names, truths, labels, 2)
    return summary["dice_mean"], {r["name"]: r["dice"] for r in rows}


def load(prepared, pairs) -> list:
    """(name, normalized image, mask) of each pair, as the run's evaluation loads them."""
    return [
        (p.name, *load_pair(p, prepared.policy, prepared.normalizer, prepared.channels))
        for p in pairs
    ]


def measure(run: Path, val, test, checkpoint: str = "best") -> dict:
    model = load_model(run / f"{checkpoint}.keras")
    out: dict = {}
    for tta in (False, True):
        started = time.perf_counter()
        val_probs = [predict_image(model, image, tta=tta) for _, image, _ in val]
        test_probs = [predict_image(model, image, tta=tta) for _, image, _ in test]
        on_val = {float(t): dice_at(val_probs, val, t)[0] for t in THRESHOLDS}
        tuned = max(on_val, key=on_val.get)
        test_05, per_image = dice_at(test_probs, test, 0.5)
        out["tta" if tta else "plain"] = {
            "test_dice_at_0.5": test_05,
            "val_dice_at_0.5": on_val[0.5],
            "val_tuned_threshold": tuned,
            "test_dice_at_tuned": dice_at(test_probs, test, tuned)[0],
            "test_dice_cleaned": dice_at(test_probs, test, 0.5, cleaned)[0],
            "seconds": time.perf_counter() - started,
            "per_image": per_image,
        }
    out["tta_minus_plain"] = paired(out["tta"]["per_image"], out["plain"]["per_image"])
    return out


def image_kinds(data: Path) -> dict[str, str]:
    """``name -> "gray" | "RGB"`` from the dataset's index.csv (empty when it has none)."""
    index = data / "index.csv"
    if not index.exists():
        return {}
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "is_gray" not in rows[0]:
        return {}
    return {row["name"]: "gray" if row["is_gray"] == "1" else "RGB" for row in rows}


def by_split(run: Path, splits: dict[str, list], kinds: dict[str, str], checkpoint: str) -> dict:
    """Mean Dice and predicted/true foreground area per split and kind of image."""
    model = load_model(run / f"{checkpoint}.keras")
    out: dict = {}
    for split, samples in splits.items():
        probs = [predict_image(model, image) for _, image, _ in samples]
        _, dice = dice_at(probs, samples, 0.5)
        for (name, _, truth), p in zip(samples, probs, strict=True):
            kind = kinds.get(name, "all")
            area = float((p[..., 0] > 0.5).sum()) / max(float((truth > 0).sum()), 1.0)
            group = out.setdefault(f"{split} {kind}", {"dice": [], "area_ratio": []})
            if np.isfinite(dice[name]):
                group["dice"].append(dice[name])
                group["area_ratio"].append(area)
    return {
        key: {
            "images": len(g["dice"]),
            "dice_mean": float(np.mean(g["dice"])) if g["dice"] else None,
            "area_ratio_median": float(np.median(g["area_ratio"])) if g["area_ratio"] else None,
        }
        for key, g in out.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the dsb2018-nuclei folder")
    parser.add_argument("runs", type=Path, nargs="+", help="finished recipe folders")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument(
        "--by-split", action="store_true", help="Dice per split and kind of image (see above)"
    )
    args = parser.parse_args()
    for run in args.runs:
        meta = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else None
        csv_path, test_pairs = write_split_csv(args.data, Path(tempfile.mkdtemp()))
        config = resolve_config(overrides={"data.path": str(csv_path)})
        prepared = prepare_data(config, log=lambda m: None)
        if (
            meta is not None
            and prepared.val_pairs
            and meta["val_names"] != [p.name for p in prepared.val_pairs]
        ):
            raise SystemExit(f"{run}: its validation split differs from the one rebuilt here")

        val, test = load(prepared, prepared.val_pairs), load(prepared, test_pairs)
        if args.by_split:
            splits = {"train": load(prepared, prepared.train_pairs), "val": val, "held-out": test}
            found = by_split(run, splits, image_kinds(args.data), args.checkpoint)
            print(run, json.dumps(found, indent=2), flush=True)
            continue
        result = measure(run, val, test, args.checkpoint)
        brief = {k: v for k, v in result.items() if k in ("tta_minus_plain",)}
        for key in ("plain", "tta"):
            brief[key] = {k: v for k, v in result[key].items() if k != "per_image"}
        print(run, json.dumps(brief, indent=2, default=float), flush=True)


if __name__ == "__main__":
    main()
