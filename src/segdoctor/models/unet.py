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
from segdoctor.models.layers import BatchNormalization, UpSampling2D

NORMS = ("batch", "group", "instance", "none")
OUTPUTS = ("probabilities", "logits")


def _normalization(kind: str, filters: int, name: str) -> layers.Layer | None:
    if kind == "batch":
        # momentum 0.9 (PyTorch's default) instead of Keras' 0.99: with 0.99 the moving statistics
        # need ~500 steps to forget their initial values, so a short run validates with wrong
        # statistics (validation Dice near 0 while training Dice rises). Keras' layer, computed by
        # TensorFlow's fused kernel on that backend (segdoctor.models.layers says why).
        return BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
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
    _check_architecture(input_shape, depth, base_filters, dropout)
    channels = _output_channels(mode, num_classes)

    inputs = keras.Input(shape=input_shape, name="image")  # (B, H, W, C)
    x, skips = _encoder(inputs, depth, base_filters, norm, residual)
    x = _conv_block(x, base_filters * 2**depth, norm, residual, "bottleneck")
    if dropout > 0:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    heads = {"channels": channels, "mode": mode, "output": output}
    main, aux_outputs = _decoder(x, skips, base_filters, norm, residual, deep_supervision, heads)
    outputs: Any = [main, *aux_outputs] if deep_supervision else main
    return keras.Model(inputs, outputs, name=name)


def _check_architecture(
    input_shape: tuple[int | None, int | None, int], depth: int, base_filters: int, dropout: float
) -> None:
    """Raise ConfigError when depth, width, dropout or input shape cannot build a U-Net.

    Args:
        input_shape: (H, W, C); H and W must be multiples of ``2 ** depth`` or None.
        depth: number of downsampling steps, 1 to 7.
        base_filters: filters at full resolution, a positive integer.
        dropout: bottleneck dropout rate, ``0 <= dropout < 1``.

    Example:
        >>> _check_architecture((64, 64, 1), depth=4, base_filters=8, dropout=0.0)  # fine
        >>> try:
        ...     _check_architecture((60, 64, 1), depth=4, base_filters=8, dropout=0.0)
        ... except ConfigError as err:
        ...     print(err.what)
        Input size 60 is not a multiple of the U-Net stride 16 (depth 4)
    """
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


def _output_channels(mode: str, num_classes: int) -> int:
    """Channels of the output head: 1 for "binary", else ``num_classes`` (at least 2).

    Example:
        >>> _output_channels("binary", 5), _output_channels("multiclass", 4)
        (1, 4)
    """
    if mode == "binary":
        return 1
    if num_classes < 2:
        raise ConfigError(
            f"mode={mode!r} needs num_classes >= 2",
            received=f"num_classes={num_classes}",
            fix='use mode="binary" for a single foreground class (one sigmoid channel).',
        )
    return num_classes


def _encoder(x, depth: int, base_filters: int, norm: str, residual: bool):
    """The contracting path: ``depth`` conv blocks, each followed by 2x2 max pooling.

    Layers are named ``enc{level}_*`` and ``pool{level}``, created level by level.

    Args:
        x: the input tensor, (B, H, W, C).
        depth: number of levels (poolings).
        base_filters: filters of level 0, doubled at every level.
        norm: normalization kind (see :data:`NORMS`).
        residual: residual conv blocks.

    Returns:
        ``(x, skips)``: the pooled tensor (B, H / 2**depth, W / 2**depth, F * 2**(depth-1)) and
        the block outputs before pooling, level 0 first: skip ``l`` is
        (B, H / 2**l, W / 2**l, F * 2**l).

    Example:
        >>> x, skips = _encoder(keras.Input((32, 32, 1)), 2, 4, "batch", False)
        >>> x.shape, [s.shape for s in skips]
        ((None, 8, 8, 8), [(None, 32, 32, 4), (None, 16, 16, 8)])
    """
    skips = []
    for level in range(depth):
        x = _conv_block(x, base_filters * 2**level, norm, residual, f"enc{level}")
        skips.append(x)  # (B, H / 2**level, W / 2**level, F * 2**level)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    return x, skips


def _decoder(
    x,
    skips: list,
    base_filters: int,
    norm: str,
    residual: bool,
    deep_supervision: bool,
    heads: dict[str, Any],
):
    """The expanding path: upsample, concatenate the skip, conv block; heads on top.

    Layers are named ``up{level}``, ``skip{level}``, ``dec{level}_*`` (deepest level first), the
    auxiliary heads ``aux{level}_up`` / ``aux{level}`` on levels ``1..depth-2`` and the main head
    ``mask``, created in that order.

    Args:
        x: the bottleneck output, (B, H / 2**depth, W / 2**depth, F * 2**depth).
        skips: the encoder's skip tensors, level 0 first.
        base_filters: filters of level 0 (``F``).
        norm: normalization kind (see :data:`NORMS`).
        residual: residual conv blocks.
        deep_supervision: add the auxiliary heads.
        heads: ``channels``, ``mode`` and ``output`` of every head (see :func:`_head`).

    Returns:
        ``(main, aux_outputs)``: the main output (B, H, W, K) and the auxiliary outputs, each
        upsampled to (B, H, W, K), deepest first (empty without deep supervision).

    Example:
        >>> x, skips = _encoder(keras.Input((32, 32, 1)), 2, 4, "batch", False)
        >>> heads = {"channels": 1, "mode": "binary", "output": "logits"}
        >>> main, aux = _decoder(x, skips, 4, "batch", False, False, heads)
        >>> main.shape, aux
        ((None, 32, 32, 1), [])
    """
    depth = len(skips)
    aux_outputs = []
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, kernel_initializer="he_normal", name=f"up{level}"
        )(x)  # (B, H / 2**level, W / 2**level, F * 2**level)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])  # channels doubled
        x = _conv_block(x, filters, norm, residual, f"dec{level}")
        if deep_supervision and 0 < level < depth - 1:
            aux = UpSampling2D(2**level, interpolation="bilinear", name=f"aux{level}_up")(x)
            aux_outputs.append(_head(aux, name=f"aux{level}", **heads))  # (B, H, W, K)
    return _head(x, name="mask", **heads), aux_outputs


@register_model("resunet")
def build_resunet(**kwargs: Any) -> keras.Model:
    """U-Net with residual blocks (same arguments as :func:`build_unet`)."""
    kwargs.setdefault("name", "resunet")
    return build_unet(residual=True, **kwargs)
