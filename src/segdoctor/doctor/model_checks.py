"""Static checks of a compiled Keras model, its loss, optimizer and callbacks.

Everything here reads the model's configuration and weights; nothing trains. The loss is judged by
its behaviour (:mod:`segdoctor.doctor.loss_probe`), the rest from layer and callback attributes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np

from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.history import is_dice_like
from segdoctor.doctor.inference_checks import check_inference
from segdoctor.doctor.loss_probe import loss_from_logits, loss_name, measure_loss, probe_loss
from segdoctor.doctor.model_data import (
    Targets,
    compare_activation,
    compare_input_channels,
    compare_output_classes,
    ignored_label,
    sample_image_channels,
)

_CE_BINARY = (
    "binary_crossentropy",
    "binarycrossentropy",
    "binary_focal_crossentropy",
    "binaryfocalcrossentropy",
)
_CE_CATEGORICAL = (
    "categorical_crossentropy",
    "categoricalcrossentropy",
    "sparse_categorical_crossentropy",
    "sparsecategoricalcrossentropy",
    "categorical_focal_crossentropy",
    "categoricalfocalcrossentropy",
)
_KERAS_PROB_ONLY = ("dice", "tversky")  # Keras losses without a from_logits option


def last_layer(model):
    """The layer that produces the output, inside nested models: a U-Net wrapped in a model
    with augmentation layers in front has that U-Net as its last layer (fourth blind test: the
    sigmoid inside it was reported missing on a healthy run).

    Example:
        >>> import keras
        >>> inner = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
        >>> outer = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.RandomFlip(), inner])
        >>> last_layer(outer).activation.__name__
        'sigmoid'
    """
    layer = model.layers[-1]
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    return layer


def output_activation(model) -> str:
    """Name of the activation applied last (``"linear"`` when the output is raw logits).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
        >>> output_activation(m)
        'sigmoid'
    """
    layer = last_layer(model)
    cls = type(layer).__name__.lower()
    if cls in ("softmax", "relu", "sigmoid"):
        return cls
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    if isinstance(act, str):
        return act
    return getattr(act, "__name__", "linear")


def output_channels(model) -> int:
    """Channels of the (first) model output, channels-last."""
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else model.output_shape
    return int(shape[-1])


def input_channels(model) -> int | None:
    """Channels of the (first) model input, channels-last; None when unknown (not built).

    Example:
        >>> import keras
        >>> input_channels(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(1, 1)]))
        3
    """
    try:
        shape = model.inputs[0].shape if getattr(model, "inputs", None) else model.input_shape
    except (AttributeError, ValueError):  # a subclassed model that was never called
        return None
    if isinstance(shape, list):
        shape = shape[0]
    last = shape[-1] if shape else None
    return None if last is None else int(last)


def _loss_key(loss: object) -> str:
    return loss_name(loss).lower().replace(" ", "")


def _callback_metric_direction(model, name: str) -> str | None:
    """'up'/'down' when the compiled metric of that name declares ``_direction``."""
    metric_name = name.removeprefix("val_")
    candidates: list[Any] = []
    compiled = getattr(model, "_compile_metrics", None)
    if compiled is not None:
        for group in (
            getattr(compiled, "_user_metrics", None),
            getattr(compiled, "_user_weighted_metrics", None),
        ):
            if isinstance(group, dict):
                group = [
                    m for v in group.values() for m in (v if isinstance(v, (list, tuple)) else [v])
                ]
            candidates.extend(group or [])
    for metric in list(getattr(model, "metrics", [])) + candidates:
        for m in getattr(metric, "metrics", [metric]):
            if getattr(m, "name", None) == metric_name and hasattr(m, "_direction"):
                return m._direction
    return None


def check_callbacks(model, callbacks: Iterable[Any]) -> list[Finding]:
    """``monitor-mode``: a callback watching a Dice/IoU-like quantity must use ``mode="max"``.

    ``mode="min"`` is always wrong for such a metric; ``mode="auto"`` is wrong unless the metric
    declares ``_direction = "up"`` (Keras 3 then raises ``ValueError``; Keras 2 silently chose min).
    The opposite case, a loss watched with ``mode="max"``, is reported too.
    """
    found = []
    for cb in callbacks:
        monitor, mode = getattr(cb, "monitor", None), getattr(cb, "mode", None)
        if not isinstance(monitor, str) or mode not in ("auto", "min", "max"):
            continue
        direction = _callback_metric_direction(model, monitor) if model is not None else None
        wrong = None
        if is_dice_like(monitor):
            if mode == "min" or (mode == "auto" and direction != "up"):
                wrong = "max"
        elif "loss" in monitor.lower() and mode == "max":
            wrong = "min"
        if wrong:
            name = type(cb).__name__
            found.append(
                make_finding(
                    "monitor-mode",
                    {
                        "callback": name,
                        "monitor": monitor,
                        "mode": mode,
                        "metric_direction": direction or "unknown",
                    },
                    variant="named-callback",
                    must_go="up" if wrong == "max" else "down",
                    mode_needed=wrong,
                )
            )
    return found


def _cross_entropy_mismatch(loss_key: str, activation: str, channels: int) -> str | None:
    """What is wrong with a cross-entropy loss on this head (None: nothing), for the evidence.

    Example:
        >>> _cross_entropy_mismatch("binary_crossentropy", "softmax", 3)
        'binary cross-entropy on softmax channels that compete'
    """
    categorical = any(loss_key.startswith(k) for k in _CE_CATEGORICAL)
    if channels == 1 and categorical:
        return (
            "categorical cross-entropy over a single channel is constant (always 0): nothing trains"
        )
    if channels > 1 and activation == "sigmoid" and categorical:
        return "categorical cross-entropy on independent sigmoid channels"
    if channels > 1 and activation == "softmax" and any(loss_key.startswith(k) for k in _CE_BINARY):
        return "binary cross-entropy on softmax channels that compete"
    return None


def _softmax_axis(model, base: dict) -> list[Finding]:
    """``softmax-wrong-axis``: a final ``Softmax`` layer over an axis other than the channels.

    ``Softmax(axis=1)`` on channels-last images normalizes over the rows (second blind test,
    2026-12-07: per-pixel sums over the classes averaged 0.125, range 0.016-1.45; training Dice
    0.38 against 0.77). ``Activation("softmax")`` and ``Conv2D(..., activation="softmax")`` always
    use the last axis.
    """
    layer = last_layer(model)
    if not isinstance(layer, keras.layers.Softmax):
        return []
    rank = len(model.outputs[0].shape) if getattr(model, "outputs", None) else 4
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    axes = [int(a) % rank for a in axes]
    if axes == [rank - 1]:
        return []
    names = {0: "the batch", 1: "the image rows", 2: "the image columns"}
    return [
        make_finding(
            "softmax-wrong-axis",
            base | {"softmax_axis": layer.axis, "output_rank": rank},
            axis=layer.axis,
            axis_name=" and ".join(names.get(a, f"axis {a}") for a in axes),
        )
    ]


def check_output(model, num_classes: int | None = None) -> list[Finding]:
    """Output activation, channels and their match with the loss and the masks."""
    found = []
    act, channels = output_activation(model), output_channels(model)
    loss = getattr(model, "loss", None)
    key = _loss_key(loss) if loss is not None else ""
    from_logits = loss_from_logits(loss) if loss is not None else None
    if isinstance(loss, str):
        from_logits = False
    base = {
        "output_activation": act,
        "output_channels": channels,
        "loss": loss_name(loss) if loss is not None else None,
    }
    found += _softmax_axis(model, base)
    if act == "softmax" and channels == 1:
        found.append(
            make_finding(
                "softmax-single-channel",
                base,
            )
        )
    if act == "linear" and loss is not None:
        prob_only = any(k == key or key.startswith(k) for k in _KERAS_PROB_ONLY)
        if from_logits is False or prob_only:
            found.append(
                make_finding(
                    "output-activation-missing",
                    base | {"from_logits": from_logits},
                    head_activation="sigmoid" if channels == 1 else "softmax",
                )
            )
    if act in ("sigmoid", "softmax") and from_logits is True:
        found.append(
            make_finding(
                "from-logits-mismatch",
                base | {"from_logits": True},
            )
        )
    mismatch = _cross_entropy_mismatch(key, act, channels)
    if mismatch:
        found.append(
            make_finding(
                "activation-loss-mismatch",
                base | {"problem": mismatch},
                severity="error" if channels == 1 else "warning",
            )
        )
    found += compare_activation(act, channels, from_logits)
    if num_classes is not None and num_classes >= 2:
        masks = Targets(
            max_label=num_classes - 1, source="masks of the whole dataset", complete=True
        )
        found += compare_output_classes(
            channels, masks, activation=act, ignore_index=ignored_label(loss)
        )
    return found


def check_model_vs_files(model, data, *, limit: int = 32) -> list[Finding]:
    """``input-channels-mismatch``: the model's input channels against a sample of image files.

    The classes (``output-classes-mismatch``, ``output-channels-extra``) come from the whole
    dataset's mask inspection through :func:`check_model`'s ``num_classes``.

    Example:
        >>> from segdoctor.sample_data import sample_path
        >>> check_model_vs_files(model, sample_path())  # doctest: +SKIP
    """
    counts, colour = sample_image_channels(data, limit=limit)
    where = f"{sum(counts.values())} image files (evenly spread sample)"
    return compare_input_channels(
        input_channels(model), counts, colour_images=colour, where=where, fed_as_is=False
    )


def check_loss(model) -> list[Finding]:
    """Black-box probe of the compiled loss (see :mod:`segdoctor.doctor.loss_probe`)."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return []
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, (list, tuple, dict)):
        return []  # multi-output models: not probed
    act, channels = output_activation(model), output_channels(model)
    from_logits = loss_from_logits(loss)
    try:
        if from_logits is None and act == "linear":
            # The loss receives logits. A loss written for probabilities misbehaves on them.
            m = measure_loss(loss, channels=channels, from_logits=True)
            values = [m.perfect, m.empty_small, m.empty_large, m.inverted_large, m.full_small]
            as_probabilities = measure_loss(loss, channels=channels, from_logits=False)
            if (
                min(values) < -1e-3
                or m.perfect > m.inverted_large
                or (as_probabilities.dice_like and not m.dice_like)
            ):
                return [
                    make_finding(
                        "output-activation-missing",
                        {
                            "output_activation": act,
                            "loss": loss_name(loss),
                            "loss_on_perfect_logits": m.perfect,
                            "loss_on_wrong_logits": m.inverted_large,
                        },
                        variant="probed",
                        output_channels=channels,
                        head_activation="sigmoid" if channels == 1 else "softmax",
                        confidence=0.9,
                    )
                ]
            from_logits = True
        return probe_loss(loss, channels=channels, from_logits=bool(from_logits))
    except (
        Exception
    ):  # a loss that cannot run on the synthetic cases: say nothing rather than guess
        return []


def all_layers(model) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(all_layers(layer))
    return out


def check_batchnorm_batch(model, batch_size: int | None) -> list[Finding]:
    """``batchnorm-small-batch``: trainable BatchNorm with batches under 4 (reads no weights)."""
    bns = [
        layer.name
        for layer in all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if bns and batch_size is not None and batch_size < 4:
        return [
            make_finding(
                "batchnorm-small-batch",
                {"batch_size": batch_size, "batchnorm_layers": len(bns)},
            )
        ]
    return []


def _init_scale(layer) -> float | None:
    """``std(kernel) * sqrt(fan_in)`` (He init gives ~1.41, Glorot ~1); None: not measured."""
    kernel = getattr(layer, "kernel", None)
    if kernel is None or len(kernel.shape) < 2 or isinstance(layer, keras.layers.Conv2DTranspose):
        return None
    w = np.asarray(keras.ops.convert_to_numpy(kernel), dtype="float64")
    fan_in = int(np.prod(w.shape[:-1]))
    if fan_in < 2 or w.shape[-1] < 2:
        return None
    return float(w.std()) * math.sqrt(fan_in)


def _bad_init_scale(scale: float | None) -> bool:
    return scale is not None and (scale < 0.05 or scale > 6)


STATISTICS = ("moving_mean", "moving_variance")
"""Non-trainable variables that training updates anyway (BatchNorm's running statistics)."""
FROZEN_SHARE = 0.1
"""Share of the trainable-in-principle weights that must be frozen for ``frozen-untrained``."""


def _at_initial_values(layer) -> bool | None:
    """Whether a layer's biases (and BatchNorm's beta and gamma) are exactly where Keras starts
    them (0, and gamma 1); None: the layer has none of them. Training moves every one of them
    away, and a pretrained network never has them all at exactly 0 and 1.
    """
    checked = []
    for v in layer.weights:
        name = v.path.rsplit("/", 1)[-1]
        start = {"bias": 0.0, "beta": 0.0, "gamma": 1.0}.get(name)
        if start is not None:
            checked.append(bool(np.all(keras.ops.convert_to_numpy(v) == start)))
    return all(checked) if checked else None


def check_frozen(model) -> list[Finding]:
    """``frozen-untrained``: frozen layers (``trainable=False``) whose weights were never trained.

    "Freeze the encoder" is right for pretrained weights and wrong for a network built from
    scratch: its frozen layers stay random features. Fires when the frozen layers hold at least a
    tenth of the weights training would otherwise update and every frozen layer that has biases
    or BatchNorm parameters still has them at their initial values; frozen pretrained layers (any
    bias or gamma moved) stay silent.
    """
    trainable_size = frozen_size = 0
    frozen: list[tuple[str, bool | None]] = []
    for layer in all_layers(model):
        if hasattr(layer, "layers") or not layer.weights:  # nested models: their layers count
            continue
        size = sum(
            int(np.prod(v.shape))
            for v in layer.weights
            if v.path.rsplit("/", 1)[-1] not in STATISTICS
        )
        if layer.trainable:
            trainable_size += size
        elif size:
            frozen_size += size
            frozen.append((layer.name, _at_initial_values(layer)))
    share = frozen_size / max(frozen_size + trainable_size, 1)
    judged = [initial for _, initial in frozen if initial is not None]
    if share < FROZEN_SHARE or not judged or not all(judged):
        return []
    return [
        make_finding(
            "frozen-untrained",
            {
                "frozen_layers": len(frozen),
                "frozen_share": round(share, 3),
                "frozen_weights": frozen_size,
                "layers_at_initial_values": len(judged),
                "first_frozen": [n for n, _ in frozen][:8],
            },
        )
    ]


def check_layers(model, batch_size: int | None = None) -> list[Finding]:
    """Dropout, BatchNorm with small batches, weight decay / L2 and weight initialisation scale."""
    found = []
    layers = all_layers(model)
    high = [
        (layer.name, float(layer.rate))
        for layer in layers
        if isinstance(layer, keras.layers.Dropout | keras.layers.SpatialDropout2D)
        and float(layer.rate) >= 0.5
    ]
    if high:
        found.append(
            make_finding(
                "dropout-high",
                {"layers": [n for n, _ in high], "rates": [r for _, r in high]},
            )
        )
    found += check_batchnorm_batch(model, batch_size)
    wd = getattr(getattr(model, "optimizer", None), "weight_decay", None)
    l2 = [
        (layer.name, float(factor))
        for layer in layers
        if (factor := getattr(getattr(layer, "kernel_regularizer", None), "l2", None)) is not None
        and float(factor) > 1e-3
    ]
    if (wd is not None and float(wd) >= 0.05) or l2:
        found.append(
            make_finding(
                "weight-decay-high",
                {
                    "optimizer_weight_decay": None if wd is None else float(wd),
                    "l2_layers": [n for n, _ in l2][:10],
                    "l2": sorted({f for _, f in l2}),
                },
            )
        )
    bad = [(layer.name, scale) for layer in layers if _bad_init_scale(scale := _init_scale(layer))]
    if bad:
        found.append(
            make_finding(
                "bad-init",
                {
                    "layers": [n for n, _ in bad][:10],
                    "std_times_sqrt_fan_in": [s for _, s in bad][:10],
                    "expected": "about 1 (Glorot) to 1.4 (He)",
                },
            )
        )
    return found


def check_model(
    model,
    callbacks: Sequence[Any] = (),
    *,
    num_classes: int | None = None,
    batch_size: int | None = None,
    probe_loss_fn: bool = True,
) -> list[Finding]:
    """All static model checks.

    Args:
        model: a Keras model, compiled (the loss and optimizer are checked) or not.
        callbacks: the callbacks passed to ``fit`` (for ``monitor-mode``).
        num_classes: classes found in the masks (for ``output-classes-mismatch``).
        batch_size: training batch size when known (for ``batchnorm-small-batch``).
        probe_loss_fn: run the black-box loss probe.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1, activation="softmax")])
        >>> [f.id for f in check_model(m)]
        ['softmax-single-channel']
    """
    found = check_output(model, num_classes) + check_layers(model, batch_size)
    found += check_frozen(model)
    found += check_inference(model)
    found += check_callbacks(model, callbacks)
    if probe_loss_fn and getattr(model, "loss", None) is not None:
        found += check_loss(model)
    return found
