"""Quality: segdoctor's default recipe against the classic Keras recipe, same data, same budget.

Data: the 2018 Data Science Bowl subset (167 images, foreground = label > 0). A fixed 20% of the
images (seed 0) is held out for testing and never seen in training or validation. Both recipes get
the same wall-clock budget and the same U-Net, and are scored on the held-out images at full size
(mean per-image Dice, empty images skipped).

The budget is the whole run, as ``segdoctor train --max-minutes`` counts it: data preparation,
the recipe's measurements and LR range test, training, and the recipe's own evaluation and report
(the default recipe), or data preparation, model building and training (the classic one). The
held-out scoring is the benchmark's, outside the budget. Each result records the wall time of
every phase (``phases_s``).

The U-Net width: by default (``--base-filters auto``) the default recipe chooses it from measured
step times and the budget (issue 16: 16 filters unless 32 still train >= 25 epochs), and the
classic recipe gets the same width; ``--base-filters 16`` (or 32) fixes it for both, as in the
earlier runs in benchmarks/RESULTS.md (in 15 minutes on 2 CPU cores a 32-filter U-Net trained
8-15 epochs of 16 steps, the 16-filter one 25-46).

- default: segdoctor's recipe unchanged (Dice + CE, AdamW, LR range test, warmup + cosine,
  augmentation, foreground oversampling, checkpoint on val_dice mode="max").
  Its epoch length is the recipe's own choice, as in ``segdoctor train`` (runs before
  2026-12-06 18:30 UTC fixed 128 patches, 16 steps, for both recipes).
- classic: the well-known recipe (epochs of 128 patches, 16 steps): plain soft Dice loss (the
  Keras 2 ``dice_coef`` formula), Adam at a fixed 1e-3, no augmentation, ReduceLROnPlateau on val Dice in Keras 2's implicit "min" mode.

Usage:
    python benchmarks/bench_quality.py --data ../shared/data/dsb2018-nuclei --minutes 15 \
        [--seed 1] [--out DIR] [--set data.augment=light]
    python benchmarks/bench_quality.py --combine DIR0 DIR1

Each finished recipe's result (with every held-out image's Dice) is saved as it completes, and the
comparison is paired: the per-image difference default - classic, its bootstrap 95% interval and a
sign-flip permutation p-value.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from segdoctor._backend import ensure_backend

ensure_backend()  # the product's default backend unless KERAS_BACKEND says otherwise

import keras  # noqa: E402

from segdoctor import data as sd  # noqa: E402
from segdoctor.cli.train import run_training  # noqa: E402  (the recipe as `segdoctor train` runs)
from segdoctor.losses import dice_loss  # noqa: E402
from segdoctor.metrics import DiceScore  # noqa: E402
from segdoctor.train.budget import Deadline  # noqa: E402
from segdoctor.train.callbacks import TimeBudget  # noqa: E402
from segdoctor.train.config import load_yaml, resolve_config  # noqa: E402
from segdoctor.train.data import load_pair, prepare_data  # noqa: E402
from segdoctor.train.evaluate import evaluate_pairs  # noqa: E402
from segdoctor.train.inference import load_model  # noqa: E402
from segdoctor.train.recipe import make_model  # noqa: E402


def write_split_csv(data: Path, folder: Path, seed: int = 0) -> tuple[Path, list]:
    """CSV of the training+validation pairs; returns it and the held-out test pairs."""
    index = sd.discover_pairs(data)
    trainval, test = sd.split_pairs(index.pairs, 0.2, seed=seed)
    csv_path = folder / "trainval.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask"])
        writer.writerows([[str(p.image.resolve()), str(p.mask.resolve())] for p in trainval])
    return csv_path, test


def score(model_path: Path, prepared, test_pairs) -> dict:
    """Held-out summary plus every image's Dice (for the paired comparison)."""
    model = load_model(model_path)
    summary, rows, _ = evaluate_pairs(
        model,
        test_pairs,
        lambda p: load_pair(p, prepared.policy, prepared.normalizer, prepared.channels),
        2,
    )
    return {**summary, "per_image": {row["name"]: row["dice"] for row in rows}}


def paired(a: dict, b: dict, rounds: int = 20000, seed: int = 0) -> dict:
    """Per-image comparison of two recipes on the same held-out images.

    :func:`segdoctor.metrics.paired_difference` (the one ``diagnose --verify`` reports): the mean
    difference ``a - b`` with a bootstrap 95% interval, wins/losses and a sign-flip p-value; images
    scored by only one side are left out.
    """
    from segdoctor.metrics import paired_difference

    return paired_difference(a, b, rounds=rounds, seed=seed)


def history_summary(folder: Path) -> dict:
    """The run's final learning rate and what the doctor's history analysis says about it."""
    from segdoctor.doctor import analyze_history, load_history
    from segdoctor.doctor.history import LR_KEYS

    path = folder / "history.csv"
    if not path.exists():
        return {}
    history = load_history(path)
    lr = next((history[k] for k in LR_KEYS if k in history), [float("nan")])
    return {
        "final_lr": lr[-1],
        "history_findings": [f.id for f in analyze_history(history)],
    }


def recipe_config(name: str, csv_path: Path, minutes: float, common: dict, extra=None):
    """The resolved segdoctor config each recipe starts from (the classic one adds its own fit).

    ``extra``: overrides for the default recipe only (``--set``), to measure a variant of it.
    """
    if name == "default":
        overrides = {
            "train.max_minutes": str(minutes),
            "train.epochs": "200",
            "train.verbose": "2",
            **(extra or {}),
        }
    else:
        overrides = {
            "data.samples_per_epoch": "128",  # the recipe's own epochs of 16 steps
            "data.augment": "none",
            "data.foreground_oversample": "0",
            "train.doctor": "false",
        }
    # the variant's own --set comes last: it wins over the common --patch-size and --seed
    return resolve_config(overrides={"data.path": str(csv_path), **common, **overrides})


def run_default(
    csv_path: Path, out: Path, minutes: float, test_pairs, common: dict, extra=None
) -> dict:
    deadline = Deadline.from_minutes(minutes)  # the whole run, as `segdoctor train` counts it
    config = recipe_config("default", csv_path, minutes, common, extra)
    state = out / "state.json"
    finished = state.exists() and json.loads(state.read_text()).get("status") not in (
        None,
        "running",
    )
    if finished:  # trained by an earlier invocation that stopped before scoring: score it
        meta = json.loads((out / "run.json").read_text())
        epochs, lr = json.loads(state.read_text())["epoch"] + 1, meta["lr"]
        minutes = meta.get("budget", {}).get("elapsed_s", 0.0) / 60
    else:
        result = run_training(config, out, deadline=deadline)
        epochs, lr, minutes = result.epochs_run, result.lr, deadline.elapsed() / 60
        meta = json.loads((out / "run.json").read_text())
    prepared = prepare_data(config, log=lambda m: None)
    scoring = time.monotonic()
    scores = score(out / "best.keras", prepared, test_pairs)
    return {
        "recipe": "default",
        "overrides": extra or {},
        "minutes": minutes,
        "phases_s": meta.get("budget", {}).get("phases_s", {}),
        "scoring_s": round(time.monotonic() - scoring, 1),
        "configuration": meta.get("configuration"),
        "base_filters": width_of(out),
        "epochs": epochs,
        "lr": lr,
        **history_summary(out),
        **scores,
    }


def width_of(run: Path) -> int | None:
    """The U-Net width a finished run of the default recipe trained (its config.yaml)."""
    path = run / "config.yaml"
    return int(load_yaml(path)["model"]["base_filters"]) if path.exists() else None


def run_classic(
    csv_path: Path, out: Path, minutes: float, test_pairs, common: dict, extra=None
) -> dict:
    deadline = Deadline.from_minutes(minutes)  # data preparation and model building included
    config = recipe_config("classic", csv_path, minutes, common)
    keras.utils.set_random_seed(config.train.seed)
    prepared = prepare_data(config, log=lambda m: None)
    deadline.mark("data")
    model = make_model(config, prepared)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=dice_loss, metrics=[DiceScore(name="dice_coef")]
    )
    out.mkdir(parents=True, exist_ok=True)
    deadline.mark("setup")
    history = model.fit(
        prepared.train.for_fit(),  # on TensorFlow: no autotuning stall at epoch starts
        validation_data=prepared.val.for_fit(),
        epochs=200,
        verbose=2,
        shuffle=False,
        callbacks=[
            # Keras 2's mode="auto" chose "min" for a metric without "acc" in its name.
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_dice_coef", mode="min", factor=0.1, patience=5
            ),
            keras.callbacks.ModelCheckpoint(
                str(out / "best.keras"), monitor="val_dice_coef", mode="max", save_best_only=True
            ),
            TimeBudget(deadline=deadline),  # the same mid-epoch stop rule as the default
            keras.callbacks.CSVLogger(str(out / "history.csv")),
        ],
    )
    deadline.mark("training")
    minutes = deadline.elapsed() / 60
    scoring = time.monotonic()
    scores = score(out / "best.keras", prepared, test_pairs)
    return {
        "recipe": "classic",
        "minutes": minutes,
        "phases_s": dict(deadline.phases),
        "scoring_s": round(time.monotonic() - scoring, 1),
        "base_filters": config.model.base_filters,
        "epochs": len(history.history["loss"]),
        "lr": 1e-3,
        **history_summary(out),
        **scores,
    }


def combine(folders: list[Path]) -> dict:
    """Pool finished runs of several seeds (same held-out images): per-seed means, then each
    image's Dice averaged over the seeds per recipe, compared pairwise."""
    import numpy as np

    runs: dict[str, list[dict]] = {}
    for folder in folders:
        for name in ("default", "classic"):
            saved = folder / name / "quality_result.json"
            if saved.exists():  # runs saved before history_summary existed get it here
                result = {**history_summary(folder / name), **json.loads(saved.read_text())}
                runs.setdefault(name, []).append(result)
    summary: dict = {"folders": [str(f) for f in folders], "recipes": {}}
    averaged = {}
    for name, results in runs.items():
        names = sorted(set.intersection(*(set(r["per_image"]) for r in results)))
        averaged[name] = {n: float(np.mean([r["per_image"][n] for r in results])) for n in names}
        summary["recipes"][name] = {
            "seeds": len(results),
            "dice_mean_per_seed": [r["dice_mean"] for r in results],
            "dice_mean": float(np.mean(list(averaged[name].values()))),
            "epochs_per_seed": [r["epochs"] for r in results],
            "minutes_per_seed": [r.get("minutes") for r in results],
            "phases_s_per_seed": [r.get("phases_s") for r in results],
            "base_filters_per_seed": [r.get("base_filters") for r in results],
            "final_lr_per_seed": [r.get("final_lr") for r in results],
            "history_findings_per_seed": [r.get("history_findings") for r in results],
        }
    if {"default", "classic"} <= set(averaged):
        summary["paired_default_minus_classic"] = paired(averaged["default"], averaged["classic"])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="the dsb2018-nuclei folder (to train)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=15.0,
        help="budget of each recipe's whole run (setup, training, its own evaluation)",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--patch-size", default="256")
    parser.add_argument(
        "--base-filters",
        default="auto",
        help="U-Net width of both recipes; auto: the default recipe chooses, the classic follows",
    )
    parser.add_argument("--recipes", default="default,classic", help="which recipes, in order")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed of both recipes (the held-out images stay the same: split seed 0)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for the default recipe only (a variant of it), e.g. data.augment=light",
    )
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="only pool the finished runs in these --out folders (one per seed) and compare",
    )
    args = parser.parse_args()
    if args.combine:
        print(json.dumps(combine(args.combine), indent=2))
        return
    if args.data is None:
        parser.error("--data is needed to train (only --combine works without it)")
    extra = dict(item.split("=", 1) for item in args.set)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_quality_"))
    out.mkdir(parents=True, exist_ok=True)
    csv_path, test = write_split_csv(args.data, out)
    common = {
        "data.patch_size": args.patch_size,
        "train.seed": str(args.seed),
    }
    if args.base_filters != "auto":
        common["model.base_filters"] = args.base_filters
    runners = {"default": run_default, "classic": run_classic}
    results = []
    for name in args.recipes.split(","):
        saved = out / name / "quality_result.json"
        if saved.exists():
            result = json.loads(saved.read_text())
            if "per_image" not in result and (out / name / "best.keras").exists():
                # saved by an older version of this script: add the per-image scores
                config = recipe_config(name, csv_path, args.minutes, common, extra)
                prepared = prepare_data(config, log=lambda m: None)
                result.update(score(out / name / "best.keras", prepared, test))
                saved.write_text(json.dumps(result, indent=2, default=float))
            results.append(result)
            continue
        if name == "classic" and "model.base_filters" not in common:
            chosen = width_of(out / "default")  # the width the default recipe chose
            common = {**common, "model.base_filters": str(chosen or 16)}
        results.append(runners[name](csv_path, out / name, args.minutes, test, common, extra))
        saved.write_text(json.dumps(results[-1], indent=2, default=float))
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "backend": keras.backend.backend(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "test_images": len(test),
        "minutes": args.minutes,
        "seed": args.seed,
    }
    by_name = {r["recipe"]: r for r in results}
    if {"default", "classic"} <= set(by_name) and all("per_image" in r for r in results):
        meta["paired_default_minus_classic"] = paired(
            by_name["default"]["per_image"], by_name["classic"]["per_image"]
        )
    brief = [{k: v for k, v in r.items() if k != "per_image"} for r in results]
    print(json.dumps({"meta": meta, "results": brief}, indent=2, default=float))
    print(
        "\n| recipe | held-out Dice (mean) | median | IoU | epochs | filters | minutes | phases (s) |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        phases = ", ".join(f"{k} {v:.0f}" for k, v in r.get("phases_s", {}).items())
        print(
            f"| {r['recipe']} | {r['dice_mean']:.4f} | {r['dice_median']:.4f} | {r['iou_mean']:.4f} "
            f"| {r['epochs']} | {r.get('base_filters')} | {r['minutes']:.1f} | {phases} |"
        )
    (out / "quality.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2, default=float)
    )


if __name__ == "__main__":
    main()
