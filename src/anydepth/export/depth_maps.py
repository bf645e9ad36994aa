"""Write one depth map: colour visualisations, 16-bit PNG, npy/npz and EXR, each written atomically."""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

from anydepth.errors import InputError, ShapeError, require
from anydepth.io.atomic import PathLike, atomic_open, atomic_path

logger = logging.getLogger(__name__)

COLORMAPS = ("spectral_r", "gray", "inferno")
"""Colour map names accepted by :func:`colorize`."""

# ColorBrewer "Spectral", 11 classes (Cynthia Brewer, Apache-2.0 style licence); matplotlib's Spectral is the
# linear interpolation of exactly these colours, Spectral_r its reverse.
_SPECTRAL_11 = (
    "9e0142", "d53e4f", "f46d43", "fdae61", "fee08b", "ffffbf", "e6f598", "abdda4", "66c2a5", "3288bd", "5e4fa2",
)  # fmt: skip


# --- colour maps -----------------------------------------------------------------------------------------------


@functools.cache
def _spectral_r_lut() -> np.ndarray:
    """(256, 3) uint8 RGB; equals ``(matplotlib.cm.Spectral_r(np.arange(256))[:, :3] * 255).astype(np.uint8)``."""
    colors = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _SPECTRAL_11], dtype=np.float64) / 255.0
    # matplotlib reverses a segmented map by mirroring the anchor positions: x -> 1 - x over the reversed colours
    anchors = 1.0 - np.linspace(0.0, 1.0, len(colors))[::-1]
    values = colors[::-1]
    # the lookup-table construction of matplotlib.colors._create_lookup_table, so float rounding matches too
    xind = np.linspace(0.0, 1.0, 256)
    ind = np.searchsorted(anchors, xind)[1:-1]
    distance = (xind[1:-1] - anchors[ind - 1]) / (anchors[ind] - anchors[ind - 1])
    inner = distance[:, None] * (values[ind] - values[ind - 1]) + values[ind - 1]
    lut = np.clip(np.concatenate([values[:1], inner, values[-1:]]), 0.0, 1.0)
    return (lut * 255).astype(np.uint8)  # truncation, as Depth Anything V2's run.py does


@functools.cache
def _inferno_lut() -> np.ndarray:
    import cv2

    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_INFERNO)
    return np.ascontiguousarray(bgr[:, 0, ::-1])


def _gray_lut() -> np.ndarray:
    return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


_LUTS = {"spectral_r": _spectral_r_lut, "gray": _gray_lut, "grey": _gray_lut, "inferno": _inferno_lut}


def colormap_lut(cmap: str) -> np.ndarray:
    """The 256-entry lookup table of a colour map.

    Args:
        cmap: one of :data:`COLORMAPS` (case-insensitive; ``"grey"`` also works).

    Returns:
        lut: ``(256, 3)`` uint8 RGB; entry 0 is for the smallest value.
    """
    try:
        return _LUTS[cmap.lower()]().copy()
    except KeyError:
        raise InputError(f"unknown colour map {cmap!r}; choose one of {', '.join(COLORMAPS)}") from None


def normalize_to_uint8(
    depth: np.ndarray, vmin: Optional[float] = None, vmax: Optional[float] = None, invert: bool = False
) -> np.ndarray:
    """Map a depth map to 0..255 the way Depth Anything V2's ``run.py`` does, safely.

    ``(depth - vmin) / (vmax - vmin) * 255`` in the map's own float precision, truncated to uint8. ``vmin`` and
    ``vmax`` default to the minimum and maximum of the finite values; values outside are clipped. A constant map
    gives zeros; NaN and infinite pixels give 0.

    Args:
        depth: ``(H, W)`` depth, disparity or any scalar map.
        vmin: value mapped to 0.
        vmax: value mapped to 255.
        invert: map ``vmin`` to 255 and ``vmax`` to 0 instead.

    Returns:
        levels: ``(H, W)`` uint8.
    """
    depth = _check_depth(depth)
    if not np.issubdtype(depth.dtype, np.floating):
        depth = depth.astype(np.float32)
    finite = np.isfinite(depth)
    all_finite = bool(finite.all())
    if vmin is None or vmax is None:
        values = depth if all_finite else depth[finite]
        low = values.min() if values.size else depth.dtype.type(0)
        high = values.max() if values.size else depth.dtype.type(0)
        low = low if vmin is None else depth.dtype.type(vmin)
        high = high if vmax is None else depth.dtype.type(vmax)
    else:
        low, high = depth.dtype.type(vmin), depth.dtype.type(vmax)
    if not high > low:
        levels = np.zeros(depth.shape, dtype=np.uint8)
    else:
        scaled = (depth - low) / (high - low) * 255.0  # V2's expression and operation order
        if not all_finite:
            scaled[~finite] = 0.0
        np.clip(scaled, 0.0, 255.0, out=scaled)  # a no-op for min-max; bounds fixed ranges
        levels = scaled.astype(np.uint8)
    if invert:
        levels = 255 - levels
    if not all_finite:
        levels[~finite] = 0
    return levels


def colorize(
    depth: np.ndarray,
    cmap: str = "spectral_r",
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    invert: bool = False,
) -> np.ndarray:
    """Colour a depth map for viewing.

    With the defaults this reproduces Depth Anything V2's ``run.py`` pixel for pixel: min-max to 0..255,
    truncated to uint8, through matplotlib's ``Spectral_r`` (``cmap="gray"`` is its ``--grayscale``). The
    colour tables are built in, matplotlib is not needed. V2's relative output is disparity, so near is red.

    Args:
        depth: ``(H, W)`` float map.
        cmap: ``"spectral_r"``, ``"gray"`` or ``"inferno"``.
        vmin: value given the first colour; default the finite minimum.
        vmax: value given the last colour; default the finite maximum.
        invert: swap the ends of the colour map.

    Returns:
        image: ``(H, W, 3)`` uint8 RGB. NaN and infinite pixels are black.
    """
    depth = _check_depth(depth)
    lut = colormap_lut(cmap)
    levels = normalize_to_uint8(depth, vmin=vmin, vmax=vmax, invert=invert)
    image = lut[levels]
    invalid = ~np.isfinite(depth)
    if invalid.any():
        image[invalid] = 0
    return image


def side_by_side(image: np.ndarray, depth_vis: np.ndarray, gap: int = 50) -> np.ndarray:
    """Put an image and its depth visualisation next to each other, split by a white column, as V2's ``run.py``.

    Args:
        image: ``(H, W1, 3)`` uint8 RGB.
        depth_vis: ``(H, W2, 3)`` uint8 RGB, same height.
        gap: width of the white column in pixels.

    Returns:
        combined: ``(H, W1 + gap + W2, 3)`` uint8.
    """
    for name, array in (("image", image), ("depth_vis", depth_vis)):
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ShapeError(f"side_by_side: {name} must be (H, W, 3) uint8, got {array.shape} {array.dtype}")
    if image.shape[0] != depth_vis.shape[0]:
        raise ShapeError(f"side_by_side: heights differ ({image.shape[0]} and {depth_vis.shape[0]}); resize first")
    if gap < 0:
        raise InputError(f"side_by_side: gap must be >= 0, got {gap}")
    white = np.full((image.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([image, white, depth_vis], axis=1)


# --- writers ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _writing(path: Path, what: str) -> Iterator[Path]:
    """Atomic write to ``path``; failures other than our own typed errors become one-line InputErrors."""
    try:
        with atomic_path(path) as temp_path:
            yield temp_path
    except (InputError, ShapeError):
        raise
    except Exception as exc:  # OSError, cv2.error, OpenEXR's errors...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot write {what} ({reason}); check the folder exists and is writable") from exc


def _write_bytes(path: Path, data: bytes, what: str) -> Path:
    with _writing(path, what) as temp_path, open(temp_path, "wb") as handle:
        handle.write(data)
    return path


def _encode(suffix: str, image: np.ndarray, params: Tuple[int, ...], path: Path) -> bytes:
    import cv2

    kind = suffix or "(no suffix)"
    try:
        ok, buffer = cv2.imencode(suffix, image, list(params))
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1].split("error: ", 1)[-1]  # drop version and source location
        raise InputError(f"{path}: cannot encode image as {kind} ({reason}); use .png or .jpg") from None
    if not ok:
        raise InputError(f"{path}: cannot encode image as {kind}; use .png or .jpg")
    return buffer.tobytes()


def save_image(path: PathLike, image: np.ndarray, jpeg_quality: int = 95) -> Path:
    """Save an 8-bit RGB (or grayscale) image; the format follows the suffix (``.png``, ``.jpg``, ``.webp``...).

    Args:
        path: output file.
        image: ``(H, W, 3)`` RGB or ``(H, W)`` gray, uint8.
        jpeg_quality: 0-100, for JPEG and WebP.

    Returns:
        The path written.
    """
    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ShapeError(f"{path}: save_image needs (H, W, 3) or (H, W) uint8, got {image.shape} {image.dtype}")
    if image.size == 0:
        raise ShapeError(f"{path}: image is empty {image.shape}")
    import cv2

    bgr = image[..., ::-1] if image.ndim == 3 else image
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        params: Tuple[int, ...] = (cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality))
    elif suffix == ".webp":
        params = (cv2.IMWRITE_WEBP_QUALITY, int(jpeg_quality))
    else:
        params = ()
    data = _encode(suffix, np.ascontiguousarray(bgr), params, path)
    return _write_bytes(path, data, "image")


def save_png16(path: PathLike, depth: np.ndarray, vmin: Optional[float] = None, vmax: Optional[float] = None) -> Path:
    """Save a depth map as a normalised 16-bit grayscale PNG.

    The values are scaled, not stored as they are: ``vmin`` (default: the finite minimum) becomes 0 and ``vmax``
    (default: the finite maximum) 65535, rounded to the nearest level, clipped outside. A constant map, NaN and
    infinite pixels become 0. For depth in physical units use :func:`save_png16_metric`.

    Args:
        path: output ``.png`` file.
        depth: ``(H, W)`` float map.
        vmin: value stored as 0.
        vmax: value stored as 65535.

    Returns:
        The path written.
    """
    path = Path(path)
    depth = _check_depth(depth, path)
    values = depth.astype(np.float64)
    finite = np.isfinite(values)
    if vmin is None or vmax is None:
        valid = values[finite]
        low = float(valid.min()) if valid.size else 0.0
        high = float(valid.max()) if valid.size else 0.0
        low = low if vmin is None else float(vmin)
        high = high if vmax is None else float(vmax)
    else:
        low, high = float(vmin), float(vmax)
    if high > low:
        levels = np.rint(np.clip((values - low) / (high - low), 0.0, 1.0) * 65535.0)
    else:
        levels = np.zeros_like(values)
    levels[~finite] = 0
    return _save_uint16_png(path, levels.astype(np.uint16))


def save_png16_metric(path: PathLike, depth: np.ndarray, scale: float = 1000.0) -> Path:
    """Save metric depth as a 16-bit PNG of ``round(depth * scale)``; with the default, millimetres.

    The common convention for depth PNGs (KITTI uses ``scale=256``, TUM ``5000``): 0 means no depth, so NaN,
    infinite and non-positive pixels are stored as 0. Values above ``65535 / scale`` (65.5 m at the default) are
    clipped to 65535 with a logged warning.

    Args:
        path: output ``.png`` file.
        depth: ``(H, W)`` depth in metres (or any unit; the reader divides by ``scale``).
        scale: stored value per unit of depth.

    Returns:
        The path written.
    """
    path = Path(path)
    depth = _check_depth(depth, path)
    if not scale > 0:
        raise InputError(f"{path}: scale must be positive, got {scale}")
    scaled = np.rint(depth.astype(np.float64) * float(scale))
    invalid = ~np.isfinite(scaled) | (scaled <= 0)
    over = np.count_nonzero(scaled[~invalid] > 65535)
    if over:
        logger.warning(
            "%s: %d pixels beyond %.4g (65535 / scale) were clipped; lower scale to keep them",
            path,
            over,
            65535 / scale,
        )
    scaled[invalid] = 0
    return _save_uint16_png(path, np.clip(scaled, 0, 65535).astype(np.uint16))


def _save_uint16_png(path: Path, levels: np.ndarray) -> Path:
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: a 16-bit depth map must be saved as .png")
    import cv2

    data = _encode(".png", levels, (cv2.IMWRITE_PNG_COMPRESSION, 3), path)
    return _write_bytes(path, data, "16-bit PNG")


def save_npy(path: PathLike, depth: np.ndarray) -> Path:
    """Save a depth map as ``.npy`` with its dtype (normally float32), readable with ``np.load``.

    Args:
        path: output file; written as given, no suffix is added.
        depth: ``(H, W)`` map.

    Returns:
        The path written.
    """
    path = Path(path)
    depth = _check_depth(depth, path)
    return _save_with(path, "npy", lambda handle: np.save(handle, depth, allow_pickle=False))


def save_npz(path: PathLike, depth: np.ndarray, **arrays: np.ndarray) -> Path:
    """Save a depth map and optional companion arrays as a compressed ``.npz``.

    Args:
        path: output file; written as given, no suffix is added.
        depth: ``(H, W)`` map, stored under the key ``"depth"``.
        **arrays: more arrays by name (``conf=...``, ``sky=...``), stored as given.

    Returns:
        The path written.
    """
    path = Path(path)
    depth = _check_depth(depth, path)
    contents = {"depth": depth, **{name: np.asarray(value) for name, value in arrays.items()}}
    for name, value in contents.items():
        if value.dtype == object:
            raise ShapeError(f"{path}: array {name!r} has dtype object; npz stores numeric arrays only")
    return _save_with(path, "npz", lambda handle: np.savez_compressed(handle, **contents))


def _save_with(path: Path, what: str, write) -> Path:
    try:
        with atomic_open(path, "wb") as handle:
            write(handle)  # a file object, so numpy adds no suffix to the temporary name
    except (InputError, ShapeError):
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot write {what} ({exc}); check the folder exists and is writable") from exc
    return path


def save_exr(path: PathLike, depth: np.ndarray) -> Path:
    """Save a depth map as a single-channel float32 OpenEXR file, channel ``"Z"``, ZIP-compressed.

    Needs the ``OpenEXR`` package >= 3.2 (``pip install 'anydepth[export]'``). NaN and inf are stored as they are.

    Args:
        path: output ``.exr`` file.
        depth: ``(H, W)`` map; stored as float32.

    Returns:
        The path written.
    """
    path = Path(path)
    depth = _check_depth(depth, path)
    openexr = require("OpenEXR", "export")
    if not hasattr(openexr, "File"):
        raise InputError(f"{path}: OpenEXR is too old (no OpenEXR.File); pip install 'OpenEXR>=3.2'")
    pixels = np.ascontiguousarray(depth, dtype=np.float32)
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
    with _writing(path, "EXR") as temp_path:
        openexr.File(header, {"Z": pixels}).write(str(temp_path))
    return path


def _check_depth(depth: np.ndarray, path: Optional[Path] = None) -> np.ndarray:
    """Validate a ``(H, W)`` numeric, non-empty map; returns it as an ndarray (not copied)."""
    prefix = f"{path}: " if path is not None else ""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ShapeError(f"{prefix}depth map must be (H, W), got shape {depth.shape}")
    if depth.size == 0:
        raise ShapeError(f"{prefix}depth map is empty, shape {depth.shape}")
    if not (np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)):
        raise ShapeError(f"{prefix}depth map must be numeric, got dtype {depth.dtype}")
    return depth
