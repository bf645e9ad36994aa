"""The `ply` export: world points with colour and confidence in a binary little-endian `scene.ply`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from anydepth.errors import require
from anydepth.export.pointcloud import (
    DEFAULT_CONF_THRESH_PERCENTILE,
    DEFAULT_FOV_DEG,
    build_point_cloud,
    check_point_cloud_input,
    subsample,
)
from anydepth.io.atomic import PathLike, atomic_open
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)

PLY_PATH = Path("scene.ply")

VERTEX_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("confidence", "<f4")]
)
"""The vertex properties, in file order."""


def export_ply(
    prediction: Prediction,
    export_dir: PathLike,
    num_max_points: Optional[int] = 1_000_000,
    conf_thresh_percentile: float = DEFAULT_CONF_THRESH_PERCENTILE,
    filter_sky: bool = True,
    filter_black_bg: bool = False,
    filter_white_bg: bool = False,
    intrinsics: Optional[np.ndarray] = None,
    fov_deg: float = DEFAULT_FOV_DEG,
    seed: int = 0,
) -> Path:
    """Write ``<export_dir>/scene.ply``: one vertex per kept pixel, in the world frame of the extrinsics.

    Upstream DA3 has no point-cloud PLY (its ``ply`` is only mentioned in a docstring; ``gs_ply`` holds
    Gaussians), so the name and frame are ours: OpenCV world coordinates, not the GLB's glTF frame. Vertex
    properties: ``x, y, z`` float32, ``red, green, blue`` uint8, ``confidence`` float32 (1.0 where the prediction
    has no confidence).

    Args:
        prediction: depth (N, H, W) with optional conf, sky, processed_images, extrinsics, intrinsics.
        export_dir: the export folder; created if missing.
        num_max_points: at most this many vertices (``None``: all).
        conf_thresh_percentile, filter_sky, filter_black_bg, filter_white_bg: pixel filters, see
            :func:`~anydepth.export.pointcloud.keep_mask`.
        intrinsics, fov_deg: cameras for predictions without them.
        seed: seed of the subsampling.

    Returns:
        The path written.
    """
    plyfile = require("plyfile", "export")
    check_point_cloud_input(prediction, "ply")
    cloud = build_point_cloud(
        prediction, conf_thresh_percentile, filter_sky, filter_black_bg, filter_white_bg, intrinsics, fov_deg
    )
    cloud = subsample(cloud, num_max_points, seed=seed)
    vertices = np.empty(len(cloud), dtype=VERTEX_DTYPE)
    for axis, name in enumerate("xyz"):
        vertices[name] = cloud.points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = cloud.colors[:, channel]
    vertices["confidence"] = cloud.confidence
    data = plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
    path = Path(export_dir) / PLY_PATH
    with atomic_open(path, "wb") as handle:
        data.write(handle)
    logger.info("wrote %s: %d points", path, len(vertices))
    return path
