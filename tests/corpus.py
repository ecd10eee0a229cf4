"""A corpus of broken and unusual data folders, generated into a temporary folder at test time.

Nothing here is a committed binary fixture: every file is written by a few lines of numpy, PIL,
tifffile or raw bytes, so each case documents exactly how it is broken. Each :class:`Case` builds a
small otherwise valid ``DATA/images`` + ``DATA/masks`` folder (:func:`tests.helpers.write_disc_dataset`)
and breaks it in one way.

Example:
    >>> import tempfile, pathlib
    >>> case = CASES["zero-byte-image"]
    >>> root = case.build(pathlib.Path(tempfile.mkdtemp()) / "data")
    >>> (root / "images" / case.culprit).stat().st_size
    0
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from tests.helpers import write_disc_dataset

N_PAIRS = 6
SIZE = 32
VICTIM = "case_002"
"""Stem of the pair that each broken case damages (the others stay valid)."""

# ---------------------------------------------------------------------------------------- files


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut ``path`` to a fraction of its bytes (an interrupted copy or download)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` gray pixels but holds one tiny row.

    Decoding it fully would allocate ``width * height`` bytes: a decompression bomb.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    return path


def tiff_declaring(path: Path, width: int, height: int) -> Path:
    """A TIFF whose ImageWidth/ImageLength tags claim ``width`` x ``height`` (an 8x8 file).

    The tags are patched in place; ``RowsPerStrip`` and ``StripByteCounts`` keep the 8x8 values,
    so a reader that trusts the header would try to allocate the declared size.
    """
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), metadata=None, photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        offsets = {
            name: (tags[name].valueoffset, tags[name].dtype)
            for name in ("ImageWidth", "ImageLength")
        }
    raw = bytearray(path.read_bytes())
    for name, value in (("ImageWidth", width), ("ImageLength", height)):
        offset, dtype = offsets[name]
        fmt = "<I" if dtype == 4 else "<H"  # LONG or SHORT
        raw[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(raw))
    return path


def npy_declaring(path: Path, shape: tuple[int, ...], dtype: str = "<u1") -> Path:
    """An NPY file whose header declares ``shape`` but holds 64 bytes of data."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header = header.ljust(118) + "\n"  # total header 128 bytes, as numpy aligns it
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    with path.open("ab") as fh:
        fh.write(b"\x00" * 64)
    return path


def npy_object_array(path: Path) -> Path:
    """An NPY file holding a Python object array: loading it would run pickle."""
    arr = np.empty((2, 2), dtype=object)
    arr[0, 0] = {"payload": "pickled"}
    np.save(path, arr, allow_pickle=True)
    return path


def text_as(path: Path) -> Path:
    """A text file saved under an image extension (an HTML error page, a Git LFS pointer...)."""
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    return path


# ---------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One way a data folder can be broken.

    Attributes:
        id: Short unique name (used as the pytest id).
        category: The issue's category of bad input ("truncated file", "zero-byte file", ...).
        culprit: The file name a message must mention, or ``None`` for folder-level problems.
        usable: Whether segdoctor should accept the data (unusual but valid: RGBA, 16-bit, 1x1).
        skippable: Whether ``data.on_error=skip`` lets training go on without the culprit.
        make: ``make(root)`` damages a freshly written valid folder ``root``.
        diagnose: What ``segdoctor diagnose`` must answer: ``(exit status, finding id or None)``;
            2 means "could not run" (a message on stderr), 1 an error finding, 0 no error.
        train_args: Extra ``segdoctor train`` arguments (e.g. the declared number of classes).
    """

    id: str
    category: str
    culprit: str | None
    usable: bool
    skippable: bool
    make: Callable[[Path], object]
    diagnose: tuple[int, str | None] = (1, "unreadable-file")
    train_args: tuple[str, ...] = ()

    def build(self, root: Path) -> Path:
        """Write the valid folder into ``root``, damage it, and return ``root``."""
        write_disc_dataset(root, n=N_PAIRS, size=SIZE)
        self.make(root)
        return root


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def _img(root: Path, name: str = f"{VICTIM}.png") -> Path:
    return root / "images" / name


def _msk(root: Path, name: str = f"{VICTIM}.png") -> Path:
    return root / "masks" / name


def _replace(old: Path, new_name: str, write: Callable[[Path], object]) -> None:
    old.unlink()
    write(old.with_name(new_name))


def _save_tiff(array: np.ndarray) -> Callable[[Path], object]:
    return lambda p: tifffile.imwrite(p, array, metadata=None)


def _save_npy(array: np.ndarray) -> Callable[[Path], object]:
    return lambda p: np.save(p, array)


def _disc(size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= (size // 4) ** 2).astype(np.uint8)


def _tiff_truncated(p: Path) -> None:
    tifffile.imwrite(p, (_disc() * 200).astype(np.uint8), metadata=None)
    truncate(p)


def _nan_image(value: float, ext: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        image = _load(_img(root)).astype(np.float32)
        image[5, 7] = value
        save = _save_npy(image) if ext == ".npy" else _save_tiff(image)
        _replace(_img(root), f"{VICTIM}{ext}", save)

    return make


def _nan_mask(value: float, ext: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        mask = _load(_msk(root)).astype(np.float32)
        mask[3, 3] = value
        save = _save_npy(mask) if ext == ".npy" else _save_tiff(mask)
        _replace(_msk(root), f"{VICTIM}{ext}", save)

    return make


def _mask_resized(root: Path) -> None:
    Image.fromarray(_disc(SIZE + 8)).save(_msk(root))


def _npy_mask_resized(root: Path) -> None:
    _replace(_msk(root), f"{VICTIM}.npy", _save_npy(_disc(SIZE)[:, : SIZE - 5]))


def _one_by_one(root: Path) -> None:
    Image.fromarray(np.full((1, 1), 200, np.uint8)).save(_img(root))
    Image.fromarray(np.ones((1, 1), np.uint8)).save(_msk(root))


def _all_one_by_one(root: Path) -> None:
    for path in (root / "images").iterdir():
        Image.fromarray(np.full((1, 1), 90, np.uint8)).save(path)
    for i, path in enumerate(sorted((root / "masks").iterdir())):
        Image.fromarray(np.full((1, 1), i % 2, np.uint8)).save(path)


def _non_utf8_names(root: Path) -> None:
    """Rename the victim pair to a Latin-1 byte name that is not valid UTF-8 (Linux only)."""
    name = os.fsencode(VICTIM) + b"_\xe9t\xe9.png"  # "été" in Latin-1
    for folder in ("images", "masks"):
        src = os.fsencode(root / folder / f"{VICTIM}.png")
        os.rename(src, os.path.join(os.fsencode(root / folder), name))


def _non_utf8_unpaired(root: Path) -> None:
    _msk(root).unlink()
    _non_utf8_names_image_only(root)


def _non_utf8_names_image_only(root: Path) -> None:
    src = os.fsencode(_img(root))
    os.rename(src, os.path.join(os.fsencode(root / "images"), b"case_\xff\xfe.png"))


def _symlink_loop(root: Path) -> None:
    _img(root).unlink()
    a, b = _img(root), _img(root, "loop_b.png")
    os.symlink(b.name, a)
    os.symlink(a.name, b)
    _msk(root, "loop_b.png").write_bytes(_msk(root).read_bytes())


def _self_link(root: Path) -> None:
    _msk(root).unlink()
    os.symlink(f"{VICTIM}.png", _msk(root))


def _dangling_link(root: Path) -> None:
    _img(root).unlink()
    os.symlink("/nonexistent/segdoctor-missing.png", _img(root))


def _dir_loop(root: Path) -> None:
    os.symlink(".", root / "images" / "again")  # images/again -> images (a directory loop)


def _same_stem_images(root: Path) -> None:
    tifffile.imwrite(_img(root, f"{VICTIM}.tif"), np.zeros((SIZE, SIZE), np.uint8), metadata=None)


def _same_stem_masks(root: Path) -> None:
    np.save(_msk(root, f"{VICTIM}.npy"), _disc())


def _mask_suffix_twin(root: Path) -> None:
    Image.fromarray(_disc()).save(_msk(root, f"{VICTIM}_mask.png"))


def _mask_value(value: int) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        mask = _load(_msk(root))
        mask[0:4, 0:4] = value
        Image.fromarray(mask).save(_msk(root))

    return make


def _negative_npy_mask(root: Path) -> None:
    mask = _disc().astype(np.int16)
    mask[0, 0] = -1
    _replace(_msk(root), f"{VICTIM}.npy", _save_npy(mask))


def _rgba_images(root: Path) -> None:
    for path in (root / "images").iterdir():
        gray = _load(path)
        alpha = np.full_like(gray, 255)
        alpha[:2] = 0  # a transparent border row must not change the training
        Image.fromarray(np.stack([gray, gray // 2, 255 - gray, alpha], -1), "RGBA").save(path)


def _sixteen_bit_images(root: Path) -> None:
    for path in (root / "images").iterdir():
        gray = _load(path).astype(np.uint16) * 257 + 3
        Image.fromarray(gray).save(path)  # mode I;16


def _sixteen_bit_masks(root: Path) -> None:
    for path in (root / "masks").iterdir():
        mask = _load(path).astype(np.uint16) * 1000  # {0, 1000}
        Image.fromarray(mask).save(path)


def _rgba_mask(root: Path) -> None:
    mask = _load(_msk(root))
    rgba = np.stack([mask, mask, mask, np.full_like(mask, 255)], -1)
    Image.fromarray(rgba, "RGBA").save(_msk(root))


def _empty_folders(root: Path) -> None:
    for folder in ("images", "masks"):
        for path in (root / folder).iterdir():
            path.unlink()


def _empty_root(root: Path) -> None:
    _empty_folders(root)
    (root / "images").rmdir()
    (root / "masks").rmdir()


def _no_masks_folder(root: Path) -> None:
    _empty_folders(root)
    (root / "masks").rmdir()
    write_disc_dataset(root / "tmp", n=N_PAIRS, size=SIZE)
    for path in (root / "tmp" / "images").iterdir():
        path.rename(root / "images" / path.name)
    for sub in ("images", "masks"):
        for path in (root / "tmp" / sub).iterdir():
            path.unlink()
        (root / "tmp" / sub).rmdir()
    (root / "tmp").rmdir()


def _only_foreign_files(root: Path) -> None:
    _empty_folders(root)
    (root / "images" / "notes.txt").write_text("nothing here")
    (root / "masks" / "readme.md").write_text("nothing here")


def _mask_without_image(root: Path) -> None:
    _img(root).unlink()


def _case(
    id: str,
    category: str,
    culprit: str | None,
    make: Callable[[Path], object],
    *,
    usable: bool = False,
    skippable: bool = True,
    **kw,
) -> Case:
    return Case(id, category, culprit, usable, skippable, make, **kw)


V = VICTIM
SHAPE = (1, "pair-shape-mismatch")
STOP = (2, None)  # diagnose cannot run: a message on stderr
CASE_LIST: list[Case] = [
    # truncated files
    _case("truncated-png-image", "truncated file", f"{V}.png", lambda r: truncate(_img(r))),
    _case("truncated-png-mask", "truncated file", f"{V}.png", lambda r: truncate(_msk(r))),
    _case("truncated-png-header", "truncated file", f"{V}.png", lambda r: truncate(_img(r), 0.1)),
    _case(
        "truncated-tiff-image",
        "truncated file",
        f"{V}.tif",
        lambda r: _replace(_img(r), f"{V}.tif", _tiff_truncated),
    ),
    _case(
        "truncated-tiff-mask",
        "truncated file",
        f"{V}.tif",
        lambda r: _replace(_msk(r), f"{V}.tif", _tiff_truncated),
    ),
    # zero-byte files
    _case("zero-byte-image", "zero-byte file", f"{V}.png", lambda r: _img(r).write_bytes(b"")),
    _case("zero-byte-mask", "zero-byte file", f"{V}.png", lambda r: _msk(r).write_bytes(b"")),
    _case(
        "zero-byte-tiff",
        "zero-byte file",
        f"{V}.tif",
        lambda r: _replace(_img(r), f"{V}.tif", lambda p: p.write_bytes(b"")),
    ),
    _case(
        "zero-byte-npy",
        "zero-byte file",
        f"{V}.npy",
        lambda r: _replace(_msk(r), f"{V}.npy", lambda p: p.write_bytes(b"")),
    ),
    # text under an image extension
    _case("text-as-png", "text with an image extension", f"{V}.png", lambda r: text_as(_img(r))),
    _case(
        "text-as-tiff",
        "text with an image extension",
        f"{V}.tif",
        lambda r: _replace(_img(r), f"{V}.tif", text_as),
    ),
    _case(
        "text-as-npy",
        "text with an image extension",
        f"{V}.npy",
        lambda r: _replace(_msk(r), f"{V}.npy", text_as),
    ),
    _case(
        "text-as-jpeg",
        "text with an image extension",
        f"{V}.jpg",
        lambda r: _replace(_img(r), f"{V}.jpg", text_as),
    ),
    # image and mask of different sizes (diagnose names the pair, training the files)
    _case("size-mismatch-png", "image and mask sizes differ", V, _mask_resized, diagnose=SHAPE),
    _case("size-mismatch-npy", "image and mask sizes differ", V, _npy_mask_resized, diagnose=SHAPE),
    # NaN / Inf
    _case("nan-npy-image", "NaN or Inf values", f"{V}.npy", _nan_image(np.nan, ".npy")),
    _case("inf-npy-image", "NaN or Inf values", f"{V}.npy", _nan_image(np.inf, ".npy")),
    _case("nan-tiff-image", "NaN or Inf values", f"{V}.tif", _nan_image(np.nan, ".tif")),
    _case("neginf-tiff-image", "NaN or Inf values", f"{V}.tif", _nan_image(-np.inf, ".tif")),
    _case("nan-npy-mask", "NaN or Inf values", f"{V}.npy", _nan_mask(np.nan, ".npy")),
    _case("inf-tiff-mask", "NaN or Inf values", f"{V}.tif", _nan_mask(np.inf, ".tif")),
    # 1x1 images: usable (padded to the patch), the doctor flags them as constant
    _case(
        "one-pixel-pair",
        "1x1 images",
        V,
        _one_by_one,
        usable=True,
        diagnose=(1, "input-constant"),
    ),
    _case(
        "all-one-pixel",
        "1x1 images",
        None,
        _all_one_by_one,
        usable=True,
        diagnose=(1, "input-constant"),
    ),
    # decompression bombs (headers declaring an enormous size)
    _case(
        "bomb-png-144mp",
        "decompression bomb",
        f"{V}.png",
        lambda r: png_declaring(_img(r), 12_000, 12_000),
    ),
    _case(
        "bomb-png-10gp",
        "decompression bomb",
        f"{V}.png",
        lambda r: png_declaring(_img(r), 100_000, 100_000),
    ),
    _case(
        "bomb-tiff",
        "decompression bomb",
        f"{V}.tif",
        lambda r: _replace(_img(r), f"{V}.tif", lambda p: tiff_declaring(p, 60_000, 60_000)),
    ),
    _case(
        "bomb-npy",
        "decompression bomb",
        f"{V}.npy",
        lambda r: _replace(_img(r), f"{V}.npy", lambda p: npy_declaring(p, (80_000, 80_000))),
    ),
    # non-UTF-8 file names (shown as \\xNN)
    _case(
        "non-utf8-pair",
        "non-UTF-8 file name",
        None,
        _non_utf8_names,
        usable=True,
        diagnose=(0, None),
    ),
    _case(
        "non-utf8-unpaired",
        "non-UTF-8 file name",
        "case_\\xff\\xfe.png",
        _non_utf8_unpaired,
        diagnose=(0, "pair-missing"),
    ),
    # symbolic links
    _case("symlink-loop", "symlink loop or broken link", f"{V}.png", _symlink_loop),
    _case("symlink-self", "symlink loop or broken link", f"{V}.png", _self_link),
    _case("symlink-dangling", "symlink loop or broken link", f"{V}.png", _dangling_link),
    _case(
        "symlink-dir-loop",
        "symlink loop or broken link",
        None,
        _dir_loop,
        usable=True,
        diagnose=(0, None),
    ),
    # same stem, different extensions
    _case(
        "same-stem-images",
        "same stem, different extensions",
        f"{V}.tif",
        _same_stem_images,
        skippable=False,
        diagnose=(1, "name-clash"),
    ),
    _case(
        "same-stem-masks",
        "same stem, different extensions",
        f"{V}.npy",
        _same_stem_masks,
        skippable=False,
        diagnose=(1, "name-clash"),
    ),
    _case(
        "mask-suffix-twin",
        "same stem, different extensions",
        f"{V}_mask.png",
        _mask_suffix_twin,
        skippable=False,
        diagnose=(1, "name-clash"),
    ),
    # mask values outside the classes (declared with data.num_classes, or never valid)
    _case(
        "mask-value-7",
        "mask values outside the classes",
        f"{V}.png",
        _mask_value(7),
        skippable=False,
        diagnose=(0, "class-absent"),
        train_args=("--set", "data.num_classes=2"),
    ),
    _case(
        "mask-negative",
        "mask values outside the classes",
        f"{V}.npy",
        _negative_npy_mask,
        skippable=False,
        diagnose=(1, None),
    ),
    # RGBA and 16-bit
    _case("rgba-images", "RGBA and 16-bit", None, _rgba_images, usable=True, diagnose=(0, None)),
    _case(
        "uint16-images",
        "RGBA and 16-bit",
        None,
        _sixteen_bit_images,
        usable=True,
        diagnose=(0, None),
    ),
    _case(
        "uint16-masks",
        "RGBA and 16-bit",
        None,
        _sixteen_bit_masks,
        usable=True,
        diagnose=(1, "mask-scale-255"),
    ),
    _case("rgba-mask", "RGBA and 16-bit", None, _rgba_mask, usable=True, diagnose=(0, None)),
    # empty and missing folders
    _case(
        "empty-subfolders", "empty folder", "images", _empty_folders, skippable=False, diagnose=STOP
    ),
    _case("empty-root", "empty folder", "images/", _empty_root, skippable=False, diagnose=STOP),
    _case(
        "only-foreign-files",
        "empty folder",
        "notes.txt",
        _only_foreign_files,
        skippable=False,
        diagnose=STOP,
    ),
    _case(
        "no-masks-folder",
        "missing masks folder",
        "masks/",
        _no_masks_folder,
        skippable=False,
        diagnose=STOP,
    ),
    _case(
        "mask-without-image",
        "missing masks folder",
        f"{V}.png",
        _mask_without_image,
        diagnose=(0, "pair-missing"),
    ),
]
CASES: dict[str, Case] = {case.id: case for case in CASE_LIST}
REFUSED: list[Case] = [c for c in CASE_LIST if not c.usable]
USABLE: list[Case] = [c for c in CASE_LIST if c.usable]


def count_by_category(cases: list[Case] = CASE_LIST) -> dict[str, int]:
    """Number of cases per category (reported on the issue)."""
    out: dict[str, int] = {}
    for case in cases:
        out[case.category] = out.get(case.category, 0) + 1
    return out
