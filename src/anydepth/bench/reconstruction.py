"""Reconstruction metrics: fuse depth maps into a point cloud and compare it with the ground truth's.

Points of every valid pixel are unprojected with their view's camera and fused by keeping one point per voxel of
``voxel`` units (the mean of the points that fall in it): a NumPy point fusion, which runs everywhere (upstream's
TSDF fusion with Open3D is not part of it; results name the fusion that ran). Two settings, as upstream DA3 evaluates:

- ``"posed"``: the predicted depth placed with the ground-truth cameras, after one scale for the whole scene: as
  upstream, the scale of the RANSAC similarity of the predicted camera centres onto the true ones where the
  prediction has cameras, else the median of ``gt / pred`` over the valid pixels; none for metric predictions;
- ``"unposed"``: the predicted depth (of the pixels the ground truth has) placed with the predicted cameras,
  then carried into the ground truth's frame by the similarity that best maps the predicted camera centres onto
  the true ones (RANSAC Umeyama, seeded as upstream: :func:`anydepth.geometry.sim3.ransac_umeyama`).

With ``d_pred`` the distance of each predicted point to the nearest ground-truth point and ``d_gt`` the reverse
(a k-d tree, SciPy):

- accuracy ``= mean(d_pred)``, completeness ``= mean(d_gt)``, overall ``= (accuracy + completeness) / 2``;
- precision ``= mean(d_pred < threshold)``, recall ``= mean(d_gt < threshold)``, F-score their harmonic mean.

``threshold`` is the dataset's (upstream uses 0.05 m for most scenes); DTU is scored in millimetres.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from anydepth.errors import InputError, require

SETTINGS = ("posed", "unposed")


@dataclass(frozen=True)
class ReconstructionScores:
    accuracy: float
    completeness: float
    overall: float
    precision: float
    recall: float
    fscore: float
    threshold: float
    predicted_points: int
    ground_truth_points: int
    fusion: str = "points"

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def unproject(depth: np.ndarray, w2c: np.ndarray, K: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """(M, 3) world points of the valid pixels (pixel centres at +0.5) of one (H, W) z-depth map.

    Example:
        >>> K = np.array([[1.0, 0, 1.0], [0, 1.0, 1.0], [0, 0, 1.0]])
        >>> unproject(np.full((2, 2), 2.0), np.eye(4)[:3], K)[0].tolist()
        [-1.0, -1.0, 2.0]
    """
    depth = np.asarray(depth, np.float64)
    valid = np.isfinite(depth) & (depth > 0) if valid is None else valid & np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)
    z = depth[v, u]
    K = np.asarray(K, np.float64)
    cam = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], axis=1)
    R, t = np.asarray(w2c, np.float64)[:3, :3], np.asarray(w2c, np.float64)[:3, 3]
    return (cam - t) @ R  # R^T (x - t), row by row


def fuse_points(points: Sequence[np.ndarray], voxel: float) -> np.ndarray:
    """One point per occupied voxel (the mean of its points), over all views' points."""
    cloud = np.concatenate([p for p in points if len(p)], axis=0) if any(len(p) for p in points) else np.zeros((0, 3))
    if len(cloud) == 0 or voxel <= 0:
        return cloud
    keys = np.floor(cloud / voxel).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, inverse, cloud)
    return sums / counts[:, None]


def compare_clouds(
    predicted: np.ndarray, truth: np.ndarray, threshold: float, fusion: str = "points"
) -> ReconstructionScores:
    """Accuracy, completeness, overall, precision, recall and F-score (see the module docstring)."""
    spatial = require("scipy.spatial", "bench")
    if len(predicted) == 0 or len(truth) == 0:
        return ReconstructionScores(
            np.inf, np.inf, np.inf, 0.0, 0.0, 0.0, threshold, len(predicted), len(truth), fusion
        )
    d_pred, _ = spatial.cKDTree(truth).query(predicted)
    d_gt, _ = spatial.cKDTree(predicted).query(truth)
    accuracy, completeness = float(np.mean(d_pred)), float(np.mean(d_gt))
    precision, recall = float(np.mean(d_pred < threshold)), float(np.mean(d_gt < threshold))
    fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return ReconstructionScores(accuracy, completeness, (accuracy + completeness) / 2, precision, recall, fscore,
                                threshold, len(predicted), len(truth), fusion)  # fmt: skip


def reconstruction_scores(
    pred_depth: Sequence[np.ndarray],
    gt_depth: Sequence[np.ndarray],
    gt_w2c: np.ndarray,
    gt_intrinsics: np.ndarray,
    setting: str = "posed",
    pred_w2c: Optional[np.ndarray] = None,
    pred_intrinsics: Optional[np.ndarray] = None,
    threshold: float = 0.05,
    voxel: Optional[float] = None,
    metric: bool = False,
    seed: int = 42,
) -> ReconstructionScores:
    """Scores of one scene's depth maps (already at the ground truth's size) as a fused point cloud.

    Args:
        pred_depth, gt_depth: per view (H, W) z-depth; ground truth 0 / non-finite where there is none.
        gt_w2c, gt_intrinsics: (N, 3, 4) and (N, 3, 3) ground-truth cameras.
        setting: "posed" or "unposed" (see the module docstring).
        pred_w2c, pred_intrinsics: the predicted cameras (unposed; intrinsics default to the ground truth's,
            which is right when the prediction was resized to the ground truth's size only if they were predicted
            at that size: pass them scaled).
        threshold: F-score distance, in the ground truth's units.
        voxel: fusion voxel (default ``threshold / 2``).
        metric: the predicted depth is metric (posed: no scale alignment).
        seed: RANSAC's seed (unposed).
    """
    if setting not in SETTINGS:
        raise InputError(f"unknown reconstruction setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    if len(pred_depth) != len(gt_depth):
        raise InputError(f"{len(pred_depth)} predicted depth maps against {len(gt_depth)} ground-truth ones")
    voxel = threshold / 2 if voxel is None else voxel
    gt_valid = [np.isfinite(g) & (g > 0) for g in gt_depth]
    truth = fuse_points([unproject(g, e, k, m) for g, e, k, m in zip(gt_depth, gt_w2c, gt_intrinsics, gt_valid)], voxel)
    if setting == "posed":
        scale = 1.0
        if not metric and pred_w2c is not None:
            scale = _centre_similarity(pred_w2c, gt_w2c, seed)[0]
        elif not metric:
            ratios = np.concatenate([g[m] / p[m] for p, g, m in zip(pred_depth, gt_depth, gt_valid)
                                     if np.any(m)])  # fmt: skip
            ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
            scale = float(np.median(ratios)) if len(ratios) else 1.0
        points = [unproject(p * scale, e, k, m) for p, e, k, m in zip(pred_depth, gt_w2c, gt_intrinsics, gt_valid)]
    else:
        if pred_w2c is None:
            raise InputError("the unposed setting needs the predicted cameras")
        intrinsics = gt_intrinsics if pred_intrinsics is None else pred_intrinsics
        s, R, t = _centre_similarity(pred_w2c, gt_w2c, seed)
        views = zip(pred_depth, pred_w2c, intrinsics, gt_valid)  # the pixels the ground truth has, as posed
        points = [s * unproject(p, e, k, m) @ R.T + t for p, e, k, m in views]
    predicted = fuse_points(points, voxel)
    return compare_clouds(predicted, truth, threshold)


def _centre_similarity(pred_w2c: np.ndarray, gt_w2c: np.ndarray, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, translation) of the similarity that maps the predicted camera centres onto the true ones:
    RANSAC Umeyama from three views (seeded as upstream), plain Umeyama below."""
    import torch

    from anydepth.bench.pose_metrics import camera_centres
    from anydepth.geometry.sim3 import ransac_umeyama, umeyama

    src = torch.from_numpy(camera_centres(pred_w2c))
    tgt = torch.from_numpy(camera_centres(gt_w2c))
    fit = ransac_umeyama(src, tgt, seed=seed)[0] if len(src) >= 3 else umeyama(src, tgt)
    return float(fit.scale), fit.rotation.numpy(), fit.translation.numpy()
