"""Training faults: a short plain-Keras script on real crops, with ``DoctorCallback`` attached (or
``diagnose(..., probe=True)`` where the doctor's answer is a probe).

Each function builds the same script twice: with the fault (``ctx.faulty``) and without it.
"""

from __future__ import annotations

import keras
import numpy as np
from benchmarks.faults import Case, Context
from benchmarks.faults.kit import dice_coef, dice_loss, fit_with_doctor, small_unet
from benchmarks.faults.real import RealPair, nuclei, stack, streets, write_pairs, write_splits
from keras import ops

from segdoctor.doctor import diagnose
from segdoctor.losses import DiceCELoss, DiceLoss


def _crops(ctx: Context, n: int = 16, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, size, size, 1) in [0, 1] and ``y`` (N, size, size, 1) 0/1 from nuclei."""
    return stack(nuclei(ctx.data_root, n=n, size=size))


VERIFY_CROPS = 96
"""Crops of the cases whose user script ``--verify`` retrains. With 48 crops the validation fifth
held 8-10 images, and the intervals of +0.08 and +0.12 in Dice (activation-double,
batchnorm-tiny-batch, 2026-12-07) reached from just below 0 to +0.2 and +0.34: too few images to
resolve what a user's dataset of hundreds of images would (benchmarks/RESULTS.md)."""


def _users_folder(
    ctx: Context, model: keras.Model, n: int = VERIFY_CROPS
) -> tuple[np.ndarray, np.ndarray]:
    """The user's crops, written as their data folder, for ``--verify`` on ``model``.

    ``x`` (N, 64, 64, 1) in [0, 1] and ``y`` (N, 64, 64, 1) 0/1, as :func:`_crops`; the folder
    and the model go to ``ctx.notes`` (--verify trains fresh copies of the model on the folder
    and scores them on its validation fifth)."""
    pairs = nuclei(ctx.data_root, n=n, size=64)
    ctx.notes["data"] = str(write_pairs(ctx.workdir / "data", pairs))
    ctx.notes["model"] = model
    return stack(pairs)


def activation_missing(ctx: Context):
    """The last layer has no activation (logits) and the loss expects probabilities."""
    model = small_unet((64, 64, 1), activation=None if ctx.faulty else "sigmoid")
    x, y = _users_folder(ctx, model)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[dice_coef],
    )
    return fit_with_doctor(model, x, y, epochs=2)


def activation_double(ctx: Context):
    """Sigmoid in the model and ``from_logits=True`` in the loss: the activation applied twice."""
    model = small_unet((64, 64, 1), activation="sigmoid")
    x, y = _users_folder(ctx, model)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=ctx.faulty),
        metrics=[dice_coef],
    )
    return fit_with_doctor(model, x, y, epochs=2)


def masks_divided_twice(ctx: Context):
    """The loader divides masks by 255 although they are already 0/1: targets become 0 and 1/255."""
    x, y = _crops(ctx)
    if ctx.faulty:
        y = y / 255.0
    model = small_unet(x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=[dice_coef]
    )
    return fit_with_doctor(model, x, y, epochs=4, validation_data=(x[:4], y[:4]))


class _FlipRotate(keras.utils.PyDataset):
    """A user's batch generator with random flips and 90-degree rotations.

    ``both=False`` is the bug: the image is transformed and the mask is not.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, both: bool, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size, self.both = x, y, batch_size, both
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __getitem__(self, i: int):
        xs, ys = [], []
        for j in range(i * self.batch_size, (i + 1) * self.batch_size):
            image, mask = self.x[j], self.y[j]
            k, flip = int(self.rng.integers(0, 4)), bool(self.rng.integers(0, 2))
            image = np.rot90(image, k)
            image = image[:, ::-1] if flip else image
            if self.both:
                mask = np.rot90(mask, k)
                mask = mask[:, ::-1] if flip else mask
            xs.append(image)
            ys.append(mask)
        return np.stack(xs).astype("float32"), np.stack(ys).astype("float32")


def augment_image_only(ctx: Context):
    """Flips and rotations applied to the images but not to the masks."""
    x, y = _crops(ctx)
    model = small_unet(x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=[dice_coef]
    )
    data = _FlipRotate(x, y, batch_size=4, both=not ctx.faulty)
    return fit_with_doctor(model, data, epochs=2)


def _rare_foreground(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """32 px crops at random places of nuclei images: many empty, the rest with a few small objects."""
    rng = np.random.default_rng(0)
    crops = []
    for p in nuclei(ctx.data_root, n=24, size=128):
        for _ in range(2):
            top, left = rng.integers(0, 128 - 32, size=2)
            box = (slice(top, top + 32), slice(left, left + 32))
            crops.append(RealPair(p.name, p.image[box], p.mask[box]))
    return stack(crops)


def smooth_rewards_empty(ctx: Context):
    """Per-image soft Dice with ``smooth=100`` on crops with rare foreground: predicting nothing
    costs a small object almost nothing. The twin uses ``smooth=1``."""
    x, y = _rare_foreground(ctx)
    smooth = 100.0 if ctx.faulty else 1.0

    def dice_loss(y_true, y_pred):
        inter = ops.sum(y_true * y_pred, axis=(1, 2, 3))  # (B,)
        total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
        return 1.0 - (2.0 * inter + smooth) / (total + smooth)

    model = small_unet(x.shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dice_loss, metrics=[dice_coef])
    return fit_with_doctor(model, x, y, epochs=4, batch_size=8, validation_data=(x[-8:], y[-8:]))


def lr_too_high(ctx: Context):
    """Adam at 0.1 (a rate copied from an SGD recipe) on a Dice + cross-entropy loss; the user runs
    ``diagnose(data, model, probe=True)`` as the docs suggest. The twin uses 1e-3.

    ``--verify`` trains fresh copies of this model (Adam at 0.1 and at the prescribed rate) on
    the folder, and its validation fifth must resolve the difference."""
    model = small_unet((64, 64, 1))
    model.compile(
        optimizer=keras.optimizers.Adam(0.1 if ctx.faulty else 1e-3),
        loss=DiceCELoss(mode="binary"),
    )
    _users_folder(ctx, model)
    folder = ctx.notes["data"]
    return diagnose(data=folder, model=model, probe=True, probe_size=64, batch_size=8, plots=False)


def checkpoint_worst_epoch(ctx: Context):
    """``ModelCheckpoint(monitor="val_dice_coef", mode="min", save_best_only=True)``, copied from
    a ``val_loss`` setup: the checkpoint keeps the worst epoch. The user has the files only and
    runs ``diagnose(data, model file, history)`` (third blind test, F1, without the callback).
    The twin watches the Dice with ``mode="max"``."""
    pairs = nuclei(ctx.data_root, n=VERIFY_CROPS, size=64)
    train, val = [p for k, p in enumerate(pairs) if k % 5], pairs[::5]  # a fifth held out
    folder = write_splits(ctx.workdir / "data", {"train": train, "val": val})
    (x, y), (xv, yv) = stack(train), stack(val)
    keras.utils.set_random_seed(0)
    model = small_unet((64, 64, 1), batchnorm=False)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=dice_loss, metrics=[dice_coef])
    path = ctx.workdir / "best.keras"
    keep = keras.callbacks.ModelCheckpoint(
        str(path), monitor="val_dice_coef", mode="min" if ctx.faulty else "max", save_best_only=True
    )
    fit = model.fit(
        x, y, validation_data=(xv, yv), epochs=10, batch_size=8, callbacks=[keep], verbose=0
    )
    return diagnose(data=folder, model=str(path), history=fit.history, plots=False)


def nan_mixed_precision(ctx: Context):
    """``mixed_float16`` on 16-bit images normalized inside the model (``Rescaling(1 / 65535)``).

    The images are exported as 16-bit with the contrast stretched to the full range (as microscope
    software and Fiji do), so every image reaches 65535. Keras casts the model input to float16
    before the first layer; float16 ends at 65504, so the brightest pixels become inf, and
    inf * (1 / 65535) is still inf: the Dice loss is NaN from the first step (a cross-entropy on
    torch would raise instead). The twin runs the same script in float32.
    """
    pairs = nuclei(ctx.data_root, n=16, size=64)
    x = []
    for p in pairs:  # (H, W) uint8 -> stretched uint16
        lo, hi = float(p.image.min()), float(p.image.max())
        x.append(np.round((p.image - lo) / max(hi - lo, 1.0) * 65535).astype(np.uint16))
    x = np.stack(x).astype("float32")[..., None]  # (N, H, W, 1) in 0..65535
    y = np.stack([p.mask for p in pairs]).astype("float32")[..., None]
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if ctx.faulty else "float32")
    try:
        model = small_unet(x.shape[1:], rescale=1 / 65535)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dice_loss, metrics=[dice_coef])
        return fit_with_doctor(model, x, y, epochs=3, validation_data=(x[:4], y[:4]))
    finally:
        keras.mixed_precision.set_global_policy(previous)


def metric_probabilities(ctx: Context):
    """``keras.metrics.MeanIoU`` given sigmoid probabilities: it casts them to int (all 0), so the
    IoU never moves. The twin computes the same mean IoU from thresholded predictions (BinaryIoU)."""
    x, y = _crops(ctx)
    if ctx.faulty:
        metric = keras.metrics.MeanIoU(num_classes=2, name="mean_iou")
    else:
        metric = keras.metrics.BinaryIoU(target_class_ids=[0, 1], threshold=0.5, name="mean_iou")
    model = small_unet(x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=[metric]
    )
    return fit_with_doctor(model, x, y, epochs=3, validation_data=(x[:4], y[:4]))


def include_background_softmax(ctx: Context):
    """Two-channel softmax with a Dice that averages in the background class (MONAI's
    ``DiceLoss(include_background=True, softmax=True)``), on rare foreground. The twin excludes it."""
    x, y = _rare_foreground(ctx)
    model = small_unet(x.shape[1:], out_channels=2, activation="softmax")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=DiceLoss(mode="multiclass", include_background=ctx.faulty),
    )
    return fit_with_doctor(model, x, y, epochs=2, batch_size=8)


def batchnorm_tiny_batch(ctx: Context):
    """BatchNorm trained with batches of 2 (large crops, little memory). The twin uses batches of 8."""
    model = small_unet((64, 64, 1), batchnorm=True)
    x, y = _users_folder(ctx, model)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=[dice_coef]
    )
    return fit_with_doctor(model, x, y, epochs=2, batch_size=2 if ctx.faulty else 8)


def frozen_encoder(ctx: Context):
    """ "Freeze the encoder" on a U-Net built from scratch (no pretrained weights loaded): every
    layer but the last block and the head keeps its random initial weights. The twin trains all."""
    x, y = _crops(ctx)
    model = small_unet(x.shape[1:])
    if ctx.faulty:
        for layer in model.layers[:-7]:  # the last block (2 x conv, BN, ReLU) and the head train
            layer.trainable = False
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=[dice_coef]
    )
    return fit_with_doctor(model, x, y, epochs=2)


def _one_hot_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """The multi-class Dice loss of many Q&A answers: written for one-hot targets."""
    y_true = ops.cast(y_true, "float32")
    inter = ops.sum(y_true * y_pred, axis=(1, 2))  # (B, K)
    total = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
    return 1.0 - ops.mean((2.0 * inter + smooth) / (total + smooth))


def sparse_labels_one_hot_loss(ctx: Context):
    """CamVid class indices ``(B, H, W, 1)`` given to a multi-class Dice written for one-hot
    targets, with a 12-channel softmax head: the indices broadcast over the channels. The twin
    one-hot encodes the targets."""
    pairs = streets(ctx.data_root, n=16, width=64)  # 64 x 48 scenes, classes 0..11
    x = np.stack([p.image for p in pairs]).astype("float32") / 255.0  # (N, 48, 64, 3)
    labels = np.stack([p.mask for p in pairs]).astype("int64")  # (N, 48, 64)
    y = labels[..., None].astype("float32") if ctx.faulty else np.eye(12, dtype="float32")[labels]
    model = small_unet(x.shape[1:], out_channels=12, activation="softmax")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_one_hot_dice_loss)
    return fit_with_doctor(model, x, y, epochs=2, batch_size=4)


def validation_unscaled(ctx: Context):
    """Training images divided by 255, validation images left in 0..255 (the division written
    for one array only). The twin scales both. (Second blind test, 2026-12-07.)"""
    x, y = _crops(ctx, n=24)
    xv, yv = x[16:] * (255.0 if ctx.faulty else 1.0), y[16:]
    model = small_unet(x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=[dice_coef]
    )
    return fit_with_doctor(model, x[:16], y[:16], epochs=2, validation_data=(xv, yv))


def schedule_in_steps(ctx: Context):
    """``ExponentialDecay(1e-3, decay_steps=2, decay_rate=0.5)`` meant as "every 2 epochs":
    Keras counts optimizer steps, so the rate is about 0 after the first epochs. The twin decays
    every 2 epochs' worth of steps. (Second blind test, 2026-12-07.)"""
    x, y = _crops(ctx, n=32)
    steps_per_epoch = len(x) // 4
    decay = 2 if ctx.faulty else 2 * steps_per_epoch
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay, decay_rate=0.5)
    model = small_unet(x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy", metrics=[dice_coef]
    )
    return fit_with_doctor(model, x, y, epochs=8)


def softmax_rows(ctx: Context):
    """A 2-class softmax head written ``Softmax(axis=1)`` (PyTorch's ``dim=1``) on channels-last
    output: probabilities sum to 1 over the image rows. The twin uses ``axis=-1``. (Second blind
    test, 2026-12-07.)"""
    x, y = _crops(ctx)
    base = small_unet(x.shape[1:], out_channels=2, activation=None)
    outputs = keras.layers.Softmax(axis=1 if ctx.faulty else -1)(base.output)
    model = keras.Model(base.input, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    one_hot = np.eye(2, dtype="float32")[y[..., 0].astype(int)]  # (N, H, W, 2)
    return fit_with_doctor(model, x, one_hot, epochs=1)


class _StuckTiles(keras.utils.PyDataset):
    """Batches of 4 crops; ``stuck``: ``__getitem__`` slices with a counter it never advances."""

    def __init__(self, x: np.ndarray, y: np.ndarray, stuck: bool):
        super().__init__()
        self.x, self.y, self.stuck, self.batch_index = x, y, stuck, 0

    def __len__(self) -> int:
        return len(self.x) // 4

    def __getitem__(self, index: int):
        i = self.batch_index if self.stuck else index
        return self.x[4 * i : 4 * i + 4], self.y[4 * i : 4 * i + 4]


def same_batch(ctx: Context):
    """A PyDataset whose ``__getitem__`` slices with ``self.batch_index`` (never advanced)
    instead of its argument: every step of an epoch gets the same 4 crops. The twin indexes with
    the argument. (Third blind test, 2026-12-07.)"""
    x, y = _crops(ctx, n=32)
    model = small_unet(x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=[dice_coef]
    )
    return fit_with_doctor(model, _StuckTiles(x, y, ctx.faulty), epochs=1)


def class_weights_inverted(ctx: Context):
    """A pixel-weighted BCE whose class weights were computed as frequency / mean instead of
    (1 / frequency) / mean: the rare foreground gets the small weight. The twin weights by the
    inverse frequency. (Third blind test, 2026-12-07: Dice 0.725 against 0.826.)"""
    x, y = _crops(ctx, n=32)
    freq = np.array([1 - y.mean(), y.mean()])
    w = freq / freq.mean() if ctx.faulty else (1 / freq) / (1 / freq).mean()
    w_bg, w_fg = float(w[0]), float(w[1])

    def weighted_bce(y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.clip(y_pred, 1e-7, 1 - 1e-7)
        weight = y_true * w_fg + (1 - y_true) * w_bg
        ce = y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred)
        return ops.mean(-weight * ce, axis=(1, 2, 3))

    model = small_unet(x.shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=weighted_bce, metrics=[dice_coef])
    return fit_with_doctor(model, x[:24], y[:24], epochs=1, validation_data=(x[24:], y[24:]))


def validation_bgr(ctx: Context):
    """CamVid scenes (road vs the rest); the validation images were read with ``cv2.imread``
    (BGR), the training ones with PIL (RGB). The twin reads both as RGB. (Second blind test,
    2026-12-07, where the split-level channel means were too close to tell.)"""
    pairs = streets(ctx.data_root, n=24, width=96)
    x = np.stack([p.image for p in pairs]).astype("float32") / 255.0  # (N, H, W, 3) RGB
    road = int(np.bincount(np.concatenate([p.mask.ravel() for p in pairs])).argmax())
    y = np.stack([(p.mask == road) for p in pairs]).astype("float32")[..., None]
    xv = x[16:, ..., ::-1] if ctx.faulty else x[16:]
    model = small_unet(x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=[dice_coef]
    )
    return fit_with_doctor(model, x[:16], y[:16], epochs=2, validation_data=(xv, y[16:]))


CASES = [
    Case(
        "checkpoint-worst-epoch",
        "dsb2018-nuclei",
        "diagnose(data, model file, history)",
        ("saved-model-not-best",),
        "third blind test, 2026-12-07: a Dice checkpoint in mode='min' kept the worst epoch",
        checkpoint_worst_epoch,
    ),
    Case(
        "activation-missing",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("output-activation-missing",),
        "smp, Keras: logits fed to a loss that expects probabilities",
        activation_missing,
    ),
    Case(
        "activation-double",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("from-logits-mismatch",),
        "smp, MONAI (sigmoid=True on a sigmoid model), Keras from_logits=True after sigmoid",
        activation_double,
    ),
    Case(
        "masks-divided-twice",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("mask-fractional", "mask-invalid-values"),
        "FC-DenseNet-TensorFlow #16: 0/1 labels divided by 255, IoU stuck at 0.5",
        masks_divided_twice,
    ),
    Case(
        "augment-image-only",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("pair-misaligned",),
        "Keras ImageDataGenerator / albumentations: image and mask augmented with different seeds",
        augment_image_only,
    ),
    Case(
        "smooth-rewards-empty",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("dice-smooth-large", "prediction-collapse"),
        "Keras/smp Dice with a large smooth term: empty prediction scores well on small objects",
        smooth_rewards_empty,
    ),
    Case(
        "lr-too-high",
        "dsb2018-nuclei",
        "diagnose(probe)",
        ("lr-too-high", "loss-oscillation", "exploding-gradients", "nan-loss"),
        "Keras, smp: Dice loss jumps or collapses with Adam at an SGD learning rate",
        lr_too_high,
    ),
    Case(
        "nan-mixed-precision",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("nan-loss", "exploding-gradients"),
        "smp #463 (float16 overflow to inf in Dice sums), TF #45568: NaN loss in mixed precision",
        nan_mixed_precision,
    ),
    Case(
        "metric-probabilities",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("metric-constant",),
        "TF #39173: MeanIoU fed probabilities instead of labels stays constant",
        metric_probabilities,
    ),
    Case(
        "include-background-softmax",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("dice-includes-background", "loss-background-dominated"),
        "MONAI #5413 and its Dice issues: include_background with softmax on rare foreground",
        include_background_softmax,
    ),
    Case(
        "batchnorm-tiny-batch",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("batchnorm-small-batch", "bn-train-infer-gap"),
        "nnU-Net/MONAI (instance norm by default for this), Keras: BatchNorm with batch size 1-2",
        batchnorm_tiny_batch,
    ),
    Case(
        "frozen-encoder",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("frozen-untrained",),
        "segmentation_models #88 (encoder_freeze) with smp #280's encoder_weights=None: random frozen features",
        frozen_encoder,
    ),
    Case(
        "sparse-labels-one-hot-loss",
        "camvid-val",
        "fit+DoctorCallback",
        ("loss-label-format",),
        "keras #9395, Loss-Functions-Package #2: y_true (B, H, W, 1) against a 10-class softmax Dice",
        sparse_labels_one_hot_loss,
    ),
    Case(
        "validation-unscaled",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("split-intensity-shift",),
        "Keras Q&A: x_train / 255 but not x_val; validation Dice stuck while training rises",
        validation_unscaled,
    ),
    Case(
        "same-batch",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("batches-repeat",),
        "Keras Sequence/PyDataset bugs: __getitem__ ignores its index, one batch every step",
        same_batch,
    ),
    Case(
        "class-weights-inverted",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("loss-favours-background",),
        "Keras Q&A: pixel class weights computed as frequency instead of inverse frequency",
        class_weights_inverted,
    ),
    Case(
        "validation-bgr",
        "camvid-val",
        "fit+DoctorCallback",
        ("split-channel-order",),
        "OpenCV users: cv2.imread returns BGR; one split read with cv2, the other with PIL",
        validation_bgr,
    ),
    Case(
        "schedule-in-steps",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("lr-vanished",),
        "Keras: ExponentialDecay's decay_steps counts batches, not epochs",
        schedule_in_steps,
    ),
    Case(
        "softmax-rows",
        "dsb2018-nuclei",
        "fit+DoctorCallback",
        ("softmax-wrong-axis",),
        "PyTorch code ported to Keras: softmax(dim=1) kept as Softmax(axis=1) on NHWC",
        softmax_rows,
    ),
]
