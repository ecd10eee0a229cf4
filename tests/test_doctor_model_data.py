"""Model vs data (issue 15, part 4): output channels vs mask classes, activation, input channels.

Each comparison fires and stays silent as a pure function, and the issue's miss is reproduced end
to end: a plain Keras ``model.fit`` on real nuclei crops whose softmax head has more channels than
the masks have classes, with ``DoctorCallback`` attached.
"""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest

from segdoctor.data.io import read_image, read_mask
from segdoctor.doctor import diagnose
from segdoctor.doctor.batch_checks import check_batch
from segdoctor.doctor.callback import DoctorCallback
from segdoctor.doctor.model_data import (
    Targets,
    compare_activation,
    compare_input_channels,
    compare_output_classes,
    image_colour,
    targets_from_batch,
)
from segdoctor.sample_data import sample_path

MODEL_DATA_IDS = {
    "output-classes-mismatch",
    "output-channels-extra",
    "output-activation-unsuited",
    "input-channels-mismatch",
}


def ids(found):
    return {f.id for f in found}


def nuclei_crops(n=16, size=32, gray_only=True):
    """``x (n, size, size, 1)`` in [0, 1] and binary ``y (n, size, size)`` from the bundled sample.

    Each crop is centred on the foreground of its (real, instance-labelled) mask.
    """
    root = sample_path()
    xs, ys = [], []
    for image_path in sorted((root / "images").iterdir()):
        image = read_image(image_path)  # (H, W, C)
        if gray_only and image.shape[-1] != 1:
            continue
        mask = read_mask(root / "masks" / image_path.name) > 0  # (H, W) instance -> foreground
        rows, cols = np.nonzero(mask)
        top = int(np.clip(rows.mean() - size / 2, 0, mask.shape[0] - size))
        left = int(np.clip(cols.mean() - size / 2, 0, mask.shape[1] - size))
        xs.append(image[top : top + size, left : left + size, :1] / 255.0)
        ys.append(mask[top : top + size, left : left + size])
        if len(xs) == n:
            break
    return np.stack(xs).astype("float32"), np.stack(ys).astype("int32")


def softmax_net(channels, size=32, input_channels=1):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, input_channels))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(channels, 1, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    return model


# -- pure comparisons ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channels", "classes", "expected"),
    [
        (1, 2, set()),  # sigmoid on binary masks
        (2, 2, set()),  # 2-channel softmax on binary masks: fine
        (3, 3, set()),
        (3, 2, {"output-channels-extra"}),  # the issue's miss
        (5, 3, {"output-channels-extra"}),
        (1, 3, {"output-classes-mismatch"}),  # 1-channel sigmoid on multi-class masks
        (3, 5, {"output-classes-mismatch"}),  # fewer channels than classes
    ],
)
def test_output_channels_against_classes(channels, classes, expected):
    masks = Targets(max_label=classes - 1, images=30, source="masks", complete=True)
    act = "sigmoid" if channels == 1 else "softmax"
    assert ids(compare_output_classes(channels, masks, activation=act)) == expected


def test_extra_channels_wait_for_all_the_evidence_but_missing_ones_do_not():
    seen = Targets(max_label=1, images=8, source="training batch")
    assert compare_output_classes(3, seen, activation="softmax", final=False) == []
    assert ids(compare_output_classes(3, seen, activation="softmax", final=True)) == {
        "output-channels-extra"
    }
    labels = Targets(max_label=4, images=8, source="training batch")
    assert ids(compare_output_classes(3, labels, activation="softmax", final=False)) == {
        "output-classes-mismatch"
    }


def test_targets_from_batches_sparse_one_hot_and_not_classes():
    y = np.zeros((2, 8, 8, 1))
    y[0, :2] = 1
    assert targets_from_batch(y).num_classes == 2
    one_hot = np.eye(4)[y[..., 0].astype(int)]  # (2, 8, 8, 4), only channels 0 and 1 set
    t = targets_from_batch(one_hot)
    assert (t.one_hot_depth, t.num_classes) == (4, 2)
    assert ids(compare_output_classes(4, t, activation="softmax")) == {"output-channels-extra"}
    assert ids(compare_output_classes(3, t, activation="softmax")) == {"output-classes-mismatch"}
    assert targets_from_batch(y * 255) is None  # mask-scale-255 speaks for it
    assert targets_from_batch(y * 0.5) is None  # mask-fractional speaks for it
    merged = targets_from_batch(y).merged(targets_from_batch(y * 2))
    assert (merged.num_classes, merged.images) == (3, 4)


@pytest.mark.parametrize("act", ["relu", "tanh", "elu", "softplus"])
def test_output_activation_unsuited_fires(act):
    assert ids(compare_activation(act, 1, True)) == {"output-activation-unsuited"}
    assert ids(compare_activation(act, 1, False)) == {"output-activation-unsuited"}


@pytest.mark.parametrize("act", ["sigmoid", "softmax", "linear"])
def test_output_activation_unsuited_silent(act):
    assert compare_activation(act, 1, act == "linear") == []


def test_input_channels_in_batches_and_files():
    batch = compare_input_channels(3, {1: 8}, where="batch", fed_as_is=True)
    assert [(f.id, f.severity) for f in batch] == [("input-channels-mismatch", "error")]
    assert compare_input_channels(1, {1: 8}, where="batch", fed_as_is=True) == []
    rgba = compare_input_channels(3, {4: 8}, where="batch", fed_as_is=True)
    assert ids(rgba) == {"input-channels-mismatch"}  # the model receives alpha too
    assert compare_input_channels(3, {4: 8}, where="files", fed_as_is=False) == []  # dropped
    colour = compare_input_channels(1, {3: 5}, colour_images=5, where="files", fed_as_is=False)
    assert [f.severity for f in colour] == ["warning"]  # colour discarded
    gray = compare_input_channels(3, {1: 5}, where="files", fed_as_is=False)
    assert [f.severity for f in gray] == ["info"]  # repeated into RGB: harmless once converted
    assert compare_input_channels(None, {1: 5}, where="files", fed_as_is=False) == []


def test_image_colour_on_real_images():
    root = sample_path()
    images = [read_image(p) for p in sorted((root / "images").iterdir())]
    gray = [im for im in images if im.shape[-1] == 1]
    rgb = [im for im in images if im.shape[-1] == 3]
    assert gray and rgb
    assert not any(image_colour(im) for im in gray)
    assert not image_colour(np.repeat(gray[0], 3, axis=-1))  # gray stored as RGB
    assert any(image_colour(im) for im in rgb)  # stained tissue


# -- the three entry points ------------------------------------------------------------------------
def test_check_batch_with_a_model_compares_head_and_input():
    x, y = nuclei_crops(8)
    y = y[..., None].astype("float32")  # (B, 32, 32, 1)
    assert not ids(check_batch(x, y, softmax_net(2))) & MODEL_DATA_IDS
    assert "output-channels-extra" in ids(check_batch(x, y, softmax_net(3)))
    assert "output-classes-mismatch" in ids(check_batch(x, y * 2, softmax_net(2)))
    found = check_batch(np.repeat(x, 3, -1), y, softmax_net(2))
    assert "input-channels-mismatch" in ids(found)
    assert "mask-scale-255" in ids(check_batch(x, y * 255, softmax_net(2)))  # 0/255 masks


@pytest.mark.parametrize(("channels", "fires"), [(3, True), (2, False)])
def test_issue_softmax_head_with_more_channels_than_classes_in_model_fit(channels, fires):
    """The issue's miss: DoctorCallback in a plain fit on real crops, one-hot targets of depth K."""
    x, y = nuclei_crops(16)
    y_onehot = np.eye(channels, dtype="float32")[y]  # the script's to_categorical(y, K)
    model = softmax_net(channels)
    doctor = DoctorCallback(verbose=False, watch_gradients=0, probe_loss=False)
    model.fit(x, y_onehot, batch_size=4, epochs=2, verbose=0, callbacks=[doctor])
    found = {f.id: f for f in doctor.findings}
    assert ("output-channels-extra" in found) is fires
    assert not set(found) & (MODEL_DATA_IDS - {"output-channels-extra"})
    if fires:
        ev = found["output-channels-extra"].evidence
        assert (ev["output_channels"], ev["classes_in_masks"], ev["masks_seen"]) == (3, 2, 12)


def test_sparse_labels_the_head_cannot_output_fire_in_model_fit():
    x, y = nuclei_crops(16)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    logits = keras.layers.Conv2D(2, 1)(keras.layers.Conv2D(8, 3, padding="same")(inputs))
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    y3 = y.copy()
    y3[:, :4, :4] = 2  # a third class the 2-channel head cannot output
    doctor = DoctorCallback(verbose=False, watch_gradients=0, probe_loss=False)
    try:
        model.fit(x, y3[..., None], batch_size=4, epochs=1, verbose=0, callbacks=[doctor])
    except Exception:  # the backend may refuse label 2 itself: the doctor spoke before that step
        pass
    assert "output-classes-mismatch" in {f.id for f in doctor.findings}


@pytest.fixture
def gray_folder(tmp_path):
    """A copy of the bundled sample's gray pairs only."""
    root = sample_path()
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for image_path in sorted((root / "images").iterdir())[:12]:
        if read_image(image_path).shape[-1] == 1:
            shutil.copy(image_path, tmp_path / "images" / image_path.name)
            shutil.copy(root / "masks" / image_path.name, tmp_path / "masks" / image_path.name)
    return tmp_path


def diagnose_ids(data, model):
    return set(diagnose(data=data, model=model, plots=False).ids)


def test_diagnose_with_model_compares_classes_and_channels(gray_folder):
    silent = diagnose_ids(gray_folder, softmax_net(2, size=None))
    assert not silent & MODEL_DATA_IDS
    assert "output-channels-extra" in diagnose_ids(gray_folder, softmax_net(3, size=None))
    found = diagnose(data=gray_folder, model=softmax_net(2, None, input_channels=3), plots=False)
    by_id = {f.id: f for f in found.findings}
    assert by_id["input-channels-mismatch"].severity == "info"  # gray repeated into RGB


def test_diagnose_with_a_gray_model_on_colour_real_images(shared_data):
    """dsb2018 mixes gray and stained RGB images: a 1-channel model discards the colour."""
    found = diagnose(data=shared_data / "dsb2018-nuclei", model=softmax_net(2, None), plots=False)
    by_id = {f.id: f for f in found.findings}
    assert by_id["input-channels-mismatch"].severity == "warning"
    assert by_id["input-channels-mismatch"].evidence["colour_images"] > 0
