"""DTU's reconstruction protocol in millimetres: upstream DA3's fusion of DTU depth maps and the standard DTU MVS
evaluation (observation mask, ground plane, outlier distance) that it runs.

Fusion (upstream ``bench/datasets/dtu.py``, ``fuse3d``):

- posed (ground-truth cameras): consistency fusion. Every valid pixel of a reference view is projected into every
  view (itself included), where the view's own world point is read bilinearly (zero outside the image, as
  ``grid_sample`` with ``align_corners=True`` and zero padding); a view agrees when that point is within
  ``dist_thresh`` (``DTU_DIST_THRESH`` = 0.2 mm) of the reference's. A pixel with at least ``num_consist``
  (``DTU_NUM_CONSIST`` = 4) agreeing views gives the mean of the agreeing points;
- unposed (predicted cameras, carried by the Sim(3)): every pixel with depth above 0.001 mm, back-projected;
- at most ``max_points`` (``DTU_MAX_POINTS`` = 4,000,000) points, a seeded choice (42) where there are more.

Evaluation (``_evaluate_reconstruction``, after the DTU MVS evaluation):

1. the predicted cloud is shuffled (``default_rng(42)``) and thinned greedily: each point still kept removes the
   others within ``down_dense`` (``DTU_DOWN_DENSE`` = 0.2 mm);
2. points inside the bounding box ``BB`` grown by ``patch_size`` below and ``2 * patch_size`` above
   (``DTU_PATCH_SIZE`` = 60) are ``data_in``; those whose voxel ``round((p - BB[0]) / Res)`` is set in ``ObsMask``
   are ``data_in_obs``;
3. accuracy = the mean distance of ``data_in_obs`` to the nearest ground-truth (STL) point, over the distances below
   ``max_dist`` (``DTU_MAX_DIST`` = 20 mm: larger ones are left out, not clipped);
4. completeness = the mean distance of the ground-truth points above the plane ``P`` (``P . [x, 1] > 0``) to the
   nearest point of ``data_in``, over the distances below ``max_dist``; overall = their mean.

Upstream's ``eval3d`` labels the data-to-STL mean "comp" and the STL-to-data mean "acc" (the other way round from the
DTU evaluation it reproduces); here accuracy is prediction to ground truth, as everywhere else. Its "overall", the
number upstream reports for DTU, is the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from anydepth.errors import InputError, require

DTU_DIST_THRESH = 0.2  # mm, consistency of a point across views
DTU_NUM_CONSIST = 4  # views (the reference itself included) that must agree
DTU_MAX_POINTS = 4_000_000
DTU_DOWN_DENSE = 0.2  # mm
DTU_PATCH_SIZE = 60
DTU_MAX_DIST = 20.0  # mm
UNPOSED_MIN_DEPTH = 0.001  # mm: upstream's back-projection keeps depth > 0.001
DTU_LAYOUT = ('scene.json "dtu": {"obs_mask": "<ObsMask .mat with ObsMask, BB, Res>", "ground_plane": '
              '"<Plane .mat with P>", "max_dist": 20, "patch_size": 60, "down_dense": 0.2}')  # fmt: skip


@dataclass(frozen=True)
class DtuProtocol:
    """The masks and settings of one DTU scan.

    Attributes:
        obs_mask: (X, Y, Z) bool observation volume.
        bounding_box: (2, 3) its lower and upper corners, mm.
        resolution: its voxel size, mm.
        ground_plane: (4,) plane ``P``; ground-truth points with ``P . [x, 1] > 0`` are scored.
    """

    obs_mask: np.ndarray
    bounding_box: np.ndarray
    resolution: float
    ground_plane: np.ndarray
    max_dist: float = DTU_MAX_DIST
    patch_size: float = DTU_PATCH_SIZE
    down_dense: float = DTU_DOWN_DENSE
    dist_thresh: float = DTU_DIST_THRESH
    num_consist: int = DTU_NUM_CONSIST
    max_points: int = DTU_MAX_POINTS

    @classmethod
    def from_meta(cls, folder: Path, dtu: Dict[str, Any]) -> DtuProtocol:
        """Read the ``dtu`` entry of a scene's ``scene.json`` and the two ``.mat`` files it names (SciPy)."""
        io = require("scipy.io", "bench")
        where = Path(folder) / "scene.json"
        if not isinstance(dtu, dict) or "obs_mask" not in dtu or "ground_plane" not in dtu:
            raise InputError(f"{where}: a dtu entry without obs_mask and ground_plane; expected {DTU_LAYOUT}")
        mats = {}
        for key, fields in (("obs_mask", ("ObsMask", "BB", "Res")), ("ground_plane", ("P",))):
            path = _inside(folder, dtu[key], where)
            try:
                data = io.loadmat(str(path))
                mats[key] = [np.asarray(data[f]) for f in fields]
            except (KeyError, ValueError, OSError, NotImplementedError) as exc:
                raise InputError(f"{path}: unreadable or without {', '.join(fields)} ({exc}); expected "
                                 f"{DTU_LAYOUT}") from None  # fmt: skip
        obs, bb, res = mats["obs_mask"]
        if obs.ndim != 3 or bb.shape != (2, 3) or res.size != 1 or mats["ground_plane"][0].size != 4:
            plane = mats["ground_plane"][0].shape
            raise InputError(f"{folder / dtu['obs_mask']}: ObsMask {obs.shape}, BB {bb.shape}, Res {res.shape} and "
                             f"P {plane}; expected (X, Y, Z), (2, 3), a scalar and 4 values")  # fmt: skip
        settings = {k: dtu[k] for k in ("max_dist", "patch_size", "down_dense", "dist_thresh", "num_consist",
                                        "max_points") if dtu.get(k) is not None}  # fmt: skip
        return cls(obs.astype(bool), bb.astype(np.float32), float(res.reshape(())),
                   mats["ground_plane"][0].reshape(4).astype(np.float64), **settings)  # fmt: skip


def _inside(folder: Path, name: Any, where: Path) -> Path:
    """``folder / name`` for a plain file name (no folders, nothing outside the scene folder)."""
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise InputError(f"{where}: {name!r} is not a file name in the scene folder")
    path = Path(folder) / name
    if not path.is_file():
        raise InputError(f"{path}: missing (named by {where}; expected {DTU_LAYOUT})")
    return path


def _world_map(depth: np.ndarray, w2c: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W, 3) world point of every pixel centre (+0.5); a pixel without depth gives the camera centre, as in
    upstream's point maps (its bilinear reads then land far from any surface)."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    z = depth.astype(np.float64)
    cam = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    R, t = w2c[:3, :3], w2c[:3, 3]
    return ((cam - t) @ R).astype(np.float32)


def consistent_points(
    depths: Sequence[np.ndarray],
    w2c: np.ndarray,
    intrinsics: np.ndarray,
    dist_thresh: float = DTU_DIST_THRESH,
    num_consist: int = DTU_NUM_CONSIST,
) -> np.ndarray:
    """(M, 3) points of upstream's consistency fusion (module docstring), views in order, pixels row by row.

    The reads are torch's ``grid_sample`` (bilinear, zero padding, aligned corners: upstream's call) in float32 on
    the CPU, which gives the same points on every run.

    Args:
        depths: per view (H, W) z-depth, 0 where there is none.
        w2c, intrinsics: (N, 3, 4) and (N, 3, 3) cameras.
    """
    import torch
    import torch.nn.functional as F

    if len(depths) == 0:
        return np.zeros((0, 3))
    H, W = np.shape(depths[0])
    maps = torch.from_numpy(np.stack([_world_map(d, e, k) for d, e, k in zip(depths, w2c, intrinsics)]))
    images = maps.permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W): what grid_sample reads
    projections = [torch.from_numpy(np.asarray(k, np.float64) @ np.asarray(e, np.float64)[:3]).float()
                   for e, k in zip(w2c, intrinsics)]  # fmt: skip
    fused: List[np.ndarray] = []
    for ref, depth in zip(maps, depths):
        valid = torch.from_numpy(np.isfinite(depth) & (depth > 0))
        points = ref[valid]  # (M, 3)
        total, count = torch.zeros_like(points), torch.zeros(len(points))
        homogeneous = torch.cat([points, torch.ones(len(points), 1)], dim=1)
        for image, P in zip(images, projections):
            uvw = homogeneous @ P.T
            front = uvw[:, 2] > 0
            # pixel centres at +0.5: index coordinates are the projection minus a half
            x = uvw[:, 0] / uvw[:, 2] - 0.5
            y = uvw[:, 1] / uvw[:, 2] - 0.5
            grid = torch.stack([x / ((W - 1) / 2) - 1, y / ((H - 1) / 2) - 1], dim=-1)
            grid = torch.where(front[:, None], grid, torch.full_like(grid, -3.0))  # behind: read outside (zero)
            read = F.grid_sample(image[None], grid[None, None], mode="bilinear", padding_mode="zeros",
                                 align_corners=True)[0, :, 0].T  # fmt: skip
            agree = front & (torch.linalg.norm(points - read, dim=1) < dist_thresh)
            total[agree] += read[agree]
            count[agree] += 1
        keep = count >= num_consist
        fused.append((total[keep] / count[keep, None]).double().numpy())
    return np.concatenate(fused, axis=0)


def backprojected_points(depths: Sequence[np.ndarray], w2c: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(M, 3) world points of every pixel with depth above 0.001 (upstream's unposed DTU fusion, no filter)."""
    points = [m[np.isfinite(d) & (d > UNPOSED_MIN_DEPTH)] for m, d in
              zip((_world_map(d, e, k) for d, e, k in zip(depths, w2c, intrinsics)), depths)]  # fmt: skip
    return np.concatenate(points, axis=0).astype(np.float64) if points else np.zeros((0, 3))


def cap_points(points: np.ndarray, max_points: int, seed: int = 42) -> np.ndarray:
    """At most ``max_points`` points: a seeded choice without replacement where there are more."""
    if len(points) <= max_points:
        return points
    return points[np.random.default_rng(seed).choice(len(points), max_points, replace=False)]


def radius_downsample(points: np.ndarray, radius: float, seed: int = 42, chunk: int = 65536) -> np.ndarray:
    """The points left after shuffling (seeded) and greedy thinning: each point still kept, in the shuffled order,
    removes the others within ``radius``.

    Example:
        >>> len(radius_downsample(np.array([[0.0, 0, 0], [0.1, 0, 0], [0.15, 0, 0], [1.0, 0, 0]]), 0.2))
        2
    """
    spatial = require("scipy.spatial", "bench")
    points = np.array(points, np.float64).reshape(-1, 3)
    np.random.default_rng(seed).shuffle(points, axis=0)
    if len(points) == 0:
        return points
    tree = spatial.cKDTree(points)
    keep = np.ones(len(points), bool)
    for start in range(0, len(points), chunk):  # neighbour lists of a chunk at a time: bounded memory
        indices = np.arange(start, min(start + chunk, len(points)))
        indices = indices[keep[indices]]  # the points already removed remove nothing
        for index, near in zip(indices, tree.query_ball_point(points[indices], r=radius)):
            if keep[index]:
                keep[near] = False
                keep[index] = True
    return points[keep]


def dtu_scores(predicted: np.ndarray, truth: np.ndarray, protocol: DtuProtocol,
               seed: int = 42) -> Tuple[float, float, int, int]:  # fmt: skip
    """(accuracy, completeness, points scored for accuracy, ground-truth points scored) of a predicted cloud against
    the STL cloud ``truth``, both in mm (module docstring). An empty side scores inf."""
    spatial = require("scipy.spatial", "bench")
    data = radius_downsample(predicted, protocol.down_dense, seed)
    low, high = protocol.bounding_box[0], protocol.bounding_box[1]
    inbound = np.all((data >= low - protocol.patch_size) & (data < high + protocol.patch_size * 2), axis=1)
    data_in = data[inbound]
    grid = np.around((data_in - low) / protocol.resolution).astype(np.int32)
    in_grid = np.all((grid >= 0) & (grid < np.array(protocol.obs_mask.shape)), axis=1)
    in_obs = protocol.obs_mask[tuple(grid[in_grid].T)]
    data_in_obs = data_in[in_grid][in_obs]
    above = np.concatenate([truth, np.ones((len(truth), 1))], axis=1) @ protocol.ground_plane > 0
    truth_above = truth[above]
    accuracy = completeness = float("inf")
    if len(data_in_obs) and len(truth):
        d2s = spatial.cKDTree(truth).query(data_in_obs)[0]
        accuracy = _mean_below(d2s, protocol.max_dist)
    if len(truth_above) and len(data_in):
        s2d = spatial.cKDTree(data_in).query(truth_above)[0]
        completeness = _mean_below(s2d, protocol.max_dist)
    return accuracy, completeness, len(data_in_obs), len(truth_above)


def _mean_below(distances: np.ndarray, max_dist: float) -> float:
    kept = distances[distances < max_dist]
    return float(np.mean(kept)) if len(kept) else float("inf")


__all__ = ["DtuProtocol", "backprojected_points", "cap_points", "consistent_points", "dtu_scores",
           "radius_downsample"]  # fmt: skip
