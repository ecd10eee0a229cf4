"""From a data folder to training and validation batches, with every decision stated.

``prepare_data`` discovers the pairs, splits them, inspects every mask and states the mask decision
("masks are 16-bit instance labels ...: converted to a binary foreground"), chooses the channel count
and the image normalization, and builds the loaders. The decisions are written to the run folder
(``mask_policy.json``, ``run.json``) so that evaluation and prediction apply exactly the same ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor import data as sd
from segdoctor.data.io import display_name
from segdoctor.errors import DataError
from segdoctor.train.config import DataConfig, RunConfig

Log = Callable[[str], None]


@dataclass
class PreparedData:
    """Loaders plus the decisions that produced them."""

    train: Any  # keras.utils.PyDataset yielding (B, h, w, C) float32, (B, h, w, 1) int32
    val: Any
    train_pairs: list
    val_pairs: list
    policy: Any  # segdoctor.data.MaskPolicy
    normalizer: Any  # segdoctor.data.ImageNormalizer
    channels: int
    mode: str  # "binary" | "multiclass"
    num_classes: int
    ignore_index: int | None

    @property
    def policy_json(self) -> dict:
        return json.loads(self.policy.to_json())

    @property
    def normalizer_dict(self) -> dict:
        return self.normalizer.to_dict()

    def load(self, pair) -> tuple[np.ndarray, np.ndarray]:
        """One full-size pair: normalized image (H, W, C) float32 and mask (H, W) int32."""
        return load_pair(pair, self.policy, self.normalizer, self.channels)


def load_pair(pair, policy, normalizer, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair (the loader's reader), convert channels, normalize; mask through ``policy``."""
    image, mask = sd.read_pair(pair)
    image = sd.to_channels(image, channels, name=pair.name)
    return normalizer(image), sd.normalize_mask(mask, policy, name=pair.name).astype(np.int32)


def prepare_data(config: RunConfig, log: Log = print, run_dir: Path | None = None) -> PreparedData:
    """Discover, split, inspect and normalize; build the training and validation loaders.

    Every decision is logged through ``log`` in that order (data, split, skipped files, masks,
    images); with ``run_dir`` the mask decision is saved as ``mask_policy.json`` there.

    Example:
        >>> from segdoctor.sample_data import sample_path
        >>> cfg = RunConfig(data=DataConfig(path=str(sample_path()), patch_size=64))
        >>> prepared = prepare_data(cfg, log=lambda line: None)
        >>> prepared.mode, prepared.channels, len(prepared.val_pairs) > 0
        ('binary', 3, True)
    """
    d = config.data
    train_pairs, val_pairs = _discover_and_split(d, log)
    train_pairs, val_pairs, policy = _decide_masks(d, train_pairs, val_pairs, log)
    if run_dir is not None:
        policy.save(Path(run_dir) / "mask_policy.json")

    normalizer = sd.ImageNormalizer(mode="image")
    train, val = _build_loaders(config, train_pairs, val_pairs, policy, normalizer, log)
    channels = train.channels
    log(f"Images: {channels} channel(s); {normalizer.describe()}")
    mode = "binary" if policy.is_binary else "multiclass"
    num_classes = 2 if mode == "binary" else policy.num_classes
    return PreparedData(
        train=train,
        val=val,
        train_pairs=list(train_pairs),
        val_pairs=list(val_pairs),
        policy=policy,
        normalizer=normalizer,
        channels=channels,
        mode=mode,
        num_classes=num_classes,
        ignore_index=policy.ignore_index,
    )


def _discover_and_split(d: DataConfig, log: Log) -> tuple[list, list]:
    """Training and validation pairs: ``d.val_path`` when set, else a seeded split of ``d.path``.

    Args:
        d: the data section of the run configuration.
        log: receives one line on the data found and one on the split.

    Returns:
        ``(train_pairs, val_pairs)``.

    Raises:
        DataError: ``d.path`` is empty, or discovery fails (:func:`segdoctor.data.discover_pairs`).

    Example:
        >>> from segdoctor.sample_data import sample_path
        >>> train, val = _discover_and_split(DataConfig(path=str(sample_path())), lambda line: None)
        >>> len(train) > len(val) > 0
        True
    """
    if not d.path:
        raise DataError(
            "No data folder configured",
            expected="data.path set to a folder with images/ and masks/",
            fix="pass DATA on the command line.",
        )
    on_unpaired = "skip" if d.skip_bad_files else "error"
    index = sd.discover_pairs(d.path, on_unpaired=on_unpaired)
    log(f"Data: {index.describe()}")
    if d.val_path:
        train_pairs = index.pairs
        val_pairs = sd.discover_pairs(d.val_path, on_unpaired=on_unpaired).pairs
    else:
        train_pairs, val_pairs = sd.split_pairs(
            index.pairs,
            d.val_fraction,
            seed=d.split_seed,
            group_by=d.group_by,
            keep_duplicates_together=d.keep_duplicates_together,
        )
    log(
        f"Split: {len(train_pairs)} training and {len(val_pairs)} validation pairs (seed {d.split_seed})."
    )
    return train_pairs, val_pairs


def _decide_masks(d: DataConfig, train_pairs: list, val_pairs: list, log: Log) -> tuple:
    """Read and inspect every mask once, then decide how masks become class indices.

    With ``d.on_error == "skip"`` a mask that cannot be read is logged and its pair dropped from
    both sides; otherwise its :class:`DataError` stops the run.

    Args:
        d: the data section of the run configuration (``mask_policy``, ``num_classes``,
            ``ignore_index``, ``on_error``).
        train_pairs: training pairs.
        val_pairs: validation pairs.
        log: receives the skipped files and the mask decision.

    Returns:
        ``(train_pairs, val_pairs, policy)``: the pairs whose masks were read and the
        :class:`segdoctor.data.MaskPolicy`.

    Example:
        >>> from segdoctor.sample_data import sample_path
        >>> pairs = sd.discover_pairs(sample_path()).pairs
        >>> _, _, policy = _decide_masks(DataConfig(), pairs[:4], pairs[4:6], lambda line: None)
        >>> policy.is_binary
        True
    """
    masks: dict[str, np.ndarray] = {}  # name -> (H, W) raw mask
    bad: set[str] = set()
    for pair in [*train_pairs, *val_pairs]:
        try:
            masks[pair.name] = sd.read_mask(pair.mask, slice_index=pair.slice_index)
        except DataError as err:
            if not d.skip_bad_files:
                raise
            log(f"Skipped {pair.name}: {err}")
            bad.add(pair.name)
    if bad:
        train_pairs = [p for p in train_pairs if p.name not in bad]
        val_pairs = [p for p in val_pairs if p.name not in bad]
    names = {p.name: display_name(p.mask) for p in [*train_pairs, *val_pairs]}
    report = sd.inspect_masks((names[name], mask) for name, mask in masks.items())
    masks.clear()
    kind = None if d.mask_policy == "auto" else d.mask_policy
    policy = sd.decide_mask_policy(  # asking for "fractional" is asking to round them
        report,
        kind=kind,
        round_fractional=kind == "fractional",
        num_classes=d.num_classes,
        ignore_index=d.ignore_index,
    )
    log(f"Masks: {policy.describe()}")
    return train_pairs, val_pairs, policy


def _build_loaders(
    config: RunConfig, train_pairs: list, val_pairs: list, policy: Any, normalizer: Any, log: Log
) -> tuple[Any, Any]:
    """The training and validation :class:`segdoctor.data.SegmentationDataset` of a run.

    Both share the mask decision, the normalizer and the channel count (decided on the training
    side); pairs a loader skips are logged.

    Args:
        config: the run configuration (data, ``model.depth`` for the stride, ``train.seed``).
        train_pairs: training pairs.
        val_pairs: validation pairs.
        policy: the mask decision (:class:`segdoctor.data.MaskPolicy`).
        normalizer: the :class:`segdoctor.data.ImageNormalizer`.
        log: receives one line per skipped pair.

    Returns:
        ``(train, val)``: training patches ``(B, h, w, C)`` float32 / ``(B, h, w, 1)`` int32,
        and whole validation images padded to the stride.

    Example:
        >>> from segdoctor.sample_data import sample_path
        >>> pairs = sd.discover_pairs(sample_path()).pairs
        >>> cfg = RunConfig(data=DataConfig(patch_size=64))
        >>> policy = _decide_masks(cfg.data, pairs[:4], pairs[4:6], lambda line: None)[2]
        >>> norm = sd.ImageNormalizer()
        >>> train, val = _build_loaders(cfg, pairs[:4], pairs[4:6], policy, norm, print)
        >>> train[0][0].shape[1:3], val.training
        ((64, 64), False)
    """
    d = config.data
    stride = 2**config.model.depth
    common = {
        "mask_policy": policy,
        "normalizer": normalizer,
        "batch_size": d.batch_size,
        "patch_size": d.patch_size,
        "stride": stride,
        "cache": "auto" if d.cache else False,
        "seed": config.train.seed,
        "on_error": "skip" if d.skip_bad_files else "raise",
    }
    augment = {
        "default": None,
        "light": sd.AugmentConfig.light(),
        "strong": sd.AugmentConfig.strong(),
        "none": False,
    }[d.augment]
    train = sd.SegmentationDataset(
        train_pairs,
        training=True,
        augment=augment,
        foreground_fraction=d.foreground_oversample,
        samples_per_epoch=d.samples_per_epoch,
        channels=d.channels,
        **common,
    )
    val = sd.SegmentationDataset(
        val_pairs, training=False, channels=train.channels, validation="whole", **common
    )
    for dataset in (train, val):
        for name, why in dataset.skipped:
            log(f"Skipped {name}: {why}")
    return train, val
