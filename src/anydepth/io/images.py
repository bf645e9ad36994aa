"""Read one image from a path, PIL image, numpy array or torch tensor into an RGB numpy array."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anydepth.errors import InputError, ShapeError, require
from anydepth.io.atomic import PathLike

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif"})
"""File suffixes (lower case, with the dot) that :func:`read_image` and input expansion treat as images."""

MAX_PIXELS = 2**28
"""Largest accepted image (height x width), about 16k x 16k; PIL's own decompression-bomb limit may be lower."""

ImageSource = Union[PathLike, Image.Image, np.ndarray, "torch.Tensor"]

_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
_ORIENTATION_TAG = 0x0112
_FLOAT_TOLERANCE = 1e-3  # float inputs may overshoot [0, 1] by rounding; beyond this they are not [0, 1] images
_heif_registered = False


def read_image(source: ImageSource, min_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Read an image into an RGB array, keeping more than 8 bits where the source has them.

    Files and PIL images are turned upright with their EXIF orientation. Grayscale becomes 3 equal channels.
    An alpha channel (RGBA, LA, palette transparency) is dropped, not composited: transparent pixels keep the
    colour stored under them. Palette, CMYK and YCbCr images are converted to RGB. HEIC/HEIF files need
    ``pillow-heif`` (``pip install 'anydepth[heic]'``); AVIF uses Pillow's own decoder where it has one.

    Numpy arrays and tensors given by the caller are taken to be RGB (not OpenCV's BGR), are never modified,
    and the result never shares memory with them.

    Args:
        source: one of
            - a path (``str`` or ``os.PathLike``) to an image file (see :data:`IMAGE_SUFFIXES`);
            - a ``PIL.Image.Image``;
            - a numpy array ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` of uint8, uint16 or
              float in [0, 1];
            - a torch tensor ``(3, H, W)``, ``(1, H, W)``, ``(H, W, 3)`` or ``(H, W)``, uint8 or float in [0, 1].
        min_size: ``(height, width)`` (upright) that the caller will shrink the image to. A JPEG file is then
            decoded at a reduced scale (libjpeg's DCT scaling, PIL's ``draft``: 1/2, 1/4 or 1/8) when that scale
            divides both of its sides and leaves at least ``min_size``; it never allocates the full-size pixels.
            Each reduced pixel is the mean of its block as the scaled inverse DCT gives it, so the pixels differ
            slightly from a full decode followed by an area resize (below one grey level on average, more at
            sharp edges). Other sources, and JPEGs that no scale fits, are decoded in full. None (the default):
            always the full image.

    Returns:
        image: ``(H, W, 3)`` C-contiguous RGB; ``uint8`` for 8-bit sources, ``float32`` in [0, 1] for sources
        with more bits (16-bit PNG/TIFF, uint16 or float arrays) so that precision is kept. With ``min_size``, a
        JPEG may come back ``(H / s, W / s, 3)`` for ``s`` in 2, 4, 8 (see :func:`reduced_decode_scale`).

    Raises:
        InputError: missing, unreadable or undecodable file; empty or too large image.
        ShapeError: an array or tensor with an unsupported shape or dtype, or float values outside [0, 1].
        MissingDependencyError: a HEIC/HEIF file without ``pillow-heif`` installed.
    """
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source), min_size)
    if isinstance(source, Image.Image):
        return _from_pil(source, "PIL image")
    if isinstance(source, np.ndarray):
        return _from_array(source, "image array")
    torch = sys.modules.get("torch")  # only a caller that has torch can pass a tensor; never import it here
    if torch is not None and isinstance(source, torch.Tensor):
        return _from_array(_tensor_to_hwc(source), "image tensor")
    raise InputError(
        f"cannot read an image from a {type(source).__name__}; "
        "pass a path, a PIL image, a numpy array or a torch tensor"
    )


@dataclass(frozen=True)
class ImageHeader:
    """What :func:`read_image` will return for a source, known before any pixel is decoded.

    Attributes:
        height, width: the upright size (after the EXIF orientation).
        format: PIL's name of the file format ("JPEG", "PNG", ...); None for arrays, tensors and PIL images
            that were not read from a file.
        high_depth: more than 8 bits per sample: :func:`read_image` returns float32, not uint8.
    """

    height: int
    width: int
    format: Optional[str] = None
    high_depth: bool = False


def read_header(source: ImageSource) -> Optional[ImageHeader]:
    """The size and kind of an image, from a file's header (nothing decoded) or an in-memory image itself.

    None for a file that PIL cannot open (a float TIFF, a HEIC file without ``pillow-heif``, no file at all):
    only :func:`read_image` tells then. Tensors are read as :func:`read_image` reads them: ``(C, H, W)`` when the
    first of three dimensions is 1 or 3, else ``(H, W, ...)``.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            with Image.open(path) as img:
                width, height = img.size
                swapped = _exif_orientation(img) in _TRANSPOSING_ORIENTATIONS
                high_depth = img.mode.startswith(("I", "F")) or _is_high_depth_colour(img, path)
                kind = img.format
        except Exception:  # unreadable here; read_image says why, or decodes it another way
            return None
        return ImageHeader(width if swapped else height, height if swapped else width, kind, high_depth)
    if isinstance(source, Image.Image):
        width, height = source.size
        swapped = _exif_orientation(source) in _TRANSPOSING_ORIENTATIONS
        high_depth = source.mode.startswith(("I", "F"))
        return ImageHeader(width if swapped else height, height if swapped else width, None, high_depth)
    shape = getattr(source, "shape", None)
    if shape is None or len(shape) < 2:
        return None
    high_depth = str(getattr(source, "dtype", "uint8")).rsplit(".", 1)[-1] != "uint8"
    if not isinstance(source, np.ndarray) and len(shape) == 3 and shape[0] in (1, 3):
        return ImageHeader(int(shape[1]), int(shape[2]), None, high_depth)  # a (C, H, W) tensor
    return ImageHeader(int(shape[0]), int(shape[1]), None, high_depth)


def reduced_decode_scale(size: Tuple[int, int], min_size: Tuple[int, int]) -> int:
    """The JPEG DCT scale (1, 2, 4 or 8) that :func:`read_image` decodes a ``size`` image at for ``min_size``.

    The largest ``s`` that divides both sides (so that the reduced pixels tile the image exactly and a resize of
    the reduced image lands on the same grid as one of the full image) and leaves both sides at least
    ``min_size``; 1 when none does.

    >>> reduced_decode_scale((8000, 6000), (504, 378)), reduced_decode_scale((8000, 6000), (2000, 1500))
    (8, 4)
    >>> reduced_decode_scale((8001, 6000), (504, 378))  # no scale divides 8001
    1
    """
    height, width = size
    for scale in (8, 4, 2):
        if (
            height % scale == 0
            and width % scale == 0
            and height // scale >= min_size[0]
            and width // scale >= min_size[1]
        ):
            return scale
    return 1


# --- files -----------------------------------------------------------------------------------------------------

_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


def _read_file(path: Path, min_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file; pass the files inside it or use input expansion")
    suffix = path.suffix.lower()
    if suffix in _HEIF_SUFFIXES or (suffix == ".avif" and not _pil_has_avif()):
        _register_heif(required=True)
    try:
        with _open_pil(path) as img:
            _check_size(img.width, img.height, path)
            if _is_high_depth_colour(img, path):
                # PIL decodes 16-bit colour PNG/TIFF to 8 bits: decode with OpenCV, orient with PIL's EXIF
                orientation = _exif_orientation(img)
                return _apply_orientation(_from_array(_decode_cv2(path), str(path)), orientation)
            if min_size is not None and img.format == "JPEG":
                _draft(img, min_size)
            return _from_pil(img, str(path))
    except _NotPilDecodable as exc:
        # e.g. float TIFF, which Pillow does not read but OpenCV does
        try:
            array = _decode_cv2(path)
        except InputError:
            raise InputError(f"{path}: cannot decode image ({exc}); is it an image file and complete?") from None
        return _from_array(array, str(path))


def _draft(img: Image.Image, min_size: Tuple[int, int]) -> None:
    """Sets up a JPEG's decoder to return it reduced by :func:`reduced_decode_scale` (before any pixel is read)."""
    if _exif_orientation(img) in _TRANSPOSING_ORIENTATIONS:
        min_size = (min_size[1], min_size[0])  # the file stores the image on its side
    width, height = img.size
    scale = reduced_decode_scale((height, width), min_size)
    if scale > 1:
        # PIL picks the largest scale whose result is at least the size asked; asking the exact quotient gives s
        img.draft(img.mode, (width // scale, height // scale))


class _NotPilDecodable(Exception):
    """PIL could not identify the file; the caller tries another decoder."""


def _open_pil(path: Path) -> Image.Image:
    try:
        return _open_with_bomb_check(path)
    except UnidentifiedImageError as first_error:
        if not _register_heif(required=False):  # maybe a HEIF file with another suffix
            raise _NotPilDecodable(str(first_error)) from None
        try:
            return _open_with_bomb_check(path)
        except UnidentifiedImageError:
            raise _NotPilDecodable(str(first_error)) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read file ({exc})") from None


def _open_with_bomb_check(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"{path}: image is too large to decode safely ({exc}); resize it, or raise PIL.Image.MAX_IMAGE_PIXELS "
            "if you trust the file"
        ) from None


def _pil_has_avif() -> bool:
    from PIL import features

    try:
        return bool(features.check("avif"))
    except ValueError:  # Pillow older than the AVIF plugin does not know the feature name
        return False


def _register_heif(required: bool) -> bool:
    """Register pillow-heif's opener with PIL once; True if it is available."""
    global _heif_registered
    if _heif_registered:
        return True
    if required:
        pillow_heif = require("pillow_heif", "heic")
    else:
        try:
            import pillow_heif
        except ImportError:
            return False
    pillow_heif.register_heif_opener()
    if hasattr(pillow_heif, "register_avif_opener"):  # pillow-heif < 0.17 also decodes AVIF
        pillow_heif.register_avif_opener()
    _heif_registered = True
    return True


def _is_high_depth_colour(img: Image.Image, path: Path) -> bool:
    """True for colour images with more than 8 bits per sample, which PIL would reduce to 8 bits."""
    if img.mode not in ("RGB", "RGBA"):
        return False  # 16-bit grayscale opens as "I;16" / "I" and keeps its precision in PIL
    if img.format == "PNG":
        return _png_bit_depth(path) > 8
    if img.format == "TIFF":
        bits = img.tag_v2.get(258, (8,))  # BitsPerSample, one entry per sample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(int(b) for b in bits) > 8
    return False


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as handle:
        header = handle.read(25)  # 8-byte signature, IHDR length and type, width, height, bit depth
    return header[24] if len(header) == 25 and header[12:16] == b"IHDR" else 8


def _decode_cv2(path: Path) -> np.ndarray:
    """Decode with OpenCV, keeping depth and channels; returns RGB(A) or gray."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)  # imdecode instead of imread: non-ASCII paths work everywhere
    except OSError as exc:
        raise InputError(f"{path}: cannot read file ({exc})") from None
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        raise InputError(f"{path}: cannot decode image (OpenCV could not read it either)")
    if array.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB
        array = cv2.cvtColor(array, code) if array.shape[2] in (3, 4) else array
    return array


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1))
    except Exception as exc:  # broken EXIF must not make a readable image unreadable
        logger.debug("ignoring unreadable EXIF: %s", exc)
        return 1


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an ``(H, W, C)`` array, as ``PIL.ImageOps.exif_transpose`` does."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    if orientation not in transforms:
        return image
    return np.ascontiguousarray(transforms[orientation](image))


# --- PIL images ------------------------------------------------------------------------------------------------


def _from_pil(img: Image.Image, name: str) -> np.ndarray:
    try:
        if _exif_orientation(img) != 1:  # transpose only when needed: exif_transpose copies the image otherwise
            with warnings.catch_warnings():
                # a broken EXIF block only loses the orientation; PIL says so with a UserWarning
                warnings.simplefilter("ignore", UserWarning)
                img = ImageOps.exif_transpose(img)
        _check_size(img.width, img.height, name)
        return _pil_to_array(img, name)
    except (InputError, ShapeError):
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # truncated or corrupt data surfaces only when the pixels are decoded
        raise InputError(f"{name}: cannot decode image ({exc}); is the file complete?") from None


def _pil_to_array(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I;16"):
        return _from_array(np.array(img, dtype=np.uint16), name)
    if mode == "I":  # 32-bit int; PIL uses it for 16-bit data from some decoders
        values = np.array(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(f"{name}: 32-bit integer image with values outside 0..65535; convert it to 8 or 16 bits")
        return _from_array(values.astype(np.uint16), name)
    if mode == "F":
        return _from_array(np.array(img, dtype=np.float32), name)
    if mode == "RGB":
        return _rgb_to_array(img)
    if mode in ("L", "1"):
        return _gray_to_rgb(np.array(img.convert("L")))
    if mode in ("LA", "La"):
        return _gray_to_rgb(np.array(img.getchannel(0)))
    if mode in ("RGBA", "RGBa", "RGBX", "PA") or (mode == "P" and "transparency" in img.info):
        # going through RGBA is PIL's lossless route for palette transparency; the alpha is then dropped
        return np.ascontiguousarray(np.array(img.convert("RGBA"))[..., :3])
    try:
        return np.ascontiguousarray(np.array(img.convert("RGB")))  # P, CMYK, YCbCr, LAB, HSV
    except ValueError as exc:
        raise InputError(f"{name}: unsupported image mode {mode!r} ({exc}); convert the image to RGB") from None


_BAND_PIXELS = 1 << 20  # pixels per band when a large RGB image is copied out of PIL


def _rgb_to_array(img: Image.Image) -> np.ndarray:
    """An RGB PIL image as an (H, W, 3) uint8 array, copied out in bands of rows when it is large.

    ``np.array(img)`` goes through ``img.tobytes()``: its chunks, their join and the array are all alive at once,
    10 bytes per pixel at the peak with PIL's own 4. Band by band it is 7 (PIL's 4, the array's 3).
    """
    width, height = img.size
    if width * height <= 2 * _BAND_PIXELS:
        return np.ascontiguousarray(np.array(img))
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, _BAND_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        out[top:bottom] = np.asarray(img.crop((0, top, width, bottom)))
    return out


# --- arrays and tensors ----------------------------------------------------------------------------------------


def _tensor_to_hwc(tensor: torch.Tensor) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.float()  # bfloat16 / float16 / float64 -> float32 (numpy has no bfloat16)
    shape = tuple(tensor.shape)
    if tensor.ndim == 3 and shape[0] in (1, 3):
        tensor = tensor.permute(1, 2, 0)  # (C, H, W) -> (H, W, C); an ambiguous (3, H, 3) follows torch's convention
    elif not (tensor.ndim == 2 or (tensor.ndim == 3 and shape[2] == 3)):
        raise ShapeError(f"image tensor has shape {shape}; expected (3, H, W), (1, H, W), (H, W, 3) or (H, W)")
    return tensor.numpy()


def _from_array(array: np.ndarray, name: str) -> np.ndarray:
    """Validate and convert an ``(H, W[, C])`` array to ``(H, W, 3)`` uint8 or float32 in [0, 1]."""
    source = array
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., :3]
    elif array.ndim != 2:
        raise ShapeError(f"{name} has shape {source.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    _check_size(array.shape[1], array.shape[0], name)

    if array.dtype == np.uint8:
        out = array
    elif array.dtype == np.uint16:
        out = array.astype(np.float32) / np.float32(65535.0)
    elif np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float32)
        low, high = float(np.min(out)), float(np.max(out))
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ShapeError(f"{name} has NaN or infinite values; an image needs finite values in [0, 1]")
        if low < -_FLOAT_TOLERANCE or high > 1.0 + _FLOAT_TOLERANCE:
            hint = " (divide 0..255 data by 255)" if high > 1.5 else ""
            raise ShapeError(f"{name} has float values in [{low:.4g}, {high:.4g}]; expected [0, 1]{hint}")
        np.clip(out, 0.0, 1.0, out=out)  # astype made a copy
    else:
        raise ShapeError(f"{name} has dtype {array.dtype}; expected uint8, uint16 or float in [0, 1]")

    out = _gray_to_rgb(out) if out.ndim == 2 else np.ascontiguousarray(out)
    if np.may_share_memory(out, source):
        out = out.copy()  # the caller's array must never change through ours
    return out


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _check_size(width: int, height: int, name: Union[str, Path]) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: image is empty ({width}x{height} pixels)")
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{name}: image is too large ({width}x{height} = {width * height} pixels, limit {MAX_PIXELS}); resize it"
        )
