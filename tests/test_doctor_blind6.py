"""Findings the sixth blind test (2026-12-08) showed wrong or missing: plain-Keras scripts with one
planted fault each and a healthy twin; each test makes the fault fire and keeps the twin silent."""

from __future__ import annotations

import keras
import numpy as np
import pytest


def ids(found) -> set[str]:
    return {f.id for f in found}


def _stopped(val_dice, stopper, epochs=16):
    """The doctor's verdict on a fit that ``stopper`` ended after ``val_dice``."""
    from segdoctor.doctor.callback import DoctorCallback

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    doctor = DoctorCallback(verbose=False)
    doctor.set_model(model)
    doctor.set_params({"epochs": epochs})
    doctor.history = {"val_dice": list(val_dice)}
    doctor._siblings = None if stopper is None else [stopper]
    if stopper is not None:
        stopper.set_model(model)
        stopper.stopped_epoch = len(val_dice) - 1
        stopper._set_monitor_op()
    model.stop_training = True
    return doctor._stopped_while_improving()


F5_FAULT = [0.0, 0.689, 0.785, 0.802, 0.810]  # min_delta=0.05: gains of 0.017, 0.008 uncounted
F5_TWIN = [0.0, 0.69, 0.78, 0.80, 0.81, 0.815, 0.82, 0.823, 0.830, 0.814, 0.825]  # a dip, then stop


def test_a_min_delta_meant_as_a_percentage_is_named():
    """F5: EarlyStopping(monitor='val_dice', mode='max', patience=2, min_delta=0.05) stopped a
    rising run at epoch 5 of 16. Before: monitor-mode, an error saying the mode was 'min'."""
    stop = keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=2, min_delta=0.05)
    [found] = _stopped(F5_FAULT, stop)
    assert found.id == "early-stopping-min-delta" and found.severity == "warning"
    assert found.evidence["min_delta"] == pytest.approx(0.05)
    assert found.evidence["largest_gain"] < 0.05
    assert "'min'" not in found.fix and "min_delta=0" in found.fix


def test_a_normal_early_stop_after_a_dip_is_silent():
    """F5's twin: min_delta=1e-3, patience=2; the Dice peaked, dipped, and the callback stopped two
    epochs after its best, as designed. Before: a monitor-mode error."""
    stop = keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=2, min_delta=1e-3)
    assert _stopped(F5_TWIN, stop) == []
    # the same curve with the callbacks unknown: not a stop right after a new best
    assert _stopped(F5_TWIN, None) == []


def test_a_minimising_early_stop_on_dice_is_still_the_mode():
    stop = keras.callbacks.EarlyStopping(monitor="val_dice", mode="min", patience=2)
    assert ids(_stopped(F5_FAULT, stop)) == {"monitor-mode"}
    # unknown callbacks, stopped right after a new best: reported, naming both causes
    [found] = _stopped(F5_FAULT, None)
    assert found.id == "monitor-mode" and "min_delta" in found.fix


def test_a_small_min_delta_and_a_loss_monitor_are_not_blamed():
    stop = keras.callbacks.EarlyStopping(
        monitor="val_dice", mode="max", patience=2, min_delta=0.005
    )
    assert _stopped(F5_FAULT, stop) == []
    loss_stop = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=2)
    assert _stopped(F5_FAULT, loss_stop) == []


# CamVid's 12 labels merged into 5 classes, 11 (void) -> 0, as the sixth blind test's F7 did
CAMVID_MERGE = {0: 1, 1: 2, 2: 2, 3: 3, 4: 3, 5: 4, 6: 5, 7: 2, 8: 5, 9: 5, 10: 5, 11: 0}


def _merged_camvid(root, path, chained: bool):
    """One CamVid frame at 128 x 96 px and its labels merged into 5 classes (see
    :func:`_camvid_folder`)."""
    from PIL import Image

    image = Image.open(path).convert("RGB").resize((128, 96), Image.BILINEAR)
    mask = np.asarray(
        Image.open(root / "camvid-val" / "masks" / path.name).resize((128, 96), Image.NEAREST)
    ).copy()
    if chained:
        for old, new in CAMVID_MERGE.items():
            mask[mask == old] = new
        return image, mask
    return image, np.array([CAMVID_MERGE[k] for k in range(12)], np.uint8)[mask]


def _camvid_folder(root, out, chained: bool):
    """CamVid frames at 128 x 96 px with merged classes, frames 0-79 in train/, the rest in val/.

    ``chained``: merged with the in-place loop ``for old, new in ...: m[m == old] = new``, which
    chains (sky -> 1, then 1 -> 2: sky becomes "construction", class 1 never appears); otherwise
    with a lookup table."""
    from PIL import Image

    for i, path in enumerate(sorted((root / "camvid-val" / "images").glob("*.png"))):
        split = "train" if i < 80 else "val"
        image, mask = _merged_camvid(root, path, chained)
        for kind, array in (("images", np.asarray(image)), ("masks", mask)):
            (out / split / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(out / split / kind / path.name)
    return out


def test_scene_masks_cut_by_void_specks_have_one_object_size(shared_data, tmp_path):
    """F7's twin: scene masks labelled almost everywhere, a few void pixels cutting specks off the
    labelled region. The median component area was 5 px in some validation frames and 12,000
    in others: split-object-size fired on healthy data. Now the area a labelled pixel lies in."""
    from segdoctor.doctor import diagnose

    folder = _camvid_folder(shared_data, tmp_path / "data", chained=False)
    found = {f.id for f in diagnose(data=folder, plots=False).findings}
    assert "split-object-size" not in found


def test_classes_merged_by_a_chaining_loop_are_named(shared_data, tmp_path):
    """F7: CamVid merged into 5 classes by an in-place loop that chains: sky -> 1, then 1 -> 2,
    so class 1 never appears. class-absent fired, but advised remapping to 0..K-1, which hides
    the bug; it now names the chaining loop and the lookup table first."""
    from segdoctor.doctor import diagnose

    folder = _camvid_folder(shared_data, tmp_path / "data", chained=True)
    [found] = [f for f in diagnose(data=folder, plots=False).findings if f.id == "class-absent"]
    assert found.evidence["absent_classes"] == [1]
    assert "m[m == old] = new" in found.fix and "lut[m]" in found.fix
    assert found.fix.index("lut[m]") < found.fix.index("0..K-1")


def _outline(labels: np.ndarray) -> np.ndarray:
    """Each object's 1-pixel inner boundary, as cv2.drawContours(..., thickness=1) draws it."""
    padded = np.pad(labels, 1, mode="edge")
    h, w = labels.shape
    edge = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + h, dx : dx + w] != labels
    return (labels > 0) & edge


def _dsb_pairs(root, n: int = 40, outlines: bool = False):
    from PIL import Image

    pairs = []
    for path in sorted((root / "dsb2018-nuclei" / "images").glob("*.png"))[:n]:
        image = np.asarray(Image.open(path).convert("L"))
        labels = np.asarray(Image.open(root / "dsb2018-nuclei" / "masks" / path.name)).astype(int)
        pairs.append((path.name, image, _outline(labels) if outlines else labels > 0))
    return pairs


@pytest.mark.parametrize("outlines", [True, False])
def test_masks_that_outline_their_objects_are_named(shared_data, tmp_path, outlines):
    """F1: nucleus masks drawn as 1-pixel outlines (drawContours thickness=1). Before: the
    command line's cannot-overfit blamed the pairing, the callback named nothing. The twin,
    filled masks of the same images, is silent; both on the data folder and in batches."""
    from PIL import Image

    from segdoctor.doctor import diagnose
    from segdoctor.doctor.batch_checks import AlignmentSamples, alignment_finding, check_batch

    pairs = _dsb_pairs(shared_data, outlines=outlines)
    for name, image, mask in pairs:
        for kind, array in (("images", image), ("masks", mask.astype(np.uint8))):
            (tmp_path / kind).mkdir(exist_ok=True)
            Image.fromarray(array).save(tmp_path / kind / name)
    found = {f.id: f for f in diagnose(data=tmp_path, plots=False).findings}
    assert ("mask-outlines" in found) == outlines
    if outlines:
        assert found["mask-outlines"].severity == "error"
        assert "thickness=-1" in found["mask-outlines"].fix

    crops = [(image[:96, :96] / 255.0, mask[:96, :96]) for _, image, mask in pairs]
    x = np.stack([c[0] for c in crops])[..., None].astype("float32")
    y = np.stack([c[1] for c in crops])[..., None].astype("float32")
    samples = AlignmentSamples()
    for b in range(0, 24, 8):
        check_batch(x[b : b + 8], y[b : b + 8], alignment_out=samples)
    assert ("mask-outlines" in ids(alignment_finding(samples))) == outlines


def test_thin_rings_that_the_image_draws_are_not_outlines():
    """Membranes of isolated cells, vessel walls: the image shows the ring itself (bright line,
    inside and outside alike), and a ring mask is the right target."""
    from segdoctor.doctor.outlines import outline_counts, outlines_found

    yy, xx = np.mgrid[:64, :64]
    counts = []
    for r in range(6, 14):
        ring = np.abs(np.hypot(yy - 32, xx - 32) - r) < 0.7
        image = 0.2 + 0.6 * ring + np.random.default_rng(r).normal(0, 0.02, ring.shape)
        counts.append(outline_counts(image, ring))
        filled = np.hypot(yy - 32, xx - 32) < r  # the same ring around a filled object
        assert outline_counts(0.2 + 0.6 * filled, ring) == (1, 1)
    assert sum(c for _, c in counts) == 8 and not outlines_found(counts)


def _unet_or_first_block(head_on_first_block: bool):
    """A small U-Net (depth 3) or, by the typo Conv2D(1, 1)(c1) for (c9), its first block alone."""
    from keras import layers

    inputs = keras.Input((None, None, 1))

    def block(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        return layers.Conv2D(filters, 3, padding="same", activation="relu")(x)

    c1 = block(inputs, 8)
    c2 = block(layers.MaxPooling2D()(c1), 16)
    c3 = block(layers.MaxPooling2D()(c2), 32)
    u2 = block(layers.Concatenate()([layers.UpSampling2D()(c3), c2]), 16)
    c9 = block(layers.Concatenate()([layers.UpSampling2D()(u2), c1]), 8)
    head = c1 if head_on_first_block else c9
    model = keras.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(head))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


@pytest.mark.parametrize("typo", [True, False])
def test_a_head_on_the_first_block_is_named(shared_data, tmp_path, typo):
    """F4: the output head wired to the first encoder block sees 5 x 5 pixels; DSB nuclei are
    about 18 px across. Before: only val-better-than-train (info). The whole U-Net is silent."""
    from PIL import Image

    from segdoctor.doctor import diagnose
    from segdoctor.doctor.receptive_field import receptive_field

    model = _unet_or_first_block(typo)
    assert (receptive_field(model) == 5) == typo
    for name, image, mask in _dsb_pairs(shared_data, n=32):
        crop = (slice(0, 96), slice(0, 96))
        for kind, array in (("images", image[crop]), ("masks", mask[crop].astype(np.uint8))):
            (tmp_path / kind).mkdir(exist_ok=True)
            Image.fromarray(array).save(tmp_path / kind / name)
    found = {f.id: f for f in diagnose(data=tmp_path, model=model, plots=False).findings}
    assert ("receptive-field-small" in found) == typo
    if typo:
        assert found["receptive-field-small"].evidence["receptive_field_px"] == 5
        assert "(c9)" in found["receptive-field-small"].fix


def test_the_callback_measures_the_field_against_the_batches(shared_data):
    from segdoctor.doctor.callback import DoctorCallback

    pairs = _dsb_pairs(shared_data, n=32)
    x = np.stack([image[:96, :96] / 255.0 for _, image, _ in pairs])[..., None].astype("float32")
    y = np.stack([mask[:96, :96] for _, _, mask in pairs])[..., None].astype("float32")
    for typo in (True, False):
        model = _unet_or_first_block(typo)
        doctor = DoctorCallback(verbose=False, watch_gradients=0)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[doctor])
        assert ("receptive-field-small" in ids(doctor.findings)) == typo


def test_sgd_at_an_adam_rate_is_named_when_nothing_was_learned(shared_data):
    """F3: SGD(1e-3) without momentum (the rate of the Adam recipe it replaced): the run learned
    nothing, and the callback said only metric-constant and prediction-collapse. Its first steps
    move the weights by about 2e-4 of their size (Adam at 1e-3: about 1e-2): lr-too-low now,
    when the history says nothing was learned; the Adam twin, or small steps in a run that
    learns, stay silent."""
    from segdoctor.doctor import make_finding
    from segdoctor.doctor.callback import DoctorCallback

    pairs = _dsb_pairs(shared_data, n=24)
    x = np.stack([image[:64, :64] / 255.0 for _, image, _ in pairs])[..., None].astype("float32")
    y = np.stack([mask[:64, :64] for _, _, mask in pairs])[..., None].astype("float32")
    collapsed = make_finding("metric-constant", {"metric": "val_dice", "epochs": 6, "value": 0.0})

    def verdict(optimizer, history_findings):
        keras.utils.set_random_seed(0)
        model = _unet_or_first_block(False)
        model.compile(optimizer=optimizer, loss="binary_crossentropy")
        doctor = DoctorCallback(verbose=False, watch_gradients=0)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[doctor])
        doctor.findings += history_findings
        return doctor._low_updates()

    [found] = verdict(keras.optimizers.SGD(1e-3), [collapsed])
    assert found.id == "lr-too-low" and found.evidence["relative_update_per_step"] < 3e-4
    assert found.evidence["history"] == ["metric-constant"] and "SGD" in found.fix
    assert verdict(keras.optimizers.SGD(1e-3), []) == []  # small steps alone: no verdict
    assert verdict(keras.optimizers.Adam(1e-3), [collapsed]) == []


def _camvid_arrays(root, chained: bool, n: int = 32):
    xs, ys = [], []
    for path in sorted((root / "camvid-val" / "images").glob("*.png"))[:n]:
        image, mask = _merged_camvid(root, path, chained)
        xs.append(np.asarray(image, "float32") / 255.0)
        ys.append(mask[..., None].astype("float32"))
    return np.stack(xs), np.stack(ys)


@pytest.mark.parametrize("chained", [True, False])
def test_a_class_lost_by_a_chaining_remap_is_named_by_the_callback(shared_data, chained):
    """F7 in the callback: class 1 in none of the training batches while the other classes are
    in every scene. Before: the callback was silent (it tracked only the largest index)."""
    from keras import layers

    from segdoctor.doctor.callback import DoctorCallback
    from segdoctor.losses import DiceCELoss

    x, y = _camvid_arrays(shared_data, chained)
    inputs = keras.Input((96, 128, 3))
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, layers.Conv2D(6, 1, activation="softmax")(h))
    model.compile(optimizer="adam", loss=DiceCELoss(mode="multiclass"))
    doctor = DoctorCallback(verbose=False, watch_gradients=0)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[doctor])
    found = {f.id: f for f in doctor.findings}
    assert ("class-absent" in found) == chained
    if chained:
        assert found["class-absent"].evidence["absent_classes"] == [1]
        assert "lut[m]" in found["class-absent"].fix


def test_the_void_label_is_not_a_class_gap():
    """VOC-style masks {0, 1, 255} in every sampled mask: 255 is the void label, not class 255
    with 2..254 missing."""
    from segdoctor.doctor.batch_checks import class_gap_findings
    from segdoctor.doctor.model_data import targets_from_batch

    y = np.zeros((16, 8, 8, 1), "float32")
    y[:, 2:5, 2:5] = 1
    y[:, 0, :] = 255
    assert class_gap_findings(targets_from_batch(y), None, "batches") == []
    y[:, 5:7, 5:7] = 3  # classes 0, 1, 3 (and void) everywhere: class 2 is lost
    [found] = class_gap_findings(targets_from_batch(y), None, "batches")
    assert found.evidence["absent_classes"] == [2]
