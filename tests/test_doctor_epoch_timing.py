"""``epoch-start-wait``: epochs that begin with a long wait before their first step."""

from __future__ import annotations

import time

import keras
import numpy as np

from segdoctor.doctor.callback import DoctorCallback
from segdoctor.doctor.epoch_timing import LOST_SHARE, epoch_start_findings
from segdoctor.losses import DiceCELoss


def test_the_measured_stall_is_a_warning():
    # the default recipe before the fix: 0.52 s steps, 4 of 9 epochs waited 38-40 s, 565 s of training
    first = [0.6, 0.6, 0.6, 38.4, 38.4, 0.6, 39.9, 0.6, 40.2]
    found = epoch_start_findings(first, [0.52] * 700, 565.0)
    assert [f.id for f in found] == ["epoch-start-wait"] and found[0].severity == "warning"
    assert found[0].evidence["epochs_that_waited"] == 4
    assert found[0].evidence["lost_share"] >= LOST_SHARE


def test_small_waits_are_info_and_one_wait_or_none_is_silent():
    found = epoch_start_findings([3.0, 3.0, 0.5], [0.1] * 1000, 500.0)  # 5.8 s of 500: 1%
    assert found[0].severity == "info"
    assert epoch_start_findings([40.0, 0.5, 0.5], [0.5] * 700, 400.0) == []  # one: not a pattern
    assert epoch_start_findings([0.6, 0.5, 0.7], [0.5] * 700, 400.0) == []
    assert epoch_start_findings([1.5, 1.5, 1.5], [0.1] * 1000, 100.0) == []  # under 2 s more


class _Batches(keras.utils.PyDataset):
    """Random 16x16 crops; with ``wait``, each epoch after the first starts ``wait`` s late."""

    def __init__(self, wait: float) -> None:
        super().__init__()
        self.wait, self.epoch, self.rng = wait, 0, np.random.default_rng(0)

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i):
        x = self.rng.normal(size=(4, 16, 16, 1)).astype("float32")
        return x, (x > 0.5).astype("int32")

    def on_epoch_begin(self) -> None:  # Keras calls it after the callbacks' on_epoch_begin
        if self.epoch > 0 and self.wait:
            time.sleep(self.wait)

    def on_epoch_end(self) -> None:
        self.epoch += 1


def _fit(wait: float) -> DoctorCallback:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=DiceCELoss(mode="binary"))
    doctor = DoctorCallback(verbose=False, probe_loss=False, watch_gradients=0)
    model.fit(_Batches(wait), epochs=4, verbose=0, callbacks=[doctor])
    return doctor


def test_the_callback_sees_epochs_that_start_late():
    found = {f.id: f for f in _fit(wait=2.5).findings}
    assert "epoch-start-wait" in found
    assert found["epoch-start-wait"].evidence["epochs_that_waited"] == 3
    assert "epoch-start-wait" not in {f.id for f in _fit(wait=0.0).findings}
