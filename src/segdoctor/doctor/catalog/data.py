"""Catalog entries of the data checks (masks, pairs, files, splits), with their fix texts.

Checks: :mod:`segdoctor.doctor.data_checks` (a folder), :mod:`segdoctor.doctor.batch_checks`
(training batches, variant ``"batch"``), :mod:`~segdoctor.doctor.mask_format`,
:mod:`~segdoctor.doctor.format_checks` and :mod:`~segdoctor.doctor.split_checks`.
"""

from __future__ import annotations

from segdoctor.doctor.catalog.entry import CatalogEntry

LOADER_NORMALIZES = (
    "segdoctor's loader (and `segdoctor train`, always) z-scores each image on its own, clipped "
    "to the 0.5/99.5 percentiles for 16-bit images"
)
_JOINT_AUGMENT = "{{'images': x, 'segmentation_masks': y}}"  # literal braces of quoted code
_RANGE_FIX = (
    LOADER_NORMALIZES + ", so it trains on these files as they are; only "
    "ImageNormalizer(mode='none') divides by 65535, and then the images have almost no "
    "contrast (at most {fraction_of_range_used:.4f} between darkest and brightest). A hand-written "
    "pipeline must not divide by 65535 either (nor cast to uint8, which wraps): "
    "{scale}normalize each image: x = (x - x.mean()) / (x.std() + 1e-6), or by "
    "percentiles: lo, hi = np.percentile(x, (0.5, 99.5)); "
    "x = np.clip((x - lo) / (hi - lo), 0, 1)."
)
_CHANNELS_FIX = (
    "segdoctor's loader drops the alpha channel and converts every image to one channel count "
    "(gray repeated to RGB when any file is RGB, or data.channels=1/3), so training sees one "
    "shape. A hand-written pipeline gets arrays of different shapes ((H, W), (H, W, 3), "
    "(H, W, 4)): stacking them fails, and a 4th channel shifts any per-channel "
    "normalization. Convert on reading: Image.open(f).convert('RGB') (or 'L' for gray)."
)
_LOSSY_FILES_FIX = (
    "{jpeg_masks} mask file(s) are JPEG, a lossy format: compression "
    "changes label values along object edges (values {ringing_values} at object borders, which "
    "training reads as extra "
    "classes or wrong labels). Save masks as PNG (lossless) from the original labels, "
    "e.g. Image.fromarray(mask.astype('uint8')).save('mask.png') or "
    "cv2.imwrite('mask.png', mask). If only the JPEGs exist, snap the values back to "
    "the labels before training ({snap}) and expect ragged borders."
)

MASK_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "mask-scale-255",
        "data",
        "error",
        "Masks are stored as 0/255, not 0/1",
        fix="Divide the masks by 255 in the pipeline: y = y / 255 (or (y > 127)).",
        variants={
            "folder": "Convert to 0/1 when loading: mask = (mask == {top}).astype('uint8'). With "
            "segdoctor this is automatic (the loader maps {top} -> 1 and says so); a Dice on "
            "raw 0/{top} masks is not a Dice and sigmoid outputs can never reach {top}."
        },
        titles={"folder": "Masks are stored as 0/{top}, not 0/1"},
    ),
    CatalogEntry(
        "mask-fractional",
        "data",
        "error",
        "Masks have in-between values (interpolated or JPEG)",
        fix="Masks were resized with bilinear interpolation or saved as JPEG. Re-export them as "
        "PNG and resize with nearest neighbour:\n"
        "Image.fromarray(mask).resize(size, Image.NEAREST)",
        variants={
            "batch": "Masks in the training batches have in-between values: the pipeline resizes "
            "or augments masks with bilinear interpolation. Use nearest-neighbour for masks "
            "(keras augmentation layers do it when given " + _JOINT_AUGMENT + ").",
            "levels": "The targets hold only the values {levels}: not a ramp along the edges, "
            "as interpolation leaves, but labels read as gray levels. A palette ('P') PNG read "
            "with Image.open(p).convert('L') gives each class the luminance of its colour (PASCAL "
            "VOC's class 1, (128, 0, 0), becomes 38/255 = 0.149), and an RGB label image read as "
            "gray does the same. Read palette PNGs as indices (np.array(Image.open(p))), map RGB "
            "colours to classes with the palette, and divide only 0/255 masks, once.",
            "divided-twice": "The targets are class indices divided by 255 (foreground "
            "{foreground:.5f} = {k}/255): the pipeline divides masks by 255 although they already "
            "hold 0/1 (or 0..K-1), so a sigmoid is asked to output 1/255 where the object is. "
            "Remove the division for masks (y = mask, or y = (mask > 0) for 0/1); divide only "
            "0/255 masks, once. segdoctor's loader decides this per dataset and says what it did.",
        },
        titles={
            "divided-twice": "Masks were divided by 255 although they already held class indices"
        },
    ),
    CatalogEntry(
        "mask-lossy-format",
        "data",
        "error",
        "Masks are stored as JPEG (lossy): label values change at object borders",
        fix=_LOSSY_FILES_FIX,
        variants={
            "in-between": _LOSSY_FILES_FIX.replace(
                "values {ringing_values} at object borders", "in-between values at borders"
            ),
            "converted": "Mask values {ringing_values} are rare and lie only along object borders: "
            "the trace of JPEG compression (masks saved as JPEG once, then converted). Re-export "
            "the masks losslessly (PNG) from the original labels, or snap the values back ({snap}).",
        },
        titles={"converted": "Mask values look like JPEG compression ringing at object borders"},
    ),
    CatalogEntry(
        "mask-instance-labels",
        "data",
        "error",
        "Masks are instance labels (1..N objects), not classes",
        fix="Each object has its own label (1..N): used as class indices they ask the model to "
        "predict hundreds of classes. For semantic segmentation use the foreground:\n"
        "mask = (mask > 0).astype('uint8')\n"
        "(segdoctor's loader does this by default and says so).",
        variants={
            "batch": "The masks hold labels the model cannot output. For instance labels use the "
            "foreground (y > 0); for K classes use a K-channel softmax output."
        },
    ),
    CatalogEntry(
        "mask-rgb-palette",
        "data",
        "error",
        "Masks are RGB colour images, not class indices",
        fix="Masks are colour images: map each colour to a class index before training "
        "(segdoctor does it with an explicit palette: MaskPolicy(kind='palette', palette=[...])).",
    ),
    CatalogEntry(
        "mask-foreground-majority",
        "data",
        "warning",
        "Foreground covers most of the image: labels may be inverted",
        fix="Foreground covers most pixels: check the labels are not inverted (membrane vs "
        "cell interior). If the thin structure is the target: mask = 1 - mask.",
    ),
    CatalogEntry(
        "mask-inverted-some",
        "data",
        "warning",
        "Some masks look like the others inverted",
        fix="{inverted} of {masks} masks look inverted: their foreground covers most of the image "
        "as one region with the objects cut out of it as holes, where the other masks mark "
        "the objects themselves (e.g. {examples}). An annotation tool or export that writes "
        "0 for objects and 255 for background, mixed into the dataset, does this; training "
        "then learns objects and background at once and validation Dice stalls. Inspect "
        "them, and invert those files: mask = (mask == 0).astype(mask.dtype) * 255.",
    ),
    CatalogEntry(
        "pair-missing",
        "data",
        "warning",
        "Images without masks (or masks without images)",
        fix="Give each image a mask with the same file stem (images/a.png <-> masks/a.png); "
        "unpaired files are skipped. Never pair by sort order.",
    ),
    CatalogEntry(
        "pair-shape-mismatch",
        "data",
        "error",
        "Image and mask sizes differ",
        fix="Image and mask must have the same height and width. Re-export the masks at the "
        "image size (nearest-neighbour resize), or check that the pairing is right.",
    ),
    CatalogEntry(
        "pair-misaligned",
        "data",
        "error",
        "Mask boundaries do not follow image edges: image and mask misaligned",
        fix="Mask boundaries do not follow image edges: the masks are shifted, flipped or "
        "rotated relative to the images (or paired wrongly). Check an overlay of a few "
        "pairs; re-export, or pair by name.",
        variants={
            "batch": "Mask boundaries in the training batches do not follow image edges, while "
            "the files may be fine: the loader breaks the pairing. Either augmentation is applied "
            "to the images but not to the masks (or with different random parameters), or the "
            "dataset shuffles images and masks separately (two np.random.shuffle calls in "
            "on_epoch_end: use one permutation for both), or a crop cuts the two at different "
            "places (PIL's crop((x0, y0, x1, y1)) is (left, upper, right, lower), a numpy slice "
            "is m[y0:y1, x0:x1]: rows first; mixing them swaps x and y). Augment both in one "
            "call:\n"
            "aug = keras.layers.RandomFlip()\n"
            "out = aug(" + _JOINT_AUGMENT + "); x, y = out['images'], out['segmentation_masks']",
            "later-epoch": "The first epoch's training batches were aligned, the second epoch's "
            "are not: your dataset breaks the pairing between epochs. Usual cause: "
            "on_epoch_end (or a generator's reshuffle) permutes the images and the masks "
            "separately (two np.random.shuffle calls). Draw one permutation and index both "
            "with it.",
        },
    ),
    CatalogEntry(
        "inputs-noise-like",
        "data",
        "warning",
        "The training images look like noise: neighbouring pixels do not correlate",
        fix="In the {where}, neighbouring pixels correlate {median_neighbour_correlation:.2f} "
        "(median of {samples} samples; photographs and micrographs 0.8-0.99, white noise 0). "
        "The model sees no edges, so no mask can follow them, and the pairing cannot be judged. "
        "Usual cause: an integer cast that wraps, e.g. 12- or 16-bit images read with "
        "img.astype(np.uint8) (values modulo 256); scale first: "
        "(img / img.max() * 255).astype(np.uint8), or img.astype(np.float32) / 4095 for 12-bit "
        "data. Also: raw bytes read with the wrong dtype or byte order. Look at a batch: "
        "plt.imshow(x[0]). If your modality really is this noisy, ignore this.",
    ),
    CatalogEntry(
        "mask-outlines",
        "data",
        "error",
        "The masks outline their objects instead of filling them",
        fix="{outlines} of the {components} objects measured in the {where} ({pairs} of "
        "{of_pairs} pairs, e.g. {examples}) are thin closed lines around regions the images show "
        "as the object: the masks hold boundaries, not objects. A model trained on them predicts "
        "nothing (a 1-pixel line is too thin to fit). Usual cause: cv2.drawContours(mask, "
        "contours, -1, 1, thickness=1); use thickness=-1 (cv2.FILLED), or fill existing "
        "outlines: scipy.ndimage.binary_fill_holes(mask). (If you train a contour detector on "
        "purpose, this is your target: ignore this finding.)",
        variants={
            "batch": "{outlines} of the {components} objects in the {where} ({pairs} of "
            "{of_pairs} samples) are thin closed lines around regions the images show as the "
            "object: the targets hold boundaries, not objects. Usual cause: "
            "cv2.drawContours(mask, contours, -1, 1, thickness=1) in the loader; use "
            "thickness=-1 (cv2.FILLED), or scipy.ndimage.binary_fill_holes(mask). (If you "
            "train a contour detector on purpose, ignore this finding.)",
        },
    ),
    CatalogEntry(
        "empty-masks",
        "data",
        "warning",
        "Many masks are empty",
        fix="Many images have no foreground: a pooled Dice rewards predicting nothing. Use a "
        "per-image Dice with smoothing (segdoctor.losses.DiceLoss(per_image=True, "
        "smooth=1e-5)) and oversample images with foreground. If the images show objects "
        "that the masks lack, check the mask conversion first: e.g. mask / 255 > 0.5 on "
        "instance labels (1..N per object, often 16-bit) keeps only the objects numbered "
        "128 and above; use mask > 0.",
    ),
    CatalogEntry(
        "class-imbalance",
        "data",
        "warning",
        "Foreground is a tiny fraction of the pixels",
        fix="Foreground is rare: pixel losses (cross-entropy) are dominated by background. "
        "Use a per-image Dice term: segdoctor.losses.DiceCELoss(per_image=True), and "
        "sample crops that contain foreground.",
    ),
    CatalogEntry(
        "class-absent",
        "data",
        "warning",
        "A class never appears in the masks",
        fix="Class indices {absent_classes} never appear, while larger ones do (present: "
        "{present}). Check how the masks were made before remapping: classes merged or renumbered with "
        "an in-place loop (for old, new in mapping.items(): m[m == old] = new) chain, a pixel "
        "moved to 1 by one pair is moved on by a later pair that maps 1, so a class ends up "
        "inside another and its own index stays empty; remap with a lookup table instead "
        "(lut = np.array([mapping[k] for k in range(K)]); m = lut[m]) and compare the class "
        "counts before and after. A palette lookup that reads the colours in the wrong channel "
        "order (cv2.imread gives BGR) matches only the colours that are the same both ways and "
        "leaves the other classes out. Only if the class really is missing from this data: "
        "collect examples, or drop it and renumber to 0..K-1 (its Dice is undefined and drags "
        "the mean).",
        variants={
            "batch": "Class indices {absent_classes} appear in none of the {masks_seen} training "
            "masks of the {where}, while every other class (present: {present}) appears in at "
            "least {least_present_share:.0%} of them: not a rare class missed by a sample, but a "
            "label that the masks lost. Usual cause: classes merged or renumbered with an "
            "in-place loop (for old, new in mapping.items(): m[m == old] = new) chain, a pixel "
            "moved to 1 by one pair is moved on by a later pair that maps 1, so a class ends up "
            "inside another; remap with a lookup table (lut = np.array([mapping[k] for k in "
            "range(K)]); m = lut[m]). Or a palette lookup in the wrong channel order (cv2.imread "
            "gives BGR). The model's own validation Dice cannot show this: its masks have the "
            "same fault.",
        },
        titles={"batch": "A class index never appears in the training batches"},
    ),
    CatalogEntry(
        "mask-palette-file",
        "data",
        "info",
        "Masks are palette PNGs: their pixels are class indices only when read as such",
        fix="{masks} of {of} mask files are palette ('P') images (e.g. {example}, labels "
        "{labels}). segdoctor reads their class indices. A pipeline that converts them reads "
        "colours instead: Image.open(p).convert('L') gives each class the luminance of its "
        "colour ({read_as_gray}), cv2.imread gives BGR colours. Read them as indices: "
        "np.array(Image.open(p)).",
        variants={
            "never-learned": "{masks} of {of} mask files are palette ('P') images (e.g. "
            "{example}, labels {labels}) and the history says the model never learned. If your "
            "pipeline converts them, it trains on colours, not classes: "
            "Image.open(p).convert('L') gives each class the luminance of its colour "
            "({read_as_gray}), so the targets are neither 0 nor 1; cv2.imread gives BGR colours. "
            "Read them as indices: np.array(Image.open(p)).",
        },
    ),
    CatalogEntry(
        "mask-on-padding",
        "data",
        "error",
        "Masks mark objects where their images are blank padding",
        fix="In {pairs} of {of_pairs_with_bars} pairs whose images have constant bars along their "
        "edges (letterbox or padding), the mask has foreground on the bars (median "
        "{median_foreground_on_bars:.0%} of its foreground; e.g. {names}): the image shows "
        "nothing there, so image and mask were resized differently. Usually the image was "
        "letterboxed (resized keeping its aspect, then padded) and the mask stretched, or the "
        "other way round. Resize both with one function: letterbox both (pad the mask with 0 or "
        "the ignore label) or stretch both, with nearest-neighbour for the mask.",
    ),
    CatalogEntry(
        "mask-void-label",
        "data",
        "warning",
        "The masks use 255 as a void label",
        fix="The masks hold class indices {values} and 255 on {void_fraction_of_pixels:.1%} of "
        "the pixels (first in {first_mask_with_void}): 255 is a void label, as PASCAL VOC "
        "marks object borders and Cityscapes or ADE20K unlabeled pixels, not class 255. Leave "
        "it out of the loss and the metric (segdoctor: --set data.ignore_index=255; Keras: "
        "ignore_class=255 in the metric, a masked loss). A pipeline that reads mask > 0 as "
        "foreground turns the void band into object and fattens every object; one that sets "
        "num_classes = mask.max() + 1 builds a 256-class head. If your pipeline already "
        "ignores 255, nothing is wrong.",
    ),
    CatalogEntry(
        "mask-invalid-values",
        "data",
        "error",
        "Mask values that are not class indices",
        fix="Masks must hold class indices 0..K-1 (or an ignore value): fix the files, or "
        "set data.ignore_index for a void label.",
    ),
    CatalogEntry(
        "input-not-normalized",
        "data",
        "warning",
        "Model inputs are not scaled (0..255 fed to the network)",
        fix="Inputs reach the network unscaled. Scale them in the pipeline (x = x / 255.0) or add "
        "keras.layers.Rescaling(1 / 255) as the first layer.",
    ),
    CatalogEntry(
        "input-constant",
        "data",
        "error",
        "Constant images (no information)",
        fix="These images have a single value everywhere (blank export, wrong bit depth or "
        "channel, or values in [0, 1] stored into a uint8 array: all truncated to 0). Remove or "
        "re-export them.",
        variants={
            "batch": "Some inputs are constant: check the pipeline (a normalization dividing by "
            "zero, a wrong channel, blank crops, or an array allocated as uint8, e.g. "
            "np.zeros(..., dtype=np.uint8), and filled with images divided by 255: the "
            "assignment truncates every value below 1 to 0; allocate float32)."
        },
    ),
)

FILE_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "duplicate-across-splits",
        "data",
        "error",
        "The same image is in training and validation",
        fix="Identical images in training and validation inflate validation Dice. Keep each image "
        "in one split only (remove the copies from validation), or split with "
        "segdoctor.data.split_pairs(..., keep_duplicates_together=True). Same names with "
        "different pixels are often one image re-encoded or resized: check them.",
        titles={
            "same-name": "The same file names in two splits (pixels differ)",
            "within-split": "Identical images within one split",
            "unsplit": "Identical images: any random split puts copies on both sides",
        },
    ),
    CatalogEntry(
        "mask-offset",
        "data",
        "error",
        "A group of masks is shifted from its images by the same amount",
        fix="These masks sit {down} px below and {right} px right of the objects in their "
        "images (negative: above, left of them): an annotation export with an offset crop, "
        "padding or a resize that moved them. The network learns boundaries where the images "
        "have none. Re-export these masks, or move them back: "
        "np.roll(mask, ({dy}, {dx}), axis=(0, 1)) (check a few by overlaying them first).",
    ),
    CatalogEntry(
        "split-channel-order",
        "data",
        "error",
        "One split's colour images have red and blue swapped (BGR)",
        fix="The {other} images look like the {reference} images with red and blue swapped: one "
        "of them was read or written with OpenCV (cv2.imread and cv2.imwrite use BGR order), the "
        "other with PIL, imageio or Keras (RGB). The model learns colours one way and is scored "
        "on the other. Convert the odd split once (image[..., ::-1], or cv2.cvtColor(image, "
        "cv2.COLOR_BGR2RGB)) and read every image with the same library.",
    ),
    CatalogEntry(
        "overlap-across-splits",
        "data",
        "error",
        "Validation images share regions with training images (overlapping tiles)",
        fix="Tiles cut from one image with overlap share pixels: the part of a validation tile "
        "that a training tile holds was trained on, and validation Dice measures memory there. "
        "Split by source image, then tile (or tile without overlap); {group}. Without names or "
        "groups, segdoctor train --set data.keep_duplicates_together=true (from Python: "
        "segdoctor.data.split_pairs(..., keep_duplicates_together=True)) finds the tiles that "
        "share a region and keeps them on one side.",
        titles={
            "unsplit": "Images share regions (overlapping tiles): a random split puts them on "
            "both sides",
        },
    ),
    CatalogEntry(
        "unreadable-file",
        "data",
        "error",
        "Files that cannot be read",
        fix="Re-export or remove these files; the loader skips or refuses them.",
    ),
    CatalogEntry(
        "split-class-absent",
        "data",
        "error",
        "A class is present in one split and absent from the other",
        fix="A class missing from validation has an undefined (or 0) validation Dice; missing "
        "from training, it is never learnt. Move some images that contain it to the other split "
        "(or split with segdoctor.data.split_pairs, stratifying by hand with group_by), or "
        "drop the class.",
    ),
    CatalogEntry(
        "split-empty-masks",
        "data",
        "warning",
        "The splits have very different shares of empty masks",
        fix="The splits have very different shares of empty masks, so validation Dice measures a "
        "different task than training optimizes (a split of mostly empty masks rewards "
        "predicting nothing). Re-split so that both sides have a similar share.",
    ),
    CatalogEntry(
        "split-object-size",
        "data",
        "warning",
        "Objects are much larger in one split than the other",
        fix="Objects in one split are much larger or smaller than in the other (different "
        "magnification or resolution): a model tuned on one scale segments the other poorly. "
        "Resample the images to one pixel size, or mix both sources into both splits.",
    ),
    CatalogEntry(
        "split-intensity-shift",
        "data",
        "warning",
        "Image intensities of the splits come from different distributions",
        fix="The images of the splits come from different intensity distributions (another "
        "scanner, stain, exposure or bit depth): validation measures transfer, not fit. If "
        "you split with Keras' fit(..., validation_split=...), it takes the last fraction of "
        "the arrays as they are, before any shuffle: arrays ordered by source or modality "
        "put one kind of image in validation; shuffle them first. Otherwise mix the sources "
        "into both splits, or normalize per image (segdoctor's loader does: "
        "ImageNormalizer(mode='image')) and check the worst split's images.",
        variants={
            "scale": "The {larger} images are about {ratio:.0f}x brighter than the others: "
            "the model is validated on inputs it was never trained on. Either the splits are "
            "not scaled the same way (one divided by 255 and the other not, 16-bit and 8-bit "
            "files): apply one preprocessing function to every split, e.g. x = "
            "x.astype('float32') / 255.0 for the training and the validation images alike; or "
            "they hold different kinds of image (validation_split takes the last fraction of "
            "arrays ordered by source or modality): shuffle the arrays before splitting.",
        },
    ),
    CatalogEntry(
        "split-image-size",
        "data",
        "warning",
        "Validation images are crops of a fraction of the training images' size",
        fix="The validation images are crops (patch-level validation): crops cut objects at their "
        "borders and many hold no foreground, so their mean Dice is not the whole-image Dice "
        "you report, and it moves with the cropping, not with the model. Validate on whole "
        "images (segdoctor's recipe does, padded to the stride), or predict the crops of each "
        "image, stitch them (segdoctor.data.sliding_window_predict) and score the whole image.",
    ),
    CatalogEntry(
        "name-clash",
        "data",
        "error",
        "Files share a name: the pairing is ambiguous",
        fix="Files that share a name make the pairing ambiguous: the doctor used the first file "
        "of each clash (sorted order), and `segdoctor train` stops on them. Remove or "
        "rename one file of each clash so that every stem is unique in its folder.",
    ),
    CatalogEntry(
        "unsupported-file",
        "data",
        "warning",
        "Files of a type segdoctor cannot read were skipped",
        fix="These files are not of a type segdoctor reads (PNG, JPEG, BMP, TIFF, NPY, NIfTI) "
        "and were left out of every check and of training. Convert them, or move them out "
        "of the image and mask folders.",
    ),
    CatalogEntry(
        "image-range-narrow",
        "data",
        "warning",
        "16-bit images use a small part of their range (e.g. 12-bit data in 16-bit files)",
        fix=_RANGE_FIX.replace("{scale}", "divide by the real maximum (x / {largest_value}), or "),
        variants={"offset": _RANGE_FIX.replace("{scale}", "")},
        titles={
            "8-bit": "16-bit images use only 0..{largest_value} of 0..65535",
            "12-bit": "{bits}-bit data stored in 16-bit files (max {largest_value} of 65535)",
            "offset": "16-bit images use a narrow band of values (at most {largest_span} of "
            "0..65535)",
        },
    ),
    CatalogEntry(
        "image-mixed-bit-depth",
        "data",
        "warning",
        "Images of different bit depths mixed (e.g. 16-bit TIFFs among 8-bit PNGs)",
        fix=LOADER_NORMALIZES + ", so the mix does not matter there; with "
        "ImageNormalizer(mode='none' or 'dataset'), one scale for all files, the files of "
        "the other depth come out black or saturated. A hand-written pipeline that divides "
        "everything by 255 saturates the 16-bit files (values up to 257); one that divides "
        "by 65535 makes the 8-bit files black. Convert the files to one depth (e.g. "
        "x = (x / x.max() * 255).astype('uint8') for the 16-bit ones) or normalize each "
        "image by its own statistics.",
    ),
    CatalogEntry(
        "image-mixed-channels",
        "data",
        "warning",
        "Images with and without an alpha channel mixed (e.g. RGBA among gray)",
        fix=_CHANNELS_FIX,
        variants={
            "gray-and-rgb": _CHANNELS_FIX
            + " Gray and RGB files mixed is often genuine (e.g. fluorescence and histology in one "
            "set): then nothing is wrong with the files, but check that the split has both kinds."
        },
        titles={"gray-and-rgb": "Gray and RGB images mixed"},
    ),
    CatalogEntry(
        "image-alpha",
        "data",
        "warning",
        "Alpha channel with real transparency",
        fix="segdoctor's loader drops the alpha channel: the colour under transparent pixels "
        "is used as it is stored (often black or arbitrary). A hand-written pipeline that "
        "keeps alpha feeds it as a 4th channel. If transparency marks 'no data', composite "
        "on a fixed background before training: "
        "Image.alpha_composite(Image.new('RGBA', im.size, 'black'), im).convert('RGB'), "
        "and consider excluding those pixels with ignore_index in the mask.",
        variants={
            "constant": "Every image carries a constant alpha channel: harmless, but a 4th "
            "channel. segdoctor's loader drops it. A hand-written pipeline must drop it too "
            "(x = x[..., :3], or Image.open(f).convert('RGB')), or a 3-channel model (e.g. a "
            "pretrained encoder) will not accept the images."
        },
        titles={
            "varying": "Alpha channel with real transparency (not constant)",
            "constant": "Constant alpha channel in every image (a 4th channel that carries "
            "nothing)",
        },
    ),
    CatalogEntry(
        "image-intensity-outlier",
        "data",
        "warning",
        "Images whose brightness or contrast is far from the rest",
        fix=LOADER_NORMALIZES + ", which removes a global brightness or contrast difference; with "
        "ImageNormalizer(mode='dataset') these files come out far off-scale. A hand-written "
        "pipeline with one fixed scale (x / 255, or one dataset mean/std) feeds them far "
        "outside what the model learns from the rest. Open them: a wrong export (bit depth, "
        "window, saturation) should be re-exported; if they are genuine, normalize per image: "
        "x = (x - x.mean()) / (x.std() + 1e-6).",
    ),
)
