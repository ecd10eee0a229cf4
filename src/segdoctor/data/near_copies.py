"""Copies of an image with changed brightness, contrast, gamma or colour (photometric copies).

Offline augmentation written to disk before a random split puts brightness-shifted or
colour-jittered copies of training images into validation; their pixels differ from the
original everywhere, so a content hash (pixel-identical or flipped copies,
:func:`~segdoctor.data.split.orientation_free_hash`) and the block prints of
:mod:`~segdoctor.data.overlap` (exact pixel values) miss them (first blind test, 2026-12-07).

Two steps:

1. Candidates. Every image keeps a :data:`THUMB` x :data:`THUMB` gray thumbnail, box-averaged and
   z-scored (512 bytes as float16). Its correlation with another image's thumbnail, under the
   best of the 8 flips and 90-degree rotations, is invariant to any brightness/contrast change
   and nearly so to colour changes. Only each image's best partner in the other split at
   :data:`CANDIDATE_MIN` or above is read again.
2. Verification at full resolution: how much of one image's pixel values the other's *determine*
   (the correlation ratio eta^2, the share of the variance of ``b`` explained by the mean of
   ``b`` at each value of ``a``). A copy through any per-pixel transform (an offset, a gain,
   gamma, clipping at 0 or 255, an inversion, a per-channel colour balance) scores 1 up to
   rounding; a hue rotation or JPEG re-encoding, which mix channels, score 0.99-1.00 on CamVid
   and ISBI images with ``a``'s colour quantized to 8 levels a channel at its own quantiles
   (DSB's colour H&E images down to 0.88 and 0.84: not all found). Two different images do not:
   consecutive frames of a driving video (CamVid, 1,602 pairs with thumbnails at 0.9 or more)
   reach at most 0.908, the most similar pair of DSB2018 images 0.901
   (``benchmarks/calibrate_checks.py near-copies``). :data:`COPY_MIN` is 0.95.
3. Fine detail. A copy also repeats the other image's noise and texture: the correlation of the
   two images' high-pass parts (each minus its 3 x 3 mean, :func:`detail_score`) must reach
   :data:`DETAIL_MIN`. Without it, two small tiles that each hold one bright blob in one corner
   of a dark, noisy background (64 px crops of different DSB2018 fluorescence images) scored up to
   0.98 above: the blob's values determine nearly all the variance, whatever the background does
   (fifth blind test, 2026-12-07). Their detail correlation is at most 0.12; copies through
   brightness, contrast, gamma or colour changes keep 0.5-1.0, JPEG-90 copies 0.2-0.97 (median
   0.68-0.98 by dataset), copies with added noise less (noisy copies of dark fluorescence images
   are the documented miss).

Example:
    >>> rng = np.random.default_rng(0)
    >>> a = rng.integers(0, 200, (64, 64, 1)).astype(np.uint8)
    >>> brighter = np.clip(a.astype(int) * 1.2 + 30, 0, 255).astype(np.uint8)
    >>> round(copy_score(a, brighter), 3), copy_score(a, rng.integers(0, 200, (64, 64, 1)).astype(np.uint8)) < 0.1
    (1.0, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from segdoctor.data.normalize import to_channels

THUMB = 16
"""Side of the gray thumbnail kept per image."""
CANDIDATE_MIN = 0.9
"""Thumbnail correlation (best orientation) above which a pair is verified at full resolution."""
COPY_MIN = 0.95
"""Correlation ratio at full resolution above which two images are one image (see above)."""
DETAIL_MIN = 0.25
"""Correlation of the high-pass parts (:func:`detail_score`) a copy must also reach."""
QUANT = 8
"""Levels per channel of the colour used as the 'value of a' for colour images."""


def _gray(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 luminance of an ``(H, W)`` or ``(H, W, C)`` image (alpha dropped), as
    the loader converts it (:func:`~segdoctor.data.normalize.to_channels`); the first channel of
    other channel counts."""
    img = image if image.ndim == 3 else image[..., None]
    if img.shape[-1] not in (1, 2, 3, 4):
        return img[..., 0].astype(np.float32)
    return to_channels(img, 1)[..., 0].astype(np.float32)


def thumbnail(image: np.ndarray) -> np.ndarray | None:
    """The z-scored :data:`THUMB`-pixel gray thumbnail of ``image`` (float16), None when the
    image is smaller than the thumbnail or flat.

    Example:
        >>> t = thumbnail(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32, 1))
        >>> t.shape, t.dtype, round(float(np.linalg.norm(t.astype(np.float32))), 2)
        ((16, 16), dtype('float16'), 1.0)
    """
    g = _gray(image)
    if min(g.shape) < THUMB:
        return None
    t = np.asarray(Image.fromarray(g).resize((THUMB, THUMB), Image.BOX), np.float32)
    t = t - t.mean()
    norm = float(np.linalg.norm(t))
    return None if norm < 1e-6 else (t / norm).astype(np.float16)


def orientations(a: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and 90-degree rotations of ``a`` (first two axes), the identity first."""
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        out += [r, r[:, ::-1]]
    return out


def best_partners(
    queries: Sequence[np.ndarray | None],
    refs: Sequence[np.ndarray | None],
    *,
    same_set: bool = False,
) -> list[tuple[int, int, int, float]]:
    """For each query thumbnail, the reference thumbnail most correlated with it under one of the
    8 orientations of the reference, when at least :data:`CANDIDATE_MIN`.

    Args:
        same_set: ``queries`` and ``refs`` are one list: an image is not its own partner.

    Returns:
        ``(query index, reference index, orientation, correlation)`` rows.
    """
    qi = [i for i, t in enumerate(queries) if t is not None]
    ri = [j for j, t in enumerate(refs) if t is not None]
    if not qi or not ri:
        return []
    q = np.stack([queries[i].astype(np.float32).ravel() for i in qi])  # (Q, D)
    r = np.stack(
        [np.stack([o.ravel() for o in orientations(refs[j].astype(np.float32))]) for j in ri]
    )  # (R, 8, D)
    out = []
    for start in range(0, len(qi), 256):  # (256, R, 8) at a time: bounded memory
        c = np.einsum("qd,rkd->qrk", q[start : start + 256], r)
        if same_set:  # qi == ri here: mask each image's own column
            rows = np.arange(c.shape[0])
            c[rows, start + rows, :] = -np.inf
        flat = c.reshape(c.shape[0], -1)
        best = flat.argmax(1)
        for row, idx in enumerate(best):
            value = float(flat[row, idx])
            if value >= CANDIDATE_MIN:
                out.append((qi[start + row], ri[idx // 8], int(idx % 8), value))
    return out


def _eta2(code: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Share of the variance of ``b`` explained by its mean at each value of ``code``."""
    n = np.bincount(code, minlength=bins)
    s = np.bincount(code, weights=b, minlength=bins)
    mean = np.divide(s, n, out=np.zeros(bins), where=n > 0)
    total = float(((b - b.mean()) ** 2).sum())
    return 0.0 if total <= 0 else 1.0 - float(((b - mean[code]) ** 2).sum()) / total


def _channels(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` uint8 without alpha."""
    img = image if image.ndim == 3 else image[..., None]
    if img.shape[-1] in (2, 4):
        img = img[..., :-1]
    return _to_uint8(img)


def _colour_codes(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Each pixel's colour quantized to :data:`QUANT` levels a channel, the levels at the
    channel's own quantiles (a dark fluorescence image keeps its detail)."""
    code = np.zeros(img.shape[:2], np.int64)
    for c in range(img.shape[-1]):
        edges = np.unique(np.quantile(img[..., c], np.linspace(0, 1, QUANT + 1)[1:-1]))
        code = code * QUANT + np.searchsorted(edges, img[..., c], side="right")
    return code.ravel(), QUANT ** img.shape[-1]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    lo, hi = float(img.min()), float(img.max())
    return ((img.astype(np.float64) - lo) / max(hi - lo, 1e-12) * 255).round().astype(np.uint8)


def copy_score(a: np.ndarray, b: np.ndarray) -> float:
    """How completely each image's pixel values determine the other's (1: one image through a
    per-pixel transform); the larger of the two directions.

    ``a`` and ``b``: ``(H, W)`` or ``(H, W, C)`` of the same height and width.
    """
    if a.shape[:2] != b.shape[:2]:
        return 0.0
    best = 0.0
    for x, y in ((_channels(a), _channels(b)), (_channels(b), _channels(a))):
        # per channel (a gain, offset or gamma per channel, clipping): each channel of y from
        # the same channel of x, the worst channel counts
        if x.shape[-1] == y.shape[-1]:
            per = [
                _eta2(x[..., c].ravel().astype(np.int64), y[..., c].ravel().astype(np.float64), 256)
                for c in range(x.shape[-1])
            ]
            best = max(best, min(per))
        else:  # gray against colour: luminance from luminance
            lum = np.clip(np.rint(_gray(x)), 0, 255).astype(np.int64).ravel()
            best = max(best, _eta2(lum, _gray(y).ravel().astype(np.float64), 256))
        # colour transforms that mix channels (hue, saturation): y's luminance from x's colour
        if x.shape[-1] > 1:
            code, bins = _colour_codes(x)
            best = max(best, _eta2(code, _gray(y).ravel().astype(np.float64), bins))
    return best


def content_box(image: np.ndarray) -> tuple[slice, slice]:
    """The image without the constant rows and columns along its edges (letterbox or padding
    bars), as two slices; the whole image when it has none.

    Example:
        >>> img = np.zeros((10, 12), np.uint8); img[2:8, 3:9] = np.arange(36).reshape(6, 6)
        >>> content_box(img)
        (slice(2, 8, None), slice(3, 9, None))
    """
    img = image if image.ndim == 3 else image[..., None]  # raw values: no conversion per call
    varies_in_row = (img.max(axis=1) > img.min(axis=1)).any(axis=-1)  # (H,): not one colour
    varies_in_col = (img.max(axis=0) > img.min(axis=0)).any(axis=-1)  # (W,)
    rows, cols = np.flatnonzero(varies_in_row), np.flatnonzero(varies_in_col)
    if not len(rows) or not len(cols):
        return slice(0, img.shape[0]), slice(0, img.shape[1])
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _common_content(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice] | None:
    """Where both images have content (:func:`content_box`), None when that is smaller than a
    thumbnail: padding bars, which a letterboxed dataset adds to every image at the same place,
    would otherwise make any two such images look alike (fifth blind test)."""
    (ra, ca), (rb, cb) = content_box(a), content_box(b)
    rows = slice(max(ra.start, rb.start), min(ra.stop, rb.stop))
    cols = slice(max(ca.start, cb.start), min(ca.stop, cb.stop))
    if rows.stop - rows.start < THUMB or cols.stop - cols.start < THUMB:
        return None
    return rows, cols


def detail_score(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of the fine detail of two same-size images: each gray image minus its 3 x 3
    box mean (noise, texture, edges), 0 when either has none.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a = rng.integers(0, 200, (32, 32)).astype(np.uint8)
        >>> round(detail_score(a, (a // 2 + 20).astype(np.uint8)), 2)
        1.0
    """
    if a.shape[:2] != b.shape[:2]:
        return 0.0
    parts = []
    for img in (a, b):
        g = _gray(img).astype(np.float64)
        h = g - ndimage.uniform_filter(g, 3, mode="nearest")
        h -= h.mean()
        norm = float(np.sqrt((h * h).sum()))
        if norm < 1e-9:
            return 0.0
        parts.append(h / norm)
    return float((parts[0] * parts[1]).sum())


def photometric_copies(
    queries: Sequence[np.ndarray | None],
    refs: Sequence[np.ndarray | None],
    read_query: Callable[[int], np.ndarray | None],
    read_ref: Callable[[int], np.ndarray | None],
    *,
    same_set: bool = False,
) -> list[tuple[int, int, float]]:
    """Query images that are copies of a reference image with changed brightness or colour.

    Args:
        queries, refs: thumbnails (:func:`thumbnail`) of the two sides.
        read_query, read_ref: read image ``i`` of each side again (None: unreadable).
        same_set: one list on both sides (all against all; an image is not its own copy).

    Returns:
        ``(query index, reference index, copy score)`` for each verified copy.
    """
    found = []
    for qi, ri, k, _ in best_partners(queries, refs, same_set=same_set):
        a, b = read_query(qi), read_ref(ri)
        if a is None or b is None:
            continue
        b = orientations(b)[k]
        if a.shape[:2] != b.shape[:2]:
            continue
        box = _common_content(a, b)
        if box is None:
            continue
        a, b = a[box], b[box]
        score = copy_score(a, b)
        if score >= COPY_MIN and detail_score(a, b) >= DETAIL_MIN:
            found.append((qi, ri, score))
    return found
