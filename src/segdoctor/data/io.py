"""Read images and masks from disk into numpy arrays, and report bad files by name.

Supported formats: PNG, JPEG, BMP, TIFF (8/16-bit, 32-bit float; gray, gray+alpha, RGB, RGBA),
NPY (loaded with ``allow_pickle=False``) and NIfTI (``.nii``/``.nii.gz``, optional ``nibabel``;
3D volumes are read one 2D slice at a time).

Shapes and dtypes:

* :func:`read_image` returns ``(H, W, C)`` in the file's native dtype: ``uint8``, ``uint16`` or
  ``float32`` (other integer types are widened to ``uint16`` when they fit, else ``float32``).
* :func:`read_mask` returns ``(H, W)`` with an integer dtype, ``(H, W, 3)`` ``uint8`` for an RGB
  palette mask, or ``(H, W)`` ``float32`` when the file stores non-integral floats, so that
  :func:`segdoctor.data.inspect_masks` can detect (and refuse) fractional masks.

Every error is a :class:`~segdoctor.errors.DataError` that names the file and says what was
expected. Before decoding, the pixel count read from the header is checked against
``max_pixels`` (default :data:`MAX_PIXELS`, 100 megapixels) so that a decompression bomb is refused
without allocating its memory.

This module is the public face of reading; the work is split by job: :mod:`segdoctor.data.files`
(names, supported types, the checks before decoding), :mod:`segdoctor.data.decode` (one decoder
per format, :func:`read_raw`) and here the interpretation of the decoded array as an image or a
mask, and the reading of whole pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segdoctor.data.decode import nifti_shape, read_raw
from segdoctor.data.files import (
    MAX_PIXELS,
    NIFTI_EXTENSIONS,
    NPY_EXTENSIONS,
    ON_ERROR,
    PIL_EXTENSIONS,
    SKIP_HINT,
    SUPPORTED_EXTENSIONS,
    TIFF_EXTENSIONS,
    display_name,
    file_error,
    file_extension,
    file_stem,
    is_supported,
    printable,
)
from segdoctor.errors import DataError

__all__ = [  # the public names of the readers, their files and their checks
    "MAX_PIXELS",
    "NIFTI_EXTENSIONS",
    "NPY_EXTENSIONS",
    "ON_ERROR",
    "PIL_EXTENSIONS",
    "SKIP_HINT",
    "SUPPORTED_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "display_name",
    "file_extension",
    "file_stem",
    "is_supported",
    "nifti_shape",
    "printable",
    "read_image",
    "read_mask",
    "read_pair",
    "read_raw",
]


def _image_dtype(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype.kind in "iu":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            return arr.astype(np.uint16)
        return arr.astype(np.float32)
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise file_error(
            path,
            "the image contains NaN or Inf pixels",
            "finite pixel values",
            f"{bad:,} non-finite pixels",
            f"fix the export (e.g. np.nan_to_num), or {SKIP_HINT}.",
        )
    return arr


def read_image(
    path: str | Path, *, max_pixels: int | None = None, slice_index: int | None = None
) -> np.ndarray:
    """Read an image as ``(H, W, C)`` in its native dtype (``uint8``, ``uint16`` or ``float32``).

    Gray images get ``C == 1``; gray+alpha 2; RGB 3; RGBA 4. Channel conversion happens later
    (:func:`segdoctor.data.to_channels`), so nothing is thrown away here.

    Args:
        path: An image file (see module docstring for formats).
        max_pixels: Refuse images larger than this many pixels (default :data:`MAX_PIXELS`).
        slice_index: For 3D NIfTI volumes, which slice along the third axis.

    Returns:
        ``np.ndarray`` of shape ``(H, W, C)``.

    Raises:
        DataError: missing, empty, corrupt, unsupported, too large, or NaN/Inf pixels.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
        >>> np.save(p, np.zeros((4, 5), np.uint8))
        >>> read_image(p).shape
        (4, 5, 1)
    """
    path = Path(path)
    arr = read_raw(path, max_pixels=max_pixels, slice_index=slice_index)
    if arr.ndim == 2:
        arr = arr[:, :, None]  # (H, W) -> (H, W, 1)
    return _image_dtype(arr, path)


def read_mask(
    path: str | Path, *, max_pixels: int | None = None, slice_index: int | None = None
) -> np.ndarray:
    """Read a mask as ``(H, W)`` integers, or ``(H, W, 3)`` ``uint8`` for an RGB palette mask.

    RGB(A) masks whose channels are all equal are returned as ``(H, W)``; a constant alpha
    channel is dropped. Float files whose values are all integral become ``int32``; otherwise
    they are returned as ``float32`` so that fractional masks can be detected downstream.

    Args:
        path: A mask file.
        max_pixels: Refuse masks larger than this many pixels (default :data:`MAX_PIXELS`).
        slice_index: For 3D NIfTI volumes, which slice along the third axis.

    Returns:
        ``np.ndarray`` of shape ``(H, W)`` or ``(H, W, 3)``.

    Raises:
        DataError: unreadable file, NaN/Inf values, or an unexpected number of channels.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.npy"
        >>> np.save(p, np.array([[0, 255]], np.uint8))
        >>> read_mask(p).tolist()
        [[0, 255]]
    """
    path = Path(path)
    arr = read_raw(path, max_pixels=max_pixels, slice_index=slice_index, as_mask=True)
    if arr.ndim == 3:
        arr = _mask_channels(arr, path)
    return _mask_dtype(arr, path)


def _mask_channels(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C) -> (H, W) for gray stored with channels, or (H, W, 3) for an RGB palette mask."""
    channels = arr.shape[-1]
    if channels in (2, 4):  # drop alpha (gray+alpha, RGBA)
        arr = arr[..., : channels - 1]
        channels -= 1
    if channels == 1:
        return arr[..., 0]
    if channels == 3:
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return arr[..., 0]  # gray saved as RGB
        return arr
    raise file_error(
        path,
        "unexpected number of mask channels",
        "a single-channel label image (H, W) or an RGB palette mask (H, W, 3)",
        f"shape {arr.shape}",
        "store class indices in one channel (for one-hot masks: np.argmax(mask, -1)).",
    )


def _mask_dtype(arr: np.ndarray, path: Path) -> np.ndarray:
    """Integers as stored; bool -> uint8; integral floats -> int32; fractional floats float32."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise file_error(
                path,
                "the mask contains NaN or Inf values",
                "finite class indices",
                f"{int((~np.isfinite(arr)).sum()):,} non-finite values",
                f"fix the export, or {SKIP_HINT}.",
            )
        if np.array_equal(arr, np.round(arr)):
            return arr.astype(np.int32)
        return arr.astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.dtype != np.uint8:
        raise file_error(
            path,
            "an RGB mask with more than 8 bits per channel",
            "an 8-bit RGB palette mask",
            f"dtype {arr.dtype}",
            "save the palette mask as 8-bit RGB, or store class indices in one channel.",
        )
    return arr


def read_pair(pair, *, max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a :class:`~segdoctor.data.Pair`: image ``(H, W, C)`` (channel files stacked) and mask.

    Raises:
        DataError: any problem of :func:`read_image` / :func:`read_mask`, channel files of
            different sizes, or an image and mask of different sizes (both files named).

    Example:
        >>> from segdoctor.data import discover_pairs
        >>> from segdoctor.sample_data import sample_path
        >>> image, mask = read_pair(discover_pairs(sample_path()).pairs[0])
        >>> image.shape[:2] == mask.shape[:2]
        True
    """
    parts = [
        read_image(f, max_pixels=max_pixels, slice_index=pair.slice_index) for f in pair.image_files
    ]
    for f, part in zip(pair.image_files[1:], parts[1:], strict=True):
        if part.shape[:2] != parts[0].shape[:2]:
            raise file_error(
                Path(f),
                "channel files of one case have different sizes",
                f"{parts[0].shape[1]} x {parts[0].shape[0]} like {Path(pair.image).name}",
                f"{part.shape[1]} x {part.shape[0]}",
                "re-export the channels at the same size.",
            )
    if len(parts) > 1:
        dtype = np.result_type(*parts)
        image = np.concatenate([p.astype(dtype, copy=False) for p in parts], axis=-1)
    else:
        image = parts[0]
    if pair.mask is None:
        return image, None
    mask = read_mask(pair.mask, max_pixels=max_pixels, slice_index=pair.slice_index)
    if mask.shape[:2] != image.shape[:2]:
        raise DataError(
            f"Image {display_name(pair.image)} and mask {display_name(pair.mask)} differ in size",
            expected=f"the mask to be {image.shape[1]} x {image.shape[0]} (width x height) "
            "like the image",
            received=f"{mask.shape[1]} x {mask.shape[0]}",
            fix="re-export the mask at the image size (nearest-neighbour, never bilinear), or "
            + SKIP_HINT
            + ".",
        )
    return image, mask
