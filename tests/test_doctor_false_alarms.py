"""Errors the doctor raised on healthy runs in the blind test of 2026-12-07 (user-written U-Nets,
trained, then diagnosed with --probe), each with the fault that must still fire beside it."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._synthetic import disks

from segdoctor.doctor import DoctorCallback, overfit, probes
from segdoctor.doctor.model_data import Targets, compare_output_classes, ignored_label
from segdoctor.losses import DiceCELoss


def ids(found) -> set[str]:
    return {f.id for f in found}


def small_unet(optimizer=None, momentum=0.9):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.BatchNormalization(momentum=momentum)(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    return model


def test_overfit_probe_refits_at_a_lower_rate_when_its_loss_rose(monkeypatch):
    """A trained U-Net thrown out of its minimum by Adam(1e-2) (loss 0.2 -> 1.7) fits at 1e-3."""
    x, y = disks(4)
    rates = []
    real_clone = overfit.clone

    def recording_clone(model, learning_rate=None, optimizer=None):
        rates.append(learning_rate)
        return real_clone(model, learning_rate=learning_rate, optimizer=optimizer)

    def rising_then_falling(model, x, y, steps, deadline=None):
        lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        return (
            list(np.linspace(0.2, 1.7, steps)) if lr > 5e-3 else list(np.linspace(0.2, 0.01, steps))
        )

    monkeypatch.setattr(overfit, "clone", recording_clone)
    monkeypatch.setattr(overfit, "train_steps", rising_then_falling)
    monkeypatch.setattr(overfit, "fit_dice", lambda model, x, y: (0.95, 0.2))
    found, losses = overfit.probe_overfit(small_unet(), x, y)
    assert rates == [overfit.OVERFIT_LR, overfit.RETRY_LR]
    assert found == [] and losses[-1] == pytest.approx(0.01)


def test_overfit_probe_gives_no_verdict_when_the_wrong_masks_fit_and_the_right_ones_do_not(
    monkeypatch,
):
    x, y = disks(4)
    monkeypatch.setattr(overfit, "train_steps", lambda m, x, y, steps, d=None: [0.5] * steps)
    # fit_dice is called on the fitted copy, on the model as given, then on the control
    scores = iter(
        [(0.0, 0.19), (0.0, 0.19), (0.64, 0.19)]
    )  # the blind test's twin: own masks 0.00, control 0.64
    monkeypatch.setattr(overfit, "fit_dice", lambda model, x, y: next(scores))
    found, _ = overfit.probe_overfit(small_unet(), x, y)
    assert found == []
    # neither fits: the finding, with the pairing hint
    scores = iter([(0.0, 0.19), (0.0, 0.19), (0.1, 0.19)])
    found, _ = overfit.probe_overfit(small_unet(), x, y)
    assert ids(found) == {"cannot-overfit"} and "pairing" in found[0].fix


def _stats(rel: float) -> dict:
    return {
        "loss": 0.3,
        "global_norm": 60.0,
        "rel": [0.5, rel],
        "names": ["a", "b"],
        "finite": True,
    }


def test_exploding_gradients_threshold_follows_the_optimizer():
    """|g|/|w| of 14 (a healthy Adam run mid-training) is an explosion for SGD only."""
    adam, sgd = small_unet(), small_unet(keras.optimizers.SGD(1e-2))
    assert probes.explode_threshold(adam) == probes.EXPLODE_REL_ADAPTIVE
    assert probes.explode_threshold(sgd) == probes.EXPLODE_REL
    assert probes.gradient_findings(_stats(14.0), threshold=probes.explode_threshold(adam)) == []
    fired = probes.gradient_findings(_stats(14.0), threshold=probes.explode_threshold(sgd))
    assert ids(fired) == {"exploding-gradients"}
    big = probes.gradient_findings(_stats(900.0), threshold=probes.explode_threshold(adam))
    assert ids(big) == {"exploding-gradients"}  # the measured explosion (900-12000) still fires


def test_an_ignored_label_is_not_a_class_the_head_lacks():
    """CamVid as documented: labels 0..11, 11 the void label, an 11-channel head."""
    loss = DiceCELoss(mode="multiclass", ignore_index=11)
    assert ignored_label(loss) == 11
    assert ignored_label(keras.losses.SparseCategoricalCrossentropy(ignore_class=255)) == 255
    camvid = Targets(max_label=11, images=8, source="probe batch")
    assert compare_output_classes(11, camvid, activation="softmax", ignore_index=11) == []
    mismatch = compare_output_classes(11, camvid, activation="softmax")
    assert ids(mismatch) == {"output-classes-mismatch"}
    above = Targets(max_label=12, images=8, source="probe batch")  # a label beyond the ignored one
    fired = compare_output_classes(11, above, activation="softmax", ignore_index=11)
    assert ids(fired) == {"output-classes-mismatch"}


def test_an_exponential_schedule_is_not_a_misdirected_plateau_scheduler():
    """ExponentialDecay cuts the rate by the same factor every epoch, as ReduceLROnPlateau with
    patience 1 does; with a schedule on the optimizer the cuts are the schedule's."""
    x, y = disks(32)

    def fit(optimizer):
        model = small_unet(optimizer)
        doctor = DoctorCallback(verbose=False)
        model.fit(
            x, y, batch_size=8, epochs=5, validation_split=0.25, verbose=0, callbacks=[doctor]
        )
        return ids(doctor.findings)

    schedule = keras.optimizers.schedules.ExponentialDecay(3e-3, decay_steps=6, decay_rate=0.5)
    assert "lr-reduced-while-improving" not in fit(keras.optimizers.Adam(schedule))


def test_lr_too_high_needs_a_fresh_copy_to_diverge_below_the_rate_too(monkeypatch):
    """A trained model's own sweep diverges sooner (its minimum is left by any larger step): the
    CamVid twins trained at Adam 3e-3 diverged at 2.4e-3 from their trained weights."""
    model = small_unet(keras.optimizers.Adam(3e-3))
    x, y = disks(4)

    def sweep(fresh_diverge):
        def fake(model, x, y, *args, fresh=False, **kwargs):
            diverge = fresh_diverge if fresh else 2.4e-3
            return {"lrs": [], "losses": [], "steepest_lr": 1.5e-4, "diverge_lr": diverge}

        return fake

    monkeypatch.setattr(probes, "lr_range_test", sweep(0.05))
    assert probes.probe_lr(model, x, y) == []
    monkeypatch.setattr(probes, "lr_range_test", sweep(1e-3))
    found = probes.probe_lr(model, x, y)
    assert ids(found) == {"lr-too-high"}
    assert found[0].evidence["diverge_lr_fresh_weights"] == 1e-3


def _softmax_head(axis):
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Softmax(axis=axis)(keras.layers.Conv2D(3, 1)(h))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def test_softmax_over_the_rows_is_named_and_over_the_channels_is_not():
    """Missed by the second blind test: Softmax(axis=1) on channels-last output."""
    from segdoctor.doctor.model_checks import check_output

    found = [f for f in check_output(_softmax_head(1)) if f.id == "softmax-wrong-axis"]
    assert len(found) == 1 and found[0].severity == "error"
    assert "image rows" in found[0].fix and "Softmax(axis=-1)" in found[0].fix
    assert "softmax-wrong-axis" not in ids(check_output(_softmax_head(-1)))
    assert "softmax-wrong-axis" not in ids(
        check_output(_softmax_head(3))
    )  # the last axis by number


def test_lr_vanished_fires_on_a_schedule_counted_in_steps_and_not_on_healthy_decays():
    """The blind test's fault: ExponentialDecay(1e-3, decay_steps=5, decay_rate=0.5) meant as
    epochs, 17 steps an epoch; its twin decays every 5 epochs. A cosine to 0 is healthy too."""
    import math

    from segdoctor.doctor import analyze_history

    epochs = 20
    fault = {
        "dice": [0.038, 0.025] + [0.036] * (epochs - 2),
        "val_dice": [0.003, 0.021] + [0.03] * (epochs - 2),
        "learning_rate": [1e-3 * 0.5 ** (17 * e / 5) for e in range(epochs)],
    }
    found = [f for f in analyze_history(fault) if f.id == "lr-vanished"]
    assert len(found) == 1 and found[0].severity == "error"
    assert found[0].evidence["vanished_epoch"] <= 4 and "decay_steps" in found[0].fix
    assert "lr-reduced-while-improving" not in ids(analyze_history(fault))
    rising = [0.9 * (1 - math.exp(-e / 3)) for e in range(epochs)]
    twin = {**fault, "dice": rising, "val_dice": rising}
    twin["learning_rate"] = [1e-3 * 0.5 ** (e / 5) for e in range(epochs)]
    assert "lr-vanished" not in ids(analyze_history(twin))
    cosine = {
        **twin,
        "learning_rate": [1e-3 * 0.5 * (1 + math.cos(math.pi * e / 19)) for e in range(epochs)],
    }
    assert "lr-vanished" not in ids(analyze_history(cosine))
    # the same collapse of the rate after the model has learned (training Dice 0.9): no finding
    learned = {**fault, "dice": [0.5, 0.9] + [0.9] * (epochs - 2)}
    assert "lr-vanished" not in ids(analyze_history(learned))


def _fit_with_validation(scale: float, backend_seed: int = 0) -> set[str]:
    """A user fit whose validation images are ``scale`` x the training images' scale."""
    x, y = disks(48)
    keras.utils.set_random_seed(backend_seed)
    model = small_unet()
    doctor = DoctorCallback(verbose=False)
    model.fit(
        x[:36],
        y[:36],
        batch_size=8,
        epochs=2,
        validation_data=(x[36:] * scale, y[36:]),
        verbose=0,
        callbacks=[doctor],
    )
    return {f"{f.id}:{f.severity}" for f in doctor.findings}


def test_validation_scaled_unlike_training_is_named_from_the_batches():
    """Missed by the second blind test: training divided by 255, validation not."""
    assert "split-intensity-shift:error" in _fit_with_validation(255.0)
    assert not any(f.startswith("split-intensity-shift") for f in _fit_with_validation(1.0))


def _one_layer_model(shape: tuple[int, int, int]) -> keras.Model:
    """Conv 8 + sigmoid head, seeded, compiled with Adam 1e-3 and BCE: the user fits below."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    return model


def _camvid_fit(shared_data: Path, bgr: bool) -> set[str]:
    """A user fit on CamVid scenes (road against the rest) whose validation images were read
    with OpenCV (BGR) when ``bgr``, the training ones with PIL (RGB)."""
    from PIL import Image

    folder = shared_data / "camvid-val"
    names = sorted(p.name for p in (folder / "images").iterdir())[:24]
    x = (
        np.stack(
            [np.asarray(Image.open(folder / "images" / n).resize((96, 72))) for n in names]
        ).astype("float32")
        / 255.0
    )  # (24, 72, 96, 3)
    masks = np.stack(
        [
            np.asarray(Image.open(folder / "masks" / n).resize((96, 72), Image.NEAREST))
            for n in names
        ]
    )
    y = (masks == np.bincount(masks.ravel()).argmax()).astype("float32")[..., None]
    model = _one_layer_model((72, 96, 3))
    doctor = DoctorCallback(verbose=False)
    xv = x[16:, ..., ::-1] if bgr else x[16:]
    model.fit(x[:16], y[:16], batch_size=4, epochs=1, validation_data=(xv, y[16:]), verbose=0,
              callbacks=[doctor])  # fmt: skip
    return {f"{f.id}:{f.severity}" for f in doctor.findings}


def test_validation_read_as_bgr_is_named_from_the_batches(shared_data):
    """Missed by the second blind test: the split-level channel means were too close."""
    assert "split-channel-order:error" in _camvid_fit(shared_data, bgr=True)
    assert not any(f.startswith("split-channel-order") for f in _camvid_fit(shared_data, False))


def _nuclei_crops(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """``n`` gray 64 px centre crops of the bundled nuclei sample with 5-50% foreground."""
    from segdoctor.data import discover_pairs, read_pair
    from segdoctor.sample_data import sample_path

    x, y = [], []
    for pair in discover_pairs(sample_path()).pairs:
        image, mask = read_pair(pair)
        h, w = mask.shape
        box = (slice(h // 2 - 32, h // 2 + 32), slice(w // 2 - 32, w // 2 + 32))
        if image.shape[-1] == 1 and 0.05 < (mask[box] > 0).mean() < 0.5 and len(x) < n:
            x.append(image[box].astype("float32") / 255.0)
            y.append((mask[box] > 0).astype("float32")[..., None])
    return np.stack(x), np.stack(y)  # (n, 64, 64, 1)


def test_masks_shifted_in_a_subset_are_named_from_the_batches():
    """Third blind test: half of the training masks exported with an 8 px offset crop."""
    x, y = _nuclei_crops()

    def fit(shifted: bool) -> set[str]:
        masks = y.copy()
        if shifted:
            masks[1::2] = 0
            masks[1::2, 8:, 8:] = y[1::2, :-8, :-8]
        model = _one_layer_model((64, 64, 1))
        doctor = DoctorCallback(verbose=False)
        model.fit(x, masks, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[doctor])
        return {f"{f.id}:{f.severity}" for f in doctor.findings}

    assert "mask-offset:error" in fit(shifted=True)
    assert not any(f.startswith("mask-offset") for f in fit(shifted=False))


class _Tiles(keras.utils.PyDataset):
    """Batches of 4 disk images; ``stuck``: ``__getitem__`` slices with a counter it never
    advances instead of its index (third blind test: every step of an epoch the same batch)."""

    def __init__(self, stuck: bool):
        super().__init__()
        self.x, self.y = disks(48)
        self.stuck, self.batch_index = stuck, 0

    def __len__(self):
        return 12

    def __getitem__(self, index):
        i = self.batch_index if self.stuck else index
        return self.x[4 * i : 4 * i + 4], self.y[4 * i : 4 * i + 4]


def test_a_dataset_that_repeats_one_batch_is_named():
    def fit(stuck: bool) -> set[str]:
        model = small_unet()
        doctor = DoctorCallback(verbose=False)
        model.fit(_Tiles(stuck), epochs=1, verbose=0, callbacks=[doctor])
        return {f"{f.id}:{f.severity}" for f in doctor.findings}

    assert "batches-repeat:warning" in fit(stuck=True)
    assert not any(f.startswith("batches-repeat") for f in fit(stuck=False))


class _Reshuffled(keras.utils.PyDataset):
    """Batches of 4 nuclei crops, reshuffled at each epoch's end; ``split``: from the second
    epoch on, the images and the masks with two permutations (Keras also calls
    ``on_epoch_end`` before the first epoch, so a loader that always shuffled twice is caught
    by the first epoch's batches already)."""

    def __init__(self, split: bool):
        super().__init__()
        self.x, self.y = _nuclei_crops(16)
        self.split, self.calls = split, 0
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self.x[4 * index : 4 * index + 4], self.y[4 * index : 4 * index + 4]

    def on_epoch_end(self):
        self.calls += 1
        order = self.rng.permutation(len(self.x))
        self.x = self.x[order]
        split = self.split and self.calls > 1
        self.y = self.y[self.rng.permutation(len(self.y)) if split else order]


def test_pairs_broken_between_epochs_are_named_from_the_second_epoch():
    def fit(split: bool) -> list:
        model = _one_layer_model((64, 64, 1))
        doctor = DoctorCallback(verbose=False)
        model.fit(_Reshuffled(split), epochs=2, verbose=0, callbacks=[doctor])
        return [f for f in doctor.findings if f.id == "pair-misaligned"]

    (f,) = fit(split=True)
    assert f.evidence["where"] == "second epoch's batches" and "between epochs" in f.fix
    assert fit(split=False) == []


def test_the_callback_hands_keras_its_own_steps_back_after_fit():
    """One validation batch (fewer than the peeks): the test step is restored at the end."""
    x, y = disks(12)
    model = small_unet()
    model.fit(
        x[:8],
        y[:8],
        batch_size=8,
        epochs=1,
        validation_data=(x[8:], y[8:]),
        verbose=0,
        callbacks=[DoctorCallback(verbose=False)],
    )
    assert model.test_function.__name__ != "peek" and model.train_function.__name__ != "peek"


def _nuclei_folder(root: Path, inverted: int) -> Path:
    """The sample nuclei as 0/255 masks, the first ``inverted`` of them written inverted."""
    from PIL import Image

    from segdoctor.sample_data import sample_path

    src = Path(sample_path())
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i, mask_file in enumerate(sorted((src / "masks").glob("*.png"))):
        image_file = next((src / "images").glob(mask_file.stem + ".*"))
        (root / "images" / image_file.name).write_bytes(image_file.read_bytes())
        objects = np.asarray(Image.open(mask_file)) > 0
        values = (~objects if i < inverted else objects).astype("uint8") * 255
        Image.fromarray(values).save(root / "masks" / mask_file.name)
    return root


def test_a_few_inverted_masks_among_object_masks_are_named(tmp_path):
    """Missed by the second blind test: 27% of nuclei masks written inverted."""
    from segdoctor.doctor.data_checks import check_data

    found, _, _ = check_data(_nuclei_folder(tmp_path / "fault", inverted=5), plots=False)
    inverted = [f for f in found if f.id == "mask-inverted-some"]
    assert len(inverted) == 1 and 4 <= inverted[0].evidence["inverted"] <= 5
    written = sorted(p.stem for p in (tmp_path / "fault" / "masks").glob("*.png"))[:5]
    assert set(inverted[0].evidence["names"]) <= set(written)  # only the inverted files named
    found, _, _ = check_data(_nuclei_folder(tmp_path / "twin", inverted=0), plots=False)
    assert "mask-inverted-some" not in ids(found)
    # every mask "inverted" is a dataset whose foreground is the large region (membranes): silent
    found, _, _ = check_data(_nuclei_folder(tmp_path / "all", inverted=48), plots=False)
    assert "mask-inverted-some" not in ids(found)


def test_a_decayed_schedule_is_judged_at_the_rate_the_probes_train_with():
    """The blind test's trained ExponentialDecay model sat at 3e-24; the probes' fresh copies
    start its schedule at step 0 (1e-3). Judging 3e-24 against their updates ("each step moves
    the weights by 0.9%") contradicted itself."""
    from segdoctor.doctor.update_ratio import optimizer_state
    from segdoctor.lr_range import current_lr

    x, y = disks(8)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=1, decay_rate=0.1)
    model = small_unet(keras.optimizers.Adam(schedule))
    model.fit(x, y, batch_size=4, epochs=4, verbose=0)  # 8 steps: the rate is now 1e-11
    assert current_lr(model.optimizer) < 1e-9
    assert probes.configured_lr(model) == pytest.approx(1e-3)
    assert optimizer_state(model)[0] == pytest.approx(1e-3)
    assert probes.configured_lr(small_unet(keras.optimizers.Adam(3e-4))) == pytest.approx(3e-4)
