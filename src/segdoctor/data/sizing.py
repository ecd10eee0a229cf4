"""Sizes: pad or resize to a multiple of the model's stride, crop patches, sliding-window inference.

A U-Net with ``k`` poolings needs height and width divisible by ``2**k`` (its *stride*).
:func:`pad_to_multiple` pads at the bottom and right and returns the :class:`Padding` needed to crop
the output back (:func:`unpad`); :func:`resize_to_multiple` resizes instead (images bilinear,
masks nearest) and :func:`resize_back` maps an output back to the original size.
:func:`sliding_window_predict` runs a model on overlapping patches of an image of any size and
blends them (Gaussian or flat weights), returning a map of the original size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from segdoctor.errors import ConfigError, check_choice


def as_size(size: int | tuple[int, int] | list[int], name: str = "patch_size") -> tuple[int, int]:
    """Normalize ``256`` or ``(256, 320)`` to ``(height, width)``."""
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"Invalid {name}", expected="an int or (height, width)", received=repr(size)
        ) from err
    if h < 1 or w < 1:
        raise ConfigError(f"Invalid {name}", expected="positive sizes", received=repr(size))
    return h, w


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``.

    Example:
        >>> round_up(250, 32), round_up(256, 32)
        (256, 256)
    """
    return -(-int(value) // int(multiple)) * int(multiple)


@dataclass(frozen=True)
class Padding:
    """How an array was padded: original ``(height, width)`` and the padded size."""

    height: int
    width: int
    padded_height: int
    padded_width: int


def pad_to_size(
    array: np.ndarray, size: tuple[int, int], *, mode: str = "constant", value: float = 0
) -> tuple[np.ndarray, Padding]:
    """Pad ``array`` (H, W[, C]) at the bottom/right to at least ``size``.

    Args:
        array: ``(H, W)`` or ``(H, W, C)``.
        size: Minimum ``(height, width)``.
        mode: ``"constant"`` (fill ``value``), ``"reflect"`` or ``"edge"``.
        value: Fill value for ``"constant"``.

    Returns:
        ``(padded, padding)``.
    """
    check_choice("pad mode", mode, ("constant", "reflect", "edge"))
    h, w = array.shape[:2]
    ph, pw = max(h, size[0]), max(w, size[1])
    info = Padding(h, w, ph, pw)
    if (ph, pw) == (h, w):
        return array, info
    widths = [(0, ph - h), (0, pw - w)] + [(0, 0)] * (array.ndim - 2)
    if mode == "constant":
        return np.pad(array, widths, mode="constant", constant_values=value), info
    if mode == "reflect" and (h < 2 or w < 2 or ph - h >= h or pw - w >= w):
        mode = "symmetric"  # numpy's reflect needs the pad to be smaller than the array
    return np.pad(array, widths, mode=mode), info


def pad_to_multiple(
    array: np.ndarray, multiple: int, *, mode: str = "constant", value: float = 0
) -> tuple[np.ndarray, Padding]:
    """Pad ``array`` (H, W[, C]) at the bottom/right so H and W are multiples of ``multiple``.

    Example:
        >>> import numpy as np
        >>> padded, info = pad_to_multiple(np.ones((250, 300)), 32)
        >>> padded.shape, unpad(padded, info).shape
        ((256, 320), (250, 300))
    """
    h, w = array.shape[:2]
    return pad_to_size(
        array, (round_up(h, multiple), round_up(w, multiple)), mode=mode, value=value
    )


def unpad(array: np.ndarray, padding: Padding) -> np.ndarray:
    """Crop a padded array (or a model output of the padded size) back to the original size."""
    return array[: padding.height, : padding.width]


def resize(array: np.ndarray, size: tuple[int, int], *, is_mask: bool) -> np.ndarray:
    """Resize (H, W[, C]) to ``size``: masks nearest (values kept), images bilinear."""
    h, w = array.shape[:2]
    if (h, w) == tuple(size):
        return array
    order = 0 if is_mask else 1
    rows = (np.arange(size[0]) + 0.5) * (h / size[0]) - 0.5  # pixel-centre aligned grid
    cols = (np.arange(size[1]) + 0.5) * (w / size[1]) - 0.5
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"))  # (2, h', w')
    if array.ndim == 2:
        return ndimage.map_coordinates(array, grid, order=order, mode="nearest")
    return np.stack(
        [
            ndimage.map_coordinates(array[..., c], grid, order=order, mode="nearest")
            for c in range(array.shape[-1])
        ],
        axis=-1,
    )


def resize_to_multiple(array: np.ndarray, multiple: int, *, is_mask: bool) -> np.ndarray:
    """Resize to the nearest multiple of ``multiple`` (at least one multiple) in each dimension."""
    h, w = array.shape[:2]
    size = (
        max(multiple, round(h / multiple) * multiple),
        max(multiple, round(w / multiple) * multiple),
    )
    return resize(array, size, is_mask=is_mask)


def resize_back(array: np.ndarray, size: tuple[int, int], *, is_mask: bool = False) -> np.ndarray:
    """Map a model output (H', W'[, K]) back to the original ``size`` (probabilities: bilinear)."""
    return resize(array, size, is_mask=is_mask)


def crop(
    array: np.ndarray, start: tuple[int, int], size: tuple[int, int], *, fill: float = 0
) -> np.ndarray:
    """Crop ``size`` at ``start`` (may be negative or run past the border: filled with ``fill``).

    Example:
        >>> import numpy as np
        >>> crop(np.ones((2, 2), np.int32), (-1, 0), (3, 3)).tolist()
        [[0, 0, 0], [1, 1, 0], [1, 1, 0]]
    """
    h, w = array.shape[:2]
    (r, c), (ph, pw) = start, size
    r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + ph, h), min(c + pw, w)
    if r == r0 and c == c0 and r1 == r + ph and c1 == c + pw:
        return array[r:r1, c:c1]
    out = np.full((ph, pw, *array.shape[2:]), fill, dtype=array.dtype)
    if r1 > r0 and c1 > c0:
        out[r0 - r : r1 - r, c0 - c : c1 - c] = array[r0:r1, c0:c1]
    return out


def _window_weights(size: tuple[int, int], blend: str) -> np.ndarray:
    if blend == "flat":
        return np.ones(size, np.float32)
    # Gaussian with sigma = 1/8 of the patch (as nnU-Net), floored so borders still count.
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / (n / 8)) ** 2) for n in size]
    weights = np.outer(axes[0], axes[1]).astype(np.float32)
    weights /= weights.max()
    return np.maximum(weights, 1e-3)


def _starts(length: int, patch: int, step: int) -> list[int]:
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch, step))
    starts.append(length - patch)
    return sorted(set(starts))


def sliding_window_predict(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    patch: int | tuple[int, int],
    overlap: float = 0.5,
    *,
    blend: str = "gaussian",
    batch_size: int = 4,
    pad_value: float = 0.0,
) -> np.ndarray:
    """Predict a large image with a model trained on patches; returns the original size.

    The image (already normalized, ``(H, W, C)``) is padded to at least the patch size, cut into
    patches whose starts step by ``patch * (1 - overlap)`` (the last one flush with the border),
    predicted in batches, blended with per-pixel weights (``"gaussian"``: centre pixels count more,
    as nnU-Net; ``"flat"``: plain average), and cropped back to ``(H, W)``.

    Args:
        predict_fn: Maps a batch ``(B, ph, pw, C)`` float32 to ``(B, ph, pw, K)`` (e.g.
            ``model.predict_on_batch`` or a lambda around ``model(x)``).
        image: ``(H, W, C)`` normalized image.
        patch: Patch size, int or ``(height, width)``, a multiple of the model's stride.
        overlap: Fraction of overlap between neighbouring patches, in [0, 1).
        blend: ``"gaussian"`` or ``"flat"``.
        batch_size: Patches per call of ``predict_fn``.
        pad_value: Fill for images smaller than a patch.

    Returns:
        ``(H, W, K)`` float32 blended outputs (probabilities or logits, whatever the model gives).

    Example:
        >>> import numpy as np
        >>> img = np.random.default_rng(0).random((100, 70, 1), dtype=np.float32)
        >>> out = sliding_window_predict(lambda x: x * 2, img, 32, 0.5)
        >>> out.shape, bool(np.allclose(out, img * 2, atol=1e-5))
        ((100, 70, 1), True)
    """
    check_choice("blend", blend, ("gaussian", "flat"))
    if not 0 <= overlap < 1:
        raise ConfigError(
            "overlap must be in [0, 1)", expected="0 <= overlap < 1", received=repr(overlap)
        )
    ph, pw = as_size(patch)
    padded, info = pad_to_size(image, (ph, pw), value=pad_value)  # (H', W', C)
    starts = _window_starts(padded.shape[:2], (ph, pw), overlap)
    weights = _window_weights((ph, pw), blend)[..., None]  # (ph, pw, 1)
    total, norm = _blend_windows(predict_fn, padded, starts, weights, batch_size)
    return unpad(total / norm, info)  # (H, W, K)


def _window_starts(
    size: tuple[int, int], patch: tuple[int, int], overlap: float
) -> list[tuple[int, int]]:
    """Top-left corners of the windows that tile ``size``, row by row.

    Starts step by ``patch * (1 - overlap)`` (at least 1 pixel); the last window of a row or
    column is flush with the border.

    Example:
        >>> _window_starts((100, 64), (64, 64), 0.5)
        [(0, 0), (32, 0), (36, 0)]
    """
    (hh, ww), (ph, pw) = size, patch
    step_h, step_w = max(1, int(ph * (1 - overlap))), max(1, int(pw * (1 - overlap)))
    return [(r, c) for r in _starts(hh, ph, step_h) for c in _starts(ww, pw, step_w)]


def _blend_windows(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    padded: np.ndarray,
    starts: list[tuple[int, int]],
    weights: np.ndarray,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict the windows at ``starts`` in batches and sum their weighted outputs.

    Args:
        predict_fn: Maps ``(B, ph, pw, C)`` float32 to ``(B, ph, pw, K)``.
        padded: ``(H', W', C)`` image, at least one patch in each dimension.
        starts: Top-left corners of the windows (at least one).
        weights: ``(ph, pw, 1)`` per-pixel weight of every window.
        batch_size: Windows per call of ``predict_fn``.

    Returns:
        ``(total, norm)``: ``(H', W', K)`` weighted sum of the outputs and ``(H', W', 1)`` sum of
        the weights; ``total / norm`` is the blended prediction.

    Example:
        >>> import numpy as np
        >>> total, norm = _blend_windows(lambda x: x + 1, np.zeros((4, 6, 1)), [(0, 0), (0, 2)],
        ...                              np.ones((4, 4, 1), np.float32), batch_size=1)
        >>> norm[0, :, 0].tolist(), (total / norm)[0, :, 0].tolist()
        ([1.0, 1.0, 2.0, 2.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    """
    ph, pw = weights.shape[:2]
    hh, ww = padded.shape[:2]
    total: np.ndarray | None = None  # (H', W', K)
    norm = np.zeros((hh, ww, 1), np.float32)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        batch = np.stack([padded[r : r + ph, c : c + pw] for r, c in chunk]).astype(np.float32)
        out = np.asarray(predict_fn(batch), dtype=np.float32)  # (B, ph, pw, K)
        if out.ndim != 4 or out.shape[:3] != (len(chunk), ph, pw):
            raise ConfigError(
                "predict_fn returned an unexpected shape",
                expected=f"({len(chunk)}, {ph}, {pw}, K)",
                received=str(out.shape),
                fix="return per-pixel outputs of the input patch size.",
            )
        if total is None:
            total = np.zeros((hh, ww, out.shape[-1]), np.float32)
        for (r, c), o in zip(chunk, out, strict=True):
            total[r : r + ph, c : c + pw] += o * weights
            norm[r : r + ph, c : c + pw] += weights
    assert total is not None  # at least one window always exists
    return total, norm
