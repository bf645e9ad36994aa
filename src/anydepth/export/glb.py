"""The `glb` export: coloured world points and camera frusta in one `scene.glb`, in upstream DA3's glTF frame."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from anydepth.errors import InputError, require
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

GLB_PATH = Path("scene.glb")
# the scene thumbnail upstream writes beside scene.glb: a copy of depth_vis/0000.jpg
THUMBNAIL_PATH = Path("scene.jpg")

# OpenCV camera (x right, y down, z forward) -> glTF (x right, y up, z backward)
_CV_TO_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])


def _homogeneous(extrinsic: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :4] = extrinsic[:3, :4]
    return matrix


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(4, 4) transform applied to (..., 3) points."""
    return points @ transform[:3, :3].T + transform[:3, 3]


def gltf_alignment(first_extrinsic: np.ndarray, world_points: np.ndarray) -> np.ndarray:
    """The transform upstream DA3 applies before writing a GLB.

    World points go into the first camera's frame (its w2c), then OpenCV axes become glTF axes (flip y and z),
    then the median of the transformed points moves to the origin.

    Args:
        first_extrinsic: (3, 4) or (4, 4) world-to-camera of view 0.
        world_points: (M, 3) world points (may be empty: no centring then).

    Returns:
        (4, 4) float64 ``A`` with ``x_glb = A @ [x_world; 1]``.
    """
    align = _CV_TO_GLTF @ _homogeneous(np.asarray(first_extrinsic, dtype=np.float64))
    if len(world_points):
        center = np.median(_apply(align, world_points), axis=0)
        shift = np.eye(4)
        shift[:3, 3] = -center
        align = shift @ align
    return align


def scene_scale(points: np.ndarray, fallback: float = 1.0) -> float:
    """Length of the diagonal of the 5-95 percentile box of ``points`` (M, 3); ``fallback`` if degenerate."""
    if len(points) < 2:
        return fallback
    diagonal = float(np.linalg.norm(np.percentile(points, 95, axis=0) - np.percentile(points, 5, axis=0)))
    return diagonal if np.isfinite(diagonal) and diagonal > 0 else fallback


def frustum_segments(
    intrinsics: np.ndarray, extrinsics: np.ndarray, height: int, width: int, size: float
) -> np.ndarray:
    """Wireframe pyramids of cameras: apex at the camera centre, base at depth ``size`` through the image corners.

    Args:
        intrinsics: (N, 3, 3) pixel intrinsics.
        extrinsics: (N, 3, 4) world-to-camera.
        height, width: image size in pixels (corners at pixel centres 0 and W-1 / H-1, as upstream).
        size: depth of the base in world units.

    Returns:
        (N, 8, 2, 3) float64 world segments: 4 apex-to-corner edges, then the 4 base edges.
    """
    corners = np.array([[0.0, 0.0, 1.0], [width - 1, 0.0, 1.0], [width - 1, height - 1, 1.0], [0.0, height - 1, 1.0]])
    rays = np.einsum("nij,kj->nki", np.linalg.inv(intrinsics), corners)  # (N, 4, 3)
    base_cam = rays / rays[..., 2:3] * size
    rotation, translation = extrinsics[:, :3, :3], extrinsics[:, :3, 3]
    # x_world = R^T (x_cam - t)
    base = np.einsum("nji,nkj->nki", rotation, base_cam - translation[:, None, :])
    apex = np.einsum("nji,nj->ni", rotation, -translation)  # (N, 3)
    apex_edges = np.stack((np.broadcast_to(apex[:, None], base.shape), base), axis=2)  # (N, 4, 2, 3)
    base_edges = np.stack((base, np.roll(base, -1, axis=1)), axis=2)
    return np.concatenate((apex_edges, base_edges), axis=1)


def _camera_color(index: int, count: int) -> np.ndarray:
    """RGBA uint8 colour of camera ``index`` of ``count``: hues spread around the wheel."""
    import colorsys

    red, green, blue = colorsys.hsv_to_rgb((index + 0.5) / max(count, 1), 0.85, 0.95)
    return (np.array([red, green, blue, 1.0]) * 255).astype(np.uint8)


def export_glb(
    prediction: Prediction,
    export_dir: PathLike,
    num_max_points: int = 1_000_000,
    conf_thresh_percentile: float = DEFAULT_CONF_THRESH_PERCENTILE,
    filter_sky: bool = True,
    filter_black_bg: bool = False,
    filter_white_bg: bool = False,
    show_cameras: bool = True,
    camera_size: float = 0.03,
    intrinsics: Optional[np.ndarray] = None,
    fov_deg: float = DEFAULT_FOV_DEG,
    seed: int = 0,
    export_depth_vis: bool = True,
) -> Path:
    """Write ``<export_dir>/scene.glb``: a coloured point cloud plus one wireframe frustum per camera; and, as
    upstream by default, ``depth_vis/0000.jpg``... with ``scene.jpg`` (a copy of the first, the scene's thumbnail).

    As upstream: points are aligned to the first camera, converted to glTF axes (x right, y up, z backward) and
    centred on their median (see :func:`gltf_alignment`); frusta go through the same transform and their size is
    ``camera_size`` times the scene's 5-95 percentile diagonal. Unlike upstream, sky pixels are dropped (upstream
    looks for a ``sky_mask`` attribute that its Prediction does not have, so its sky handling never runs), the
    subsampling is seeded, the prediction is never modified, and predictions without cameras use the fallback of
    :func:`~anydepth.export.pointcloud.resolve_cameras` instead of failing.

    Args:
        prediction: depth (N, H, W) with conf, sky, processed_images, extrinsics (N, 3, 4) w2c, intrinsics.
        export_dir: the export folder; created if missing.
        num_max_points: at most this many points in the file.
        conf_thresh_percentile, filter_sky, filter_black_bg, filter_white_bg: pixel filters, see
            :func:`~anydepth.export.pointcloud.keep_mask`.
        show_cameras: draw the camera frusta.
        camera_size: frustum depth as a fraction of the scene size.
        intrinsics, fov_deg: cameras for predictions without them.
        seed: seed of the subsampling.
        export_depth_vis: also write the depth visualisations and ``scene.jpg`` (upstream's option; skipped for
            a prediction without processed images).

    Returns:
        The path of ``scene.glb``.
    """
    trimesh = require("trimesh", "export")
    from trimesh.path.entities import Line

    check_point_cloud_input(prediction, "glb")
    cloud = build_point_cloud(
        prediction, conf_thresh_percentile, filter_sky, filter_black_bg, filter_white_bg, intrinsics, fov_deg
    )
    cameras = cloud.cameras
    align = gltf_alignment(cameras.extrinsics[0], cloud.points)
    cloud = subsample(cloud, num_max_points, seed=seed)
    points = _apply(align, cloud.points)

    if not len(points) and not show_cameras:
        raise InputError("glb export: no pixel survives the depth, sky and confidence filters, and show_cameras is off")
    scene = trimesh.Scene()
    scene.metadata["hf_alignment"] = align  # as upstream, for tools that place more geometry in the same frame
    if len(points):
        alpha = np.full((len(points), 1), 255, dtype=np.uint8)
        scene.add_geometry(
            trimesh.points.PointCloud(points.astype(np.float32), colors=np.concatenate((cloud.colors, alpha), 1)),
            geom_name="points",
        )
    if show_cameras:
        H, W = cloud.image_size
        size = scene_scale(points) * camera_size
        segments = _apply(align, frustum_segments(cameras.intrinsics, cameras.extrinsics, H, W, size))
        count = len(segments)
        for index in range(count):  # one small path per camera (8 segments)
            scene.add_geometry(
                trimesh.path.Path3D(
                    entities=[Line([2 * k, 2 * k + 1]) for k in range(8)],
                    vertices=segments[index].reshape(-1, 3),
                    colors=np.tile(_camera_color(index, count), (8, 1)),
                ),
                geom_name=f"camera_{index:04d}",
            )
    data = scene.export(file_type="glb")
    path = Path(export_dir) / GLB_PATH
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    logger.info("wrote %s: %d points, %d cameras", path, len(points), len(cameras.extrinsics) if show_cameras else 0)
    if export_depth_vis and prediction.processed_images is not None:
        from anydepth.export.depth_vis import export_depth_vis as write_depth_vis

        first = write_depth_vis(prediction, export_dir)[0]
        with atomic_open(Path(export_dir) / THUMBNAIL_PATH, "wb") as handle:
            handle.write(first.read_bytes())
    return path
