"""``saved-model-not-best``: the model file against the best epoch of its own history.

The models are one 1x1 convolution with fixed weights that thresholds the disc images of
``write_disc_dataset`` (background about 60, discs about 180 of 255): the right sign gives a
Dice near 1, the wrong sign the inverse, so the measured score is known without training.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segdoctor.doctor import diagnose
from segdoctor.doctor.saved_model import saved_model_findings
from tests.helpers import write_disc_dataset

RISING = {"loss": [0.9, 0.5, 0.3, 0.3], "val_dice": [0.02, 0.55, 0.91, 0.88]}


def _threshold_model(weight: float, bias: float) -> keras.Model:
    inputs = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.full((1, 1, 1, 1), weight, "float32"), np.full((1,), bias, "float32")])
    return model


GOOD = (50.0, -23.5)  # inputs in [0, 1]: the discs (0.71) above 0.47
BAD = (-50.0, 23.5)  # the same threshold, the wrong sign: predicts the background


@pytest.fixture(scope="module")
def split_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    write_disc_dataset(root / "train", n=6, size=32, seed=1)
    write_disc_dataset(root / "val", n=6, size=32, seed=2)
    return root


def test_fires_when_the_file_holds_an_early_epoch(split_data):
    found = saved_model_findings(_threshold_model(*BAD), split_data, RISING)
    assert [f.id for f in found] == ["saved-model-not-best"]
    f = found[0]
    assert f.severity == "error"
    assert f.evidence["best_epoch"] == 3 and f.evidence["nearest_epoch"] == 1
    assert f.evidence["scored_on"] == "the validation split"
    assert f.evidence["measured"] < 0.4
    assert "mode='max'" in f.fix


def test_silent_when_the_file_is_as_good_as_its_best_epoch(split_data):
    assert saved_model_findings(_threshold_model(*GOOD), split_data, RISING) == []


def test_silent_for_a_model_trained_on_0_255_inputs(split_data):
    """The user's pipeline fed 0..255: the [0, 255] scaling finds the model's real score."""
    weight, bias = GOOD
    assert saved_model_findings(_threshold_model(weight / 255.0, bias), split_data, RISING) == []


def test_last_epoch_is_a_warning(split_data):
    bad = _threshold_model(*BAD)
    measured = saved_model_findings(bad, split_data, RISING)[0].evidence["measured"]
    falling = {"val_dice": [0.4, 0.92, 0.75, measured + 0.01]}  # the last epoch is the file
    found = saved_model_findings(bad, split_data, falling)
    assert [(f.id, f.severity) for f in found] == [("saved-model-not-best", "warning")]
    assert "end of training" in found[0].fix


@pytest.mark.parametrize(
    "history",
    [
        {"val_dice": [0.02, 0.91]},  # too few epochs to have a best one
        {"val_dice": [0.02, 0.1, 0.2, 0.25]},  # no epoch worth keeping
        {"val_loss": [0.9, 0.5, 0.3, 0.3]},  # no Dice-like validation metric
    ],
)
def test_silent_without_a_best_epoch_to_compare(split_data, history):
    assert saved_model_findings(_threshold_model(*BAD), split_data, history) == []


def test_iou_history_is_compared_as_iou(split_data):
    """A model at Dice ~0.97 is IoU ~0.94: compared as Dice with an IoU of 0.95 it is fine, and
    a broken one still fires."""
    iou = {"val_io_u": [0.1, 0.5, 0.95, 0.9]}
    assert saved_model_findings(_threshold_model(*GOOD), split_data, iou) == []
    assert (
        saved_model_findings(_threshold_model(*BAD), split_data, iou)[0].evidence["metric"]
        == "val_io_u"
    )


def test_diagnose_runs_it_with_data_model_and_history(split_data, tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text(
        "epoch,loss,val_dice\n"
        + "".join(
            f"{i},{loss},{d}\n"
            for i, (loss, d) in enumerate(zip(RISING["loss"], RISING["val_dice"], strict=True))
        )
    )
    bad = diagnose(data=split_data, model=_threshold_model(*BAD), history=csv, plots=False)
    good = diagnose(data=split_data, model=_threshold_model(*GOOD), history=csv, plots=False)
    assert "saved-model-not-best" in bad.ids
    assert "saved-model-not-best" not in good.ids


def test_multiclass_head_is_scored_with_the_background_and_without_the_ignored_label(tmp_path):
    """A two-channel softmax head that predicts background everywhere: Dice 0 on the foreground,
    about 0.48 averaged with the background. A history whose metric averages the background in
    (best 0.5) is matched; before, the foreground-only score (0) was called 'not the best'
    (fourth blind test, F5). The void label 2 that the loss ignores is left out of the score."""
    from PIL import Image

    from segdoctor.losses import DiceCELoss

    root = write_disc_dataset(tmp_path / "data", n=6, size=32, seed=3)
    for path in (root / "masks").iterdir():  # a void border, label 2
        mask = np.asarray(Image.open(path)).copy()
        mask[:2] = 2
        Image.fromarray(mask).save(path)
    inputs = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(2, 1, activation="softmax")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.zeros((1, 1, 1, 2), "float32"), np.array([5.0, -5.0], "float32")])
    model.compile("adam", DiceCELoss(mode="multiclass", ignore_index=2))
    history = {"val_dice": [0.3, 0.45, 0.5, 0.49]}
    assert saved_model_findings(model, root, history) == []
    assert saved_model_findings(model, root, {"val_dice": [0.3, 0.85, 0.9, 0.88]})[0].id == (
        "saved-model-not-best"
    )


@keras.saving.register_keras_serializable(package="test_saved_model")
class _OnlySixteen(keras.layers.Layer):
    """Refuses every input but 16 x 16 (as a model whose pooling needs a larger multiple)."""

    def call(self, x):
        if x.shape[1] is not None and x.shape[1] != 16:
            raise ValueError("this model takes 16 x 16 inputs only")
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


def test_a_model_this_reading_cannot_run_draws_nothing(split_data):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(
        inputs, _OnlySixteen()(keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    )
    assert saved_model_findings(model, split_data, RISING) == []
