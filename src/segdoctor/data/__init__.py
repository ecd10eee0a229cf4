"""segdoctor.data: find pairs, read files, decide how masks are read, split, augment, load.

Files -> pairs -> arrays -> batches::

    from segdoctor.data import discover_pairs, train_val_datasets

    index = discover_pairs("DATA")             # matched by file stem, never by order
    train, val = train_val_datasets(index, val_fraction=0.2, seed=0, patch_size=256)
    print(train.describe())                    # every decision: masks, channels, normalization
    model.fit(train.for_fit(), validation_data=val.for_fit(), epochs=50, shuffle=False)

``for_fit()`` is the dataset itself except on TensorFlow, where it is a ``tf.data`` pipeline over
the same batches: with tf.data's autotuning off (its optimization thread made epochs start after
a wait of up to a minute) and, for whole validation images of several sizes, a dynamic height and
width (Keras would otherwise fix the shape from the first batches).

Only :class:`SegmentationDataset` / :func:`train_val_datasets` import Keras, lazily on first use,
so the rest of this package (used by the CLI and the doctor) stays fast to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from segdoctor.data.augment import AugmentConfig, Augmenter, extract_patch, photometric
from segdoctor.data.discover import NameClash, Pair, PairIndex, discover_pairs
from segdoctor.data.io import (
    MAX_PIXELS,
    ON_ERROR,
    SUPPORTED_EXTENSIONS,
    is_supported,
    read_image,
    read_mask,
    read_pair,
)
from segdoctor.data.masks import (
    MaskPolicy,
    MaskReport,
    decide_mask_policy,
    inspect_masks,
    normalize_mask,
)
from segdoctor.data.normalize import ImageNormalizer, to_channels
from segdoctor.data.sizing import (
    Padding,
    pad_to_multiple,
    resize_back,
    resize_to_multiple,
    sliding_window_predict,
    unpad,
)
from segdoctor.data.split import (
    content_hash,
    cross_split_duplicates,
    find_duplicates,
    group_key,
    split_pairs,
)

if TYPE_CHECKING:
    from segdoctor.data.loader import SegmentationDataset, train_val_datasets

_LAZY = {"SegmentationDataset", "train_val_datasets"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # PEP 562: the loader (and so Keras) is imported on first use only
        return getattr(importlib.import_module("segdoctor.data.loader"), name)
    raise AttributeError(f"module 'segdoctor.data' has no attribute {name!r}")


__all__ = [
    "MAX_PIXELS",
    "ON_ERROR",
    "SUPPORTED_EXTENSIONS",
    "AugmentConfig",
    "Augmenter",
    "ImageNormalizer",
    "MaskPolicy",
    "MaskReport",
    "NameClash",
    "Padding",
    "Pair",
    "PairIndex",
    "SegmentationDataset",
    "content_hash",
    "cross_split_duplicates",
    "decide_mask_policy",
    "discover_pairs",
    "extract_patch",
    "find_duplicates",
    "group_key",
    "inspect_masks",
    "is_supported",
    "normalize_mask",
    "pad_to_multiple",
    "photometric",
    "read_image",
    "read_mask",
    "read_pair",
    "resize_back",
    "resize_to_multiple",
    "sliding_window_predict",
    "split_pairs",
    "to_channels",
    "train_val_datasets",
    "unpad",
]
