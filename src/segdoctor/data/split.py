"""Deterministic train/validation splits, group-aware splits, and duplicate detection.

:func:`split_pairs` sorts the pairs by name before shuffling with the seed, so the split depends
only on the names and the seed, never on the order the files were listed in. With ``group_by``,
whole groups (a patient, a slide, a file-name prefix) go to one side, so that near-identical
images of one group cannot leak from training into validation.

:func:`find_duplicates` hashes decoded pixels (SHA-1 of dtype, shape and bytes): the same image
saved twice, even as PNG and TIFF, is found; a re-encoded JPEG is not (pixels differ).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import numpy as np

from segdoctor.data.discover import Pair
from segdoctor.data.io import read_image
from segdoctor.data.near_copies import photometric_copies, thumbnail
from segdoctor.data.overlap import block_print, find_overlaps
from segdoctor.errors import ConfigError

GroupBy = str | Callable[[Pair], str] | None

DEFAULT_VAL_FRACTION = 0.2
"""Validation fraction of :func:`split_pairs` and of ``segdoctor train`` (``data.val_fraction``)."""
DEFAULT_SPLIT_SEED = 0
"""Seed of :func:`split_pairs` and of ``segdoctor train`` (``data.split_seed``)."""


def group_key(pair: Pair, group_by: GroupBy) -> str:
    """The group of ``pair`` under ``group_by``.

    ``group_by`` may be ``None`` (each pair its own group), ``"group"`` (the ``Pair.group`` field,
    from a CSV ``group`` column), ``"prefix"`` (the name up to its first ``_`` or ``-``), a regular
    expression (its first capture group, or the whole match, in the name), or a callable.

    Example:
        >>> from pathlib import Path
        >>> p = Pair("patient7_slice03", Path("a.png"), Path("b.png"))
        >>> group_key(p, "prefix"), group_key(p, r"patient(\\d+)")
        ('patient7', '7')
    """
    if group_by is None:
        return pair.name
    if callable(group_by):
        return str(group_by(pair))
    if group_by == "group":
        if pair.group is None:
            raise ConfigError(
                f"Pair {pair.name!r} has no group",
                expected="a group for every pair (CSV column 'group')",
                received="None",
                fix="add a group column, or use group_by='prefix' or a regex.",
            )
        return pair.group
    if group_by == "prefix":
        return re.split(r"[_\-]", pair.name, maxsplit=1)[0]
    try:
        match = re.search(group_by, pair.name)
    except re.error as err:
        raise ConfigError(
            "Invalid group_by regular expression",
            expected="'group', 'prefix', a valid regex, or a callable",
            received=repr(group_by),
            fix=str(err),
        ) from err
    if match is None:
        raise ConfigError(
            f"group_by pattern does not match the pair name {pair.name!r}",
            expected=f"every name to match {group_by!r}",
            received=pair.name,
            fix="adjust the pattern.",
        )
    return match.group(1) if match.groups() else match.group(0)


def split_pairs(
    pairs: Sequence[Pair],
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
    group_by: GroupBy = None,
    *,
    respect_existing: bool = True,
    keep_duplicates_together: bool = False,
) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into training and validation, deterministically for a seed.

    Args:
        pairs: The pairs.
        val_fraction: Fraction of pairs for validation, in (0, 1). The validation side gets
            ``round(n * val_fraction)`` pairs (at least one), or, with groups, whole groups until
            it reaches that count.
        seed: Seed of the shuffle.
        group_by: Keep groups together (see :func:`group_key`).
        respect_existing: When every pair already has ``split`` "train" or "val" (train-val
            layout, CSV split column), keep it and ignore ``val_fraction``.
        keep_duplicates_together: Read every image and merge the groups of copies
            (pixel-identical, flipped or rotated: :func:`orientation_free_hash`; with changed
            brightness, contrast or colour: :mod:`~segdoctor.data.near_copies`) and of images
            that share a region (tiles cut with overlap,
            :func:`~segdoctor.data.overlap.find_overlaps`), so that neither copies nor
            overlapping tiles end up on both sides.

    Returns:
        ``(train, val)``, each sorted by name, with ``Pair.split`` set.

    Raises:
        ConfigError: ``val_fraction`` out of range, fewer than two pairs or groups.

    Example:
        >>> from pathlib import Path
        >>> ps = [Pair(f"p{i}", Path(f"{i}.png"), Path(f"{i}m.png")) for i in range(10)]
        >>> train, val = split_pairs(ps, 0.2, seed=1)
        >>> len(train), len(val), val[0].split
        (8, 2, 'val')
    """
    pairs = sorted(pairs, key=lambda p: p.name)
    existing = _existing_split(pairs) if respect_existing else None
    if existing is not None:
        return existing
    if not 0 < val_fraction < 1:
        raise ConfigError(
            "val_fraction must be between 0 and 1",
            expected="0 < val_fraction < 1",
            received=repr(val_fraction),
        )
    groups = _group_pairs(pairs, group_by, keep_duplicates_together)
    keys = sorted(groups)
    val_keys = _choose_val_groups(keys, groups, len(pairs), val_fraction, seed)
    train = [replace(p, split="train") for k in keys if k not in val_keys for p in groups[k]]
    val = [replace(p, split="val") for k in keys if k in val_keys for p in groups[k]]
    return sorted(train, key=lambda p: p.name), sorted(val, key=lambda p: p.name)


def _existing_split(pairs: Sequence[Pair]) -> tuple[list[Pair], list[Pair]] | None:
    """``(train, val)`` as the pairs' own ``split`` fields say, or None.

    None unless every pair is marked "train" or "val" and both sides are non-empty.

    Example:
        >>> from pathlib import Path
        >>> a = Pair("a", Path("a.png"), Path("a_mask.png"), split="val")
        >>> b = replace(a, name="b", split="train")
        >>> [[p.name for p in side] for side in _existing_split([a, b])]
        [['b'], ['a']]
    """
    if not pairs or not all(p.split in ("train", "val") for p in pairs):
        return None
    train = [p for p in pairs if p.split == "train"]
    val = [p for p in pairs if p.split == "val"]
    return (train, val) if train and val else None


def _group_pairs(
    pairs: Sequence[Pair], group_by: GroupBy, keep_duplicates_together: bool
) -> dict[str, list[Pair]]:
    """Pairs by group key (see :func:`group_key`), in the order of ``pairs``; at least two groups.

    Args:
        pairs: The pairs, sorted by name.
        group_by: See :func:`group_key`.
        keep_duplicates_together: Merge the groups of copies and of overlapping images.

    Raises:
        ConfigError: fewer than two groups.

    Example:
        >>> from pathlib import Path
        >>> ps = [Pair(n, Path(f"{n}.png"), Path(f"{n}m.png")) for n in ("a_1", "a_2", "b_1")]
        >>> {k: len(v) for k, v in _group_pairs(ps, "prefix", False).items()}
        {'a': 2, 'b': 1}
    """
    keys_of = {pair.name: group_key(pair, group_by) for pair in pairs}
    if keep_duplicates_together:
        keys_of = _merge_duplicate_groups(pairs, keys_of)
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(keys_of[pair.name], []).append(pair)
    if len(groups) < 2:
        raise ConfigError(
            "Cannot split fewer than two pairs (or groups) into train and validation",
            expected="at least two pairs or groups",
            received=f"{len(pairs)} pairs in {len(groups)} group(s)",
            fix="add data, or pass a separate validation folder.",
        )
    return groups


def _choose_val_groups(
    keys: list[str], groups: dict[str, list[Pair]], n_pairs: int, val_fraction: float, seed: int
) -> set[str]:
    """Group keys for validation: whole groups in a seeded order until ``n * val_fraction`` pairs.

    At least one group goes to validation and at least one stays for training.

    Args:
        keys: The group keys, sorted.
        groups: Pairs by group key.
        n_pairs: Number of pairs in all groups.
        val_fraction: Target fraction of pairs for validation.
        seed: Seed of the permutation of ``keys``.

    Example:
        >>> groups = {k: [None] * 2 for k in "abcde"}
        >>> len(_choose_val_groups(sorted(groups), groups, 10, 0.4, seed=0))
        2
    """
    order = np.random.default_rng(seed).permutation(len(keys))
    target = max(1, round(n_pairs * val_fraction))
    val_keys: set[str] = set()
    count = 0
    for i in order:
        if count >= target or len(val_keys) == len(keys) - 1:
            break
        val_keys.add(keys[i])
        count += len(groups[keys[i]])
    return val_keys


def _merge_duplicate_groups(pairs: Sequence[Pair], keys_of: dict[str, str]) -> dict[str, str]:
    """Union-find over group keys: groups that share an image (pixel-identical, flipped or
    rotated, or with changed brightness, contrast or colour: :mod:`near_copies`), or two images
    that share a region, become one."""
    parent: dict[str, str] = {k: k for k in keys_of.values()}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(k1: str, k2: str) -> None:
        a, b = root(k1), root(k2)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first_key: dict[str, str] = {}
    prints, thumbs = [], []
    for pair in pairs:
        image = read_image(pair.image, slice_index=pair.slice_index)
        digest, key = orientation_free_hash(image), keys_of[pair.name]
        prints.append(block_print(image))
        thumbs.append(thumbnail(image))
        if digest in first_key:
            union(first_key[digest], key)
        else:
            first_key[digest] = key
    for o in find_overlaps(prints):
        union(keys_of[pairs[o.a].name], keys_of[pairs[o.b].name])

    def read(i: int) -> np.ndarray:
        return read_image(pairs[i].image, slice_index=pairs[i].slice_index)

    for a, b, _ in photometric_copies(thumbs, thumbs, read, read, same_set=True):
        union(keys_of[pairs[a].name], keys_of[pairs[b].name])
    return {name: root(key) for name, key in keys_of.items()}


def content_hash(array: np.ndarray) -> str:
    """SHA-1 of an array's dtype, shape and bytes.

    Example:
        >>> import numpy as np
        >>> content_hash(np.zeros((2, 2), np.uint8)) == content_hash(np.zeros((2, 2), np.uint8))
        True
    """
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def orientation_free_hash(image: np.ndarray) -> str:
    """One hash for an image and its 7 flips and 90-degree rotations (offline augmentation).

    The sums of the four corner blocks (the top-left, top-right, bottom-left and bottom-right
    ``H // 2 x W // 2`` pixels) move with the image under every flip and rotation; the variant
    that orders them largest first (ties: every tied variant) is hashed
    (:func:`~segdoctor.data.split.content_hash`), so one hash is computed, not eight.

    Example:
        >>> a = np.arange(12, dtype=np.uint8).reshape(3, 4)
        >>> {orientation_free_hash(v) for v in (a, a.T, a[::-1], np.rot90(a, 3))} == {
        ...     orientation_free_hash(a)}
        True
        >>> orientation_free_hash(a) == orientation_free_hash(a + 1)
        False
    """
    h, w = image.shape[:2]
    h2, w2 = h // 2, w // 2
    corners = [
        float(np.sum(image[r, c], dtype=np.float64))
        for r in (slice(0, h2), slice(h - h2, h))
        for c in (slice(0, w2), slice(w - w2, w))
    ]  # top-left, top-right, bottom-left, bottom-right
    keys = {}
    for t in (False, True):
        for ud in (False, True):
            for lr in (False, True):
                tl, tr, bl, br = corners
                if t:
                    tr, bl = bl, tr
                if ud:
                    tl, tr, bl, br = bl, br, tl, tr
                if lr:
                    tl, tr, bl, br = tr, tl, br, bl
                shape = (w, h) if t else (h, w)
                keys[(t, ud, lr)] = (shape, tl, tr, bl, br)
    best = max(keys.values())
    digests = []
    for (t, ud, lr), key in keys.items():
        if key == best:
            v = np.swapaxes(image, 0, 1) if t else image
            v = v[::-1] if ud else v
            v = v[:, ::-1] if lr else v
            digests.append(content_hash(v))
    return min(digests)


def find_duplicates(
    *splits: Iterable[Pair], max_pixels: int | None = None
) -> list[tuple[str, str]]:
    """Find images with identical pixels, within and across the given splits.

    Args:
        *splits: One or more collections of pairs (e.g. ``train, val``).
        max_pixels: Passed to :func:`read_image`.

    Returns:
        ``(first_name, duplicate_name)`` tuples; names are prefixed ``split:`` when several
        splits are given, so train/val leaks read as ``("train:a", "val:b")``.
    """
    seen: dict[str, str] = {}
    dupes: list[tuple[str, str]] = []
    for k, split in enumerate(splits):
        for pair in split:
            label = f"{pair.split or f'set{k}'}:{pair.name}" if len(splits) > 1 else pair.name
            digest = content_hash(
                read_image(pair.image, max_pixels=max_pixels, slice_index=pair.slice_index)
            )
            if digest in seen:
                dupes.append((seen[digest], label))
            else:
                seen[digest] = label
    return dupes


def cross_split_duplicates(
    train: Iterable[Pair],
    val: Iterable[Pair],
    max_pixels: int | None = None,
    key: Callable[[np.ndarray], str] = content_hash,
) -> list[tuple[str, str]]:
    """Images that occur in both ``train`` and ``val``: ``(train, val)`` names.

    ``key``: :func:`content_hash` (pixel-identical copies) or :func:`orientation_free_hash`
    (flipped and rotated copies too).
    """
    train_hashes: dict[str, str] = {}
    for pair in train:
        img = read_image(pair.image, max_pixels=max_pixels, slice_index=pair.slice_index)
        train_hashes.setdefault(key(img), pair.name)
    out = []
    for pair in val:
        img = read_image(pair.image, max_pixels=max_pixels, slice_index=pair.slice_index)
        digest = key(img)
        if digest in train_hashes:
            out.append((train_hashes[digest], pair.name))
    return out
