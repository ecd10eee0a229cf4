"""Fixes to the user's model: ``from_logits`` of its loss, or its learning rate.

Both runs train a fresh copy of the user's model (same seed) on the recipe's crops and score it
on the whole validation images. A model built for one input size is copied onto inputs of any
size when its layers allow it (convolutions, pooling, upsampling): the whole images are scored.

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
from segdoctor.doctor.model_checks import output_activation  # nested models too
from segdoctor.train.config import RunConfig
from segdoctor.train.data import PreparedData, prepare_data
from segdoctor.train.evaluate import predict_image, score_images
from segdoctor.train.inference import to_labels

LOGIT_FIXES = ("output-activation-missing", "from-logits-mismatch")
"""Finding ids whose fix is the ``from_logits`` setting of the user's loss (needs the model)."""
NEEDS_MODEL = "needs your model: pass it (--model MODEL, a compiled .keras file)."


def _loss_config(model: Any) -> dict | None:
    """The serialized loss of a compiled model, when it is a Loss with a from_logits setting."""
    loss = getattr(model, "loss", None)
    if not isinstance(loss, keras.losses.Loss):
        return None
    config = keras.losses.serialize(loss)
    return config if "from_logits" in config.get("config", {}) else None


def _outputs_logits(model: keras.Model) -> bool:
    """Whether the model's last layer outputs logits (no sigmoid/softmax)."""
    return output_activation(model) == "linear"


def fresh_copy(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with freshly initialized weights, on inputs of any height and width.

    Raises whatever Keras raises when a layer needs the original size (``Flatten`` + ``Dense``).
    """
    shape = tuple(model.inputs[0].shape)  # (None, H, W, C)
    if shape[1] is None and shape[2] is None:
        return keras.models.clone_model(model)
    return keras.models.clone_model(model, input_tensors=keras.Input((None, None, shape[-1])))


def copy_problem(model: Any) -> str | None:
    """Why a fresh copy of ``model`` cannot be trained on crops and scored on whole images.

    None when it can: one input of 1 or 3 channels, one one-channel (binary) output, and layers
    that take any input size (checked by building the copy).
    """
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        return "not verifiable yet: only Keras models with one image input."
    shape = tuple(model.inputs[0].shape)  # (None, H, W, C)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        return "not verifiable yet: only models with 1 or 3 input channels."
    if len(model.outputs) != 1 or model.outputs[0].shape[-1] != 1:
        return "not verifiable yet: only single-output, one-channel (binary) models."
    try:
        fresh_copy(model)
    except Exception as err:  # Keras raises many types when a layer cannot take another size
        return (
            f"not verifiable yet: the model has a fixed input size {shape[1:3]} and cannot be "
            f"copied onto whole validation images ({type(err).__name__}: {err})."
        )
    return None


def from_logits_fix(
    f: Finding, plan: object = None, model: Any = None
) -> Prescription | Unverified:
    """The ``from_logits`` fix, on a fresh copy of the user's compiled model (``plan`` unused:
    the fix is in the loss, not in the data)."""
    if model is None or isinstance(model, (str, Path)):
        return Unverified(f.id, "not-verifiable", NEEDS_MODEL)
    loss = _loss_config(model)
    reason = copy_problem(model)
    if loss is None:
        reason = "not verifiable yet: the loss is not a Keras Loss object with from_logits."
    if reason is not None:
        return Unverified(f.id, "not-verifiable", reason)
    now = bool(loss["config"]["from_logits"])
    return Prescription(
        f.id,
        f"from_logits={not now} in your loss",
        f"your model and loss as compiled (from_logits={now})",
        {"data.channels": str(model.inputs[0].shape[-1])},
        {"data.channels": str(model.inputs[0].shape[-1])},
        from_logits=(now, not now),
        model=model,
        note="both runs train a fresh copy of your model (same seed) with Adam at the short "
        "run's learning rate on the recipe's crops; outputs are thresholded as what they are "
        "(logits at 0, probabilities at 0.5).",
    )


def user_learning_rate(
    f: Finding, model: Any, rates: tuple[float, float, str]
) -> Prescription | None:
    """The learning-rate fix verified on the user's model and optimizer; None when the model
    cannot be used (not given, not compiled, or :func:`copy_problem`): then the recipe's U-Net
    stands in for it."""
    optimizer = getattr(model, "optimizer", None)
    if model is None or isinstance(model, (str, Path)) or optimizer is None:
        return None
    if getattr(model, "loss", None) is None or copy_problem(model) is not None:
        return None
    lr, fixed, why = rates
    name = type(_inner(optimizer)).__name__
    channels = str(model.inputs[0].shape[-1])
    return Prescription(
        f.id,
        f"learning rate {fixed:.3g} ({why})",
        f"your model with {name} at your learning rate {lr:.3g}",
        {"data.channels": channels, "train.lr": f"{lr:.6g}"},
        {"data.channels": channels, "train.lr": f"{fixed:.6g}"},
        learning_rate=(lr, fixed),
        model=model,
        note=f"both runs train a fresh copy of your model (same seed) with your loss and your "
        f"optimizer ({name}, its other settings as compiled) on the recipe's crops.",
    )


def _inner(optimizer: Any) -> Any:
    """The user's own optimizer: a mixed-precision LossScaleOptimizer wraps it, and its learning
    rate and class are the inner one's."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def _optimizer(model: keras.Model, config: RunConfig, learning_rate: float | None):
    """The user's optimizer at ``learning_rate``, or Adam at the short run's rate (None)."""
    if learning_rate is None:
        return keras.optimizers.Adam(float(config.train.lr or 1e-3))
    serialized = keras.optimizers.serialize(_inner(model.optimizer))
    serialized["config"] = {**serialized["config"], "learning_rate": float(learning_rate)}
    return keras.optimizers.deserialize(serialized)


def _loss(model: keras.Model, from_logits: bool | None):
    """The user's compiled loss, with ``from_logits`` changed when given."""
    if from_logits is None:
        return model.loss
    loss = _loss_config(model)
    return keras.losses.deserialize(
        {**loss, "config": {**loss["config"], "from_logits": from_logits}}
    )


def _fit_user_model(
    model: keras.Model,
    config: RunConfig,
    label: str,
    log: Log,
    *,
    from_logits: bool | None = None,
    learning_rate: float | None = None,
) -> RunScore:
    """Train a fresh copy of ``model`` (its loss at ``from_logits``, its optimizer at
    ``learning_rate`` when given); score whole images after every epoch."""
    start, done = time.monotonic(), 0
    try:
        prepared = prepare_data(config, log=log)
        keras.utils.set_random_seed(config.train.seed)
        clone = fresh_copy(model)  # fresh weights, same seed in both runs
        clone.compile(
            optimizer=_optimizer(model, config, learning_rate), loss=_loss(model, from_logits)
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
