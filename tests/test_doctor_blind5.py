"""Findings the fifth blind test (2026-12-07 night) showed wrong or missing: plain-Keras scripts
with one planted fault each and a healthy twin; each test makes the fault fire and keeps the twin
silent."""

from __future__ import annotations

import numpy as np

from segdoctor.doctor import analyze_history


def ids(found) -> set[str]:
    return {f.id for f in found}


def _collapsed_run(lrs: list[float]) -> dict[str, list[float]]:
    n = len(lrs)
    return {
        "dice": [0.07] + [0.0] * (n - 1),
        "loss": [1.45, 1.30, 1.287, 1.285, 1.285, 1.285][:n],
        "val_dice": [0.0] * n,
        "val_loss": [1.37, 1.307, 1.305, 1.305, 1.305, 1.305][:n],
        "learning_rate": lrs,
    }


def test_a_rate_cut_tenfold_every_epoch_is_named_in_a_short_run():
    """LearningRateScheduler(lambda epoch, lr: lr * 0.1), meant as "a tenth of the rate": 1e-4
    to 1e-9 in 6 epochs. Before, lr-vanished needed 3 epochs under a thousandth of the peak and
    said nothing; the run drew only metric-constant and prediction-collapse."""
    rates = list(np.float32(1e-4) * np.float32(0.1) ** np.arange(6, dtype=np.float32))
    [found] = [
        f
        for f in analyze_history(_collapsed_run([float(r) for r in rates]))
        if f.id == "lr-vanished"
    ]
    assert found.severity == "error"
    assert found.evidence["cut_per_epoch"] <= 0.1001
    assert "LearningRateScheduler(lambda epoch, lr: lr * 0.1)" in found.fix


def test_a_tenfold_cut_once_is_not_compounding():
    """One cut of 10x, then a steady rate (a step schedule): not the compounding rule."""
    h = _collapsed_run([1e-3, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4])
    assert "lr-vanished" not in ids(analyze_history(h))


def test_a_decay_of_a_tenth_every_epoch_is_a_schedule_not_a_plateau_cut():
    """The twin: LearningRateScheduler(lambda epoch, lr: lr * 0.9) while Dice rose. Before, the
    repeated 0.9 cut drew lr-reduced-while-improving (an error) blaming a mode='min' plateau
    scheduler; a plateau scheduler cuts by 0.1-0.5."""
    val = [0.0, 0.626, 0.768, 0.791, 0.80, 0.81, 0.815, 0.82]
    h = {
        "dice": [0.01, 0.42, 0.65, 0.72, 0.75, 0.77, 0.78, 0.79],
        "loss": [1.26, 0.83, 0.54, 0.45, 0.42, 0.40, 0.39, 0.38],
        "val_dice": val,
        "val_loss": [0.95, 0.63, 0.48, 0.49, 0.47, 0.46, 0.45, 0.45],
        "learning_rate": [float(np.float32(1e-3) * np.float32(0.9) ** (i + 1)) for i in range(8)],
    }
    found = ids(analyze_history(h))
    assert "lr-reduced-while-improving" not in found and "lr-vanished" not in found
    # a plateau scheduler's halving every epoch while Dice rises still fires
    h["learning_rate"] = [1e-3 * 0.5**i for i in range(8)]
    assert "lr-reduced-while-improving" in ids(analyze_history(h))


def _void_band_dataset(root, band: bool = True):
    """Disc masks {0, 1}, and with ``band`` a 2 px void band of 255 on every disc's border (PASCAL
    VOC's convention)."""
    from PIL import Image
    from scipy import ndimage

    from tests.helpers import write_disc_dataset

    write_disc_dataset(root, n=8, size=32, seed=4)
    if band:
        for path in sorted((root / "masks").iterdir()):
            mask = np.asarray(Image.open(path)).copy()
            ring = ndimage.binary_dilation(mask > 0, iterations=2) & ~(mask > 0)
            mask[ring] = 255
            Image.fromarray(mask).save(path)
    return root


def test_255_next_to_a_few_classes_is_named_as_a_void_label(tmp_path):
    """The fifth blind test's F3: VOC-style {0, 1, 255} masks drew class-absent ("classes
    2..254 never appear") and, with the model, a 256-class head as the fix."""
    from segdoctor.doctor.data_checks import check_data

    found, summary, _ = check_data(_void_band_dataset(tmp_path / "void"), plots=False)
    [void] = [f for f in found if f.id == "mask-void-label"]
    assert void.severity == "warning" and "ignore_index=255" in void.fix
    assert void.evidence["values"] == [0, 1, 255] and 0 < void.evidence["void_fraction_of_pixels"]
    assert "class-absent" not in ids(found) and summary.num_classes == 2
    plain, _, _ = check_data(_void_band_dataset(tmp_path / "plain", band=False), plots=False)
    assert "mask-void-label" not in ids(plain)


def test_a_class_index_far_below_255_without_void_is_still_absent_classes(tmp_path):
    from segdoctor.doctor.data_checks import check_data
    from tests.helpers import write_multiclass_dataset

    root = write_multiclass_dataset(tmp_path / "mc", n=6, void=9)  # classes 0, 1, 2 and 9
    found, _, _ = check_data(root, plots=False)
    assert "mask-void-label" not in ids(found) and "class-absent" in ids(found)


def test_the_probe_does_not_ask_a_binary_head_for_256_classes():
    import keras

    from segdoctor.doctor.probes import _model_vs_probe_batch

    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(loss="binary_crossentropy")
    x = np.zeros((2, 16, 16, 1), "float32")
    y = np.zeros((2, 16, 16), "int32")
    y[:, 4:8, 4:8], y[:, 3, 3:9] = 1, 255
    assert "output-classes-mismatch" not in ids(_model_vs_probe_batch(model, x, y))
    y[:, 10:12, 10:12] = 200  # 255 is not void when the other labels reach 128 and above
    assert "output-classes-mismatch" in ids(_model_vs_probe_batch(model, x, y))


def _twelve_bit_dataset(root):
    from PIL import Image

    from tests.helpers import write_disc_dataset

    write_disc_dataset(root, n=6, size=32, seed=5)
    for path in sorted((root / "images").iterdir()):
        img = np.asarray(Image.open(path)).astype(np.uint16) * 16  # 0..4080: 12 bits of 16
        Image.fromarray(img).save(path)
    return root


def test_16_bit_files_are_read_at_the_bit_depth_they_use(tmp_path):
    """12-bit data in 16-bit PNGs: the probes read it divided by 4095, as the pipelines that
    train on it do. Divided by 65535 (before), a healthy model trained on x / 4095 saw a
    sixteenth of its inputs and drew cannot-overfit (fifth blind test, F6's twin)."""
    import keras

    from segdoctor.data.discover import discover_pairs
    from segdoctor.doctor.probes import read_for_model

    root = _twelve_bit_dataset(tmp_path / "d12")
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    images, _ = read_for_model(discover_pairs(root).pairs[:4], model)
    assert 0.6 < max(float(i.max()) for i in images) <= 1.0


def test_the_saved_model_is_not_scored_when_the_reading_may_differ(tmp_path):
    """With 12-bit data (image-range-narrow) the doctor cannot know what the user divided by:
    F6's fault (uint8 wrap) scored 0.18 against its history's 0.63 and drew the error."""
    import keras

    from segdoctor.doctor import diagnose

    root = _twelve_bit_dataset(tmp_path / "d12")
    inputs = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.full((1, 1, 1, 1), -50.0, "float32"), np.full((1,), 23.5, "float32")])
    history = tmp_path / "history.csv"
    history.write_text("epoch,val_dice\n0,0.02\n1,0.55\n2,0.91\n3,0.88\n")
    report = diagnose(data=root, model=model, history=history, plots=False)
    assert "image-range-narrow" in ids(report.findings)
    assert "saved-model-not-best" not in ids(report.findings)
    assert "image-range-narrow" in report.summary["saved_model_skipped"]


def _letterboxed(root, stretch_masks: bool):
    """Wide 48 x 96 disc images letterboxed into 96 x 96 (24 px black bars top and bottom); the
    masks stretched to 96 x 96 (the fault) or letterboxed the same way (the twin)."""
    from PIL import Image

    rng = np.random.default_rng(6)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:48, :96]
    for i in range(6):
        cy, cx = rng.integers(14, 34), rng.integers(20, 76)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 12**2).astype(np.uint8)
        image = (60 + 120 * mask + rng.normal(0, 12, mask.shape)).clip(1, 255).astype(np.uint8)
        boxed = np.zeros((96, 96), np.uint8)
        boxed[24:72] = image
        if stretch_masks:
            out = np.asarray(Image.fromarray(mask).resize((96, 96), Image.NEAREST))
        else:
            out = np.zeros((96, 96), np.uint8)
            out[24:72] = mask
        Image.fromarray(boxed).save(root / "images" / f"w_{i}.png")
        Image.fromarray(out).save(root / "masks" / f"w_{i}.png")
    return root


def test_masks_stretched_over_letterboxed_images_are_named(tmp_path):
    """The fifth blind test's F5: images letterboxed to 96 x 96, masks stretched; validation
    Dice 0.61 against 0.81, and no finding at all."""
    from segdoctor.doctor.data_checks import check_data

    found, _, _ = check_data(_letterboxed(tmp_path / "fault", stretch_masks=True), plots=False)
    [pad] = [f for f in found if f.id == "mask-on-padding"]
    assert pad.severity == "error" and pad.evidence["pairs"] >= 3
    assert "letterbox" in pad.fix
    twin, _, _ = check_data(_letterboxed(tmp_path / "twin", stretch_masks=False), plots=False)
    assert "mask-on-padding" not in ids(twin)


def test_targets_at_a_few_gray_levels_are_named_as_labels_read_as_gray():
    """The fifth blind test's F4: VOC palette masks read with .convert('L') / 255 gave targets
    {0, 0.149}; the callback blamed bilinear resizing. A ramp of interpolated values still
    draws the interpolation text."""
    from segdoctor.doctor.batch_checks import _fractional_finding

    y = np.zeros((2, 8, 8, 1), "float32")
    y[:, 2:5, 2:5] = 38 / 255
    f = _fractional_finding(y, np.unique(y))
    assert "convert('L')" in f.fix and "0.149" in f.fix
    ramp = np.linspace(0, 1, 64, dtype="float32").reshape(1, 8, 8, 1)
    g = _fractional_finding(ramp, np.unique(ramp))
    assert "nearest" in g.fix and "convert('L')" not in g.fix


def test_the_batch_misalignment_text_names_swapped_crop_coordinates():
    """The fifth blind test's F7: a PyDataset cropping the image with PIL crop((x0, y0, ...)) and
    the mask with m[x0:..., y0:...]; the finding named augmentation and shuffling only."""
    from segdoctor.doctor.catalog import make_finding

    fix = make_finding("pair-misaligned", {}, variant="batch").fix
    assert "crop((x0, y0, x1, y1))" in fix and "m[y0:y1, x0:x1]" in fix


def test_a_loss_that_went_to_zero_with_the_dice_is_named_from_the_history():
    """The fifth blind test's F1 from the command line: loss=dice_coef (a custom function the
    CLI cannot load), the loss from 0.031 to 0.0003 while the Dice stayed 0. Before, only
    metric-constant and prediction-collapse fired; the callback's loss probe named it."""
    fault = {
        "dice": [0.007, 0.0, 0.0, 0.0, 0.0, 0.0],
        "loss": [0.0313, 0.000285, 0.000285, 0.000298, 0.000361, 0.000274],
        "val_dice": [0.0] * 6,
        "val_loss": [0.00029] * 6,
    }
    [f] = [f for f in analyze_history(fault) if f.id == "loss-wrong-direction"]
    assert f.severity == "error" and "dice_coef" in f.fix
    # a collapse whose loss stays up (BCE on rare foreground) is not this
    bce = {**fault, "loss": [0.3, 0.08, 0.06, 0.058, 0.057, 0.057]}
    assert "loss-wrong-direction" not in ids(analyze_history(bce))
    # a healthy run whose loss falls as its Dice rises is not either
    healthy = {
        **fault,
        "dice": [0.3, 0.6, 0.7, 0.8, 0.85, 0.9],
        "val_dice": [0.2, 0.5, 0.7, 0.8, 0.8, 0.85],
    }
    healthy["loss"] = [0.9, 0.4, 0.2, 0.1, 0.005, 0.004]
    assert "loss-wrong-direction" not in ids(analyze_history(healthy))


def _palette_masks(root, palette: bool):
    from PIL import Image

    from tests.helpers import write_disc_dataset

    write_disc_dataset(root, n=6, size=32, seed=7)
    if palette:
        for path in sorted((root / "masks").iterdir()):
            im = Image.fromarray(np.asarray(Image.open(path)), mode="L").convert("P")
            im.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254)  # PASCAL VOC's first colours
            im.save(path)
    return root


def test_palette_masks_are_noted_and_raised_when_nothing_was_learned(tmp_path):
    """The fifth blind test's F4: VOC-style palette masks, read by the user's pipeline with
    convert('L') (targets {0, 0.149}); from the command line nothing named it."""
    from segdoctor.doctor import diagnose

    root = _palette_masks(tmp_path / "p", palette=True)
    [note] = [f for f in diagnose(data=root, plots=False).findings if f.id == "mask-palette-file"]
    assert note.severity == "info" and note.evidence["read_as_gray"] == {"0": 0.0, "1": 0.15}
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,loss,dice,val_dice\n" + "".join(f"{e},0.9,0.0,0.0\n" for e in range(5))
    )
    found = diagnose(data=root, history=history, plots=False).findings
    [raised] = [f for f in found if f.id == "mask-palette-file"]
    assert raised.severity == "warning" and "convert('L')" in raised.fix
    plain = diagnose(
        data=_palette_masks(tmp_path / "l", palette=False), history=history, plots=False
    )
    assert "mask-palette-file" not in ids(plain.findings)


def test_a_model_that_fits_its_files_but_learned_nothing_points_at_the_loader(tmp_path):
    """The fifth blind test's F7 from the command line: the files are fine (the image cropped
    with PIL's crop((x0, y0, ...)), the mask with m[x0:..., y0:...] in the user's loader), the
    history collapsed, and only prediction-collapse was said. The overfit probe fits the files,
    so the loader is the suspect."""
    import keras

    from segdoctor.doctor import diagnose
    from tests.helpers import write_disc_dataset

    root = write_disc_dataset(tmp_path / "d", n=8, size=32, seed=8)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    # a dilated layer widens the field beyond the discs (receptive-field-small stays silent)
    h = keras.layers.Conv2D(8, 3, padding="same", dilation_rate=16, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    collapsed = tmp_path / "collapsed.csv"
    collapsed.write_text(
        "epoch,loss,dice,val_dice\n" + "".join(f"{e},0.3,0.0,0.0\n" for e in range(6))
    )
    report = diagnose(data=root, model=model, history=collapsed, probe=True, plots=False)
    found = ids(report.findings)
    assert "cannot-overfit" not in found
    [f] = [f for f in report.findings if f.id == "training-inputs-differ"]
    assert f.severity == "warning" and "DoctorCallback" in f.fix
    learned = tmp_path / "learned.csv"
    learned.write_text(
        "epoch,loss,dice,val_dice\n"
        + "".join(f"{e},{0.5 - 0.05 * e},{0.3 + 0.1 * e},{0.3 + 0.1 * e}\n" for e in range(6))
    )
    healthy = diagnose(data=root, model=model, history=learned, probe=True, plots=False)
    assert "training-inputs-differ" not in ids(healthy.findings)


def _dsb_crops(root, wrap: bool, n: int = 24, size: int = 64):
    """Centre crops of DSB images with nuclei, as a 12-bit camera stores them (x 16 + noise), read
    as the fifth blind test's F6 read them (``astype(np.uint8) / 255``: wraps) or correctly."""
    from PIL import Image

    rng = np.random.default_rng(1)
    xs, ys = [], []
    for path in sorted((root / "dsb2018-nuclei" / "images").glob("*.png")):
        image = np.asarray(Image.open(path).convert("L"), dtype=np.uint16)
        mask = np.asarray(Image.open(root / "dsb2018-nuclei" / "masks" / path.name)) > 0
        y0, x0 = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crop, m = image[y0 : y0 + size, x0 : x0 + size], mask[y0 : y0 + size, x0 : x0 + size]
        if not 0.05 < m.mean() < 0.6:
            continue
        raw = (crop * 16 + rng.integers(0, 16, crop.shape)).astype(np.uint16)  # 12-bit values
        x = raw.astype(np.uint8) / 255.0 if wrap else raw.astype(np.float32) / 4095.0
        xs.append(x[..., None].astype("float32"))
        ys.append(m[..., None].astype("float32"))
        if len(xs) == n:
            break
    return np.stack(xs), np.stack(ys)


def test_wrapped_12_bit_images_are_named_as_noise_not_as_a_pairing_fault(shared_data):
    """The fifth blind test's F6 in the callback: 12-bit images read with astype(np.uint8) wrap
    modulo 256 and look like noise; the share rule of the edge alignment called that a broken
    pairing (pair-misaligned, error). Now: inputs-noise-like, and no pairing finding. The twin
    (the same files divided by 4095) is silent."""
    from segdoctor.doctor.batch_checks import AlignmentSamples, alignment_finding, check_batch

    def pooled(x, y):
        samples = AlignmentSamples()
        for b in range(0, len(x), 8):
            check_batch(x[b : b + 8], y[b : b + 8], alignment_out=samples)
        return alignment_finding(samples), samples

    found, _ = pooled(*_dsb_crops(shared_data, wrap=True))
    assert ids(found) == {"inputs-noise-like"}, [(f.id, f.evidence) for f in found]
    assert found[0].evidence["median_neighbour_correlation"] < 0.65
    assert "astype(np.uint8)" in found[0].fix
    twin, twin_samples = pooled(*_dsb_crops(shared_data, wrap=False))
    assert twin == [], [(f.id, f.evidence) for f in twin]
    assert np.median(twin_samples.structure) > 0.8


def test_noise_like_images_alone_are_not_a_finding():
    """inputs-noise-like only replaces a pairing finding: noisy images whose masks still follow
    their edges (or whose pairing nothing questions) draw nothing."""
    from segdoctor.doctor.batch_checks import AlignmentSamples, alignment_finding, check_batch

    rng = np.random.default_rng(0)
    y = np.zeros((8, 32, 32, 1), "float32")
    y[:, 8:20, 8:20] = 1
    x = (rng.random((8, 32, 32, 1)) * 0.5 + y * 0.5).astype("float32")  # noisy, aligned
    samples = AlignmentSamples()
    check_batch(x, y, alignment_out=samples)
    assert np.median(samples.structure) < 0.65
    assert alignment_finding(samples) == []
