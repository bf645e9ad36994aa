"""World point clouds from a Prediction: cameras (predicted or fallback), confidence/sky/background filters, colours."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from anydepth.errors import InputError, ShapeError
from anydepth.geometry.cameras import unproject_depth
from anydepth.prediction import SKY_THRESHOLD, Prediction

logger = logging.getLogger(__name__)

DEFAULT_FOV_DEG = 60.0
"""Horizontal field of view of the fallback camera, for models that predict no intrinsics."""

DEFAULT_CONF_THRESH_PERCENTILE = 40.0
"""Upstream DA3's default: pixels below this percentile of confidence are dropped."""

_FALLBACK_COLOR = 128  # grey, when a prediction carries no processed images


@dataclass
class Cameras:
    """The cameras a point cloud was built with.

    Attributes:
        extrinsics: (N, 3, 4) float64 world-to-camera, OpenCV convention (a copy; never the prediction's array).
        intrinsics: (N, 3, 3) float64 pixel intrinsics at the prediction's resolution.
        predicted_poses: False when the identity fallback pose was used for every view.
        predicted_intrinsics: False when intrinsics came from the fallback field of view.
    """

    extrinsics: np.ndarray
    intrinsics: np.ndarray
    predicted_poses: bool
    predicted_intrinsics: bool


@dataclass
class PointCloud:
    """Kept pixels of every view, lifted to the world frame.

    Attributes:
        points: (M, 3) float64 world points (the frame of the extrinsics).
        colors: (M, 3) uint8 RGB from ``processed_images`` (grey where there are none).
        confidence: (M,) float32 confidence of each point (1.0 where the prediction has no ``conf``).
        view_index: (M,) int64 the view each point comes from.
        pixels: (M, 2) int64 ``(u, v)`` = (column, row) of each point in its view, at the prediction's resolution.
        cameras: the cameras used for the lifting.
        image_size: ``(H, W)`` of the depth maps.
    """

    points: np.ndarray
    colors: np.ndarray
    confidence: np.ndarray
    view_index: np.ndarray
    pixels: np.ndarray
    cameras: Cameras
    image_size: Tuple[int, int]

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def take(self, index: np.ndarray) -> PointCloud:
        """The sub-cloud at ``index`` (an integer index array or a boolean mask over the points)."""
        return PointCloud(
            points=self.points[index],
            colors=self.colors[index],
            confidence=self.confidence[index],
            view_index=self.view_index[index],
            pixels=self.pixels[index],
            cameras=self.cameras,
            image_size=self.image_size,
        )


def check_point_cloud_input(prediction: Prediction, what: str) -> None:
    """Raise an InputError when ``prediction`` cannot give a point cloud (relative disparity, bad shapes).

    Args:
        prediction: the prediction to export.
        what: the export format, for the message.
    """
    if prediction.depth_kind == "disparity":
        raise InputError(
            f"{what} export needs depth, but this prediction is relative disparity (no geometry); "
            "use a metric or DA3 model"
        )
    N, H, W = prediction.depth.shape
    for name, shape in (("conf", (N, H, W)), ("sky", (N, H, W)), ("processed_images", (N, H, W, 3))):
        array = getattr(prediction, name)
        if array is not None and tuple(array.shape) != shape:
            raise ShapeError(f"{what} export: prediction.{name} has shape {tuple(array.shape)}, expected {shape}")
    if prediction.extrinsics is not None and tuple(prediction.extrinsics.shape) not in ((N, 3, 4), (N, 4, 4)):
        raise ShapeError(f"{what} export: prediction.extrinsics has shape {prediction.extrinsics.shape}")
    if prediction.intrinsics is not None and tuple(prediction.intrinsics.shape) != (N, 3, 3):
        raise ShapeError(f"{what} export: prediction.intrinsics has shape {prediction.intrinsics.shape}")


def fallback_intrinsics(height: int, width: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Pinhole intrinsics with a horizontal field of view, square pixels, principal point at the image centre.

    Pixel centres are at integers (OpenCV, DA3), so the centre is ``((W - 1) / 2, (H - 1) / 2)``.

    Args:
        height, width: image size in pixels.
        fov_deg: horizontal field of view in degrees, in (0, 180).

    Returns:
        (3, 3) float64.
    """
    if not 0.0 < fov_deg < 180.0:
        raise InputError(f"fov_deg must be in (0, 180), got {fov_deg}")
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
    return np.array(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64
    )


def resolve_cameras(
    prediction: Prediction, intrinsics: Optional[np.ndarray] = None, fov_deg: float = DEFAULT_FOV_DEG
) -> Cameras:
    """The cameras to lift depth with: the predicted ones, else a documented fallback.

    Upstream DA3 fails here for mono/metric models (no cameras). We fall back instead: every view gets the
    identity pose (world = its camera frame, so views of unrelated images overlap at the origin), and intrinsics
    come from ``intrinsics`` if given, else the prediction's, else a ``fov_deg`` horizontal field of view.

    Args:
        prediction: depth (N, H, W) with optional extrinsics (N, 3|4, 4) and intrinsics (N, 3, 3).
        intrinsics: optional (3, 3) or (N, 3, 3) pixel intrinsics that override the prediction's.
        fov_deg: horizontal field of view of the fallback intrinsics.

    Returns:
        Cameras with float64 copies.
    """
    N, H, W = prediction.depth.shape
    if prediction.extrinsics is not None:
        extrinsics = np.array(prediction.extrinsics[:, :3, :4], dtype=np.float64)
    else:
        extrinsics = np.tile(np.eye(3, 4, dtype=np.float64), (N, 1, 1))
    predicted_intrinsics = True
    if intrinsics is not None:
        intrinsics = np.array(intrinsics, dtype=np.float64)
        if intrinsics.shape == (3, 3):
            intrinsics = np.tile(intrinsics, (N, 1, 1))
        if intrinsics.shape != (N, 3, 3):
            raise ShapeError(f"intrinsics must be (3, 3) or ({N}, 3, 3), got {intrinsics.shape}")
    elif prediction.intrinsics is not None:
        intrinsics = np.array(prediction.intrinsics, dtype=np.float64)
    else:
        intrinsics = np.tile(fallback_intrinsics(H, W, fov_deg), (N, 1, 1))
        predicted_intrinsics = False
    if not predicted_intrinsics or prediction.extrinsics is None:
        logger.info(
            "prediction has no %s; using %s",
            "cameras" if prediction.extrinsics is None else "intrinsics",
            f"identity poses and a {fov_deg:g} degree field of view" if not predicted_intrinsics else "identity poses",
        )
    return Cameras(extrinsics, intrinsics, prediction.extrinsics is not None, predicted_intrinsics)


def sky_mask(prediction: Prediction) -> Optional[np.ndarray]:
    """(N, H, W) bool sky mask of a prediction (``Prediction.sky``: the sky score >= 0.5, upstream's threshold)."""
    if prediction.sky is None:
        return None
    sky = np.asarray(prediction.sky)
    return sky if sky.dtype == bool else sky >= SKY_THRESHOLD  # a score put there after construction


def keep_mask(
    prediction: Prediction,
    conf_thresh_percentile: float = DEFAULT_CONF_THRESH_PERCENTILE,
    filter_sky: bool = True,
    filter_black_bg: bool = False,
    filter_white_bg: bool = False,
) -> np.ndarray:
    """Pixels that become points: finite positive depth, not sky, not background, confident enough.

    The confidence threshold is the ``conf_thresh_percentile`` percentile of the confidence over the otherwise
    valid pixels of all views (upstream takes it over the non-sky pixels); pixels with ``conf >= threshold`` stay.

    Args:
        prediction: depth (N, H, W) with optional conf, sky and processed_images.
        conf_thresh_percentile: in [0, 100]; 0 keeps every valid pixel.
        filter_sky: drop sky pixels where the prediction has a sky mask.
        filter_black_bg: drop pixels whose RGB are all < 16 (upstream's black-background rule).
        filter_white_bg: drop pixels whose RGB are all >= 240.

    Returns:
        (N, H, W) bool.
    """
    if not 0.0 <= conf_thresh_percentile <= 100.0:
        raise InputError(f"conf_thresh_percentile must be in [0, 100], got {conf_thresh_percentile}")
    depth = prediction.depth
    keep = np.isfinite(depth) & (depth > 0)
    sky = sky_mask(prediction)
    if filter_sky and sky is not None:
        keep &= ~sky
    images = prediction.processed_images
    if images is not None and filter_black_bg:
        keep &= ~(images < 16).all(axis=-1)
    if images is not None and filter_white_bg:
        keep &= ~(images >= 240).all(axis=-1)
    if prediction.conf is not None and conf_thresh_percentile > 0:
        conf = prediction.conf
        candidates = conf[keep & np.isfinite(conf)]
        if candidates.size:
            keep &= conf >= np.percentile(candidates, conf_thresh_percentile)
    return keep


def build_point_cloud(
    prediction: Prediction,
    conf_thresh_percentile: float = DEFAULT_CONF_THRESH_PERCENTILE,
    filter_sky: bool = True,
    filter_black_bg: bool = False,
    filter_white_bg: bool = False,
    intrinsics: Optional[np.ndarray] = None,
    fov_deg: float = DEFAULT_FOV_DEG,
) -> PointCloud:
    """Lift the kept pixels of every view to world points with their colours.

    Vectorised per view (one unprojection of the whole depth map); the prediction's arrays are only read.

    Args:
        prediction: depth (N, H, W) z-depth, optional conf (N, H, W), sky (N, H, W), processed_images
            (N, H, W, 3) uint8, extrinsics (N, 3, 4) w2c, intrinsics (N, 3, 3).
        conf_thresh_percentile, filter_sky, filter_black_bg, filter_white_bg: see :func:`keep_mask`.
        intrinsics, fov_deg: see :func:`resolve_cameras` (used when the prediction has no cameras).

    Returns:
        The point cloud, M points in view order, row-major pixel order within a view.
    """
    check_point_cloud_input(prediction, "point cloud")
    cameras = resolve_cameras(prediction, intrinsics=intrinsics, fov_deg=fov_deg)
    keep = keep_mask(prediction, conf_thresh_percentile, filter_sky, filter_black_bg, filter_white_bg)
    N, H, W = prediction.depth.shape
    points = []
    for view in range(N):  # one vectorised unprojection per view keeps memory at one depth map
        if not keep[view].any():
            points.append(np.zeros((0, 3)))
            continue
        world = unproject_depth(
            torch.from_numpy(np.asarray(prediction.depth[view], dtype=np.float64)),
            torch.from_numpy(cameras.intrinsics[view]),
            torch.from_numpy(cameras.extrinsics[view]),
        ).numpy()
        points.append(world[keep[view]])
    view_index, rows, cols = np.nonzero(keep)
    if prediction.processed_images is not None:
        colors = np.asarray(prediction.processed_images)[view_index, rows, cols].astype(np.uint8)
    else:
        colors = np.full((len(view_index), 3), _FALLBACK_COLOR, dtype=np.uint8)
    if prediction.conf is not None:
        confidence = np.asarray(prediction.conf)[view_index, rows, cols].astype(np.float32)
    else:
        confidence = np.ones(len(view_index), dtype=np.float32)
    cloud = PointCloud(
        points=np.concatenate(points, axis=0),
        colors=colors,
        confidence=confidence,
        view_index=view_index.astype(np.int64),
        pixels=np.stack((cols, rows), axis=-1).astype(np.int64),
        cameras=cameras,
        image_size=(H, W),
    )
    return cloud.take(np.isfinite(cloud.points).all(axis=1))


def subsample(cloud: PointCloud, num_max_points: Optional[int], seed: int = 0) -> PointCloud:
    """At most ``num_max_points`` points, drawn uniformly without replacement, deterministic for a seed.

    Kept points stay in their original order. ``None`` keeps all.
    """
    if num_max_points is None or len(cloud) <= num_max_points:
        return cloud
    if num_max_points < 0:
        raise InputError(f"num_max_points must be >= 0, got {num_max_points}")
    index = np.random.default_rng(seed).choice(len(cloud), size=int(num_max_points), replace=False)
    return cloud.take(np.sort(index))
