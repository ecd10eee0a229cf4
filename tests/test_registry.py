"""The Registry shape shared by the loss and the model registries (names -> factories)."""

from __future__ import annotations

import pytest

from segdoctor import models
from segdoctor.errors import ConfigError
from segdoctor.losses import LogCoshDiceLoss, create_loss, list_losses
from segdoctor.losses.registry import LOSSES
from segdoctor.models import create_model, list_models
from segdoctor.registry import Registry


def make_registry(sort: bool = False) -> Registry:
    shapes = Registry("shape", sort=sort)
    shapes.register("square")(lambda side=1: side * side)
    shapes.register("circle")(lambda radius=1: 3 * radius * radius)
    return shapes


def test_a_registry_builds_by_name_with_keywords():
    shapes = make_registry()
    assert shapes.create("square", side=3) == 9
    assert shapes.get("circle")(radius=2) == 12
    assert "square" in shapes and "triangle" not in shapes
    assert len(shapes) == 2


def test_names_keep_registration_order_unless_sorted():
    assert make_registry().names() == ["square", "circle"]
    assert make_registry(sort=True).names() == ["circle", "square"]
    assert list(make_registry(sort=True)) == ["circle", "square"]


def test_an_unknown_name_lists_the_valid_names_and_the_closest_one():
    with pytest.raises(ConfigError) as caught:
        make_registry().create("sqare")
    error = caught.value
    assert error.what == "Unknown shape 'sqare'"
    assert error.expected == "one of square, circle"
    assert 'Did you mean "square"' in error.fix
    assert "square, circle" in str(error)


def test_a_name_far_from_every_valid_one_gets_no_suggestion():
    with pytest.raises(ConfigError) as caught:
        make_registry().get("hexagon")
    assert "Did you mean" not in caught.value.fix


def test_registering_a_name_twice_is_refused_and_keeps_the_first():
    shapes = make_registry()
    with pytest.raises(ConfigError, match="A shape named 'square' is already registered"):
        shapes.register("square")(lambda side=1: 0)
    assert shapes.create("square", side=2) == 4


def test_the_losses_and_the_models_share_the_shape():
    assert isinstance(LOSSES, Registry)
    assert isinstance(models.MODELS, Registry)
    assert list_losses() == LOSSES.names()
    assert list_models() == models.MODELS.names() == sorted(list_models())


def test_log_cosh_dice_is_a_registered_loss():
    assert list_losses()[0] == "dice_ce"  # the recipe's default stays first
    assert "log_cosh_dice" in list_losses()
    loss = create_loss("log_cosh_dice", mode="binary", from_logits=True)
    assert isinstance(loss, LogCoshDiceLoss)
    assert loss.from_logits is True


def test_an_unknown_loss_lists_every_loss_name():
    with pytest.raises(ConfigError) as caught:
        create_loss("log_cosh")
    assert caught.value.expected == "one of " + ", ".join(list_losses())
    assert 'Did you mean "log_cosh_dice"' in caught.value.fix


def test_an_unknown_model_lists_every_model_name():
    with pytest.raises(ConfigError) as caught:
        create_model("resnet")
    assert caught.value.expected == "one of resunet, unet"
    assert 'Did you mean "resunet"' in caught.value.fix
