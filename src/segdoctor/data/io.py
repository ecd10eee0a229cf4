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
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from segdoctor.errors import DataError

MAX_PIXELS: int = 100_000_000
"""Largest image (height x width) read by default: 100 megapixels, e.g. 10000 x 10000."""

PIL_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff")
NPY_EXTENSIONS: tuple[str, ...] = (".npy",)
NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    PIL_EXTENSIONS + TIFF_EXTENSIONS + NPY_EXTENSIONS + NIFTI_EXTENSIONS
)
_FORMATS_TEXT = "a PNG, JPEG, BMP, TIFF, NPY or NIfTI file"
SKIP_HINT = "skip it with on_error='skip' (command line: --set data.skip_bad_files=true)"
"""How every refusal of a single file says that the file can be left out instead."""


def file_extension(path: str | Path) -> str:
    """Lower-case extension of ``path``, with ``.nii.gz`` kept whole.

    Example:
        >>> file_extension("scan_0000.nii.gz"), file_extension("a.PNG")
        ('.nii.gz', '.png')
    """
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def file_stem(path: str | Path) -> str:
    """File name without its extension (``.nii.gz`` counts as one extension).

    Example:
        >>> file_stem("case_001_0000.nii.gz"), file_stem("img.v2.png")
        ('case_001_0000', 'img.v2')
    """
    name = Path(path).name
    ext = file_extension(name)
    return name[: len(name) - len(ext)] if ext else name


def is_supported(path: str | Path) -> bool:
    """Whether ``path`` has an extension segdoctor can read."""
    return file_extension(path) in SUPPORTED_EXTENSIONS


def printable(text: str) -> str:
    """``text`` with bytes that are not valid UTF-8 shown as ``\\xNN`` (always encodable).

    On Linux a file name is bytes; Python keeps undecodable bytes as lone surrogates, which
    cannot be printed, written to a UTF-8 report or put into JSON as themselves.

    Example:
        >>> import os
        >>> printable(os.fsdecode(b"caf\\xe9.png"))
        'caf\\\\xe9.png'
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def display_name(path: str | Path) -> str:
    """Short, printable name used in messages: ``parent/file``."""
    path = Path(path)
    name = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return printable(name)


def _fail(path: Path, what: str, expected: str, received: str, fix: str) -> DataError:
    return DataError(
        f"Cannot use {display_name(path)}: {what}", expected=expected, received=received, fix=fix
    )


def _check_file(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise _fail(
            path,
            "the file is a broken symbolic link (its target is missing, or links form a loop)",
            "a link to an existing file",
            f"a link to {printable(_link_target(path))}",
            f"fix or remove the link, or {SKIP_HINT}.",
        )
    if not path.is_file():
        raise _fail(
            path,
            "the file does not exist",
            "an existing file",
            str(path),
            "check the path, or re-run discovery.",
        )
    if path.stat().st_size == 0:
        raise _fail(
            path,
            "the file is empty (zero bytes)",
            _FORMATS_TEXT,
            "a zero-byte file",
            f"re-export or re-download this file, remove it, or {SKIP_HINT}.",
        )
    if not is_supported(path):
        raise _fail(
            path,
            "unsupported file type",
            _FORMATS_TEXT,
            f"extension {file_extension(path) or '(none)'!r}",
            "convert it to PNG/TIFF/NPY, or move it out of the data folder.",
        )


def _link_target(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return "(unreadable link)"


def _too_large(path: Path, limit: int, received: str) -> DataError:
    return _fail(
        path,
        "the image is larger than the pixel limit (possible decompression bomb)",
        f"at most {limit:,} pixels (segdoctor.data.MAX_PIXELS)",
        received,
        "pass a larger max_pixels if the file is genuine, or tile it into smaller images.",
    )


def _check_pixels(path: Path, height: int, width: int, max_pixels: int | None) -> None:
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if height * width > limit:
        raise _too_large(path, limit, f"{width} x {height} = {height * width:,} pixels")


def _undecodable(path: Path, err: Exception) -> DataError:
    head = path.read_bytes()[:16] if path.is_file() else b""
    return _fail(
        path,
        "the file cannot be decoded (corrupt, truncated, or not what its extension says)",
        f"a valid {file_extension(path).lstrip('.').upper()} file",
        f"{type(err).__name__}: {err} (file starts with {head!r})",
        f"re-export this file, or {SKIP_HINT}.",
    )


# --------------------------------------------------------------------------------------------
# Raw decoding: returns the stored array, (H, W) or (H, W, C), without interpretation.


_PIL_OPEN_LOCK = threading.Lock()
"""``warnings.catch_warnings`` swaps the process-wide filter list: two threads opening images at
once (the doctor's read-ahead) could each restore the other's filters, and Pillow's bomb warning
then escaped as an error under ``-W error`` (a 144-megapixel PNG went unreported about one run in
six). Opening, which reads the header only, is serialized; decoding is not."""


def _read_pil(path: Path, max_pixels: int | None, *, as_mask: bool) -> np.ndarray:
    from PIL import Image

    try:
        with _PIL_OPEN_LOCK, warnings.catch_warnings():
            # segdoctor applies its own documented pixel limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)  # reads the header only
        with im:
            _check_pixels(path, im.size[1], im.size[0], max_pixels)
            im.load()
            return _pil_to_array(im, as_mask=as_mask)
    except DataError:
        raise
    except Image.DecompressionBombError as err:  # refused by PIL while reading the header
        limit = MAX_PIXELS if max_pixels is None else max_pixels
        declared = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise _too_large(path, limit, f"a header declaring more than {declared:,} pixels") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise _undecodable(path, err) from err


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
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(int(s) for s in series.shape)
            axes = series.axes
            spatial = [s for s, a in zip(shape, axes, strict=False) if a in "YX"]
            if len(spatial) == 2:
                _check_pixels(path, spatial[0], spatial[1], max_pixels)
            arr = series.asarray()
    except DataError:
        raise
    except Exception as err:  # tifffile raises many types for corrupt files
        raise _undecodable(path, err) from err
    arr = np.squeeze(arr)
    if arr.ndim == 3 and arr.shape[0] <= 4 < min(arr.shape[1:]):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) -> (H, W, C)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] > 4):
        raise _fail(
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
    return _fail(
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
        raise _undecodable(path, ValueError("no NPY magic number"))
    header = _npy_header(path)
    if header is not None and header[1].hasobject:
        raise _pickled(path)
    shape = header[0] if header is not None else ()
    if len(shape) >= 2:
        spatial = shape[1:] if len(shape) == 3 and shape[0] <= 4 < min(shape[1:]) else shape[:2]
        _check_pixels(path, spatial[0], spatial[1], max_pixels)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as err:
        if "pickle" in str(err).lower() or "python objects" in str(err).lower():
            raise _pickled(path) from err
        raise _undecodable(path, err) from err
    except Exception as err:
        raise _undecodable(path, err) from err
    if arr.ndim == 3 and arr.shape[0] <= 4 < min(arr.shape[1:]):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise _fail(
            path,
            "the array is not a 2D image",
            "an array of shape (H, W) or (H, W, C)",
            f"shape {tuple(arr.shape)}",
            "save one 2D image per file.",
        )
    _check_pixels(path, int(arr.shape[0]), int(arr.shape[1]), max_pixels)
    if arr.dtype.kind not in "biuf":
        raise _fail(
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
        raise _undecodable(Path(path), err) from err


def _nibabel(path: Path):
    try:
        import nibabel
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise _fail(
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
        raise _undecodable(path, err) from err
    if len(shape) < 2 or len(shape) > 4:
        raise _fail(
            path,
            "unexpected NIfTI dimensionality",
            "a 2D image or a 3D volume",
            f"shape {shape}",
            "store one 2D or 3D volume per file.",
        )
    _check_pixels(path, shape[0], shape[1], max_pixels)
    depth = shape[2] if len(shape) >= 3 else 1
    if slice_index is None:
        if depth != 1:
            raise _fail(
                path,
                "the NIfTI file is a 3D volume and no slice was chosen",
                "a slice index (discover_pairs expands volumes into one pair per slice)",
                f"shape {shape}",
                "load it through discover_pairs / Pair.slice_index.",
            )
        slice_index = 0
    if not 0 <= slice_index < depth:
        raise _fail(
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
        raise _undecodable(path, err) from err
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
    _check_file(path)
    ext = file_extension(path)
    if ext in PIL_EXTENSIONS:
        return _read_pil(path, max_pixels, as_mask=as_mask)
    if ext in TIFF_EXTENSIONS:
        return _read_tiff(path, max_pixels)
    if ext in NPY_EXTENSIONS:
        return _read_npy(path, max_pixels)
    return _read_nifti(path, max_pixels, slice_index)


# --------------------------------------------------------------------------------------------
# Interpretation: images -> (H, W, C) native dtype; masks -> (H, W) integer or (H, W, 3) RGB.


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
        raise _fail(
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
        channels = arr.shape[-1]
        if channels in (2, 4):  # drop alpha (gray+alpha, RGBA)
            arr = arr[..., : channels - 1]
            channels -= 1
        if channels == 1:
            arr = arr[..., 0]
        elif channels == 3:
            if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(
                arr[..., 0], arr[..., 2]
            ):
                arr = arr[..., 0]  # gray saved as RGB
        else:
            raise _fail(
                path,
                "unexpected number of mask channels",
                "a single-channel label image (H, W) or an RGB palette mask (H, W, 3)",
                f"shape {arr.shape}",
                "store class indices in one channel (for one-hot masks: np.argmax(mask, -1)).",
            )
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise _fail(
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
        raise _fail(
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
            raise _fail(
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
