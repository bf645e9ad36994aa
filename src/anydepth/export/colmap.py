"""The `colmap` export: a COLMAP binary model with multi-view tracks, at the original image size."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from anydepth.errors import InputError, ShapeError, require
from anydepth.export.pointcloud import (
    DEFAULT_CONF_THRESH_PERCENTILE,
    PointCloud,
    build_point_cloud,
    check_point_cloud_input,
)
from anydepth.geometry.cameras import project_points
from anydepth.io.atomic import PathLike, atomic_path
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)

MODEL_FILES = ("cameras.bin", "images.bin", "points3D.bin")
"""The files of a COLMAP binary model; pycolmap >= 3.12 adds ``rigs.bin`` and ``frames.bin`` beside them."""

DEFAULT_DEPTH_TOLERANCE = 0.05
"""A point is observed in a view where its depth agrees with that view's depth map within this fraction."""

_PINHOLE = 1  # COLMAP camera model id of PINHOLE (fx, fy, cx, cy)

# COLMAP's binary records, packed little-endian (numpy structured dtypes are packed unless align=True)
_CAMERA = np.dtype(
    [("camera_id", "<i4"), ("model_id", "<i4"), ("width", "<u8"), ("height", "<u8"), ("params", "<f8", (4,))]
)
_IMAGE_HEAD = np.dtype([("image_id", "<i4"), ("qvec", "<f8", (4,)), ("tvec", "<f8", (3,)), ("camera_id", "<i4")])
_POINT2D = np.dtype([("xy", "<f8", (2,)), ("point3D_id", "<i8")])
_TRACK_ELEMENT = np.dtype([("image_id", "<i4"), ("point2D_idx", "<i4")])


def _point3d_dtype(track_length: int) -> np.dtype:
    return np.dtype(
        [
            ("point3D_id", "<u8"),
            ("xyz", "<f8", (3,)),
            ("rgb", "u1", (3,)),
            ("error", "<f8"),
            ("track_length", "<u8"),
            ("track", _TRACK_ELEMENT, (track_length,)),
        ]
    )


def colmap_intrinsics(
    intrinsics: np.ndarray, processed_size: Tuple[int, int], original_sizes: np.ndarray
) -> np.ndarray:
    """Rescale pixel intrinsics from the processed resolution to the original one, in COLMAP's pixel convention.

    Our intrinsics put pixel centres at integers (OpenCV); COLMAP puts the image's top-left corner at 0, so pixel
    centres at ``i + 0.5``. With per-axis scales ``s = original / processed`` the principal point becomes
    ``(c + 0.5) * s`` and focal lengths ``f * s``. Works on a copy.

    Args:
        intrinsics: (N, 3, 3) at the processed resolution.
        processed_size: ``(h, w)`` of the depth maps.
        original_sizes: (N, 2) ``(height, width)`` of the original images.

    Returns:
        (N, 3, 3) float64 new array.
    """
    h, w = processed_size
    scale_x = original_sizes[:, 1] / float(w)
    scale_y = original_sizes[:, 0] / float(h)
    result = np.array(intrinsics, dtype=np.float64)
    result[:, 0, 0] *= scale_x
    result[:, 1, 1] *= scale_y
    result[:, 0, 2] = (result[:, 0, 2] + 0.5) * scale_x
    result[:, 1, 2] = (result[:, 1, 2] + 0.5) * scale_y
    return result


def observations(
    cloud: PointCloud, depth: np.ndarray, depth_tolerance: float = DEFAULT_DEPTH_TOLERANCE
) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Which points each view sees: they project inside it and agree with its depth map.

    A point is observed in view ``j`` when its projection rounds to a pixel of the image, it lies in front of the
    camera, and ``|z - depth_j(pixel)| <= depth_tolerance * depth_j(pixel)``. Every point is observed in its own
    view. Vectorised over points (one projection per view).

    Args:
        cloud: M points with their cameras at the processed resolution.
        depth: (N, H, W) the depth maps the points came from.
        depth_tolerance: relative depth agreement.

    Returns:
        For each view, ``(point_index (K,) int64 increasing, pixels (K, 2) float64 (u, v))`` at the processed
        resolution, pixel centres at integers.
    """
    N, H, W = depth.shape
    points = torch.from_numpy(cloud.points)
    result = []
    for view in range(N):
        pixels, z = project_points(
            points,
            torch.from_numpy(cloud.cameras.intrinsics[view]),
            torch.from_numpy(cloud.cameras.extrinsics[view]),
            eps=1e-12,
        )
        pixels, z = pixels.numpy(), z.numpy()
        with np.errstate(invalid="ignore"):
            col, row = np.rint(pixels[:, 0]), np.rint(pixels[:, 1])
            inside = (z > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
        row_i = np.where(inside, row, 0).astype(np.int64)
        col_i = np.where(inside, col, 0).astype(np.int64)
        seen_depth = depth[view][row_i, col_i].astype(np.float64)
        with np.errstate(invalid="ignore"):
            seen = inside & (seen_depth > 0) & (np.abs(z - seen_depth) <= depth_tolerance * seen_depth)
        seen |= cloud.view_index == view
        index = np.flatnonzero(seen)
        result.append((index, pixels[index]))
    return result


def _orthonormal(rotation: np.ndarray) -> np.ndarray:
    """Nearest rotation matrices of (N, 3, 3) matrices (polar decomposition)."""
    u, _, vt = np.linalg.svd(rotation)
    nearest = u @ vt
    flip = np.linalg.det(nearest) < 0
    u[flip, :, -1] *= -1
    return np.where(flip[:, None, None], u @ vt, nearest)


def _quaternions_wxyz(rotation: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions (w, x, y, z) of (N, 3, 3) rotations, w >= 0."""
    pycolmap = require("pycolmap", "export")
    xyzw = np.stack([np.asarray(pycolmap.Rotation3d(r).quat, dtype=np.float64) for r in rotation])  # per view
    wxyz = np.concatenate((xyzw[:, 3:], xyzw[:, :3]), axis=1)
    wxyz /= np.linalg.norm(wxyz, axis=1, keepdims=True)
    return np.where(wxyz[:, :1] < 0, -wxyz, wxyz)


def model_bytes(
    cloud: PointCloud,
    views: List[Tuple[np.ndarray, np.ndarray]],
    original_sizes: np.ndarray,
    image_names: Sequence[str],
) -> Dict[str, bytes]:
    """Encode cameras.bin, images.bin and points3D.bin (COLMAP's binary format), vectorised over points.

    Camera and image ids are ``view + 1`` (one PINHOLE camera per image, as upstream); point ids are
    ``index + 1``; observation ``k`` of view ``j`` is its ``k``-th 2D point.

    Args:
        cloud: M world points, colours and cameras at the processed resolution.
        views: per view ``(point_index, pixels)`` from :func:`observations`.
        original_sizes: (N, 2) ``(height, width)``.
        image_names: N image names.

    Returns:
        File name -> bytes.
    """
    N = len(views)
    H, W = cloud.image_size
    scale = np.stack((original_sizes[:, 1] / float(W), original_sizes[:, 0] / float(H)), axis=1)  # (N, 2) x, y
    intrinsics = colmap_intrinsics(cloud.cameras.intrinsics, cloud.image_size, original_sizes)

    cameras = np.zeros(N, dtype=_CAMERA)
    cameras["camera_id"] = np.arange(1, N + 1)
    cameras["model_id"] = _PINHOLE
    cameras["width"], cameras["height"] = original_sizes[:, 1], original_sizes[:, 0]
    cameras["params"] = np.stack(
        (intrinsics[:, 0, 0], intrinsics[:, 1, 1], intrinsics[:, 0, 2], intrinsics[:, 1, 2]), axis=1
    )

    rotation = _orthonormal(cloud.cameras.extrinsics[:, :3, :3])
    heads = np.zeros(N, dtype=_IMAGE_HEAD)
    heads["image_id"] = heads["camera_id"] = np.arange(1, N + 1)
    heads["qvec"] = _quaternions_wxyz(rotation)
    heads["tvec"] = cloud.cameras.extrinsics[:, :3, 3]
    image_chunks = [np.uint64(N).tobytes()]
    for view, (index, pixels) in enumerate(views):
        points2d = np.empty(len(index), dtype=_POINT2D)
        points2d["xy"] = (pixels + 0.5) * scale[view]  # COLMAP's pixel centres are at i + 0.5
        points2d["point3D_id"] = index + 1
        name = image_names[view].encode("utf-8") + b"\0"
        image_chunks += [heads[view : view + 1].tobytes(), name, np.uint64(len(index)).tobytes(), points2d.tobytes()]

    # tracks: every (point, view, 2D index) triple, sorted by point then view
    view_of = np.concatenate([np.full(len(index), view + 1, dtype=np.int32) for view, (index, _) in enumerate(views)])
    point_of = np.concatenate([index for index, _ in views]) if views else np.zeros(0, dtype=np.int64)
    slot_of = np.concatenate([np.arange(len(index), dtype=np.int32) for index, _ in views])
    order = np.lexsort((view_of, point_of))
    elements = np.empty(len(order), dtype=_TRACK_ELEMENT)
    elements["image_id"], elements["point2D_idx"] = view_of[order], slot_of[order]
    M = len(cloud)
    track_length = np.bincount(point_of, minlength=M)
    starts = np.cumsum(track_length) - track_length
    point_chunks = [np.uint64(M).tobytes()]
    for length in np.unique(track_length):  # one packed record type per track length (at most N of them)
        members = np.flatnonzero(track_length == length)
        records = np.empty(len(members), dtype=_point3d_dtype(int(length)))
        records["point3D_id"] = members + 1
        records["xyz"] = cloud.points[members]
        records["rgb"] = cloud.colors[members]
        records["error"] = -1.0  # unknown; pycolmap fills it in below
        records["track_length"] = length
        records["track"] = elements[starts[members][:, None] + np.arange(length)]
        point_chunks.append(records.tobytes())
    return {
        "cameras.bin": np.uint64(N).tobytes() + cameras.tobytes(),
        "images.bin": b"".join(image_chunks),
        "points3D.bin": b"".join(point_chunks),
    }


def _original_sizes(
    prediction: Prediction, image_sizes: Optional[Sequence[Tuple[int, int]]], image_paths: Optional[Sequence[str]]
) -> np.ndarray:
    N, H, W = prediction.depth.shape
    if image_sizes is None and image_paths is not None:
        from PIL import Image

        sizes = []
        for path in image_paths:  # header reads only
            with Image.open(path) as image:
                sizes.append((image.height, image.width))
        image_sizes = sizes
    if image_sizes is None:
        return np.tile(np.array([H, W], dtype=np.int64), (N, 1))
    sizes = np.array(image_sizes, dtype=np.int64).reshape(-1, 2) if len(image_sizes) else np.zeros((0, 2), np.int64)
    if sizes.shape != (N, 2) or (sizes <= 0).any():
        raise ShapeError(f"image_sizes must be {N} positive (height, width) pairs, got {np.asarray(image_sizes)!r}")
    return sizes


def export_colmap(
    prediction: Prediction,
    export_dir: PathLike,
    image_paths: Optional[Sequence[str]] = None,
    image_sizes: Optional[Sequence[Tuple[int, int]]] = None,
    image_names: Optional[Sequence[str]] = None,
    conf_thresh_percentile: float = DEFAULT_CONF_THRESH_PERCENTILE,
    filter_sky: bool = True,
    filter_black_bg: bool = False,
    filter_white_bg: bool = False,
    depth_tolerance: float = DEFAULT_DEPTH_TOLERANCE,
) -> List[Path]:
    """Write a COLMAP binary model (cameras.bin, images.bin, points3D.bin, rigs.bin, frames.bin) in ``export_dir``.

    Layout as upstream DA3 (``pycolmap.Reconstruction.write(export_dir)``: the model files sit directly in the
    export folder). One PINHOLE camera per image at the ORIGINAL image size (intrinsics rescaled on a copy; the
    prediction is never modified). One 3D point per kept pixel (confidence percentile, sky and background
    filters as the other point exports, no subsampling, as upstream), observed in every view where it projects
    consistently (see :func:`observations`), not only in its source view. The files are encoded with numpy,
    then read, given their reprojection errors and written again by pycolmap, so they are in the format the
    installed pycolmap reads; each file is renamed into place only when all are ready.

    Args:
        prediction: depth (N, H, W), extrinsics (N, 3, 4) w2c, intrinsics (N, 3, 3), optional conf, sky,
            processed_images. A single view without cameras uses the identity pose and a default field of view.
        export_dir: the export folder; created if missing.
        image_paths: the input images: names (base names) and original sizes come from them.
        image_sizes: N original ``(height, width)``; default: the sizes of ``image_paths``, else the depth size.
        image_names: N image names; default: base names of ``image_paths``, else ``0000.png``, ``0001.png``...
        conf_thresh_percentile, filter_sky, filter_black_bg, filter_white_bg: pixel filters, see
            :func:`~anydepth.export.pointcloud.keep_mask`.
        depth_tolerance: relative depth agreement for an observation in another view.

    Returns:
        The paths written.
    """
    pycolmap = require("pycolmap", "export")
    check_point_cloud_input(prediction, "colmap")
    N = len(prediction)
    if prediction.extrinsics is None and N > 1:
        raise InputError(
            "colmap export of several views needs camera poses; this model predicts none (use a DA3 any-view model)"
        )
    if image_names is None:
        image_names = [os.path.basename(str(p)) for p in image_paths] if image_paths else None
    if image_names is None:
        image_names = [f"{i:04d}.png" for i in range(N)]
    if len(image_names) != N:
        raise ShapeError(f"colmap export: {len(image_names)} image names for {N} views")
    sizes = _original_sizes(prediction, image_sizes, image_paths)

    cloud = build_point_cloud(prediction, conf_thresh_percentile, filter_sky, filter_black_bg, filter_white_bg)
    views = observations(cloud, np.asarray(prediction.depth), depth_tolerance)
    files = model_bytes(cloud, views, sizes, image_names)

    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".colmap.tmp-", dir=export_dir))
    try:
        encoded, written = scratch / "encoded", scratch / "model"
        encoded.mkdir()
        written.mkdir()
        for name, data in files.items():
            (encoded / name).write_bytes(data)
        reconstruction = pycolmap.Reconstruction(str(encoded))
        reconstruction.update_point_3d_errors()
        reconstruction.write(str(written))
        paths = []
        for name in sorted(os.listdir(written)):
            with atomic_path(export_dir / name) as temp:
                os.replace(written / name, temp)
            paths.append(export_dir / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info(
        "wrote a COLMAP model in %s: %d images, %d points, %d observations",
        export_dir,
        N,
        len(cloud),
        sum(len(index) for index, _ in views),
    )
    return paths
