"""The `exr` and `png16` exports: every view's depth map as float32 OpenEXR or 16-bit PNG (our additions)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List

import numpy as np

from anydepth.export.depth_maps import save_exr, save_png16, save_png16_metric
from anydepth.io.atomic import PathLike
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)

EXR_DIR = Path("depth_exr")
PNG16_DIR = Path("depth_png16")
METRIC_SCALE = 1000.0
"""``png16`` of metric depth stores millimetres: ``round(depth * 1000)``, 0 for no depth."""


def export_exr(prediction: Prediction, export_dir: PathLike) -> List[Path]:
    """Write ``<export_dir>/depth_exr/0000.exr``, ``0001.exr``...: each view's depth as it is, float32, channel ``Z``.

    The values keep the prediction's meaning (``depth_kind``): metres, depth up to scale, or disparity.
    Needs ``OpenEXR`` >= 3.2 (``pip install 'anydepth[export]'``).

    Args:
        prediction: depth (N, H, W); never modified.
        export_dir: the export folder; created if missing.

    Returns:
        The paths written, one per view.
    """
    folder = Path(export_dir) / EXR_DIR
    paths = [save_exr(folder / f"{index:04d}.exr", depth) for index, depth in enumerate(prediction.depth)]
    logger.info("wrote %d EXR depth maps to %s", len(paths), folder)
    return paths


def export_png16(prediction: Prediction, export_dir: PathLike) -> List[Path]:
    """Write ``<export_dir>/depth_png16/0000.png``, ``0001.png``...: each view's depth as a 16-bit grayscale PNG.

    - ``depth_kind == "metric"``: millimetres, ``round(depth * 1000)`` (read back as ``value / 1000`` metres);
      0 means no depth (NaN, inf, <= 0); beyond 65.535 m is clipped to 65535 with a warning.
    - otherwise (depth up to scale, or disparity): min-max normalised over the finite values of all views
      together, so one level means the same in every view: the scene minimum is 0, the maximum 65535.
      A disparity map stays disparity (bright is near); NaN and inf pixels are 0.

    Args:
        prediction: depth (N, H, W) and depth_kind; never modified.
        export_dir: the export folder; created if missing.

    Returns:
        The paths written, one per view.
    """
    folder = Path(export_dir) / PNG16_DIR
    depth = prediction.depth
    paths = []
    if prediction.depth_kind == "metric":
        for index, view in enumerate(depth):
            paths.append(save_png16_metric(folder / f"{index:04d}.png", view, scale=METRIC_SCALE))
    else:
        finite = depth[np.isfinite(depth)]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 0.0
        for index, view in enumerate(depth):
            paths.append(save_png16(folder / f"{index:04d}.png", view, vmin=low, vmax=high))
    logger.info("wrote %d 16-bit PNG depth maps to %s", len(paths), folder)
    return paths
