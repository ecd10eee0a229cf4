"""U-Net (Ronneberger et al. 2015) with the options that matter for Dice training.

Design choices, each an option:
- Two 3x3 convolutions per level, He-normal initialization (ReLU), no bias before normalization.
- Normalization: "batch", "group" (8 groups), "instance" (one group per channel) or "none". Batch
  norm is the CPU-fast default, with momentum 0.9 so that its inference statistics catch up within
  tens of steps (Keras' 0.99 takes hundreds); group or instance norm is the right choice for
  batches of 1-2.
- Optional residual blocks (a 1x1 projection on the skip path) and dropout at the bottleneck.
- Transposed-convolution upsampling; the output head follows from ``mode`` and ``num_classes``:
  binary -> 1 channel, multiclass -> ``num_classes`` channels, multilabel -> ``num_classes``
  channels; ``output="probabilities"`` adds sigmoid/softmax, ``"logits"`` leaves them to the loss
  (pair it with ``from_logits=True``). The head always computes in float32 so that mixed precision
  never produces float16 probabilities.
- Optional deep supervision: auxiliary heads on the decoder levels, upsampled to full size, returned
  after the main output.

The spatial input size must be a multiple of ``2 ** depth`` (the stride); ``None`` leaves it free.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from segdoctor.errors import ConfigError, check_choice
from segdoctor.losses import MODES  # one owner: the losses define what a mode means
from segdoctor.models import register_model

NORMS = ("batch", "group", "instance", "none")
OUTPUTS = ("probabilities", "logits")


def _normalization(kind: str, filters: int, name: str) -> layers.Layer | None:
    if kind == "batch":
        # momentum 0.9 (PyTorch's default) instead of Keras' 0.99: with 0.99 the moving statistics
        # need ~500 steps to forget their initial values, so a short run validates with wrong
        # statistics (validation Dice near 0 while training Dice rises).
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
    if kind == "group":
        return layers.GroupNormalization(groups=min(8, filters), name=name)
    if kind == "instance":
        return layers.GroupNormalization(groups=filters, name=name)
    return None


def _conv_block(x, filters: int, norm: str, residual: bool, name: str):
    """Two 3x3 conv -> norm -> ReLU; with ``residual`` the block input is added back."""
    shortcut = x
    for i in (1, 2):
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=norm == "none",
            kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)
        norm_layer = _normalization(norm, filters, f"{name}_norm{i}")
        if norm_layer is not None:
            x = norm_layer(x)
        if i == 2 and residual:
            if shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(
                    filters, 1, use_bias=False, kernel_initializer="he_normal", name=f"{name}_proj"
                )(shortcut)
            x = layers.Add(name=f"{name}_add")([x, shortcut])
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def _head(x, channels: int, mode: str, output: str, name: str):
    x = layers.Conv2D(channels, 1, kernel_initializer="glorot_uniform", name=f"{name}_conv")(x)
    if output == "logits":
        return layers.Activation("linear", dtype="float32", name=name)(x)
    activation = "softmax" if mode == "multiclass" else "sigmoid"
    return layers.Activation(activation, dtype="float32", name=name)(x)


@register_model("unet")
def build_unet(
    input_shape: tuple[int | None, int | None, int] = (None, None, 1),
    num_classes: int = 1,
    mode: str = "binary",
    depth: int = 4,
    base_filters: int = 32,
    norm: str = "batch",
    dropout: float = 0.0,
    residual: bool = False,
    deep_supervision: bool = False,
    output: str = "probabilities",
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net.

    Args:
        input_shape: (H, W, C); H and W multiples of ``2 ** depth`` or None.
        num_classes: classes including background for "multiclass"; labels for "multilabel";
            ignored (1 channel) for "binary".
        mode: "binary", "multiclass" or "multilabel".
        depth: number of downsampling steps (stride ``2 ** depth``).
        base_filters: filters at full resolution, doubled at every level.
        norm: "batch", "group", "instance" or "none".
        dropout: dropout rate at the bottleneck (0 disables it).
        residual: residual convolution blocks.
        deep_supervision: also return auxiliary outputs from the decoder levels.
        output: "probabilities" (sigmoid/softmax) or "logits".
        name: model name.

    Returns:
        A functional ``keras.Model`` mapping (B, H, W, C) to (B, H, W, K).

    Example:
        >>> model = build_unet((64, 64, 3), num_classes=4, mode="multiclass", depth=2, base_filters=4)
        >>> model.output_shape
        (None, 64, 64, 4)
    """
    check_choice("mode", mode, MODES)
    check_choice("norm", norm, NORMS)
    check_choice("output", output, OUTPUTS)
    if not isinstance(depth, int) or not 1 <= depth <= 7:
        raise ConfigError(
            "U-Net depth out of range",
            expected="an integer from 1 to 7",
            received=repr(depth),
            fix="use depth 3-5 for 128-512 pixel inputs.",
        )
    if not isinstance(base_filters, int) or base_filters < 1:
        raise ConfigError(
            "base_filters must be a positive integer",
            received=repr(base_filters),
            fix="use 16, 32 or 64.",
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(
            "dropout out of range",
            expected="0 <= dropout < 1",
            received=repr(dropout),
            fix="use 0.0-0.3.",
        )
    if len(input_shape) != 3 or (input_shape[-1] is not None and input_shape[-1] < 1):
        raise ConfigError(
            "input_shape must be (H, W, C)",
            expected="a positive channel count C (1 gray, 3 RGB, or one per modality)",
            received=repr(input_shape),
            fix="pass e.g. (256, 256, 1).",
        )
    stride = 2**depth
    for size in input_shape[:2]:
        if size is not None and size % stride:
            raise ConfigError(
                f"Input size {size} is not a multiple of the U-Net stride {stride} (depth {depth})",
                expected=f"H and W divisible by {stride}",
                received=repr(input_shape),
                fix=f"pad or crop to a multiple of {stride}, or use a smaller depth.",
            )
    if mode == "binary":
        channels = 1
    else:
        if num_classes < 2:
            raise ConfigError(
                f"mode={mode!r} needs num_classes >= 2",
                received=f"num_classes={num_classes}",
                fix='use mode="binary" for a single foreground class (one sigmoid channel).',
            )
        channels = num_classes

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = _conv_block(x, base_filters * 2**level, norm, residual, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, base_filters * 2**depth, norm, residual, "bottleneck")
    if dropout > 0:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    aux_outputs = []
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, kernel_initializer="he_normal", name=f"up{level}"
        )(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, filters, norm, residual, f"dec{level}")
        if deep_supervision and 0 < level < depth - 1:
            aux = layers.UpSampling2D(2**level, interpolation="bilinear", name=f"aux{level}_up")(x)
            aux_outputs.append(_head(aux, channels, mode, output, f"aux{level}"))
    main = _head(x, channels, mode, output, "mask")
    outputs: Any = [main, *aux_outputs] if deep_supervision else main
    return keras.Model(inputs, outputs, name=name)


@register_model("resunet")
def build_resunet(**kwargs: Any) -> keras.Model:
    """U-Net with residual blocks (same arguments as :func:`build_unet`)."""
    kwargs.setdefault("name", "resunet")
    return build_unet(residual=True, **kwargs)
