"""Fixes to the user's model (``from_logits`` of its loss): a fresh copy trained on the recipe's crops.

Example:
    >>> "from-logits-mismatch" in LOGIT_FIXES
    True
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras

from segdoctor.cli.verify.results import Log, Prescription, RunScore, Unverified, mean_dice
from segdoctor.doctor import Finding
from segdoctor.train.config import RunConfig
from segdoctor.train.data import PreparedData, prepare_data
from segdoctor.train.evaluate import predict_image, score_images
from segdoctor.train.inference import to_labels

LOGIT_FIXES = ("output-activation-missing", "from-logits-mismatch")
"""Finding ids whose fix is the ``from_logits`` setting of the user's loss (needs the model)."""


def _loss_config(model: Any) -> dict | None:
    """The serialized loss of a compiled model, when it is a Loss with a from_logits setting."""
    loss = getattr(model, "loss", None)
    if not isinstance(loss, keras.losses.Loss):
        return None
    config = keras.losses.serialize(loss)
    return config if "from_logits" in config.get("config", {}) else None


def _outputs_logits(model: keras.Model) -> bool:
    """Whether the model's last layer outputs logits (no sigmoid/softmax)."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "linear") == "linear"


def _from_logits(f: Finding, model: Any) -> Prescription | Unverified:
    if model is None or isinstance(model, (str, Path)):
        why = "needs your model: pass it (--model MODEL, a compiled .keras file)."
        return Unverified(f.id, "not-verifiable", why)
    loss = _loss_config(model)
    shape = tuple(model.inputs[0].shape)  # (None, H, W, C)
    reason = None
    if loss is None:
        reason = "not verifiable yet: the loss is not a Keras Loss object with from_logits."
    elif shape[1] is not None or shape[2] is not None:
        reason = "not verifiable yet: the model has a fixed input size (whole images are scored)."
    elif shape[-1] not in (1, 3):
        reason = "not verifiable yet: only models with 1 or 3 input channels."
    elif len(model.outputs) != 1 or model.outputs[0].shape[-1] != 1:
        reason = "not verifiable yet: only single-output, one-channel (binary) models."
    if reason is not None:
        return Unverified(f.id, "not-verifiable", reason)
    now = bool(loss["config"]["from_logits"])
    return Prescription(
        f.id,
        f"from_logits={not now} in your loss",
        f"your model and loss as compiled (from_logits={now})",
        {"data.channels": str(shape[-1])},
        {"data.channels": str(shape[-1])},
        from_logits=(now, not now),
        model=model,
        note="both runs train a fresh copy of your model (same seed) with Adam at the short "
        "run's learning rate on the recipe's crops; outputs are thresholded as what they are "
        "(logits at 0, probabilities at 0.5).",
    )


def _fit_user_model(
    model: keras.Model, from_logits: bool, config: RunConfig, label: str, log: Log
) -> RunScore:
    """Train a fresh copy of ``model`` with its loss at ``from_logits``; score whole images."""
    start, done = time.monotonic(), 0
    try:
        prepared = prepare_data(config, log=log)
        keras.utils.set_random_seed(config.train.seed)
        clone = keras.models.clone_model(model)  # fresh weights, same seed in both runs
        loss = _loss_config(model)
        loss = {**loss, "config": {**loss["config"], "from_logits": from_logits}}
        clone.compile(
            optimizer=keras.optimizers.Adam(float(config.train.lr or 1e-3)),
            loss=keras.losses.deserialize(loss),
        )
        limit = (config.train.max_minutes or float("inf")) * 60.0
        curve = []  # the whole-image validation Dice after each epoch (the rule on run length)
        train = prepared.train.for_fit()
        while done < config.train.epochs and time.monotonic() - start < limit:
            clone.fit(train, epochs=done + 1, initial_epoch=done, verbose=0, shuffle=False)
            done += 1
            per_image = _score_model(clone, prepared)
            dice = mean_dice(per_image)
            curve.append(float("nan") if dice is None else dice)
        if not done:
            per_image = _score_model(clone, prepared)
    except Exception as err:  # the as-diagnosed run may fail: that is the finding
        log(f"failed: {type(err).__name__}: {err}")
        error = f"{type(err).__name__}: {err}"
        return RunScore(label, "failed", done, time.monotonic() - start, error=error)
    status = "completed" if done >= config.train.epochs else "time budget"
    return RunScore(label, status, done, time.monotonic() - start, per_image, curve=curve)


def _score_model(model: keras.Model, prepared: PreparedData) -> dict[str, float]:
    logits = _outputs_logits(model)
    names, truths, preds = [], [], []
    for pair in prepared.val_pairs:
        image, truth = prepared.load(pair)  # (H, W, C) normalized, (H, W) int32
        names.append(pair.name)
        truths.append(truth)
        preds.append(to_labels(predict_image(model, image), from_logits=logits))  # (H, W)
    _, rows = score_images(names, truths, preds, 2)
    return {row["name"]: float(row["dice"]) for row in rows}
