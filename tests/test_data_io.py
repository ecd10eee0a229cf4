"""Reading files: every format round-trips; every kind of bad file is named and explained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segdoctor.data import Pair, read_image, read_mask, read_pair
from segdoctor.errors import DataError


@pytest.mark.parametrize(
    ("ext", "array", "mode"),
    [
        (".png", np.arange(48, dtype=np.uint8).reshape(6, 8), "L"),
        (".png", (np.arange(48, dtype=np.uint16) * 1000).reshape(6, 8), "I;16"),
        (".png", np.arange(144, dtype=np.uint8).reshape(6, 8, 3), "RGB"),
        (".png", np.arange(192, dtype=np.uint8).reshape(6, 8, 4), "RGBA"),
        (".bmp", np.arange(144, dtype=np.uint8).reshape(6, 8, 3), "RGB"),
    ],
)
def test_pil_formats_round_trip(tmp_path, ext, array, mode):
    path = tmp_path / f"x{ext}"
    Image.fromarray(array).save(path)
    with Image.open(path) as im:
        assert im.mode == mode
    image = read_image(path)
    expected = array if array.ndim == 3 else array[..., None]
    assert image.dtype == array.dtype
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_and_npy_round_trip(tmp_path, dtype):
    array = (np.arange(60).reshape(6, 10) * 3).astype(dtype)
    tifffile.imwrite(tmp_path / "x.tif", array)
    np.save(tmp_path / "x.npy", array)
    for name in ("x.tif", "x.npy"):
        image = read_image(tmp_path / name)
        assert image.shape == (6, 10, 1) and image.dtype == dtype
        np.testing.assert_array_equal(image[..., 0], array)


def test_channels_first_npy_is_moved_last(tmp_path):
    array = np.random.default_rng(0).integers(0, 255, (3, 16, 20), dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    np.testing.assert_array_equal(read_image(tmp_path / "x.npy"), np.moveaxis(array, 0, -1))


def test_jpeg_reads(tmp_path):
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "x.jpg")
    image = read_image(tmp_path / "x.jpg")
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert abs(int(image.mean()) - 128) <= 2


def test_masks_rgb_gray_collapsed_and_palette_kept(tmp_path):
    gray = np.array([[0, 1], [2, 3]], np.uint8)
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "g.png")
    assert read_mask(tmp_path / "g.png").shape == (2, 2)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (128, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert read_mask(tmp_path / "c.png").shape == (2, 2, 3)
    pal = Image.fromarray(gray).convert("P")
    pal.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").ndim == 2


def test_float_masks_keep_fractions(tmp_path):
    np.save(tmp_path / "int.npy", np.array([[0.0, 1.0]], np.float32))
    np.save(tmp_path / "frac.npy", np.array([[0.0, 0.5]], np.float32))
    assert read_mask(tmp_path / "int.npy").dtype == np.int32
    assert read_mask(tmp_path / "frac.npy").dtype == np.float32


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png.*zero bytes"):
        read_image(tmp_path / "empty.png")


def test_text_saved_as_image(tmp_path):
    (tmp_path / "fake.png").write_text("hello, I am not a PNG")
    with pytest.raises(DataError, match=r"fake\.png.*cannot be decoded.*Expected: a valid PNG"):
        read_image(tmp_path / "fake.png")


def test_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.png"):
        read_image(path)


def test_nan_and_inf_pixels(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan]], np.float32))
    np.save(tmp_path / "inf.npy", np.array([[0.0, np.inf]], np.float32))
    with pytest.raises(DataError, match=r"nan\.npy.*NaN or Inf"):
        read_image(tmp_path / "nan.npy")
    with pytest.raises(DataError, match=r"inf\.npy.*NaN or Inf"):
        read_mask(tmp_path / "inf.npy")


def test_npy_never_unpickles(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickle"):
        read_image(tmp_path / "obj.npy")


def test_pixel_limit_checked_before_decoding(tmp_path):
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "big.png")
    np.save(tmp_path / "big.npy", np.zeros((40, 50), np.uint8))
    for name in ("big.png", "big.npy"):
        with pytest.raises(DataError, match=r"at most 1,000 pixels.*2,000 pixels"):
            read_image(tmp_path / name, max_pixels=1000)
    assert read_image(tmp_path / "big.png").shape == (40, 50, 1)


def test_decompression_bomb_refused(tmp_path):
    # 12000 x 12000 1-bit PNG: a few kB on disk, 144 Mpx decoded (> default 100 Mpx limit).
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb\.png.*pixel limit"):
        read_image(path)


def test_unexpected_mask_channels(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((16, 16, 5), np.uint8))
    with pytest.raises(DataError, match=r"m\.npy.*channels"):
        read_mask(tmp_path / "m.npy")


def test_size_mismatch_names_both_files(tmp_path):
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((10, 11), np.uint8)).save(tmp_path / "msk.png")
    pair = Pair("a", tmp_path / "img.png", tmp_path / "msk.png")
    with pytest.raises(DataError, match=r"img\.png.*msk\.png.*12 x 10.*11 x 10"):
        read_pair(pair)


def test_unsupported_extension(tmp_path):
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataError, match="unsupported"):
        read_image(tmp_path / "x.gif")


def test_tiff_volume_refused(tmp_path):
    tifffile.imwrite(tmp_path / "vol.tif", np.zeros((7, 16, 16), np.uint8))
    with pytest.raises(DataError, match=r"vol\.tif.*stack or volume"):
        read_image(tmp_path / "vol.tif")


def test_real_files(shared_data):
    dsb = shared_data / "dsb2018-nuclei"
    mask = read_mask(next(iter(sorted((dsb / "masks").iterdir()))))
    assert mask.dtype == np.uint16 and mask.ndim == 2 and mask.max() > 1
    image = read_image(Path(shared_data / "camvid-val" / "images" / "0016E5_07959.png"))
    assert image.shape == (360, 480, 3)


def test_concurrent_reads_refuse_a_bomb_every_time_under_error_warnings(tmp_path):
    """Pillow warns about a 144-megapixel header; segdoctor silences that warning and applies its
    own limit. catch_warnings swaps process-wide filters, so without serializing the opens a
    thread could see another thread's restored filters and the warning escaped as an error."""
    import threading
    import warnings

    from tests.corpus import png_declaring

    bomb = png_declaring(tmp_path / "bomb.png", 12_000, 12_000)
    fine = tmp_path / "fine.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(fine)
    outcomes: list[str] = []

    def reader() -> None:
        for _ in range(25):
            for path in (bomb, fine):
                try:
                    read_image(path)
                    outcomes.append("read" if path == fine else "bomb read!")
                except DataError:
                    outcomes.append("refused" if path == bomb else "fine refused!")
                except Exception as err:  # the bug: Pillow's warning raised as an error
                    outcomes.append(f"escaped {type(err).__name__}")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threads = [threading.Thread(target=reader) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(set(outcomes)) == ["read", "refused"], sorted(set(outcomes))
