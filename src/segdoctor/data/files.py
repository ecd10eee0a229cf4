"""File names, supported types, and the checks every reader makes before decoding a file.

Every refusal is a :class:`~segdoctor.errors.DataError` that names the file (:func:`file_error`)
and, where leaving the file out is a remedy, says how (:data:`SKIP_HINT`).
"""

from __future__ import annotations

from pathlib import Path

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
ON_ERROR: tuple[str, ...] = ("raise", "skip")
"""What a pass over many files does with a bad one: stop with its name, or skip and list it.

The one spelling of the choice: ``on_error=`` in the library and ``data.on_error`` in the
configuration (which still reads the old ``data.skip_bad_files`` with a deprecation message)."""
SKIP_HINT = "skip it with on_error='skip' (command line: --set data.on_error=skip)"
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


def file_error(path: Path, what: str, expected: str, received: str, fix: str) -> DataError:
    return DataError(
        f"Cannot use {display_name(path)}: {what}", expected=expected, received=received, fix=fix
    )


def check_file(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise file_error(
            path,
            "the file is a broken symbolic link (its target is missing, or links form a loop)",
            "a link to an existing file",
            f"a link to {printable(_link_target(path))}",
            f"fix or remove the link, or {SKIP_HINT}.",
        )
    if not path.is_file():
        raise file_error(
            path,
            "the file does not exist",
            "an existing file",
            str(path),
            "check the path, or re-run discovery.",
        )
    if path.stat().st_size == 0:
        raise file_error(
            path,
            "the file is empty (zero bytes)",
            _FORMATS_TEXT,
            "a zero-byte file",
            f"re-export or re-download this file, remove it, or {SKIP_HINT}.",
        )
    if not is_supported(path):
        raise file_error(
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


def too_large(path: Path, limit: int, received: str) -> DataError:
    return file_error(
        path,
        "the image is larger than the pixel limit (possible decompression bomb)",
        f"at most {limit:,} pixels (segdoctor.data.MAX_PIXELS)",
        received,
        "pass a larger max_pixels if the file is genuine, or tile it into smaller images.",
    )


def check_pixels(path: Path, height: int, width: int, max_pixels: int | None) -> None:
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if height * width > limit:
        raise too_large(path, limit, f"{width} x {height} = {height * width:,} pixels")


def undecodable(path: Path, err: Exception) -> DataError:
    head = path.read_bytes()[:16] if path.is_file() else b""
    return file_error(
        path,
        "the file cannot be decoded (corrupt, truncated, or not what its extension says)",
        f"a valid {file_extension(path).lstrip('.').upper()} file",
        f"{type(err).__name__}: {err} (file starts with {head!r})",
        f"re-export this file, or {SKIP_HINT}.",
    )
