"""``segdoctor evaluate`` and ``segdoctor predict``: score a model on a data folder, write masks.

The scoring and prediction live in :mod:`segdoctor.train.evaluate`; these commands add what a
command does: read the run folder's decisions, print, write files, return the exit status.

Example:
    >>> evaluate_command("runs/demo", "data/", json_path="scores.json")  # doctest: +SKIP
    0
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from segdoctor import data as sd
from segdoctor._io import atomic_write_bytes, atomic_write_text, check_writable
from segdoctor.data.io import file_stem, is_supported
from segdoctor.errors import DataError, SegdoctorError
from segdoctor.jsonsafe import dumps
from segdoctor.runfiles import load_model, read_run_meta, run_meta_path
from segdoctor.train.data import load_pair
from segdoctor.train.evaluate import evaluate_pairs, predict_image, rows_to_csv
from segdoctor.train.inference import to_labels

Log = Callable[[str], None]


def _run_context(model_path: str | Path, data: str | Path):
    """Mask policy, normalizer and channels: from the run folder when there is one, else the data."""
    model_path = Path(model_path)
    run_dir = model_path if model_path.is_dir() else model_path.parent
    index = sd.discover_pairs(data)
    if run_meta_path(run_dir).exists() and (run_dir / "mask_policy.json").exists():
        meta = read_run_meta(run_dir)
        policy = sd.MaskPolicy.from_json((run_dir / "mask_policy.json").read_text(encoding="utf-8"))
        normalizer = sd.ImageNormalizer.from_dict(meta.normalizer)
        channels = meta.channels
    else:
        report = sd.inspect_masks(
            sd.read_mask(p.mask, slice_index=p.slice_index) for p in index.pairs
        )
        policy = sd.decide_mask_policy(report)
        normalizer = sd.ImageNormalizer(mode="image")
        channels = None
    return index, policy, normalizer, channels


def evaluate_command(
    model: str,
    data: str,
    json_path=None,
    csv_path=None,
    hausdorff=False,
    unsafe=False,
    log: Log = print,
    tta: bool = False,
) -> int:
    """``segdoctor evaluate``: print the summary; write JSON/CSV on request.

    ``tta``: each image predicted as the mean of its four mirrored copies."""
    for destination in (json_path, csv_path):
        if destination:
            check_writable(Path(destination).parent)
    keras_model = load_model(model, unsafe=unsafe)
    index, policy, normalizer, channels = _run_context(model, data)
    channels = channels or int(keras_model.input_shape[-1] or 1)
    expected = keras_model.outputs[0].shape[-1]  # the main output of a multi-output model
    num_classes = 2 if expected == 1 else int(expected)
    if policy.num_classes > num_classes:
        raise SegdoctorError(
            f"The masks hold {policy.num_classes} classes but the model predicts {num_classes}",
            fix="evaluate on data with the classes the model was trained for.",
        )
    summary, rows, _ = evaluate_pairs(
        keras_model,
        index.pairs,
        lambda p: load_pair(p, policy, normalizer, channels),
        num_classes,
        policy.ignore_index,
        hausdorff,
        tta=tta,
    )
    mirroring = "mirroring (mean of 4 flips)"
    summary["tta"] = mirroring if tta else "none"
    log(
        f"Evaluated {summary['n_images']} images: Dice {summary['dice_mean']:.4f} (median {summary['dice_median']:.4f}), IoU {summary['iou_mean']:.4f}"
        + (f" (test-time {mirroring})." if tta else ".")
    )
    log(f"Empty policy: {summary['empty_policy']}.")
    if json_path:
        atomic_write_text(json_path, dumps({"summary": summary, "per_image": rows}, indent=2))
        log(f"JSON: {json_path}")
    if csv_path:
        atomic_write_text(csv_path, rows_to_csv(rows))
        log(f"CSV: {csv_path}")
    return 0


def predict_command(
    model: str,
    images: str,
    out: str,
    unsafe: bool = False,
    log: Log = print,
    tta: bool = False,
) -> int:
    """``segdoctor predict``: one mask PNG per image, at the image's own size, class indices."""
    out_dir = check_writable(out)
    keras_model = load_model(model, unsafe=unsafe)
    model_path = Path(model)
    run_dir = model_path if model_path.is_dir() else model_path.parent
    normalizer = sd.ImageNormalizer(mode="image")
    channels = int(keras_model.input_shape[-1] or 1)
    if run_meta_path(run_dir).exists():
        normalizer = sd.ImageNormalizer.from_dict(read_run_meta(run_dir).normalizer)
    source = Path(images)
    files = (
        [source]
        if source.is_file()
        else sorted(p for p in source.iterdir() if is_supported(p))
        if source.is_dir()
        else []
    )
    if not files:
        raise DataError(
            f"No images found at {source}",
            expected="an image file or a folder of PNG/JPEG/TIFF/NPY images",
            fix="check the path.",
        )
    for path in files:
        image = normalizer(sd.to_channels(sd.read_image(path), channels, name=path.name))
        labels = to_labels(predict_image(keras_model, image, tta=tta))
        buffer = io.BytesIO()
        Image.fromarray(labels.astype(np.uint8)).save(buffer, format="PNG")
        atomic_write_bytes(out_dir / f"{file_stem(path)}.png", buffer.getvalue())
    log(f"Wrote {len(files)} masks (class indices, same size as each image) to {out_dir}")
    return 0
