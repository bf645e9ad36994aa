"""A point cloud fused from many frames in bounded memory: a voxel grid of running sums, written as PLY and GLB."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from anydepth.errors import InputError, require
from anydepth.io.atomic import PathLike, atomic_open

logger = logging.getLogger(__name__)

_BITS = 21  # per axis in the packed key: 2^20 voxels either side of the first points' median
_HALF = 1 << (_BITS - 1)


class VoxelCloud:
    """Points added chunk by chunk, kept as one centroid and mean colour per occupied voxel.

    Memory grows with the occupied voxels, not with the frames: a long video of one place stays the size of that
    place. Each voxel's centroid and colour are exact running means of the points that fell into it, in any order.
    Voxels are keyed by one packed integer (fast to sort): the grid reaches 2^20 voxels either side of the median of
    the first points added, and points beyond are left out with a warning (a voxel of 1% of the depth reaches ten
    thousand depths away).

    Args:
        voxel_size: the voxel edge, in the points' units.

    Example:
        >>> cloud = VoxelCloud(1.0)
        >>> cloud.add(np.array([[0.1, 0.1, 0.1], [0.3, 0.3, 0.3], [5.0, 0.0, 0.0]]), np.zeros((3, 3), np.uint8))
        >>> len(cloud), [round(float(v), 3) for v in cloud.points()[0]]
        (2, [0.2, 0.2, 0.2])
    """

    def __init__(self, voxel_size: float) -> None:
        if not voxel_size > 0:
            raise InputError(f"voxel size must be positive, got {voxel_size}")
        self.voxel_size = float(voxel_size)
        self._keys = np.zeros(0, np.int64)
        self._sums = np.zeros((0, 3), np.float64)
        self._colors = np.zeros((0, 3), np.float64)
        self._counts = np.zeros(0, np.int64)
        self._origin: np.ndarray = np.zeros(3, np.int64)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, points: np.ndarray, colors: np.ndarray) -> None:
        """Add (M, 3) points with (M, 3) uint8 colours (non-finite points are skipped)."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        colors = np.asarray(colors).reshape(-1, 3)
        finite = np.isfinite(points).all(axis=1)
        points, colors = points[finite], colors[finite]
        if not len(points):
            return
        cells = np.floor(points / self.voxel_size).astype(np.int64)
        if not len(self._keys):
            self._origin = np.median(cells, axis=0).astype(np.int64) - _HALF
        cells -= self._origin
        inside = ((cells >= 0) & (cells < (1 << _BITS))).all(axis=1)
        if not inside.all():
            logger.warning("%d point(s) beyond %d voxels from the cloud's centre left out", int((~inside).sum()), _HALF)
            cells, points, colors = cells[inside], points[inside], colors[inside]
        keys = (cells[:, 0] << (2 * _BITS)) | (cells[:, 1] << _BITS) | cells[:, 2]
        unique, inverse = np.unique(np.concatenate((self._keys, keys)), return_inverse=True)
        inverse = inverse.reshape(-1)
        weights = np.concatenate((self._counts, np.ones(len(keys), np.int64)))
        values = np.concatenate((np.concatenate((self._sums, self._colors), axis=1),
                                 np.concatenate((points, colors.astype(np.float64)), axis=1)))  # fmt: skip
        sums = np.stack([np.bincount(inverse, values[:, c], len(unique)) for c in range(6)], axis=1)
        self._keys, self._sums, self._colors = unique, sums[:, :3], sums[:, 3:]
        self._counts = np.bincount(inverse, weights, len(unique)).astype(np.int64)

    def points(self) -> np.ndarray:
        """(V, 3) float32 voxel centroids."""
        return (self._sums / np.maximum(self._counts, 1)[:, None]).astype(np.float32)

    def colors(self) -> np.ndarray:
        """(V, 3) uint8 mean colours."""
        return np.clip(self._colors / np.maximum(self._counts, 1)[:, None] + 0.5, 0, 255).astype(np.uint8)

    def write_ply(self, path: PathLike) -> Path:
        """Binary little-endian PLY with x, y, z (float32) and red, green, blue (uint8)."""
        plyfile = require("plyfile", "export")
        vertices = np.empty(len(self), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                              ("green", "u1"), ("blue", "u1")])  # fmt: skip
        points, colors = self.points(), self.colors()
        for axis, name in enumerate("xyz"):
            vertices[name] = points[:, axis]
        for channel, name in enumerate(("red", "green", "blue")):
            vertices[name] = colors[:, channel]
        data = plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
        with atomic_open(path, "wb") as handle:
            data.write(handle)
        return Path(path)

    def write_glb(self, path: PathLike) -> Path:
        """A GLB holding the cloud (as a glTF point primitive) in the points' own frame and axes."""
        trimesh = require("trimesh", "export")
        scene = trimesh.Scene(trimesh.PointCloud(self.points(), colors=self.colors()))
        data = scene.export(file_type="glb")
        with atomic_open(path, "wb") as handle:
            handle.write(data)
        return Path(path)
