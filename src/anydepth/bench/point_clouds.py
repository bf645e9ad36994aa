"""Point clouds for reconstruction scoring: reading reference geometry, sampling meshes, voxel downsampling.

Upstream DA3's evaluator does these with Open3D (``read_triangle_mesh``, ``sample_points_uniformly``,
``voxel_down_sample``); they are written here in NumPy so that both fusions score against the same ground truth, the
same way, with or without Open3D:

- :func:`sample_mesh` draws points uniformly by area, as ``sample_points_uniformly`` does (a triangle chosen with
  probability proportional to its area, then barycentric weights ``(1 - sqrt(r1), sqrt(r1) (1 - r2), sqrt(r1) r2)``),
  but from a seeded generator over the triangles in a canonical order, so that the same surface gives the same
  points on every run (Open3D's sampler draws from an unseeded global generator);
- :func:`voxel_downsample` keeps the mean of the points of each voxel, on Open3D's grid (voxel ``floor((p - (min -
  voxel / 2)) / voxel)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from anydepth.errors import InputError, require

PLY_LAYOUT = "a binary or ASCII .ply with a vertex element (x, y, z) and, for a mesh, a face element (vertex_indices)"


@dataclass(frozen=True)
class Geometry:
    """A point cloud (``triangles`` None) or a triangle mesh.

    Attributes:
        vertices: (V, 3) float64 points.
        triangles: (T, 3) int64 vertex indices, or None for a point cloud.
    """

    vertices: np.ndarray
    triangles: Optional[np.ndarray] = None

    @property
    def is_mesh(self) -> bool:
        return self.triangles is not None and len(self.triangles) > 0


def read_ply(path: Union[str, Path]) -> Geometry:
    """The vertices, and the faces (fan-triangulated) where there are any, of a ``.ply`` file (plyfile).

    A missing or unreadable file, or one without x, y, z vertices, is one :class:`InputError` naming it.
    """
    plyfile = require("plyfile", "bench")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such reference geometry (expected {PLY_LAYOUT})")
    try:
        ply = plyfile.PlyData.read(str(path))
        vertex = ply["vertex"]
        vertices = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1).astype(np.float64)
    except (KeyError, ValueError, OSError, plyfile.PlyParseError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); expected {PLY_LAYOUT}") from None
    names = [e.name for e in ply.elements]
    if "face" not in names or ply["face"].count == 0:
        return Geometry(vertices)
    face = ply["face"]
    prop = next((p.name for p in face.properties if p.name in ("vertex_indices", "vertex_index")), None)
    if prop is None:
        raise InputError(f"{path}: a face element without vertex_indices; expected {PLY_LAYOUT}")
    polygons = face[prop]
    triangles = [np.asarray(f, np.int64) for f in polygons]
    # fans of polygons with more than three corners, (0, k, k + 1) for each k
    fans = [np.stack([np.full(len(f) - 2, f[0]), f[1:-1], f[2:]], axis=1) for f in triangles if len(f) >= 3]
    tri = np.concatenate(fans, axis=0) if fans else np.zeros((0, 3), np.int64)
    if len(tri) and (tri.min() < 0 or tri.max() >= len(vertices)):
        raise InputError(f"{path}: faces index vertices that do not exist ({len(vertices)} vertices)")
    return Geometry(vertices, tri)


def sample_mesh(vertices: np.ndarray, triangles: np.ndarray, count: int, seed: int = 42) -> np.ndarray:
    """(count, 3) points drawn uniformly by area from a triangle mesh, deterministically (module docstring).

    Example:
        >>> square = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
        >>> pts = sample_mesh(square, np.array([[0, 1, 2], [0, 2, 3]]), 1000)
        >>> pts.shape, bool(np.all((pts >= 0) & (pts <= 1))), bool(np.all(pts[:, 2] == 0))
        ((1000, 3), True, True)
    """
    tri = np.asarray(vertices, np.float64)[np.asarray(triangles, np.int64)]  # (T, 3, 3)
    if len(tri) == 0 or count <= 0:
        return np.zeros((0, 3))
    # the triangles in the order of their corners' coordinates: a mesh written in another order samples the same
    tri = tri[np.lexsort(tri.reshape(len(tri), 9).T[::-1])]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    cumulative = np.cumsum(areas)
    if cumulative[-1] <= 0:
        return np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    chosen = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    chosen = np.minimum(chosen, len(tri) - 1)
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    weights = np.stack([1.0 - r1, r1 * (1.0 - r2), r1 * r2], axis=1)  # (count, 3)
    return np.einsum("nk,nkc->nc", weights, tri[chosen])


def geometry_points(geometry: Geometry, sampling_number: int, seed: int = 42) -> np.ndarray:
    """A mesh's ``sampling_number`` points (:func:`sample_mesh`), or a point cloud's own points."""
    if geometry.is_mesh:
        return sample_mesh(geometry.vertices, geometry.triangles, sampling_number, seed)
    return geometry.vertices


def voxel_downsample(points: np.ndarray, voxel: Optional[float]) -> np.ndarray:
    """(M, 3) means of the points of each occupied voxel, on Open3D's grid; ``voxel`` None or <= 0 keeps them all.

    Example:
        >>> voxel_downsample(np.array([[0.0, 0, 0], [0.02, 0, 0], [1.0, 0, 0]]), 0.1).tolist()
        [[0.01, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if len(points) == 0 or voxel is None or voxel <= 0:
        return points
    keys = np.floor((points - (points.min(axis=0) - voxel / 2)) / voxel).astype(np.int64)
    extent = keys.max(axis=0) + 1
    if np.prod(extent.astype(np.float64)) < 2.0**62:
        # one int64 per voxel, x most significant: the same order as unique rows, and a 1-D sort (far faster)
        packed = (keys[:, 0] * extent[1] + keys[:, 1]) * extent[2] + keys[:, 2]
        _, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    else:
        _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.stack([np.bincount(inverse, points[:, axis], len(counts)) for axis in range(3)], axis=1)
    return sums / counts[:, None]


def crop_to_box(points: np.ndarray, reference: np.ndarray, margin: float) -> np.ndarray:
    """The points inside the axis-aligned box of ``reference`` grown by ``margin`` on every side (ScanNet++)."""
    if len(points) == 0 or len(reference) == 0:
        return points
    low, high = reference.min(axis=0) - margin, reference.max(axis=0) + margin
    return points[np.all((points >= low) & (points <= high), axis=1)]


__all__ = ["Geometry", "crop_to_box", "geometry_points", "read_ply", "sample_mesh", "voxel_downsample"]
