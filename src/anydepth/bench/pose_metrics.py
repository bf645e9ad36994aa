"""Camera pose metrics over all pairs of views, as upstream DA3's evaluator computes them.

Both sets of world-to-camera poses ``P`` (4x4) are first expressed in their first camera's frame
(``P_k @ inv(P_0)``), which removes the choice of world frame. For views ``i < j`` the relative pose is then
``inv(P_i) @ P_j``, for the prediction and for the ground truth. Per pair:

- the rotation error is the angle of ``R_gt^T R_pred`` (degrees);
- the translation error is the angle between the two relative translations, blind to their sign:
  ``arccos(|t_gt . t_pred| / (|t_gt| |t_pred|))`` (degrees, 0 to 90); a zero-length translation counts 90.

AUC at ``T`` degrees: with ``e`` the larger of the two errors per pair, the histogram of ``e`` over the integer
bins ``[0, 1), [1, 2), ..., [T - 1, T]`` normalised by the number of pairs, accumulated, and averaged over the ``T``
bins: ``mean_k fraction(e < k + 1)`` for ``k = 0 .. T - 1`` (the last bin also takes ``e = T``). Errors at or over
``T`` count in no bin. Both errors are invariant to the scale of the scene and to the choice of world frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

from anydepth.errors import ShapeError

AUC_THRESHOLDS = (3, 5, 15, 30)


def as_4x4(poses: np.ndarray) -> np.ndarray:
    """(N, 3, 4) or (N, 4, 4) poses as (N, 4, 4) float64."""
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4)):
        raise ShapeError(f"poses must be (N, 3, 4) or (N, 4, 4), got {poses.shape}")
    if poses.shape[1] == 4:
        return poses
    out = np.tile(np.eye(4), (len(poses), 1, 1))
    out[:, :3] = poses
    return out


def _inverse(poses: np.ndarray) -> np.ndarray:
    R, t = poses[:, :3, :3], poses[:, :3, 3:]
    out = np.tile(np.eye(4), (len(poses), 1, 1))
    out[:, :3, :3] = np.transpose(R, (0, 2, 1))
    out[:, :3, 3:] = -np.transpose(R, (0, 2, 1)) @ t
    return out


def pair_indices(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of ``n`` views, in upstream's order (i major)."""
    i, j = np.triu_indices(n, k=1)
    return i, j


def relative_pose_errors(pred_w2c: np.ndarray, gt_w2c: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Rotation and translation-direction errors in degrees, one per pair of views (see the module docstring).

    Example:
        >>> gt = np.tile(np.eye(4), (3, 1, 1)); gt[:, 0, 3] = [0.0, 1.0, 2.0]
        >>> rot, trans = relative_pose_errors(gt * [1, 1, 1, 1], gt)
        >>> rot.round(6).tolist(), trans.round(6).tolist()
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    """
    pred, gt = as_4x4(pred_w2c), as_4x4(gt_w2c)
    if pred.shape != gt.shape:
        raise ShapeError(f"{len(pred)} predicted poses against {len(gt)} ground-truth ones")
    if len(gt) < 2:
        raise ShapeError("pose errors need at least two views")
    pred, gt = pred @ _inverse(pred[:1]), gt @ _inverse(gt[:1])  # both in their first camera's frame
    i, j = pair_indices(len(gt))
    rel_pred = _inverse(pred[i]) @ pred[j]
    rel_gt = _inverse(gt[i]) @ gt[j]
    R = np.transpose(rel_gt[:, :3, :3], (0, 2, 1)) @ rel_pred[:, :3, :3]
    cos = np.clip((np.trace(R, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    rotation = np.degrees(np.arccos(cos))
    t_pred, t_gt = rel_pred[:, :3, 3], rel_gt[:, :3, 3]
    norms = np.linalg.norm(t_pred, axis=1) * np.linalg.norm(t_gt, axis=1)
    dot = np.abs(np.sum(t_pred * t_gt, axis=1))
    cos_t = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    translation = np.degrees(np.arccos(np.clip(cos_t, 0.0, 1.0)))
    return rotation, translation


def pose_auc(rotation_deg: np.ndarray, translation_deg: np.ndarray, threshold: int) -> float:
    """AUC at ``threshold`` degrees of the larger of the two errors per pair (see the module docstring).

    Example:
        >>> pose_auc(np.array([0.0, 0.0]), np.array([0.0, 2.5]), 5)  # bins: 0.5, 0.5, 1, 1, 1
        0.8
    """
    errors = np.maximum(np.asarray(rotation_deg, np.float64), np.asarray(translation_deg, np.float64))
    histogram, _ = np.histogram(errors, bins=np.arange(int(threshold) + 1))
    return float(np.mean(np.cumsum(histogram / float(len(errors)))))


@dataclass(frozen=True)
class PoseScores:
    """AUC at each threshold, and the mean errors in degrees, over ``pairs`` pairs of views."""

    auc: Dict[int, float]
    mean_rotation_deg: float
    mean_translation_deg: float
    pairs: int

    def as_dict(self) -> Dict[str, float]:
        out: Dict[str, float] = {f"auc{t:02d}": v for t, v in self.auc.items()}
        out.update(mean_rotation_deg=self.mean_rotation_deg, mean_translation_deg=self.mean_translation_deg)
        out["pairs"] = self.pairs
        return out


def pose_scores(pred_w2c: np.ndarray, gt_w2c: np.ndarray, thresholds: Sequence[int] = AUC_THRESHOLDS) -> PoseScores:
    """AUC at ``thresholds`` (upstream: 3, 5, 15, 30 degrees) and the mean errors of one scene's poses."""
    rotation, translation = relative_pose_errors(pred_w2c, gt_w2c)
    return PoseScores(
        auc={int(t): pose_auc(rotation, translation, int(t)) for t in thresholds},
        mean_rotation_deg=float(rotation.mean()),
        mean_translation_deg=float(translation.mean()),
        pairs=len(rotation),
    )


def camera_centres(w2c: np.ndarray) -> np.ndarray:
    """(N, 3) camera centres ``-R^T t`` of world-to-camera poses."""
    poses = as_4x4(w2c)
    return -np.einsum("nji,nj->ni", poses[:, :3, :3], poses[:, :3, 3])


@dataclass(frozen=True)
class TrajectoryScores:
    """ATE RMSE after a Sim(3) alignment of the camera centres (in the ground truth's units), and the relative
    pose errors between consecutive frames: translation RMSE (same units, after the same scale) and mean
    rotation (degrees)."""

    ate_rmse: float
    rpe_translation_rmse: float
    rpe_rotation_deg: float
    scale: float
    frames: int

    def as_dict(self) -> Dict[str, float]:
        return dict(self.__dict__)


def trajectory_scores(pred_w2c: np.ndarray, gt_w2c: np.ndarray) -> TrajectoryScores:
    """ATE and RPE of a predicted trajectory (see :class:`TrajectoryScores`).

    The predicted centres are brought onto the ground truth's by the least-squares similarity (Umeyama, with
    scale; :func:`anydepth.geometry.sim3.umeyama`); ATE is the RMSE of the remaining centre offsets. RPE compares
    each consecutive relative motion ``P_{k+1} @ inv(P_k)`` of the aligned prediction with the ground truth's.

    Example:
        >>> gt = np.tile(np.eye(4), (4, 1, 1)); gt[:, :3, 3] = np.arange(12.0).reshape(4, 3)
        >>> pred = gt.copy(); pred[:, :3, 3] *= 3.0  # the same path in other units
        >>> s = trajectory_scores(pred, gt)
        >>> round(s.ate_rmse, 9), round(s.rpe_translation_rmse, 9), round(s.scale, 6)
        (0.0, 0.0, 0.333333)
    """
    import torch

    from anydepth.geometry.sim3 import umeyama

    pred, gt = as_4x4(pred_w2c), as_4x4(gt_w2c)
    if pred.shape != gt.shape or len(gt) < 2:
        raise ShapeError(f"trajectories of {len(pred)} and {len(gt)} poses; both need the same length, at least 2")
    source, target = camera_centres(pred), camera_centres(gt)
    fit = umeyama(torch.from_numpy(source), torch.from_numpy(target))
    scale = float(fit.scale)
    R = fit.rotation.numpy()
    t = fit.translation.numpy()
    aligned = scale * source @ R.T + t
    ate = float(np.sqrt(np.mean(np.sum((aligned - target) ** 2, axis=1))))
    # the aligned prediction's poses: world change x' = s R x + t, so P' = [R_p R^T | s t_p - R_p R^T t]
    pred_aligned = pred.copy()
    pred_aligned[:, :3, :3] = pred[:, :3, :3] @ R.T
    pred_aligned[:, :3, 3] = scale * pred[:, :3, 3] - np.einsum("nij,j->ni", pred_aligned[:, :3, :3], t)
    rel_pred = pred_aligned[1:] @ _inverse(pred_aligned[:-1])
    rel_gt = gt[1:] @ _inverse(gt[:-1])
    diff = _inverse(rel_gt) @ rel_pred
    cos = np.clip((np.trace(diff[:, :3, :3], axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    rpe_rot = float(np.degrees(np.arccos(cos)).mean())
    rpe_trans = float(np.sqrt(np.mean(np.sum((rel_pred[:, :3, 3] - rel_gt[:, :3, 3]) ** 2, axis=1))))
    return TrajectoryScores(ate, rpe_trans, rpe_rot, scale, len(gt))
