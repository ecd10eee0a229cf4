"""Catalog entries of the probes and of the training history, with their fix texts.

Checks: :mod:`segdoctor.doctor.probes` and the modules it runs (``overfit``, ``gradient_probes``,
``bn_gap``, ``update_ratio``), :mod:`segdoctor.doctor.history` and the training CLI's NaN guard.
"""

from __future__ import annotations

from segdoctor.doctor.catalog.entry import CatalogEntry

_OVERFIT_RUN = (
    "A copy of the model trained {steps} steps with Adam({optimizer_lr}) on {samples} "
    "samples reaches Dice {fitted_foreground_dice:.2f} on them. "
)
_BN_GAP = (
    "The same images are segmented differently in training and inference mode, so the "
    "validation Dice understates what the network learned. "
)
_BN_SMALL_BATCH = (
    "batches of {batch_size} give noisy statistics: use a larger batch (smaller crops) or "
    "GroupNormalization (segdoctor: norm='group'); "
)
_BN_SLOW_MOMENTUM = (
    "momentum={momentum} averages over ~{momentum_steps} steps, too slow for a "
    "short run: use keras.layers.BatchNormalization(momentum=0.9); "
)
_BN_REESTIMATE_HOW = (
    "the statistics after training: run the model in training mode over ~50 training batches "
    "with the weights frozen (only the moving statistics change)."
)
_BN_REESTIMATE = "or re-estimate " + _BN_REESTIMATE_HOW
_UPDATE_RATIO = (
    "Each of the first {steps} steps of {optimizer} at learning rate {learning_rate:.3g} "
    "changed the weights by {ratio:.0%} of their size (healthy runs: ~0.1-5%): the "
    "learning rate is too high, whatever a range test on one batch says. Lower it to "
    "about {target_lr:.0e}, e.g. keras.optimizers.{optimizer}(learning_rate="
    "{target_lr:.0e}), or use segdoctor's LR range test with warm-up."
)
_UPDATE_TITLE = "Every update rewrites a large part of the weights: the learning rate is too high"
_VAL_LEAD = (
    "Often harmless (dropout and augmentation are active only in training), but "
    "check that no validation image is also in training (`duplicate-across-splits`) "
    "and that validation is not easier (fewer empty masks, larger objects)."
)

PROBE_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "init-loss-anomaly",
        "probe",
        "warning",
        "The loss at initialisation is far from its expected value",
        fix="The untrained model is confidently wrong: its outputs are saturated, so the first "
        "updates fight large gradients or none at all. Use default initialisers "
        "('he_normal' kernels, zero biases) and, for rare foreground, set the last bias to "
        "log(p/(1-p)) with p the foreground fraction.",
    ),
    CatalogEntry(
        "cannot-overfit",
        "probe",
        "error",
        "A handful of samples cannot be fitted",
        fix=_OVERFIT_RUN
        + "The masks fit better than masks of other images, yet not well: the model or the loss "
        "cannot express the target. Check the output activation and channels against the loss, a "
        "loss with no gradient (thresholding inside it), and that the model has enough capacity "
        "and receptive field.",
        variants={
            "pairing": _OVERFIT_RUN
            + "The masks fit no better than masks of other images: they do not belong to their "
            "images. Check the pairing (sorted names: 'img_10' vs 'img_2'), and augment image and "
            "mask in one call:\nout = aug({{'images': x, 'segmentation_masks': y}})",
            "blocked": _OVERFIT_RUN
            + "The masks fit no better than masks of other images, but this report also has "
            "{blockers}, which can stop any target from being learned: fix that first. Only if "
            "this finding stays afterwards, check the pairing of images and masks.",
        },
    ),
    CatalogEntry(
        "lr-too-high",
        "probe",
        "error",
        "The learning rate is above the divergence point",
        fix="Use a learning rate near {suggested_lr:.1e} (a tenth of the LR where the loss falls "
        "fastest).",
        variants={
            "update-ratio": _UPDATE_RATIO,
            "update-ratio-no-rate": _UPDATE_RATIO.replace(
                "{learning_rate:.3g}", "the configured rate"
            )
            .replace("about {target_lr:.0e}", "10-100x lower")
            .replace("learning_rate={target_lr:.0e}", "learning_rate=1e-03"),
        },
        titles={"update-ratio": _UPDATE_TITLE, "update-ratio-no-rate": _UPDATE_TITLE},
    ),
    CatalogEntry(
        "lr-too-low",
        "probe",
        "warning",
        "The learning rate is far below the useful range",
        fix="Raise the learning rate towards {suggested_lr:.1e}; at {configured_lr:.1e} training "
        "barely moves.",
        variants={
            "update-ratio": "The {where} moved the weights by {ratio:.1e} of their size per step "
            "({optimizer} at {learning_rate:.1e}; healthy runs move 1e-3 to 1e-2), and the run "
            "learned nothing ({history}). Raise the learning rate towards {target_lr:.1e}. Plain "
            "SGD needs a far larger rate than Adam for the same step: a rate copied from an Adam "
            "recipe (1e-3) barely moves it; use SGD(1e-2 to 1e-1, momentum=0.9) or Adam(1e-3).",
            "update-ratio-no-rate": "The {where} moved the weights by {ratio:.1e} of their size "
            "per step ({optimizer}; healthy runs move 1e-3 to 1e-2), and the run learned nothing "
            "({history}). Raise the learning rate.",
        },
        titles={
            "update-ratio": "The learning rate barely moves the weights, and nothing was learned",
            "update-ratio-no-rate": "The learning rate barely moves the weights, and nothing was "
            "learned",
        },
    ),
    CatalogEntry(
        "dead-relu",
        "probe",
        "warning",
        "Many ReLU units never activate",
        fix="Many ReLU channels never activate, so they get no gradient. Lower the learning rate, "
        "use he_normal kernels with zero biases, add BatchNormalization before the ReLU, or "
        "use LeakyReLU(0.1).",
    ),
    CatalogEntry(
        "vanishing-gradients",
        "probe",
        "warning",
        "Gradients of the first layers are vanishingly small",
        fix="The first layers receive almost no gradient: use ReLU (not sigmoid/tanh) inside the "
        "network, BatchNormalization, skip connections (a U-Net), and he_normal init.",
    ),
    CatalogEntry(
        "exploding-gradients",
        "probe",
        "error",
        "Gradients are exploding",
        fix="One gradient step would move weights by more than their own size. Clip gradients "
        "(keras.optimizers.Adam(1e-3, clipnorm=1.0)), use he_normal kernels "
        "(variance-preserving init), add BatchNormalization, and lower the learning rate.",
    ),
    CatalogEntry(
        "nan-loss",
        "probe",
        "error",
        "The loss becomes NaN or infinite",
        fix="The loss became NaN or infinite: add a smoothing term to Dice (smooth=1e-5: empty "
        "masks give 0/0), compute cross-entropy from logits (from_logits=True, no log(0)), "
        "lower the learning rate, and stop such runs early with "
        "keras.callbacks.TerminateOnNaN().",
        variants={
            "mixed-float16": "Under '{dtype_policy}' the layers compute in float16, whose largest "
            "value is 65504: inputs above it (raw 16-bit intensities), or sums over a whole batch "
            "in a Dice, become inf and the loss NaN. Scale inputs in the pipeline before the model "
            "(x = x / 65535.0; a Rescaling layer runs after the cast to float16), keep the output "
            "and loss in float32 (last layer dtype='float32'; cast y_pred to float32 in the "
            "loss), or use 'mixed_bfloat16', which has float32's range.",
            "probe": "The loss became NaN/inf: a division by zero (Dice without smoothing on empty "
            "masks), log(0) (cross-entropy on probabilities of exactly 0/1: use "
            "from_logits=True), or a learning rate that diverges. Add smooth=1e-5 to the Dice, "
            "and lower the LR.",
            "run": "Training stopped at the first non-finite loss and kept the last good "
            "checkpoint. Lower the learning rate (or use warm-up), check the inputs for NaN/Inf, "
            "and keep the loss in float32 under mixed precision; resume with "
            "`segdoctor train --resume RUN` after the fix.",
        },
        titles={
            "mixed-float16": "The loss becomes NaN or infinite under {dtype_policy}",
            "policy": "The loss becomes NaN or infinite under {dtype_policy}",
        },
    ),
    CatalogEntry(
        "bn-train-infer-gap",
        "probe",
        "warning",
        "BatchNorm behaves very differently in training and inference",
        fix=_BN_GAP + "Re-estimate " + _BN_REESTIMATE_HOW,
        variants={
            "small-batch": _BN_GAP + _BN_SMALL_BATCH + _BN_REESTIMATE,
            "slow-momentum": _BN_GAP + _BN_SLOW_MOMENTUM + _BN_REESTIMATE,
            "small-batch-slow-momentum": _BN_GAP
            + _BN_SMALL_BATCH
            + _BN_SLOW_MOMENTUM
            + _BN_REESTIMATE,
        },
    ),
    CatalogEntry(
        "batches-repeat",
        "probe",
        "warning",
        "The training batches repeat within an epoch: every step sees the same images",
        fix="Training steps {steps} of epoch {epoch} received pixel-identical batches. The "
        "network fits a handful of images while validation measures all of them. Usual causes: "
        "a keras.utils.PyDataset or Sequence whose __getitem__ ignores its index argument (a "
        "stored counter that is never advanced, a fixed slice), a generator that yields the "
        "same arrays, or a tf.data pipeline that repeats one batch (.take(1).repeat(), "
        ".batch() after .repeat() on a one-batch dataset). Index with the argument Keras passes "
        "and check len() of the dataset. (Overfitting one batch on purpose, as a sanity check, "
        "looks the same: then ignore this.)",
    ),
    CatalogEntry(
        "epoch-start-wait",
        "probe",
        "warning",
        "Epochs begin with a long wait before their first step",
        fix="{waited} of {timed} epochs waited about {wait:.0f} s before their first step "
        "({share:.0%} of the training time). On TensorFlow with a keras.utils.PyDataset, this is "
        "tf.data's autotuning thread, which the previous epoch's iterator waits for: pass "
        "segdoctor's SegmentationDataset.for_fit(), or wrap your batches in a tf.data pipeline "
        "with options.autotune.enabled = False and a fixed .prefetch(2) "
        "(tf.data.Options(); dataset.with_options(options)). Otherwise look at what your "
        "dataset does at an epoch's start (on_epoch_end re-reading files, a worker pool "
        "restarted every epoch).",
    ),
    CatalogEntry(
        "batch-size-noisy",
        "probe",
        "info",
        "The gradient noise scale is far above the batch size",
        fix="Each step at batch size {batch_size} follows gradient noise more than the gradient "
        "(noise scale about {noise_scale_b_simple}). Raise the effective batch toward "
        "{target_batch}: a larger batch, or gradient accumulation "
        "(keras.optimizers.AdamW(..., gradient_accumulation_steps=4)); or lower the learning "
        "rate, which averages the noise over more steps. With BatchNorm and batches under 8, "
        "use GroupNormalization.",
    ),
)

HISTORY_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "overfitting",
        "history",
        "warning",
        "Validation gets worse while training improves",
        fix="Keep the best epoch (ModelCheckpoint(monitor=..., mode='max', save_best_only=True) on "
        "the Dice), then regularize: joint image+mask augmentation "
        "(segdoctor.data augmentation), weight decay ~1e-4, fewer filters, or more data.",
    ),
    CatalogEntry(
        "underfitting",
        "history",
        "warning",
        "Training Dice itself stays low",
        fix="The model does not even fit the training set. Check the data first "
        "(`segdoctor diagnose DATA`: mask values, pairing, alignment), then the loss "
        "(`--probe`), then raise capacity or the learning rate (LR range test).",
    ),
    CatalogEntry(
        "training-inputs-differ",
        "history",
        "warning",
        "The model can fit these files, but training learned nothing",
        fix="The history says the model never learned ({history}), yet the doctor's probe fit "
        "a copy of it to a batch of these files, read as segdoctor reads them, and no other "
        "check found a cause. So the files, the model and its loss can work: what training "
        "fed the model is the suspect. Check the loader: images and masks cropped, flipped or "
        "shuffled at different places (PIL's crop((x0, y0, x1, y1)) against a numpy slice "
        "m[y0:y1, x0:x1]), the scaling of images and targets, the order of the pairs. Run "
        "segdoctor.doctor.DoctorCallback in model.fit: it checks the batches themselves.",
    ),
    CatalogEntry(
        "lr-vanished",
        "history",
        "error",
        "The learning rate fell to about zero while the model had not learned",
        fix="The learning rate fell to {lr_final:.1e}, under a thousandth of its peak "
        "{lr_peak:.1e}, by epoch {vanished_epoch} of {epochs}, and training stopped there "
        "({train_key} {train_at_vanish:.2f} then, {train_final:.2f} at the end). Usually a "
        "schedule counted in optimizer steps where epochs were meant: "
        "ExponentialDecay(lr, decay_steps=5, decay_rate=0.5) halves the rate every 5 batches. "
        "Give decay_steps in steps (epochs_per_decay * steps_per_epoch), or decay over the run:\n"
        "keras.optimizers.schedules.CosineDecay(lr, decay_steps=epochs * steps_per_epoch)",
        variants={
            "compounding": "The learning rate fell at least tenfold every epoch (at most "
            "{cut_per_epoch:.2g}x the previous epoch's), from {lr_peak:.1e} to {lr_final:.1e} in "
            "{epochs} epochs, and training stopped ({train_key} {train_final:.2f} at the end). "
            "Either a rule that multiplies the rate it is given, which compounds: "
            "LearningRateScheduler(lambda epoch, lr: lr * 0.1) is a tenfold cut every epoch, not "
            "a rate of 0.1x; or a decay counted in optimizer steps where epochs were meant "
            "(ExponentialDecay(lr, decay_steps=5, ...) decays every 5 batches). Compute the rate "
            "from the epoch, or give decay_steps in steps:\n"
            "keras.callbacks.LearningRateScheduler(lambda epoch, lr: 1e-3 * 0.9 ** epoch)",
        },
    ),
    CatalogEntry(
        "plateau",
        "history",
        "warning",
        "Validation Dice stopped improving",
        fix="Validation Dice stopped improving. Lower the learning rate on plateau with the right "
        "direction: ReduceLROnPlateau(monitor='{monitor}', mode='max', factor=0.5, patience=5); "
        "if it persists, look at the worst validation images (`segdoctor evaluate`) and the "
        "data findings.",
    ),
    CatalogEntry(
        "loss-oscillation",
        "history",
        "warning",
        "Training loss oscillates instead of decreasing",
        fix="The training loss jumps up and down: the learning rate is likely too high. Divide it "
        "by 3-10 or run an LR range test (`segdoctor diagnose DATA --model M --probe`).",
    ),
    CatalogEntry(
        "prediction-collapse",
        "history",
        "error",
        "The model predicts everything as background (or foreground)",
        fix="The model found the trivial answer. Use a loss that rewards the rare class: "
        "`segdoctor.losses.DiceCELoss(per_image=True)` (or Dice + focal), check masks are 0/1, "
        "and that the output activation matches the loss (sigmoid + from_logits=False).",
        titles={"named-class": "The model predicts everything as {predicted_as}"},
    ),
    CatalogEntry(
        "lr-reduced-while-improving",
        "history",
        "error",
        "Learning rate was cut while Dice was still rising",
        fix="A scheduler cut the learning rate while the Dice was still rising: it watches a "
        "Dice/IoU metric in 'min' mode (Keras 2's mode='auto' chose 'min' for any metric without "
        "'acc' in its name). Use\n"
        "keras.callbacks.ReduceLROnPlateau(monitor='{monitor}', mode='max', factor=0.5, "
        "patience=5)",
    ),
    CatalogEntry(
        "metric-constant",
        "history",
        "error",
        "A metric never changes",
        fix="A metric that never moves means no gradient reaches the weights or the metric cannot "
        "see the predictions. Check that the loss is differentiable (no round/threshold), that "
        "masks hold 0/1 (not 0/255), that the output activation matches the loss, and run "
        "`segdoctor diagnose DATA --model MODEL --probe`.",
    ),
    CatalogEntry(
        "val-better-than-train",
        "history",
        "info",
        "Validation is better than training",
        fix=_VAL_LEAD,
        variants={
            "large-lead": "Validation leads training by far more than the lag of a running "
            "training mean and the run-to-run noise: train and validation differ. Check, in this "
            "order: no validation image is also in training (`duplicate-across-splits`); "
            "validation is not easier (fewer empty masks, larger objects: the split-* findings of "
            "`segdoctor diagnose DATA`); augmentation or noise applied to training only is "
            "not stronger than intended; dropout >= 0.5 (`dropout-high`)."
        },
        titles={
            "large-lead": "Validation Dice is {median_gap_later_epochs:.2f} above training Dice "
            "through the run"
        },
    ),
)
