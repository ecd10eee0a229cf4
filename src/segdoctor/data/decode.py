"""Decode a file into its stored array, per format, without interpretation.

PNG/JPEG/BMP through Pillow, TIFF through tifffile, NPY with ``allow_pickle=False`` and NIfTI
through the optional ``nibabel``. Each decoder checks the pixel count declared in the header
against ``max_pixels`` before it allocates the image (a decompression bomb is refused unread).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from segdoctor.data.files import (
    MAX_PIXELS,
    NPY_EXTENSIONS,
    PIL_EXTENSIONS,
    TIFF_EXTENSIONS,
    check_file,
    check_pixels,
    file_error,
    file_extension,
    too_large,
    undecodable,
)
from segdoctor.errors import DataError

_PIL_OPEN_LOCK = threading.Lock()
"""``warnings.catch_warnings`` swaps the process-wide filter list: two threads opening images at
once (the doctor's read-ahead) could each restore the other's filters, and Pillow's bomb warning
then escaped as an error under ``-W error`` (a 144-megapixel PNG went unreported about one run in
six). Opening, which reads the header only, is serialized; decoding is not."""


def _read_pil(path: Path, max_pixels: int | None, *, as_mask: bool) -> np.ndarray:
    try:
        with _PIL_OPEN_LOCK, warnings.catch_warnings():
            # segdoctor applies its own documented pixel limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)  # reads the header only
        with im:
            check_pixels(path, im.size[1], im.size[0], max_pixels)
            im.load()
            return _pil_to_array(im, as_mask=as_mask)
    except DataError:
        raise
    except Image.DecompressionBombError as err:  # refused by PIL while reading the header
        limit = MAX_PIXELS if max_pixels is None else max_pixels
        declared = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise too_large(path, limit, f"a header declaring more than {declared:,} pixels") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise undecodable(path, err) from err


def _pil_to_array(im, *, as_mask: bool) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        arr = np.array(im, dtype=np.uint8)
        return arr if as_mask else arr * np.uint8(255)
    if mode == "P":
        if as_mask:  # palette-mode PNG masks store class indices (e.g. Pascal VOC)
            return np.array(im, dtype=np.uint8)
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode.startswith("I;16"):
        return np.array(im).astype(np.uint16, copy=False)
    return np.array(im)


def _read_tiff(path: Path, max_pixels: int | None) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(int(s) for s in series.shape)
            axes = series.axes
            spatial = [s for s, a in zip(shape, axes, strict=False) if a in "YX"]
            if len(spatial) == 2:
                check_pixels(path, spatial[0], spatial[1], max_pixels)
            arr = series.asarray()
    except DataError:
        raise
    except Exception as err:  # tifffile raises many types for corrupt files
        raise undecodable(path, err) from err
    arr = np.squeeze(arr)
    if arr.ndim == 3 and arr.shape[0] <= 4 < min(arr.shape[1:]):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) -> (H, W, C)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] > 4):
        raise file_error(
            path,
            "the TIFF holds a stack or volume, not one 2D image",
            "a 2D image, (H, W) or (H, W, C) with C <= 4",
            f"an array of shape {arr.shape}",
            "save one 2D image per file, or store volumes as NIfTI to have them sliced.",
        )
    return arr


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype declared in an NPY header, read without the data (None if unreadable)."""
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
    except Exception:  # a broken header is reported by np.load below
        return None
    return tuple(int(s) for s in shape), np.dtype(dtype)


def _pickled(path: Path) -> DataError:
    return file_error(
        path,
        "the NPY file holds Python objects (loading it would need pickle, which can run code)",
        "a numeric array saved with np.save",
        "an object array",
        "save a numeric array (np.save(path, np.asarray(x, dtype=np.uint8))).",
    )


def _read_npy(path: Path, max_pixels: int | None) -> np.ndarray:
    with path.open("rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":  # np.load would try to unpickle anything else
        raise undecodable(path, ValueError("no NPY magic number"))
    header = _npy_header(path)
    if header is not None and header[1].hasobject:
        raise _pickled(path)
    shape = header[0] if header is not None else ()
    if len(shape) >= 2:
        spatial = shape[1:] if len(shape) == 3 and shape[0] <= 4 < min(shape[1:]) else shape[:2]
        check_pixels(path, spatial[0], spatial[1], max_pixels)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as err:
        if "pickle" in str(err).lower() or "python objects" in str(err).lower():
            raise _pickled(path) from err
        raise undecodable(path, err) from err
    except Exception as err:
        raise undecodable(path, err) from err
    if arr.ndim == 3 and arr.shape[0] <= 4 < min(arr.shape[1:]):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise file_error(
            path,
            "the array is not a 2D image",
            "an array of shape (H, W) or (H, W, C)",
            f"shape {tuple(arr.shape)}",
            "save one 2D image per file.",
        )
    check_pixels(path, int(arr.shape[0]), int(arr.shape[1]), max_pixels)
    if arr.dtype.kind not in "biuf":
        raise file_error(
            path,
            "the array has a non-numeric dtype",
            "a numeric array (uint8, uint16, float32, ...)",
            f"dtype {arr.dtype}",
            "save a numeric array.",
        )
    return np.array(arr)


def nifti_shape(path: str | Path) -> tuple[int, ...]:
    """Shape of a NIfTI volume read from its header only (needs ``nibabel``)."""
    nib = _nibabel(Path(path))
    try:
        return tuple(int(s) for s in nib.load(str(path)).shape)
    except Exception as err:
        raise undecodable(Path(path), err) from err


def _nibabel(path: Path):
    try:
        import nibabel  # noqa: PLC0415 - optional extra (segdoctor[nifti]); only for NIfTI files
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise file_error(
            path,
            "reading NIfTI needs the optional nibabel package",
            "nibabel installed",
            "ImportError",
            "pip install 'segdoctor[nifti]'.",
        ) from err
    return nibabel


def _read_nifti(path: Path, max_pixels: int | None, slice_index: int | None) -> np.ndarray:
    nib = _nibabel(path)
    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
    except Exception as err:
        raise undecodable(path, err) from err
    if len(shape) < 2 or len(shape) > 4:
        raise file_error(
            path,
            "unexpected NIfTI dimensionality",
            "a 2D image or a 3D volume",
            f"shape {shape}",
            "store one 2D or 3D volume per file.",
        )
    check_pixels(path, shape[0], shape[1], max_pixels)
    depth = shape[2] if len(shape) >= 3 else 1
    if slice_index is None:
        if depth != 1:
            raise file_error(
                path,
                "the NIfTI file is a 3D volume and no slice was chosen",
                "a slice index (discover_pairs expands volumes into one pair per slice)",
                f"shape {shape}",
                "load it through discover_pairs / Pair.slice_index.",
            )
        slice_index = 0
    if not 0 <= slice_index < depth:
        raise file_error(
            path,
            "slice index out of range",
            f"0 <= slice < {depth}",
            str(slice_index),
            "re-run discovery.",
        )
    try:
        data = img.dataobj[:, :, slice_index] if len(shape) >= 3 else img.dataobj[:, :]
        arr = np.asarray(data)
    except Exception as err:
        raise undecodable(path, err) from err
    return arr  # (X, Y) or (X, Y, C): stored voxel order, identical for image and mask


def read_raw(
    path: str | Path,
    *,
    max_pixels: int | None = None,
    slice_index: int | None = None,
    as_mask: bool = False,
) -> np.ndarray:
    """Decode a file into its stored array, ``(H, W)`` or ``(H, W, C)``, without interpretation.

    Args:
        path: The file.
        max_pixels: Refuse images with more pixels than this (default :data:`MAX_PIXELS`).
        slice_index: For 3D NIfTI volumes, the index along the third axis.
        as_mask: Decode palette-mode PNGs as their indices instead of converting to RGB.

    Returns:
        The decoded array.

    Raises:
        DataError: The file is missing, empty, unsupported, corrupt or too large.
    """
    path = Path(path)
    check_file(path)
    ext = file_extension(path)
    if ext in PIL_EXTENSIONS:
        return _read_pil(path, max_pixels, as_mask=as_mask)
    if ext in TIFF_EXTENSIONS:
        return _read_tiff(path, max_pixels)
    if ext in NPY_EXTENSIONS:
        return _read_npy(path, max_pixels)
    return _read_nifti(path, max_pixels, slice_index)
