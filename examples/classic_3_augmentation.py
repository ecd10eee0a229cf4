"""Classic recipe 3: ImageDataGenerator augmentation with dropout.

The classic version augmented the images with one generator and read the masks unaugmented (or
with a second generator whose random draws differ), so masks no longer matched their images.
``ImageDataGenerator`` is gone in Keras 3: the port applies a Keras augmentation layer to the images
only, keeping the bug, plus the recipe's dropout of 0.5. The corrected version passes image and mask
to the same layer call (``{"images": x, "segmentation_masks": y}``) and uses dropout 0.2.

Run: ``python examples/classic_3_augmentation.py [--corrected]``
"""

from __future__ import annotations

import sys

import keras

from segdoctor.doctor import DoctorCallback

try:
    from examples._synthetic import disks, encoder_decoder
except ImportError:
    from _synthetic import disks, encoder_decoder


class Augmented(keras.utils.PyDataset):
    """Batches of (augmented image, mask): the classic way (images only) or jointly."""

    def __init__(self, x, y, batch_size: int, joint: bool, seed: int = 0) -> None:
        super().__init__()
        self.x, self.y, self.batch_size, self.joint = x, y, batch_size, joint
        self.flip = keras.layers.RandomFlip("horizontal_and_vertical", seed=seed)

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __getitem__(self, i: int):
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        x, y = self.x[sl], self.y[sl]  # (B, H, W, 1) each
        if self.joint:
            out = self.flip({"images": x, "segmentation_masks": y}, training=True)
            return keras.ops.convert_to_numpy(out["images"]), keras.ops.convert_to_numpy(
                out["segmentation_masks"]
            )
        return keras.ops.convert_to_numpy(
            self.flip(x, training=True)
        ), y  # the bug: masks untouched


def build(corrected: bool):
    inputs = keras.Input((32, 32, 1))
    h = encoder_decoder(inputs)
    h = keras.layers.Dropout(0.2 if corrected else 0.5)(h)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    x, y = disks(32)
    return model, [], Augmented(x, y, 8, joint=corrected)


def main(corrected: bool = False, epochs: int = 1, report: str | None = None):
    model, callbacks, data = build(corrected)
    doctor = DoctorCallback(report=report, verbose=False)
    model.fit(data, epochs=epochs, verbose=0, callbacks=[doctor, *callbacks])
    return doctor


if __name__ == "__main__":
    print(main("--corrected" in sys.argv).report().to_terminal())
