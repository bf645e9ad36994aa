"""The `depth_vis` export: each processed image beside its coloured inverse depth, as upstream DA3 draws it."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import List

import numpy as np

from anydepth.errors import InputError, ShapeError
from anydepth.export.depth_maps import colormap_lut, save_image
from anydepth.io.atomic import PathLike
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)

DEPTH_VIS_DIR = Path("depth_vis")
DEFAULT_PERCENTILE = 2.0
"""Upstream's ``visualize_depth`` clips inverse depth to its 2nd..98th percentile per view."""


def depth_vis_colors(
    depth: np.ndarray, is_disparity: bool = False, percentile: float = DEFAULT_PERCENTILE
) -> np.ndarray:
    """Colour depth maps the way upstream DA3's ``visualize_depth`` does, for all views at once.

    Per view: inverse depth of the positive pixels, normalised between its ``percentile`` and ``100 - percentile``
    percentiles (a view with 10 or fewer positive pixels gets the range 0..0), clipped to 0..1 and looked up in
    matplotlib's ``Spectral`` at ``1 - t``, so near is red and far is blue. As upstream, non-positive depth is
    normalised as it is (it lands on the far colour) and NaN pixels are black.

    Args:
        depth: (N, H, W) z-depth, or inverse depth when ``is_disparity``.
        is_disparity: the maps already hold inverse depth (``depth_kind == "disparity"``); they are not inverted.
        percentile: percentage clipped at each end of every view's range, 0 <= percentile < 50.

    Returns:
        colors: (N, H, W, 3) uint8 RGB; new arrays, ``depth`` is not modified.
    """
    depth = np.asarray(depth)
    if depth.ndim != 3 or depth.size == 0:
        raise ShapeError(f"depth_vis needs (N, H, W) depth, got shape {depth.shape}")
    if not 0.0 <= percentile < 50.0:
        raise InputError(f"depth_vis percentile must be in [0, 50), got {percentile}")
    values = depth.astype(np.float64)  # a new array; the caller's depth stays as it is
    valid = values > 0
    if not is_disparity:
        np.divide(1.0, values, out=values, where=valid)
    masked = np.where(valid, values, np.nan)
    with warnings.catch_warnings():  # "All-NaN slice" for views without valid depth, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        bounds = np.nanpercentile(masked, [percentile, 100.0 - percentile], axis=(1, 2))  # (2, N)
    few = valid.reshape(len(values), -1).sum(axis=1) <= 10
    low = np.where(few, 0.0, bounds[0])
    high = np.where(few, 0.0, bounds[1])
    same = low == high
    low, high = np.where(same, low - 1e-6, low), np.where(same, high + 1e-6, high)
    with np.errstate(invalid="ignore"):
        t = np.clip((values - low[:, None, None]) / (high - low)[:, None, None], 0.0, 1.0)
    nan = np.isnan(t)
    # matplotlib's lookup of a float x in a 256-entry map: index floor(x * 256), with x == 1 on the last entry
    spectral_index = np.minimum(np.floor(np.where(nan, 0.0, 1.0 - t) * 256.0), 255).astype(np.intp)
    spectral = colormap_lut("spectral_r")[::-1]  # Spectral is Spectral_r reversed
    colors = spectral[spectral_index]
    colors[nan] = 0
    return colors


def _fit_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (N, h, w, 3) images to (N, height, width, 3) where they differ (outputs at input resolution)."""
    if images.shape[1:3] == (height, width):
        return images
    import cv2

    return np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for image in images])


def export_depth_vis(
    prediction: Prediction,
    export_dir: PathLike,
    percentile: float = DEFAULT_PERCENTILE,
    jpeg_quality: int = 95,
) -> List[Path]:
    """Write ``<export_dir>/depth_vis/0000.jpg``, ``0001.jpg``... : per view the processed image, and right of it
    (no gap) its depth coloured by :func:`depth_vis_colors`, at JPEG quality 95, as upstream DA3.

    Upstream inverts the depth; a ``"disparity"`` prediction is already inverse depth, so it is used as it is
    (upstream would swap near and far). Processed images of another size than the depth are resized to it.

    Args:
        prediction: depth (N, H, W) and processed_images (N, h, w, 3) uint8; never modified.
        export_dir: the export folder; created if missing.
        percentile: see :func:`depth_vis_colors`.
        jpeg_quality: 0-100.

    Returns:
        The paths written, one per view.

    Raises:
        InputError: the prediction has no processed images (upstream requires them too).
    """
    if prediction.processed_images is None:
        raise InputError("depth_vis export needs prediction.processed_images; use exr or png16 for depth alone")
    images = np.asarray(prediction.processed_images)
    if images.ndim != 4 or images.shape[0] != len(prediction) or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ShapeError(f"depth_vis needs processed_images (N, h, w, 3) uint8, got {images.shape} {images.dtype}")
    colors = depth_vis_colors(prediction.depth, prediction.depth_kind == "disparity", percentile)
    images = _fit_images(images, *colors.shape[1:3])
    panels = np.concatenate([images, colors], axis=2)  # (N, H, 2W, 3)
    folder = Path(export_dir) / DEPTH_VIS_DIR
    paths = [save_image(folder / f"{index:04d}.jpg", panel, jpeg_quality) for index, panel in enumerate(panels)]
    logger.info("wrote %d depth visualisations to %s", len(paths), folder)
    return paths
