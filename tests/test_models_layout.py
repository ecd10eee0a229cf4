"""The U-Net's layer names, order and parameter count are a file format: .keras checkpoints
saved by earlier versions load by them. A refactor of build_unet must keep them exactly."""

from __future__ import annotations

import pytest

from segdoctor.models.unet import build_unet


def _block(name: str, residual: bool) -> list[str]:
    """Layer names of one conv block, in the model's layer order."""
    shortcut = [f"{name}_proj", f"{name}_add"] if residual else []
    return [f"{name}_conv1", f"{name}_norm1", f"{name}_relu1", f"{name}_conv2", f"{name}_norm2",
            *shortcut, f"{name}_relu2"]  # fmt: skip


def test_plain_unet_layer_names_order_and_parameters_are_stable():
    model = build_unet((32, 32, 1), depth=2, base_filters=2)
    expected = [
        "image",
        *_block("enc0", False), "pool0", *_block("enc1", False), "pool1",
        *_block("bottleneck", False),
        "up1", "skip1", *_block("dec1", False), "up0", "skip0", *_block("dec0", False),
        "mask_conv", "mask",
    ]  # fmt: skip
    assert [layer.name for layer in model.layers] == expected
    assert model.count_params() == 2003


def test_residual_deep_supervision_unet_layer_names_order_and_parameters_are_stable():
    model = build_unet(
        (32, 32, 1), depth=3, base_filters=2, residual=True, dropout=0.1, deep_supervision=True
    )
    expected = [
        "image",
        *_block("enc0", True), "pool0", *_block("enc1", True), "pool1",
        *_block("enc2", True), "pool2",
        *_block("bottleneck", True), "bottleneck_dropout",
        "up2", "skip2", *_block("dec2", True), "up1", "skip1", *_block("dec1", True),
        "up0", "skip0", *_block("dec0", True),
        "aux1_up", "mask_conv", "aux1_conv", "mask", "aux1",
    ]  # fmt: skip
    assert [layer.name for layer in model.layers] == expected
    assert model.count_params() == 8242
    assert [tuple(o.shape) for o in model.outputs] == [(None, 32, 32, 1)] * 2  # mask, aux1


@pytest.mark.parametrize(
    ("kwargs", "params"),
    [
        ({}, 7768353),
        (
            {
                "input_shape": (None, None, 3),
                "num_classes": 5,
                "mode": "multiclass",
                "depth": 3,
                "base_filters": 8,
            },
            121917,
        ),
        ({"depth": 5, "base_filters": 4, "norm": "group"}, 487397),
    ],
)
def test_parameter_counts_of_common_configurations_are_stable(kwargs, params):
    assert build_unet(**kwargs).count_params() == params
