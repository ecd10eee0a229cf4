"""Data faults: a folder written the way the user's preparation script wrote it, given to ``diagnose``.

Each function writes the faulty folder when ``ctx.faulty`` is true and its healthy twin otherwise
(same images, same script, the fault left out), then returns ``diagnose(data=folder)``.
"""

from __future__ import annotations

import numpy as np
import tifffile
from benchmarks.faults import Case, Context
from benchmarks.faults.real import (
    RealPair,
    membrane,
    nuclei,
    save_png,
    streets,
    write_pairs,
    write_splits,
)
from PIL import Image

from segdoctor.doctor import diagnose

EDGE_CASE_IMAGES = 96
"""Crops in the cases whose fault moves only object edges (bilinear, JPEG masks). At 24 crops the
as-diagnosed and fixed runs of --verify were compared on 5 validation images, too few to resolve
a difference of about 0.01 in Dice (benchmarks/RESULTS.md); a user's dataset has more."""


def _diagnose(folder, ctx: Context):
    ctx.notes["data"] = str(folder)  # for --verify, which trains on the same folder
    return diagnose(data=folder, plots=False)


def mask_0_255(ctx: Context):
    """ISBI 2012 masks as shipped by the classic Keras U-Net repository: {0, 255}.

    24 images, 2 x 2 tiles of 128 px each: 96 pairs, as the edge-only cases, so that --verify
    compares on about 19 validation images (with 20 pairs: 4, whose seed noise was 0.09).
    """
    pairs = membrane(ctx.data_root, n=24, size=128, grid=2)
    if not ctx.faulty:  # what the masks should hold: 0/1
        pairs = [RealPair(p.name, p.image, (p.mask > 127).astype(np.uint8)) for p in pairs]
    return _diagnose(write_pairs(ctx.workdir / "data", pairs), ctx)


def mask_bilinear(ctx: Context):
    """Masks resized like images (bilinear, as ``skimage.transform.resize`` does by default).

    The preparation script upsamples 64 px crops to 96 px and saves image and mask; the mask is
    resized as float (bilinear) and saved as a float TIFF. The twin resizes the mask with nearest
    neighbour and saves it the same way.
    """
    size = 96
    method = Image.BILINEAR if ctx.faulty else Image.NEAREST
    folder = ctx.workdir / "data"
    for p in nuclei(ctx.data_root, n=EDGE_CASE_IMAGES, size=64):
        image = Image.fromarray(p.image).resize((size, size), Image.BILINEAR)
        save_png(folder / "images" / f"{p.name}.png", np.asarray(image))
        mask = Image.fromarray(p.mask.astype(np.float32)).resize((size, size), method)  # mode F
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / "masks" / f"{p.name}.tif", np.asarray(mask, np.float32))
    return _diagnose(folder, ctx)


def mask_jpeg(ctx: Context):
    """0/1 masks saved as JPEG (``cv2.imwrite('m.jpg', mask)``): edges get values 0..2."""
    pairs = nuclei(ctx.data_root, n=EDGE_CASE_IMAGES, size=64)
    ext = ".jpg" if ctx.faulty else ".png"
    return _diagnose(write_pairs(ctx.workdir / "data", pairs, mask_ext=ext), ctx)


def mispaired_listing(ctx: Context):
    """Pairs made by zipping two sorted listings whose names sort differently.

    The microscope writes ``scan_1.png .. scan_24.png``, the annotation tool ``scan_001_label.png``;
    ``zip(sorted(images), sorted(masks))`` pairs ``scan_10`` with ``scan_002_label`` and so on. The
    script then saves each mask under its image's name. The twin pairs by the number.
    """
    pairs = nuclei(ctx.data_root, n=24, size=64)
    images = {f"scan_{i + 1}": p for i, p in enumerate(pairs)}
    masks = {f"scan_{i + 1:03d}_label": p.mask for i, p in enumerate(pairs)}
    if ctx.faulty:
        order = zip(sorted(images), sorted(masks), strict=True)
    else:
        order = ((name, f"scan_{int(name.split('_')[1]):03d}_label") for name in images)
    folder = ctx.workdir / "data"
    for image_name, mask_name in order:
        save_png(folder / "images" / f"{image_name}.png", images[image_name].image)
        save_png(folder / "masks" / f"{image_name}.png", masks[mask_name])
    return _diagnose(folder, ctx)


def _presence(pairs: list[RealPair], cls: int) -> list[bool]:
    return [bool(np.any(p.mask == cls)) for p in pairs]


def _tiles(pairs: list[RealPair], size: int) -> list[RealPair]:
    out = []
    for p in pairs:
        h, w = p.mask.shape
        for top in range(0, h - size + 1, size):
            for left in range(0, w - size + 1, size):
                box = (slice(top, top + size), slice(left, left + size))
                out.append(RealPair(f"{p.name}_{top}_{left}", p.image[box], p.mask[box]))
    return out


def class_absent_val(ctx: Context):
    """CamVid tiles split so that one class is in every training mask and in no validation mask.

    Scenes are cut into 64 px tiles (a tiling pipeline); the foreground class present in closest
    to half of the tiles (sky 0, in the background slot, and void 11 excluded) decides the faulty
    split: tiles with it train, tiles without it validate, as a split by site or session can do.
    The twin interleaves the same tiles (every other one to validation).
    """
    pairs = _tiles(streets(ctx.data_root, n=10, width=192), 64)
    share = {c: float(np.mean(_presence(pairs, c))) for c in range(1, 11)}
    cls = min(share, key=lambda c: abs(share[c] - 0.5))
    ctx.notes["class"] = cls
    if ctx.faulty:
        train = [p for p, has in zip(pairs, _presence(pairs, cls), strict=True) if has]
        val = [p for p, has in zip(pairs, _presence(pairs, cls), strict=True) if not has]
    else:
        train, val = pairs[0::2], pairs[1::2]
    ctx.notes["class_in"] = [sum(_presence(train, cls)), sum(_presence(val, cls))]
    return _diagnose(write_splits(ctx.workdir / "data", {"train": train, "val": val}), ctx)


def patch_validation(ctx: Context):
    """Validation on random 32 px patches, training on whole images (a patch-based loader).

    Patch-level validation Dice (many patches empty or holding cut objects) is far from the
    whole-image Dice. The twin validates on the same images whole.
    """
    pairs = nuclei(ctx.data_root, n=30, size=128)
    train, val = pairs[: 2 * len(pairs) // 3], pairs[2 * len(pairs) // 3 :]
    if ctx.faulty:
        rng = np.random.default_rng(0)
        patches = []
        for p in val:
            for k in range(4):
                top, left = rng.integers(0, 128 - 32, size=2)
                crop = (slice(top, top + 32), slice(left, left + 32))
                patches.append(RealPair(f"{p.name}_p{k}", p.image[crop], p.mask[crop]))
        val = patches
    return _diagnose(write_splits(ctx.workdir / "data", {"train": train, "val": val}), ctx)


def mask_transposed(ctx: Context):
    """An export script writes every mask transposed (``mask.T``: PIL's (W, H) taken for numpy's
    (H, W)). Square 128 px crops, so that the shapes still match; round nuclei in dense images
    still land partly on nuclei. The twin writes the masks as they are."""
    pairs = nuclei(ctx.data_root, n=32, size=128)
    if ctx.faulty:
        pairs = [RealPair(p.name, p.image, p.mask.T.copy()) for p in pairs]
    return _diagnose(write_pairs(ctx.workdir / "data", pairs), ctx)


def _views(p: RealPair) -> list[RealPair]:
    """A pair and its flipped and rotated copies, as an offline augmentation script writes them."""
    turns = (("", lambda a: a), ("_lr", np.fliplr), ("_ud", np.flipud), ("_r90", np.rot90))
    return [RealPair(p.name + tag, f(p.image).copy(), f(p.mask).copy()) for tag, f in turns]


def augmented_leak(ctx: Context):
    """Offline augmentation (flips, 90-degree rotations) written to disk before a random 80/20
    split: validation holds copies of training images. The twin splits the source images first
    and augments the training side only."""
    pairs = nuclei(ctx.data_root, n=20, size=64)
    order = np.random.default_rng(0).permutation
    if ctx.faulty:
        views = [v for p in pairs for v in _views(p)]
        views = [views[i] for i in order(len(views))]
        train, val = views[: len(views) * 4 // 5], views[len(views) * 4 // 5 :]
    else:
        pairs = [pairs[i] for i in order(len(pairs))]
        cut = len(pairs) * 4 // 5
        train, val = [v for p in pairs[:cut] for v in _views(p)], pairs[cut:]
    return _diagnose(write_splits(ctx.workdir / "data", {"train": train, "val": val}), ctx)


def _jittered(p: RealPair, k: int) -> RealPair:
    """``p`` with its brightness, contrast and gamma changed (and clipped), as a colour-jitter
    augmentation script writes it; the mask unchanged."""
    rng = np.random.default_rng(k)
    x = p.image.astype(np.float32) * rng.uniform(0.8, 1.3) + rng.uniform(5, 25)
    x = 255 * (np.clip(x, 0, 255) / 255) ** rng.uniform(0.7, 1.2)
    return RealPair(f"{p.name}_j{k}", np.clip(x, 0, 255).astype(p.image.dtype), p.mask.copy())


def jittered_leak(ctx: Context):
    """Offline brightness/contrast/gamma jitter (three copies of each image) written to disk
    before a random 80/20 split: validation holds copies of training images whose pixels all
    differ (first blind test, 2026-12-07: missed then). The twin splits the source images first
    and jitters the training side only."""
    pairs = nuclei(ctx.data_root, n=20, size=64)
    order = np.random.default_rng(0).permutation

    def views(p: RealPair) -> list[RealPair]:
        return [p] + [_jittered(p, k) for k in (1, 2, 3)]

    if ctx.faulty:
        all_views = [v for p in pairs for v in views(p)]
        all_views = [all_views[i] for i in order(len(all_views))]
        cut = len(all_views) * 4 // 5
        train, val = all_views[:cut], all_views[cut:]
    else:
        pairs = [pairs[i] for i in order(len(pairs))]
        cut = len(pairs) * 4 // 5
        train, val = [v for p in pairs[:cut] for v in views(p)], pairs[cut:]
    return _diagnose(write_splits(ctx.workdir / "data", {"train": train, "val": val}), ctx)


def masks_offset_subset(ctx: Context):
    """Half of the masks exported with an 8 px offset crop (an annotation batch whose export
    cropped the image 8 px further than the mask): their content sits 8 px below and right of
    the objects. The twin exports every mask in place. (Third blind test, 2026-12-07.)"""
    pairs = nuclei(ctx.data_root, n=48, size=64)
    if ctx.faulty:
        moved = []
        for k, p in enumerate(pairs):
            mask = p.mask
            if k % 2:
                mask = np.zeros_like(p.mask)
                mask[8:, 8:] = p.mask[:-8, :-8]
            moved.append(RealPair(p.name, p.image, mask))
        pairs = moved
    return _diagnose(write_pairs(ctx.workdir / "data", pairs), ctx)


def tiles_overlap_split(ctx: Context):
    """Large images cut into 64 px tiles every 32 px (overlapping), then split at random 80/20:
    each validation tile's area is held by its training neighbours. The twin cuts the same
    slices at a stride of 64 (no overlap) and splits them the same way."""
    pairs = membrane(ctx.data_root, n=4, size=256)
    stride = 32 if ctx.faulty else 64
    tiles = [
        RealPair(f"{p.name}_{top}_{left}", p.image[box], (p.mask[box] > 127).astype(np.uint8))
        for p in pairs
        for top in range(0, 256 - 64 + 1, stride)
        for left in range(0, 256 - 64 + 1, stride)
        for box in [(slice(top, top + 64), slice(left, left + 64))]
    ]
    tiles = [tiles[i] for i in np.random.default_rng(0).permutation(len(tiles))]
    cut = len(tiles) * 4 // 5
    return _diagnose(
        write_splits(ctx.workdir / "data", {"train": tiles[:cut], "val": tiles[cut:]}), ctx
    )


CASES = [
    Case(
        "mask-0-255",
        "isbi2012-membrane",
        "diagnose(data)",
        ("mask-scale-255",),
        "Keras U-Net repos (zhixuhao/unet), smp, MONAI: masks saved 0/255, Dice never above 0",
        mask_0_255,
        cheap=True,
    ),
    Case(
        "mask-bilinear",
        "dsb2018-nuclei",
        "diagnose(data)",
        ("mask-fractional",),
        "smp, Keras: masks resized with bilinear interpolation (skimage resize order=1)",
        mask_bilinear,
        cheap=True,
    ),
    Case(
        "mask-jpeg",
        "dsb2018-nuclei",
        "diagnose(data)",
        ("mask-lossy-format", "mask-fractional"),
        "Keras, smp: masks saved as JPEG get compression artifacts at the edges",
        mask_jpeg,
        cheap=True,
    ),
    Case(
        "mispaired-listing",
        "dsb2018-nuclei",
        "diagnose(data)",
        ("pair-misaligned",),
        "Keras/smp tutorials: images and masks paired by os.listdir / sorted order",
        mispaired_listing,
        cheap=True,
    ),
    Case(
        "class-absent-val",
        "camvid-val",
        "diagnose(data)",
        ("split-class-absent", "class-absent"),
        "nnU-Net, MONAI: a class missing from the validation split, its Dice 0 or NaN",
        class_absent_val,
        cheap=True,
    ),
    Case(
        "patch-validation",
        "dsb2018-nuclei",
        "diagnose(data)",
        ("split-image-size", "split-empty-masks", "split-object-size"),
        "nnU-Net: pseudo Dice on patches during training far from the final whole-image Dice",
        patch_validation,
        cheap=True,
    ),
    Case(
        "mask-transposed",
        "dsb2018-nuclei",
        "diagnose(data)",
        ("pair-misaligned",),
        "mriqc #56, sam2-tools #10: masks stored rotated or transposed relative to their images",
        mask_transposed,
        cheap=True,
    ),
    Case(
        "augmented-leak",
        "dsb2018-nuclei",
        "diagnose(data)",
        ("duplicate-across-splits",),
        "DeepFont #2, RDLINet #1: data augmented before the train/validation split",
        augmented_leak,
        cheap=True,
    ),
    Case(
        "jittered-leak",
        "dsb2018-nuclei",
        "diagnose(data)",
        ("duplicate-across-splits",),
        "first blind test, 2026-12-07: brightness-jittered copies written before the split",
        jittered_leak,
        cheap=True,
    ),
    Case(
        "masks-offset-subset",
        "dsb2018-nuclei",
        "diagnose(data)",
        ("mask-offset",),
        "annotation exports with an offset crop or padding: masks shifted from their images",
        masks_offset_subset,
        cheap=True,
    ),
    Case(
        "tiles-overlap-split",
        "isbi2012-membrane",
        "diagnose(data)",
        ("overlap-across-splits",),
        "geo-deep-learning #148, seismic-deeplearning #143: overlapping patches split at random",
        tiles_overlap_split,
        cheap=True,
    ),
]
