"""Catalog entries of the model, compile and loss checks, with their fix texts.

Checks: :mod:`segdoctor.doctor.model_checks`, :mod:`~segdoctor.doctor.model_data`,
:mod:`~segdoctor.doctor.loss_probe` and :mod:`~segdoctor.doctor.callback` (``monitor-mode``).
"""

from __future__ import annotations

from segdoctor.doctor.catalog.entry import CatalogEntry

_CHANNELS_CONVERT = (
    "segdoctor's loader converts them (SegmentationDataset(..., channels={model_input_channels}): "
    "gray is repeated into RGB, RGB becomes luminance, alpha is dropped); a hand-written "
    "pipeline must do the same, e.g. PIL Image.open(p).convert("
    "'{convert_to}'), or build the model with "
    "keras.Input((None, None, {common_channels}))."
)
_CLASSES_MISMATCH = (
    "The masks hold {what} but the model outputs {output_channels} channel(s): the loss cannot "
    "score the classes the head does not have. Use {head} as the last layer, or fix the masks "
    "if the class count is wrong (instance labels: use the foreground, y > 0)."
)
_CLASSES_MISMATCH_TITLE = (
    "The model outputs {output_channels} channel(s) but the masks hold {classes} classes"
)
_CHANNELS_EXTRA = (
    "In {seen} the classes are 0..{max_label}, but the head has {output_channels} channels: "
    "{missing} class(es) never occur. A Dice averaged over the channels counts them "
    "(it reads 0, or 1 with smoothing, whatever the model learns), and the masks may not hold "
    "what the head was built for. Use {head}, or check that the mask conversion "
    "did not merge classes."
)
_CHANNELS_EXTRA_TITLE = "The model outputs {output_channels} channels but the masks hold only {classes_in_masks} classes"

MODEL_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "monitor-mode",
        "model",
        "error",
        "A callback watches Dice/IoU in the wrong direction",
        fix="{callback} watches {monitor!r}, which must go {must_go}. "
        "Pass the direction explicitly:\nkeras.callbacks.{callback}(monitor={monitor!r}, "
        "mode={mode_needed!r}, ...)",
        variants={
            "stopped-early": "Training was stopped while the Dice was still rising: EarlyStopping "
            "watches a Dice-like metric in 'min' mode (or, if its mode is 'max', its min_delta is "
            "larger than the Dice gains an epoch: min_delta is an absolute change). Use\n"
            "keras.callbacks.EarlyStopping(monitor='{monitor}', mode='max', patience=10, "
            "restore_best_weights=True)"
        },
        titles={
            "named-callback": "{callback} watches {monitor} in the wrong direction (mode={mode!r})",
            "stopped-early": "Training stopped while validation Dice was still improving",
        },
    ),
    CatalogEntry(
        "early-stopping-min-delta",
        "model",
        "warning",
        "EarlyStopping's min_delta stopped a run whose Dice was still rising",
        fix="EarlyStopping(monitor={monitor!r}, min_delta={min_delta:g}, patience={patience}) "
        "stopped training at epoch {stopped_at_epoch} of {of_epochs} while the Dice still made "
        "new bests, by at most {largest_gain:.3f} an epoch: min_delta is an absolute change of "
        "the watched value, and Dice gains late in a run are 0.001-0.01. Use min_delta=0 (or "
        "1e-4) and a patience of 10 or more:\nkeras.callbacks.EarlyStopping(monitor={monitor!r}, "
        "mode='max', patience=10, restore_best_weights=True)",
    ),
    CatalogEntry(
        "receptive-field-small",
        "model",
        "warning",
        "The model sees less than an object: its receptive field is smaller than the objects",
        fix="Each output pixel of the model depends on a window of {receptive_field_px} x "
        "{receptive_field_px} input pixels (measured), while the objects in the masks are about "
        "{object_diameter_px} px across (median over {images} images, {where}). The model can "
        "only classify pixels by their local intensity, not see an object, its edges or its "
        "context. Check that the output head is attached to the last decoder block (a typo such "
        "as Conv2D(1, 1)(c1) for (c9) drops the whole U-Net: print model.summary() and count "
        "the layers), or use a deeper network (a U-Net of depth 4 sees about 140 px).",
    ),
    CatalogEntry(
        "augment-value-range",
        "model",
        "error",
        "An augmentation layer assumes another value range than the images have",
        fix="{layers} assume(s) pixel values in {value_range} (Keras' default is (0, 255)), but "
        "the model receives images in [{input_min:.3g}, {input_max:.3g}]. The layer scales its "
        "change to the range it assumes and clips to it: a brightness factor of 0.2 adds up to "
        "+-51 to pixels of at most 1, and the clip erases the image. Pass the range your inputs "
        "have, e.g. keras.layers.RandomBrightness(0.2, value_range=(0, 1)).",
        variants={
            "unknown-inputs": "{layers} assume(s) pixel values in {value_range} (Keras' "
            "default), and the history says the model never learned. If your pipeline feeds "
            "images in [0, 1] (divided by 255), these layers add changes scaled to 0..255 and "
            "clip to it, which erases the images: pass value_range=(0, 1), e.g. "
            "keras.layers.RandomBrightness(0.2, value_range=(0, 1)). DoctorCallback sees the "
            "inputs and can tell for sure.",
        },
        titles={
            "unknown-inputs": "Augmentation layers at the (0, 255) default in a model that never "
            "learned",
        },
    ),
    CatalogEntry(
        "saved-model-not-best",
        "model",
        "error",
        "The saved model scores far below the best epoch of its own history",
        fix="Scored on {images} images of {scored_on}, the model file reaches {metric} "
        "{measured:.3f} (the best of the usual input scalings: {scalings}), but epoch "
        "{best_epoch} of its history reached {best:.3f}; the file is closest to epoch "
        "{nearest_epoch} of {epochs} ({nearest_value:.3f}). It does not hold the best epoch. A "
        "ModelCheckpoint(save_best_only=True) or EarlyStopping(restore_best_weights=True) that "
        "watches a Dice in mode='min' keeps the worst epoch: pass mode='max', e.g.\n"
        "keras.callbacks.ModelCheckpoint(path, monitor='{metric}', mode='max', "
        "save_best_only=True). (If the file is from another run or the data is not what it was "
        "validated on, this comparison does not apply.)",
        variants={
            "last-epoch": "Scored on {images} images of {scored_on}, the model file reaches "
            "{metric} {measured:.3f} (the best of the usual input scalings: {scalings}), as the "
            "last of {epochs} epochs did ({nearest_value:.3f}), but epoch {best_epoch} reached "
            "{best:.3f}: the model was saved at the end of training, not at its best. Keep the "
            "best epoch: keras.callbacks.ModelCheckpoint(path, monitor='{metric}', mode='max', "
            "save_best_only=True), or EarlyStopping(monitor='{metric}', mode='max', "
            "restore_best_weights=True).",
        },
        titles={
            "earlier-epoch": "The saved model scores {measured:.3f}, like epoch {nearest_epoch}; "
            "the best epoch {best:.3f}",
            "last-epoch": "The saved model is the last epoch ({measured:.3f}), not the best "
            "({best:.3f})",
        },
    ),
    CatalogEntry(
        "softmax-single-channel",
        "model",
        "error",
        "Softmax over a single channel always outputs 1",
        fix="Softmax over one channel is always 1.0, so the prediction cannot change. For binary "
        "segmentation use one channel with sigmoid:\nkeras.layers.Conv2D(1, 1, activation='sigmoid')",
    ),
    CatalogEntry(
        "softmax-wrong-axis",
        "model",
        "error",
        "The output softmax normalizes over the wrong axis",
        fix="The last layer is Softmax(axis={axis}) on a (batch, height, width, channels) output: "
        "the probabilities sum to 1 over {axis_name}, not over the classes, so each pixel's "
        "scores are not a distribution over classes and the loss cannot train them. Softmax "
        "over the channels:\nkeras.layers.Softmax(axis=-1)  # or Conv2D({output_channels}, 1, "
        "activation='softmax')",
    ),
    CatalogEntry(
        "output-activation-missing",
        "model",
        "error",
        "The model outputs logits but the loss expects probabilities",
        fix="The last layer has no activation (it outputs logits) but the loss expects "
        "probabilities. Either add the activation:\n"
        "keras.layers.Conv2D({output_channels}, 1, activation='{head_activation}')\n"
        "or keep logits and tell the loss: from_logits=True.",
        variants={
            "probed": "The model outputs logits and the loss treats them as probabilities (it "
            "goes negative or prefers wrong logits). Add the activation:\n"
            "keras.layers.Conv2D({output_channels}, 1, activation='{head_activation}')"
        },
    ),
    CatalogEntry(
        "from-logits-mismatch",
        "model",
        "error",
        "from_logits=True on a model that outputs probabilities",
        fix="The model already applies {output_activation}, and the loss applies it again "
        "(from_logits=True): gradients shrink and probabilities are squashed. Use "
        "from_logits=False, or remove the activation from the last layer.",
    ),
    CatalogEntry(
        "activation-loss-mismatch",
        "model",
        "error",
        "Output activation and loss do not match",
        fix="Match them: binary -> Conv2D(1, 1, activation='sigmoid') + BinaryCrossentropy / "
        "DiceLoss(mode='binary'); K classes -> Conv2D(K, 1, activation='softmax') + "
        "SparseCategoricalCrossentropy / DiceLoss(mode='multiclass').",
    ),
    CatalogEntry(
        "loss-not-differentiable",
        "loss",
        "error",
        "The loss has zero gradient (thresholding inside the loss)",
        fix="The loss thresholds or rounds the prediction (round, >, argmax, cast), so its "
        "gradient is zero and nothing trains. Use soft probabilities in the loss:\n"
        "segdoctor.losses.DiceLoss(from_logits=False)  # no round() inside",
    ),
    CatalogEntry(
        "loss-favours-background",
        "model",
        "warning",
        "The loss makes a missed foreground pixel cheaper than a false one",
        fix="On a perfect prediction made wrong at an object's edge, 32 missed foreground pixels "
        "cost {ratio} times what 32 false foreground pixels cost: the loss pushes the model to "
        "predict less foreground, on top of the class imbalance, and the masks come out too small. "
        "Class weights computed the wrong way round (frequency instead of 1 / frequency) do this; "
        "so does a Tversky loss whose weight on false negatives is below its weight on false "
        "positives (keras.losses.Tversky before keras-team/keras#23333 applies alpha to the "
        "missed foreground, not to false positives as its docstring says). Weight the foreground "
        "by 1 / frequency, or use a Dice + cross-entropy loss (segdoctor.losses.DiceCELoss).",
    ),
    CatalogEntry(
        "loss-wrong-direction",
        "loss",
        "error",
        "The loss rewards wrong predictions (a metric passed as the loss)",
        fix="The function passed as the loss is higher for a perfect prediction than for a wrong "
        "one: it is a score (e.g. dice_coef) used as a loss. Minimize 1 - dice instead:\n"
        "model.compile(loss=segdoctor.losses.DiceLoss(), metrics=[segdoctor.metrics.DiceScore()])",
        variants={
            "history": "The training loss fell from {loss_first:.3g} to {loss_last:.2g} while the "
            "Dice stayed at or under {dice_max_after_first_epoch:.2f} after the first epoch: "
            "minimizing the loss made the model fail, so the loss is smallest for a wrong "
            "prediction. Usually a score passed as the loss (loss=dice_coef where "
            "1 - dice_coef was meant), unless the masks hold no foreground at all. Minimize "
            "1 - dice instead:\n"
            "model.compile(loss=segdoctor.losses.DiceLoss(), metrics=[segdoctor.metrics.DiceScore()])",
        },
    ),
    CatalogEntry(
        "loss-label-format",
        "loss",
        "error",
        "The loss does not read the targets as given: class indices for a one-hot loss",
        fix="The targets are class indices of shape (B, H, W, 1) and the model has {k} output "
        "channels, but your loss does not score the right answer better than another sample's "
        "answer: it is written for one-hot targets, so the indices broadcast over the {k} "
        "channels. One-hot encode the targets (y = keras.utils.to_categorical(y[..., 0], {k})), "
        "or use a loss that takes class indices "
        "(keras.losses.SparseCategoricalCrossentropy(), segdoctor.losses.DiceCELoss()).",
    ),
    CatalogEntry(
        "loss-background-dominated",
        "loss",
        "error",
        "Missing the objects barely changes the loss: background dominates",
        fix="Missing every object costs almost nothing: classes (background included) are "
        "pooled into one Dice, so class weights and small objects do not count. Compute "
        "Dice per class, then average (with weights if you want them):\n"
        "segdoctor.losses.DiceLoss(mode='multiclass', include_background=False, "
        "class_weights=[...])",
    ),
    CatalogEntry(
        "output-classes-mismatch",
        "model",
        "error",
        "Output channels do not match the classes in the masks",
        fix=_CLASSES_MISMATCH.replace("{what}", "class indices up to {max_label}"),
        variants={
            "one-hot": _CLASSES_MISMATCH.replace("{what}", "one-hot targets of depth {classes}")
        },
        titles={"class-indices": _CLASSES_MISMATCH_TITLE, "one-hot": _CLASSES_MISMATCH_TITLE},
    ),
    CatalogEntry(
        "output-channels-extra",
        "model",
        "warning",
        "The model outputs more channels than the masks have classes",
        fix=_CHANNELS_EXTRA.replace("{seen}", "every mask"),
        variants={"sampled": _CHANNELS_EXTRA.replace("{seen}", "{masks_seen} masks ({where})")},
        titles={"every-mask": _CHANNELS_EXTRA_TITLE, "sampled": _CHANNELS_EXTRA_TITLE},
    ),
    CatalogEntry(
        "output-activation-unsuited",
        "model",
        "error",
        "The output activation is neither a probability nor a logit (relu, tanh, ...)",
        fix="The last layer applies {output_activation!r}, whose output is neither a probability "
        "nor an unbounded logit; the loss reads it as {read_as}. End the model with\n"
        "keras.layers.Conv2D({output_channels}, 1, activation='{head_activation}') and a loss with "
        "from_logits=False, or with no activation and from_logits=True.",
        titles={"named": "The output activation {output_activation!r} is unsuited to segmentation"},
    ),
    CatalogEntry(
        "input-channels-mismatch",
        "model",
        "warning",
        "Image channels differ from the model's input channels",
        fix="The files' channels differ from the model's input. " + _CHANNELS_CONVERT,
        variants={
            "batch": "The batches reach the model with other channels than its input expects. "
            + _CHANNELS_CONVERT,
            "colour-to-gray": "Colour images meet a 1-channel model: converting them to gray "
            "discards colour. " + _CHANNELS_CONVERT,
        },
    ),
    CatalogEntry(
        "dice-smooth-large",
        "loss",
        "warning",
        "Dice smoothing is large: an empty prediction of a small object scores well",
        fix="The smoothing term dominates small objects: predicting nothing costs "
        "{loss_missed_9px_object:.2f} of a maximum {maximum:.2f}. Use smooth=1e-5 (or 1), "
        "computed per image:\nsegdoctor.losses.DiceLoss(smooth=1e-5, per_image=True)",
    ),
    CatalogEntry(
        "dice-batch-pooled",
        "loss",
        "warning",
        "Dice is pooled over the batch: small objects are ignored",
        fix="The loss sums over the whole batch before dividing, so a missed small object next to "
        "a large one barely counts. Reduce per image (sum over H, W only), then average:\n"
        "segdoctor.losses.DiceLoss(per_image=True)",
    ),
    CatalogEntry(
        "dice-empty-penalized",
        "loss",
        "warning",
        "A correct empty prediction on an empty mask is penalized",
        fix="A correct empty prediction on an empty mask should cost 0 (keras.losses.Dice "
        "scores it 1.0; without smoothing it is 0/0). Use a Dice with a small smooth "
        "term or an explicit empty policy:\nsegdoctor.losses.DiceLoss(smooth=1e-5)",
    ),
    CatalogEntry(
        "dice-includes-background",
        "loss",
        "info",
        "Dice averages in the background class",
        fix="The background class is averaged into the Dice: it is near 1 almost always, "
        "which dilutes the signal of the foreground classes. Exclude it:\n"
        "segdoctor.losses.DiceLoss(mode='multiclass', include_background=False)",
        titles={
            "rare-foreground": "Dice averages in the background class, and the foreground is rare"
        },
    ),
    CatalogEntry(
        "model-loss-unavailable",
        "model",
        "info",
        "The model file's loss could not be restored: checks that need it were skipped",
        fix="The architecture was loaded without its compiled loss, metrics and optimizer "
        "({reason}): the model checks ran, the loss probe and --probe did not. Register your "
        "loss (@keras.saving.register_keras_serializable() on the function or class, imported "
        "before loading), or call segdoctor.doctor.diagnose(model=model, ...) from the script "
        "that compiled it.",
    ),
    CatalogEntry(
        "inference-stochastic",
        "model",
        "warning",
        "Layers called with training=True: direct model(x) calls run them in training mode",
        fix="These layers were called with training=True when the model was built (Monte Carlo "
        "dropout code, a noise layer meant for training). Keras' fit, evaluate and predict pass "
        "training=False and override it, but model(x) without training= does not: a custom "
        "training loop, your own validation or an inference script runs a randomly thinned "
        "network whose Dice moves from call to call. Call the layers without training=... (Keras "
        "passes the right mode), and keep MC dropout to a separate model built for uncertainty.",
        titles={
            "random": "The model gives different outputs for the same input in inference mode",
            "augmentation": "Augmentation layers in the model: direct model(x) calls augment",
        },
        variants={
            "augmentation": "Keras' random augmentation layers (RandomFlip, RandomBrightness, "
            "...) are part of this model. fit trains with them; evaluate and predict pass "
            "training=False and skip them; but a direct model(x) call without training= augments "
            "its input, so an inference script or a custom validation loop that calls model(x) "
            "scores augmented images. Call model(x, training=False), or predict().",
            "random": "Two calls of the model on the same input with training=False gave "
            "different outputs: its call() draws random numbers or ignores the training flag, so "
            "evaluate() and predict() (and the validation Dice) measure a random network. Use "
            "random ops only when training is True, or layers that do (Dropout, GaussianNoise).",
        },
    ),
    CatalogEntry(
        "dropout-high",
        "model",
        "warning",
        "Dropout rate is high",
        fix="Dropout >= 0.5 in a segmentation network slows learning and makes the training Dice "
        "lag the validation Dice. Use rate 0.1-0.3 (SpatialDropout2D) or none with BatchNorm.",
    ),
    CatalogEntry(
        "batchnorm-small-batch",
        "model",
        "warning",
        "BatchNormalization with a very small batch",
        fix="BatchNorm statistics from fewer than 4 images are noisy and differ from the moving "
        "averages used at validation. Use GroupNormalization(groups=8) instead, or a larger "
        "batch (smaller crops), or freeze BatchNorm (layer.trainable = False).",
    ),
    CatalogEntry(
        "weight-decay-high",
        "model",
        "warning",
        "Weight decay / L2 regularization is high",
        fix="Strong weight decay pulls the weights to zero faster than the loss can move them. "
        "Use AdamW(weight_decay=1e-4) or L2 of 1e-5..1e-4 (keras.regularizers.l2(1e-4); "
        "its default, 0.01, is far too strong for conv nets).",
    ),
    CatalogEntry(
        "frozen-untrained",
        "model",
        "warning",
        "Frozen layers were never trained",
        fix="{frozen_layers} layers ({frozen_share:.0%} of the weights) have trainable=False, and "
        "their biases and BatchNorm parameters are still at their initial values: they are random "
        "features, not a pretrained encoder. Load the pretrained weights before freezing "
        "(e.g. encoder_weights='imagenet', or model.load_weights), or leave the layers trainable "
        "(layer.trainable = True for each, then compile again).",
    ),
    CatalogEntry(
        "bad-init",
        "model",
        "warning",
        "Weights initialised with an unsuitable scale",
        fix="Weights start far from a variance-preserving scale, so activations vanish or explode "
        "through the depth. Use kernel_initializer='he_normal' for ReLU convolutions "
        "(or Keras' default 'glorot_uniform').",
    ),
)
