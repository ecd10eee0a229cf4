"""Regions shared between images: tiles cut with overlap from one larger image.

A dataset made by cutting large images into tiles at a stride below the tile size holds pairs of
tiles that share a region pixel for pixel, at an offset. Split at random, a validation tile's
shared part was trained on, and whole-image hashes (:func:`~segdoctor.data.content_hash`) see
nothing, since no tile is identical to another.

Method. Every ``BLOCK x BLOCK`` block of an image gets a 64-bit polynomial hash of its pixels,
all blocks at once from cumulative sums (exact integer arithmetic modulo 2**64, as numpy's
unsigned integers wrap). A block is kept when its mixed hash falls in a fixed ``1 / 2**SAMPLE_BITS``
of the hash space: the choice depends on the block's content, not on its position, so a block
shared by two images is kept in both, at whatever offset (the content-defined sampling of
winnowing and of rsync-style chunking). Blocks with fewer than :data:`MIN_DISTINCT` distinct
values among 32 fixed pixels of the block are dropped (a content-only rule, so again the same in
both images): a black border, a saturated area or a sparse pattern repeats in unrelated images. Two images overlap when :data:`MIN_MATCHES` or more kept blocks match at one
offset and they are at least :data:`MATCH_SHARE` of the kept blocks the claimed shared region
holds (a logo or scale bar burnt into every image matches at one offset, but is a small part
of the region that offset claims).

Example:
    >>> import numpy as np
    >>> big = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    >>> prints = [block_print(big[:64, :64]), block_print(big[16:80, 32:96])]
    >>> [(o.a, o.b, o.offset, round(o.share, 2)) for o in find_overlaps(prints)]
    [(0, 1, (-16, -32), 0.38)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BLOCK = 16
"""Side of the hashed blocks (pixels): the narrowest shared strip that can be found."""
SAMPLE_BITS = 6
"""A block is kept when the top ``SAMPLE_BITS`` bits of its mixed hash are 0 (1 block in 64).
The kept blocks are what the doctor's data pass holds per image (8 bytes each: about 2.5 kB for a
256 x 256 image); at 1 in 32 its memory grew by 1.6x from 20 to 80 images of 128 px
(tests/test_data_pass.py allows 1.5x)."""
MIN_DISTINCT = 8
"""Distinct values a kept block must hold among its 32 probe pixels (:data:`_PROBE_ROWS`)."""
MIN_MATCHES = 4
"""Kept blocks that must match at one offset."""
MATCH_SHARE = 0.5
"""Share of the kept blocks inside the claimed shared region that must match."""
MAX_RUN = 16
"""A block found in more images than this is a pattern (a logo, a frame), not a shared region."""
MAX_PIXELS = 4_000_000
"""Images larger than this (pixels) are not fingerprinted (the hashing needs 8 bytes a pixel)."""
MAX_SIDE = 65_535
"""Images with a longer side are not fingerprinted (positions are stored as ``uint16``)."""
_PROBE_ROWS = np.repeat(np.arange(BLOCK), 2)
_PROBE_COLS = np.stack(
    [(5 * np.arange(BLOCK)) % BLOCK, (5 * np.arange(BLOCK) + 8) % BLOCK], 1
).ravel()
"""The 32 probe pixels of a block, two per row spread over the columns. Counting distinct values
over all 256 pixels took 70% of the fingerprint's time on dsb2018-nuclei (sorting), these 32 a
few percent; a block with 8 distinct values among them has at least 8 among all."""

_ROW_BASE = 0x9E3779B97F4A7C15  # odd: invertible modulo 2**64
_COL_BASE = 0xC2B2AE3D27D4EB4F
_CHANNEL_BASE = np.uint64(1_000_003)


@dataclass(frozen=True)
class BlockPrint:
    """The kept blocks of one image: hash and top-left corner of each.

    Attributes:
        shape: ``(H, W)`` of the image.
        hashes: The low 32 bits of the kept blocks' hashes (``uint32``; the top bits chose them).
        ys: Their top rows (``uint16``).
        xs: Their left columns (``uint16``).
    """

    shape: tuple[int, int]
    hashes: np.ndarray
    ys: np.ndarray
    xs: np.ndarray


@dataclass(frozen=True)
class Overlap:
    """Two images that share a region.

    Attributes:
        a, b: Indices of the two images (``a < b``) in the list given to :func:`find_overlaps`.
        offset: ``(dy, dx)``: pixel ``(y, x)`` of image ``a`` is pixel ``(y + dy, x + dx)`` of ``b``.
        box: The shared region in ``a``'s coordinates, ``(top, left, bottom, right)``.
        share: The shared region's area over the smaller image's.
        matches: Kept blocks that matched at this offset.
    """

    a: int
    b: int
    offset: tuple[int, int]
    box: tuple[int, int, int, int]
    share: float
    matches: int


def _powers(base: int, n: int) -> np.ndarray:
    """``base**0 .. base**(n-1)`` modulo 2**64 (numpy's ``uint64`` products wrap)."""
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)


def _window_hash(v: np.ndarray, base: int, axis: int) -> np.ndarray:
    """``sum_j v[.., i + j, ..] * base**j`` over windows of :data:`BLOCK` along ``axis``."""
    n = v.shape[axis]
    shape = [1, 1]
    shape[axis] = n
    weighted = v * _powers(base, n).reshape(shape)
    c = np.cumsum(weighted, axis=axis, dtype=np.uint64)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    m = n - BLOCK + 1
    ahead, behind = [slice(None)] * 2, [slice(None)] * 2
    ahead[axis], behind[axis] = slice(BLOCK, n + 1), slice(0, m)
    diff = c[tuple(ahead)] - c[tuple(behind)]
    shape[axis] = m
    return diff * _powers(pow(base, -1, 2**64), m).reshape(shape)


def _mix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: every output bit depends on every input bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def pixel_keys(image: np.ndarray) -> np.ndarray:
    """One ``uint64`` per pixel of an ``(H, W)`` or ``(H, W, C)`` image, equal iff the pixels are.

    Floats are keyed by their float32 bits; integer channels are combined polynomially.
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.dtype.kind == "f":
        a = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    a = a.astype(np.uint64)
    key = a[..., 0].copy()
    for c in range(1, a.shape[-1]):
        key = key * _CHANNEL_BASE + a[..., c]
    return key


def block_print(image: np.ndarray) -> BlockPrint | None:
    """The kept blocks of ``image`` (see the module docstring); None when it is smaller than one
    block or larger than :data:`MAX_PIXELS` or :data:`MAX_SIDE`."""
    h, w = image.shape[:2]
    if h < BLOCK or w < BLOCK or h * w > MAX_PIXELS or max(h, w) > MAX_SIDE:
        return None
    with np.errstate(over="ignore"):
        key = pixel_keys(image)
        hashed = _mix(_window_hash(_window_hash(key, _ROW_BASE, 1), _COL_BASE, 0))
    ys, xs = np.nonzero((hashed >> np.uint64(64 - SAMPLE_BITS)) == 0)
    probes = np.sort(key[ys[:, None] + _PROBE_ROWS, xs[:, None] + _PROBE_COLS], axis=1)  # (n, 32)
    keep = 1 + np.count_nonzero(probes[:, 1:] != probes[:, :-1], axis=1) >= MIN_DISTINCT
    ys, xs = ys[keep], xs[keep]
    kept = hashed[ys, xs].astype(np.uint32)  # the low bits: the top ones are 0 by choice
    return BlockPrint((h, w), kept, ys.astype(np.uint16), xs.astype(np.uint16))


def _shared_box(
    a: tuple[int, int], b: tuple[int, int], dy: int, dx: int
) -> tuple[int, int, int, int]:
    """Image ``b``'s rectangle in ``a``'s coordinates, intersected with ``a``'s."""
    return max(0, -dy), max(0, -dx), min(a[0], b[0] - dy), min(a[1], b[1] - dx)


def _candidates(prints: Sequence[BlockPrint | None], groups: Sequence[int] | None) -> np.ndarray:
    """Rows ``(a, b, dy, dx)``, one per matching pair of kept blocks of two images."""
    present = [(i, p) for i, p in enumerate(prints) if p is not None and len(p.hashes)]
    if len(present) < 2:
        return np.zeros((0, 4), np.int64)
    hashes = np.concatenate([p.hashes for _, p in present])
    ids = np.concatenate([np.full(len(p.hashes), i) for i, p in present])
    ys = np.concatenate([p.ys for _, p in present]).astype(np.int64)
    xs = np.concatenate([p.xs for _, p in present]).astype(np.int64)
    order = np.argsort(hashes, kind="stable")
    hashes, ids, ys, xs = hashes[order], ids[order], ys[order], xs[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    lengths = np.diff(np.r_[starts, len(hashes)])
    rows = []
    for length in range(2, MAX_RUN + 1):
        first = starts[lengths == length]
        if not len(first):
            continue
        u, v = np.triu_indices(length, k=1)
        i, j = (first[:, None] + u).ravel(), (first[:, None] + v).ravel()
        swap = ids[i] > ids[j]
        i, j = np.where(swap, j, i), np.where(swap, i, j)
        rows.append(np.stack([ids[i], ids[j], ys[j] - ys[i], xs[j] - xs[i]], axis=1))
    if not rows:
        return np.zeros((0, 4), np.int64)
    out = np.concatenate(rows)
    out = out[out[:, 0] != out[:, 1]]
    if groups is not None:
        g = np.asarray(groups)
        out = out[g[out[:, 0]] != g[out[:, 1]]]
    return out


def find_overlaps(
    prints: Sequence[BlockPrint | None], groups: Sequence[int] | None = None
) -> list[Overlap]:
    """Pairs of images that share a region, the offset with the most matches for each pair.

    Args:
        prints: :func:`block_print` of each image (None: not compared).
        groups: A group per image; when given, only images of different groups are compared
            (e.g. the split each image is in).

    Returns:
        The overlaps, sorted by ``(a, b)``. Pixel-identical images (offset 0, same shape) are
        included: the caller decides whether a duplicate check reports them already.
    """
    rows = _candidates(prints, groups)
    if not len(rows):
        return []
    keys, counts = np.unique(rows, axis=0, return_counts=True)
    best: dict[tuple[int, int], Overlap] = {}
    for (a, b, dy, dx), n in zip(keys.tolist(), counts.tolist(), strict=True):
        if n < MIN_MATCHES:
            continue
        pa, pb = prints[a], prints[b]
        assert pa is not None and pb is not None
        top, left, bottom, right = _shared_box(pa.shape, pb.shape, dy, dx)
        inside = (
            (pa.ys >= top) & (pa.ys + BLOCK <= bottom) & (pa.xs >= left) & (pa.xs + BLOCK <= right)
        )
        if n < MATCH_SHARE * int(inside.sum()):
            continue
        smaller = min(pa.shape[0] * pa.shape[1], pb.shape[0] * pb.shape[1])
        found = Overlap(
            a, b, (dy, dx), (top, left, bottom, right),
            (bottom - top) * (right - left) / smaller, n,
        )  # fmt: skip
        if (a, b) not in best or n > best[(a, b)].matches:
            best[(a, b)] = found
    return [best[k] for k in sorted(best)]
