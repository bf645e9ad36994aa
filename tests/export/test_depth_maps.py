"""Depth map writers, read back with independent readers (PIL, numpy, OpenEXR), and the colour maps."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image

from anydepth.errors import InputError, ShapeError
from anydepth.export import depth_maps
from anydepth.export.depth_maps import (
    colorize,
    colormap_lut,
    save_exr,
    save_image,
    save_npy,
    save_npz,
    save_png16,
    save_png16_metric,
    side_by_side,
)

pytestmark = pytest.mark.torch113

# (matplotlib.colormaps["Spectral_r"](np.arange(256))[:, :3] * 255).astype(np.uint8), matplotlib 3.11.2
_SPECTRAL_R_SHA256 = "f641ca89be9889926f69aa54e491aabf3f9cfdb5a61e116cb33cc13e9ca0a26a"
_SPECTRAL_R_SAMPLES = {
    0: (94, 79, 162),
    1: (92, 81, 163),
    25: (50, 134, 188),
    64: (137, 207, 164),
    127: (254, 254, 190),
    128: (254, 254, 189),
    191: (248, 142, 82),
    200: (245, 119, 71),
    254: (160, 3, 66),
    255: (158, 1, 66),
}


def _depth(height: int = 12, width: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return (0.5 + 0.37 * x + 0.11 * y * y).astype(np.float32)


def _only_files(folder):
    return sorted(path.name for path in folder.iterdir())


# --- colour maps -----------------------------------------------------------------------------------------------


def test_spectral_r_lut_matches_matplotlib():
    lut = colormap_lut("spectral_r")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    for index, rgb in _SPECTRAL_R_SAMPLES.items():
        assert tuple(lut[index]) == rgb, index
    assert hashlib.sha256(lut.tobytes()).hexdigest() == _SPECTRAL_R_SHA256


def test_colorize_default_is_depth_anything_v2_run_py():
    depth = np.random.default_rng(1).random((30, 40)).astype(np.float32) * 9.0 + 2.0
    # run.py: depth = (depth - min) / (max - min) * 255.0; depth.astype(np.uint8); cmap(depth)[:, :, :3] * 255
    levels = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).astype(np.uint8)
    expected = colormap_lut("spectral_r")[levels]
    out = colorize(depth)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    assert tuple(out[np.unravel_index(depth.argmin(), depth.shape)]) == _SPECTRAL_R_SAMPLES[0]
    assert tuple(out[np.unravel_index(depth.argmax(), depth.shape)]) == _SPECTRAL_R_SAMPLES[255]


def test_colorize_truncates_like_astype_uint8():
    depth = np.array([[0.0, 0.999, 1.0, 2.0]], np.float32)  # 0.999/2*255 = 127.37 -> 127, 1/2*255 = 127.5 -> 127
    gray = colorize(depth, cmap="gray")
    np.testing.assert_array_equal(gray[0, :, 0], [0, 127, 127, 255])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_colorize_inferno_is_opencv_lut_in_rgb():
    depth = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    levels = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).astype(np.uint8)
    expected = cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO)[..., ::-1]
    np.testing.assert_array_equal(colorize(depth, cmap="inferno"), expected)
    assert tuple(colorize(depth, cmap="Inferno")[0, 0]) == (0, 0, 4)  # near-black start, blue-ish


def test_colorize_nan_inf_constant_and_ranges():
    depth = np.array([[1.0, np.nan, 3.0], [np.inf, 2.0, -np.inf]], np.float32)
    out = colorize(depth, cmap="gray")
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 255], [0, 127, 0]])  # non-finite -> black, range from finite
    spectral = colorize(depth)
    assert tuple(spectral[0, 1]) == (0, 0, 0) and tuple(spectral[0, 0]) == _SPECTRAL_R_SAMPLES[0]

    constant = colorize(np.full((3, 4), 7.0, np.float32))
    assert (constant == np.array(_SPECTRAL_R_SAMPLES[0], np.uint8)).all()

    fixed = colorize(np.array([[0.0, 5.0, 10.0, 20.0]], np.float32), cmap="gray", vmin=5.0, vmax=15.0)
    np.testing.assert_array_equal(fixed[0, :, 0], [0, 0, 127, 255])  # clipped outside [vmin, vmax]
    inverted = colorize(np.array([[0.0, 1.0]], np.float32), cmap="gray", invert=True)
    np.testing.assert_array_equal(inverted[0, :, 0], [255, 0])


def test_colorize_input_not_modified():
    depth = np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)
    keep = depth.copy()
    colorize(depth)
    np.testing.assert_array_equal(depth, keep)


def test_colorize_errors():
    with pytest.raises(InputError, match="unknown colour map 'jet'"):
        colorize(_depth(), cmap="jet")
    with pytest.raises(ShapeError, match=r"\(H, W\)"):
        colorize(np.zeros((1, 4, 4), np.float32))


def test_side_by_side_layout():
    image = np.full((10, 7, 3), 3, np.uint8)
    vis = np.full((10, 5, 3), 9, np.uint8)
    combined = side_by_side(image, vis)
    assert combined.shape == (10, 7 + 50 + 5, 3) and combined.dtype == np.uint8
    assert (combined[:, :7] == 3).all() and (combined[:, 7:57] == 255).all() and (combined[:, 57:] == 9).all()
    assert side_by_side(image, vis, gap=0).shape == (10, 12, 3)
    with pytest.raises(ShapeError, match="heights differ"):
        side_by_side(image, np.zeros((11, 5, 3), np.uint8))


# --- writers, read back independently --------------------------------------------------------------------------


def test_save_png16_normalised(tmp_path):
    depth = _depth()
    depth[0, 1] = np.nan
    path = save_png16(tmp_path / "deep" / "er" / "d.png", depth)
    assert path == tmp_path / "deep" / "er" / "d.png"
    assert path.read_bytes()[24] == 16  # IHDR bit depth
    with Image.open(path) as image:
        assert image.mode == "I;16"
        stored = np.array(image).astype(np.int64)
    finite = np.isfinite(depth)
    low, high = depth[finite].min(), depth[finite].max()
    expected = np.rint((depth.astype(np.float64) - low) / (high - low) * 65535)
    np.testing.assert_array_equal(stored[finite], expected[finite])
    assert stored[0, 1] == 0 and stored.max() == 65535 and stored[0, 0] == 0
    assert _only_files(path.parent) == ["d.png"]


def test_save_png16_fixed_range(tmp_path):
    depth = np.array([[0.0, 1.0, 2.0, 5.0]], np.float32)
    save_png16(tmp_path / "f.png", depth, vmin=1.0, vmax=3.0)
    with Image.open(tmp_path / "f.png") as image:
        np.testing.assert_array_equal(np.array(image)[0], [0, 0, 32768, 65535])


def test_save_png16_metric_millimetres(tmp_path):
    depth = np.array([[1.2344, 0.0, np.nan, 70.0], [0.0004, 0.0006, 65.535, -1.0]], np.float32)
    save_png16_metric(tmp_path / "m.png", depth)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "I;16"
        np.testing.assert_array_equal(np.array(image), [[1234, 0, 0, 65535], [0, 1, 65535, 0]])
    save_png16_metric(tmp_path / "k.png", np.array([[2.0, 10.5]], np.float32), scale=256)
    with Image.open(tmp_path / "k.png") as image:
        np.testing.assert_array_equal(np.array(image), [[512, 2688]])


def test_save_npy_and_npz(tmp_path):
    depth = _depth()
    path = save_npy(tmp_path / "d.npy", depth)
    loaded = np.load(path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, depth)

    conf = np.ones((12, 16), np.float32) * 0.5
    path = save_npz(tmp_path / "out" / "d.npz", depth, conf=conf)
    with np.load(path) as archive:
        assert sorted(archive.files) == ["conf", "depth"]
        np.testing.assert_array_equal(archive["depth"], depth)
        np.testing.assert_array_equal(archive["conf"], conf)
    save_npz(tmp_path / "kw.npz", depth=depth)  # depth by keyword, as callers write it
    with np.load(tmp_path / "kw.npz") as archive:
        assert archive.files == ["depth"]
    # numpy must not append its own suffix to the (temporary) names
    assert _only_files(tmp_path) == ["d.npy", "kw.npz", "out"]


def test_save_exr_read_with_openexr(tmp_path):
    openexr = pytest.importorskip("OpenEXR")
    depth = _depth()
    depth[2, 3] = np.nan
    path = save_exr(tmp_path / "d.exr", depth)
    exr = openexr.File(str(path), separate_channels=True)
    channels = exr.channels()
    assert list(channels) == ["Z"]
    pixels = channels["Z"].pixels
    assert pixels.dtype == np.float32 and pixels.shape == (12, 16)
    np.testing.assert_array_equal(pixels, depth)  # bit exact, NaN included
    assert exr.header()["compression"] == openexr.ZIP_COMPRESSION
    assert _only_files(tmp_path) == ["d.exr"]


def test_save_image_png_and_jpeg(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0] = 250  # red
    image[8:, 8:] = (10, 200, 30)  # a green block on the 8x8 JPEG grid
    save_image(tmp_path / "a.png", image)
    with Image.open(tmp_path / "a.png") as png:
        assert png.mode == "RGB"
        np.testing.assert_array_equal(np.array(png), image)
    save_image(tmp_path / "a.jpg", image, jpeg_quality=100)
    with Image.open(tmp_path / "a.jpg") as jpg:
        assert jpg.format == "JPEG"
        decoded = np.array(jpg).astype(int)
    assert np.abs(decoded[:6, :6] - (250, 0, 0)).max() <= 4  # red stays red: RGB, not BGR
    assert np.abs(decoded[10:, 10:] - (10, 200, 30)).max() <= 4
    gray = np.arange(80, dtype=np.uint8).reshape(8, 10)
    save_image(tmp_path / "g.png", gray)
    with Image.open(tmp_path / "g.png") as png:
        np.testing.assert_array_equal(np.array(png.convert("L")), gray)


# --- failures leave nothing behind -----------------------------------------------------------------------------


def test_failing_npy_write_leaves_no_file(tmp_path, monkeypatch):
    def half_write(handle, *args, **kwargs):
        handle.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", half_write)
    with pytest.raises(InputError, match=r"d\.npy: cannot write npy \(disk full\)"):
        save_npy(tmp_path / "d.npy", _depth())
    assert _only_files(tmp_path) == []


def test_failing_exr_write_keeps_old_file(tmp_path, monkeypatch):
    openexr = pytest.importorskip("OpenEXR")
    (tmp_path / "d.exr").write_bytes(b"previous")

    class BrokenFile:
        def __init__(self, *args, **kwargs):
            pass

        def write(self, filename):
            with open(filename, "wb") as handle:
                handle.write(b"v/1\x01partial")
            raise RuntimeError("Cannot write image file")

    monkeypatch.setattr(openexr, "File", BrokenFile)
    with pytest.raises(InputError, match=r"d\.exr: cannot write EXR"):
        save_exr(tmp_path / "d.exr", _depth())
    assert _only_files(tmp_path) == ["d.exr"]
    assert (tmp_path / "d.exr").read_bytes() == b"previous"


def test_failing_png_write_leaves_no_file(tmp_path, monkeypatch):
    class HalfWriter:
        def __init__(self, path, mode):
            self.handle = open(path, mode)  # noqa: SIM115 - closed in __exit__

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError("No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.handle.close()

    monkeypatch.setattr(depth_maps, "open", HalfWriter, raising=False)  # shadows the builtin in that module
    with pytest.raises(InputError, match=r"d\.png: cannot write 16-bit PNG \(No space left on device\)"):
        save_png16(tmp_path / "d.png", _depth())
    assert _only_files(tmp_path) == []


def test_unknown_image_suffix_and_unwritable_folder(tmp_path):
    with pytest.raises(InputError, match=r"x\.unknownext: cannot encode"):
        save_image(tmp_path / "x.unknownext", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InputError, match=r"cannot write"):
        save_npy(tmp_path / "file" / "d.npy", _depth())  # parent is a file
    with pytest.raises(InputError, match=r"\.png"):
        save_png16(tmp_path / "d.jpg", _depth())
    assert _only_files(tmp_path) == ["file"]


def test_writers_reject_bad_shapes(tmp_path):
    with pytest.raises(ShapeError):
        save_npy(tmp_path / "d.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ShapeError, match="empty"):
        save_exr(tmp_path / "d.exr", np.zeros((0, 3), np.float32))
    with pytest.raises(ShapeError, match="uint8"):
        save_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    assert _only_files(tmp_path) == []
