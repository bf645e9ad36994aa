"""read_image: every source kind, EXIF orientation, bit depths, modes, HEIC, and the errors on bad input."""

from __future__ import annotations

import struct
import sys
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from anydepth.errors import InputError, ShapeError
from anydepth.io.images import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    ImageHeader,
    _apply_orientation,
    read_header,
    read_image,
    reduced_decode_scale,
)

pytestmark = pytest.mark.torch113


def _pattern(height: int = 24, width: int = 32) -> np.ndarray:
    """A (H, W, 3) uint8 image where every pixel differs and the channels differ."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 7 % 256, y * 9 % 256, (x + y) * 3 % 256], axis=-1).astype(np.uint8)


def test_suffixes_listed():
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif"} == set(IMAGE_SUFFIXES)


def test_png_rgb_round_trip(tmp_path):
    image = _pattern()
    Image.fromarray(image).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3) and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.png")), image)


def test_jpeg_exif_orientation_6_is_rotated(tmp_path):
    # a 40 wide x 20 high JPEG whose EXIF says "rotate 90 clockwise to display"
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :10] = (255, 0, 0)  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(image).save(tmp_path / "o6.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "o6.jpg")
    assert out.shape == (40, 20, 3)
    # after a clockwise quarter turn the left stripe is at the top
    assert out[:8, :, 0].mean() > 200 and out[:8, :, 1].mean() < 60
    assert out[-8:, :, 0].mean() < 60


@pytest.mark.parametrize("orientation", range(1, 9))
def test_numpy_orientation_matches_pil(orientation):
    # the 16-bit path orients with numpy; it must agree with PIL for all eight EXIF values
    image = _pattern(5, 7)
    pil = Image.fromarray(image)
    exif = pil.getexif()
    exif[0x0112] = orientation
    pil.info["exif"] = exif.tobytes()
    expected = np.array(ImageOps.exif_transpose(pil))
    np.testing.assert_array_equal(_apply_orientation(image, orientation), expected)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = _pattern()[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_rgba_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.concatenate([_pattern(), np.zeros((24, 32, 1), np.uint8)], axis=-1)  # fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_palette_with_transparency(tmp_path):
    palette_image = Image.fromarray(_pattern()).quantize(colors=16)
    palette_image.info["transparency"] = 0
    palette_image.save(tmp_path / "p.png", transparency=0)
    reopened = Image.open(tmp_path / "p.png")
    assert reopened.mode == "P"
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, np.array(palette_image.convert("RGB")))


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # red in CMYK
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (6, 8, 3)
    assert out[..., 0].mean() > 220 and out[..., 1].mean() < 40 and out[..., 2].mean() < 40


def test_png16_gray_keeps_precision(tmp_path):
    values = (np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) * 85 + 3).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), values)
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.float32 and out.shape == (24, 32, 3)
    np.testing.assert_allclose(out[..., 1] * 65535.0, values, atol=0.01)
    # neighbouring 16-bit levels stay distinct: precision finer than 8 bits
    assert len(np.unique(out[..., 0])) == 24 * 32


def test_png16_colour_keeps_precision_and_channel_order(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint16)
    rgb[..., 0] = 60000
    rgb[..., 1] = np.arange(12, dtype=np.uint16) * 1000 + 1
    rgb[..., 2] = 7
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])  # OpenCV writes BGR
    out = read_image(tmp_path / "c16.png")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out * 65535.0, rgb.astype(np.float32), atol=0.01)


def test_tiff16_colour(tmp_path):
    rgb = (np.arange(6 * 5 * 3).reshape(6, 5, 3) * 613 % 65536).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c16.tif"), rgb[..., ::-1])
    out = read_image(tmp_path / "c16.tif")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out * 65535.0, rgb, atol=0.01)


def test_heic_round_trip(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    source = Image.new("RGB", (64, 48), (200, 30, 40))
    pillow_heif.from_pillow(source).save(str(tmp_path / "a.heic"), quality=95)
    out = read_image(tmp_path / "a.heic")
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), (200, 30, 40), atol=4)


def test_avif_round_trip(tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    Image.new("RGB", (40, 30), (20, 180, 90)).save(tmp_path / "a.avif", quality=95)
    out = read_image(tmp_path / "a.avif")
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), (20, 180, 90), atol=4)


def test_heic_without_pillow_heif_names_the_extra(tmp_path, monkeypatch):
    from anydepth.errors import MissingDependencyError
    from anydepth.io import images

    monkeypatch.setattr(images, "_heif_registered", False)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes "import pillow_heif" fail
    (tmp_path / "a.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(MissingDependencyError, match=r"anydepth\[heic\]"):
        read_image(tmp_path / "a.heic")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.jpg: no such file"):
        read_image(tmp_path / "nope.jpg")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)


def test_garbage_file_cannot_be_decoded(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(InputError, match=r"bad\.jpg: cannot decode image"):
        read_image(tmp_path / "bad.jpg")


def test_truncated_jpeg_cannot_be_decoded(tmp_path):
    Image.fromarray(_pattern(200, 200)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"cut\.jpg: cannot decode image"):
        read_image(tmp_path / "cut.jpg")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png"):
        read_image(tmp_path / "empty.png")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bomb_is_rejected_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(40000, 40000))  # 1.6 G pixels claimed, 60 bytes on disk
    with pytest.raises(InputError, match=r"bomb\.png: image is too large"):
        read_image(tmp_path / "bomb.png")


def test_huge_array_is_rejected():
    side = int(MAX_PIXELS**0.5) + 1
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (side, side, 3))  # no memory behind it
    with pytest.raises(InputError, match="too large"):
        read_image(huge)


def test_zero_size_array():
    with pytest.raises(InputError, match="empty"):
        read_image(np.zeros((0, 5, 3), np.uint8))


@pytest.mark.parametrize("shape", [(4, 5, 2), (4, 5, 6), (4,), (2, 4, 5, 3)])
def test_wrong_array_shape(shape):
    with pytest.raises(ShapeError, match="shape"):
        read_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_wrong_array_dtype(dtype):
    with pytest.raises(ShapeError, match="dtype"):
        read_image(np.zeros((4, 5, 3), dtype))


def test_float_array_outside_unit_range_is_rejected():
    with pytest.raises(ShapeError, match=r"divide 0\.\.255 data by 255"):
        read_image(np.full((4, 5, 3), 200.0, np.float32))
    with pytest.raises(ShapeError, match="NaN"):
        read_image(np.full((4, 5, 3), np.nan, np.float32))


def test_numpy_input_not_modified_and_not_shared():
    image = _pattern()
    keep = image.copy()
    out = read_image(image)
    np.testing.assert_array_equal(out, keep)
    out[...] = 0
    np.testing.assert_array_equal(image, keep)
    assert not np.shares_memory(out, image)


def test_numpy_rgba_uint16_and_float_inputs():
    rgba = np.concatenate([_pattern(), np.full((24, 32, 1), 9, np.uint8)], axis=-1)
    np.testing.assert_array_equal(read_image(rgba), rgba[..., :3])
    deep = (_pattern().astype(np.uint16) * 257 + 1).astype(np.uint16)
    out = read_image(deep)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out * 65535.0, deep, atol=0.01)
    floats = _pattern().astype(np.float64) / 255.0
    out = read_image(floats)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, floats, atol=1e-7)
    gray = read_image(_pattern()[..., :1])
    assert gray.shape == (24, 32, 3)
    np.testing.assert_array_equal(gray[..., 2], _pattern()[..., 0])


def test_pil_input_with_exif_orientation():
    pil = Image.fromarray(_pattern(10, 30))
    exif = pil.getexif()
    exif[0x0112] = 8
    pil.info["exif"] = exif.tobytes()
    out = read_image(pil)
    np.testing.assert_array_equal(out, np.rot90(_pattern(10, 30), 1))
    assert pil.size == (30, 10)  # the caller's image is untouched


def test_pil_input_16_bit_gray():
    values = np.array([[0, 1, 65535], [256, 40000, 2]], np.uint16)
    pil = Image.fromarray(values)
    out = read_image(pil)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0] * 65535.0, values, atol=0.01)


def test_torch_chw_float_and_hwc_uint8():
    image = _pattern()
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    out = read_image(chw)
    assert out.shape == (24, 32, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out * 255.0, image, atol=1e-4)
    hwc = torch.from_numpy(image.copy())
    out = read_image(hwc)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, image)
    out[...] = 0
    np.testing.assert_array_equal(hwc.numpy(), image)  # tensor memory not shared
    half = read_image(chw.to(torch.bfloat16))
    assert half.dtype == np.float32 and half.shape == (24, 32, 3)


def test_torch_wrong_shape():
    with pytest.raises(ShapeError, match="tensor"):
        read_image(torch.zeros(2, 5, 7))


def test_unsupported_type():
    with pytest.raises(InputError, match="list"):
        read_image([[1, 2], [3, 4]])


# --- reduced decoding (min_size) -------------------------------------------------------------------------------


def _photo(height: int, width: int) -> np.ndarray:
    """Smooth colour waves with a little noise: what a photo looks like to a resize."""
    yy, xx = np.mgrid[0:height, 0:width]
    waves = np.stack([np.sin(xx / 37.0), np.cos(yy / 23.0), np.sin((xx + yy) / 50.0)], -1)
    noise = np.random.RandomState(0).normal(0, 6, (height, width, 3))
    return np.clip(128 + 100 * waves + noise, 0, 255).astype(np.uint8)


def test_an_8000_pixel_jpeg_is_decoded_at_an_eighth(tmp_path):
    # an 8000x8000 JPEG (grey, made by PIL so that the test never holds 64 MP of numpy itself)
    Image.linear_gradient("L").resize((8000, 8000)).save(tmp_path / "big.jpg", quality=90)
    out = read_image(tmp_path / "big.jpg", min_size=(504, 504))
    assert out.shape == (1000, 1000, 3) and out.dtype == np.uint8  # 3 MB instead of 192 MB
    assert out.nbytes * 64 == 8000 * 8000 * 3
    assert read_image(tmp_path / "big.jpg", min_size=(1001, 504)).shape == (2000, 2000, 3)  # 1/8 leaves too little
    assert read_header(tmp_path / "big.jpg") == ImageHeader(8000, 8000, "JPEG", False)


def test_reduced_decode_is_close_to_a_full_decode_and_area_resize(tmp_path):
    image = _photo(1600, 2400)
    Image.fromarray(image).save(tmp_path / "photo.jpg", quality=90)
    reduced = read_image(tmp_path / "photo.jpg", min_size=(336, 504))
    assert reduced.shape == (400, 600, 3)
    full = read_image(tmp_path / "photo.jpg")
    expected = cv2.resize(full, (600, 400), interpolation=cv2.INTER_AREA)
    difference = np.abs(reduced.astype(int) - expected.astype(int))
    assert difference.mean() < 1.5 and difference.max() <= 10


def test_reduced_decode_keeps_exif_orientation_and_skips_other_files(tmp_path):
    image = _photo(160, 320)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 320 wide, shown 320 high
    Image.fromarray(image).save(tmp_path / "o6.jpg", exif=exif.tobytes(), quality=95)
    assert read_header(tmp_path / "o6.jpg") == ImageHeader(320, 160, "JPEG", False)
    upright = read_image(tmp_path / "o6.jpg")
    reduced = read_image(tmp_path / "o6.jpg", min_size=(80, 40))
    assert reduced.shape == (80, 40, 3)  # a quarter of the upright size, on the sides asked
    expected = cv2.resize(upright, (40, 80), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.astype(int) - expected.astype(int)).mean() < 3
    Image.fromarray(image).save(tmp_path / "photo.png")  # PNG has no reduced decoding: the full image
    np.testing.assert_array_equal(read_image(tmp_path / "photo.png", min_size=(20, 40)), image)
    Image.fromarray(image[:, :318]).save(tmp_path / "odd.jpg")  # no scale divides 318 by 4 or 8 ...
    assert read_image(tmp_path / "odd.jpg", min_size=(20, 40)).shape == (80, 159, 3)  # ... but 2 does
    np.testing.assert_array_equal(read_image(image, min_size=(20, 40)), image)  # arrays are what they are


def test_reduced_decode_scale_and_the_header_of_every_source(tmp_path):
    assert reduced_decode_scale((4000, 3000), (378, 504)) == 4  # an eighth leaves 3000 / 8 = 375 < 504
    assert reduced_decode_scale((100, 100), (100, 100)) == 1
    assert reduced_decode_scale((6, 6), (1, 1)) == 2
    image = _pattern(6, 10)
    assert read_header(image) == read_header(Image.fromarray(image)) == ImageHeader(6, 10)
    assert read_header(torch.from_numpy(image).permute(2, 0, 1)) == ImageHeader(6, 10)
    assert read_header(torch.from_numpy(image).float() / 255) == ImageHeader(6, 10, None, True)
    assert read_header(image.astype(np.uint16)).high_depth
    assert read_header("no/such/file.png") is None
    cv2.imwrite(str(tmp_path / "deep.png"), (image.astype(np.uint16) * 257)[..., ::-1])
    assert read_header(tmp_path / "deep.png") == ImageHeader(6, 10, "PNG", True)  # read as float32
    Image.fromarray(image[..., 0].astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    assert read_header(tmp_path / "gray16.png").high_depth


def test_large_rgb_images_are_copied_out_of_pil_in_bands(tmp_path, monkeypatch):
    import anydepth.io.images as images

    monkeypatch.setattr(images, "_BAND_PIXELS", 70)  # 2 rows of 32 per band, the last band one row
    image = _pattern(25, 32)
    Image.fromarray(image).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.flags["C_CONTIGUOUS"] and out.flags["WRITEABLE"]
    np.testing.assert_array_equal(out, image)
