"""One owner per vocabulary: every choice the configuration accepts is accepted where it is used.

The configuration imports its choices from their owners (mask kinds from ``data.masks``, loss
names from the loss registry, norms from the U-Net); these tests feed each choice to the layer that
consumes it, so a spelling only the configuration knows (``scale255`` for ``scale-255``) fails
here instead of after the masks were read.
"""

from __future__ import annotations

import types
import warnings

import keras
import numpy as np
import pytest

from segdoctor import losses, metrics
from segdoctor.data.io import ON_ERROR
from segdoctor.data.masks import KINDS, decide_mask_policy, inspect_masks
from segdoctor.errors import ConfigError, DataError, check_choice
from segdoctor.models import create_model, unet
from segdoctor.train.config import CHOICES, dump_yaml, resolve_config
from segdoctor.train.recipe import make_loss


def _binary_report():
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 4:9] = 1
    return inspect_masks([mask, mask.T])


@pytest.mark.parametrize("kind", [c for c in CHOICES[("data", "mask_policy")] if c != "auto"])
def test_every_mask_policy_choice_is_a_kind_the_data_layer_knows(kind):
    # The data layer may still find that the masks do not fit the kind (DataError); it must not
    # refuse the word itself (ConfigError), as it did for the configuration's old "scale255".
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "fractional" rounds with a warning
        try:
            policy = decide_mask_policy(
                _binary_report(), kind=kind, round_fractional=kind == "fractional"
            )
        except DataError:
            return
    assert policy.kind == kind


def test_the_configuration_offers_every_mask_kind():
    assert set(CHOICES[("data", "mask_policy")]) == {"auto", *KINDS}


def test_a_misspelt_mask_kind_is_refused_by_the_configuration_with_the_right_word():
    with pytest.raises(ConfigError, match='Did you mean "scale-255"'):
        resolve_config(overrides={"data.path": "d", "data.mask_policy": "scale255"})


@pytest.mark.parametrize("name", CHOICES[("train", "loss")])
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_every_loss_choice_builds_through_the_recipe(name, mode):
    config = resolve_config(overrides={"data.path": "d", "train.loss": name})
    prepared = types.SimpleNamespace(mode=mode, ignore_index=None)
    loss = make_loss(config, prepared)
    assert isinstance(loss, keras.losses.Loss)
    assert isinstance(loss, type(losses.create_loss(name)))
    channels = 1 if mode == "binary" else 3
    y_true = np.zeros((2, 8, 8, 1), "int32")
    y_pred = np.full((2, 8, 8, channels), 1 / (channels + 1), "float32")
    assert np.isfinite(float(loss(y_true, y_pred)))


def test_the_loss_registry_is_what_the_configuration_offers():
    assert CHOICES[("train", "loss")] == tuple(losses.list_losses())
    with pytest.raises(ConfigError, match='Did you mean "dice_ce"'):
        losses.create_loss("dice-ce")


@pytest.mark.parametrize("norm", CHOICES[("model", "norm")])
def test_every_norm_choice_builds_a_unet(norm):
    model = create_model("unet", input_shape=(16, 16, 1), depth=2, base_filters=4, norm=norm)
    assert model.output_shape == (None, 16, 16, 1)


def test_modes_have_one_definition():
    assert unet.MODES is losses.MODES
    assert metrics.MODES is losses.MODES


@pytest.mark.parametrize("choice", CHOICES[("data", "on_error")])
def test_every_on_error_choice_is_accepted_by_the_data_layer(choice):
    assert CHOICES[("data", "on_error")] == ON_ERROR
    config = resolve_config(overrides={"data.path": "d", "data.on_error": choice})
    assert config.data.on_error == choice
    assert config.data.skip_bad_files == (choice == "skip")
    assert check_choice("on_error", choice, ON_ERROR) == choice  # what prepare() checks


@pytest.mark.parametrize(("old", "new"), [("true", "skip"), ("false", "raise")])
def test_the_old_skip_bad_files_key_still_works_with_a_deprecation_warning(old, new, tmp_path):
    with pytest.warns(FutureWarning, match=rf"data\.skip_bad_files is deprecated.*on_error={new}"):
        config = resolve_config(overrides={"data.path": "d", "data.skip_bad_files": old})
    assert config.data.on_error == new
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(f"data:\n  path: d\n  skip_bad_files: {old}\n")
    with pytest.warns(FutureWarning, match="data.on_error"):
        assert resolve_config(yaml_file).data.on_error == new
    assert "skip_bad_files" not in dump_yaml(config)
