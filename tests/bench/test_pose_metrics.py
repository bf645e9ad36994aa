"""Pose metrics: perfect poses score AUC 1, a known rotation error gives the analytic AUC, and the errors ignore
the scene's scale and world frame."""

from __future__ import annotations

import numpy as np
import pytest

from anydepth.bench.pose_metrics import pose_auc, pose_scores, relative_pose_errors
from anydepth.errors import ShapeError


def _rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    a = np.radians(degrees)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def _cameras(n: int = 6, seed: int = 0) -> np.ndarray:
    """World-to-camera poses of cameras on a circle, looking around."""
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))
    for k in range(n):
        R = _rotation(rng.normal(size=3), rng.uniform(5, 40))
        centre = np.array([np.cos(k), np.sin(k), 0.3 * k]) * 2.0
        poses[k, :3, :3] = R
        poses[k, :3, 3] = -R @ centre
    return poses


def test_perfect_poses_score_one():
    gt = _cameras()
    s = pose_scores(gt, gt)
    assert all(v == 1.0 for v in s.auc.values()) and s.pairs == 15
    assert s.mean_rotation_deg == pytest.approx(0.0, abs=1e-5)


def test_scale_and_world_frame_do_not_matter():
    gt = _cameras(seed=1)
    world = np.eye(4)
    world[:3, :3] = _rotation([1, 2, 3], 33.0)
    world[:3, 3] = [5.0, -2.0, 1.0]
    moved = gt @ np.linalg.inv(world)  # the same cameras in another world frame
    moved[:, :3, 3] *= 4.2  # and another unit
    rotation, translation = relative_pose_errors(moved, gt)
    assert np.abs(rotation).max() < 1e-5 and np.abs(translation).max() < 1e-5


def test_a_known_rotation_error_gives_the_analytic_auc():
    gt = _cameras(n=4, seed=2)
    pred = gt.copy()
    pred[3, :3, :3] = _rotation([0, 0, 1], 4.5) @ gt[3, :3, :3]  # camera 3 turned by 4.5 degrees on its centre
    pred[3, :3, 3] = _rotation([0, 0, 1], 4.5) @ gt[3, :3, 3]
    rotation, translation = relative_pose_errors(pred, gt)
    touched = np.array([False, False, True, False, True, True])  # pairs (0,3), (1,3), (2,3)
    np.testing.assert_allclose(rotation[touched], 4.5, atol=1e-9)
    np.testing.assert_allclose(rotation[~touched], 0.0, atol=1e-5)
    np.testing.assert_allclose(translation[~touched], 0.0, atol=1e-5)
    errors = np.maximum(rotation, translation)
    for threshold in (3, 5, 15, 30):  # AUC = mean over bins k of the fraction of errors below k + 1
        expected = np.mean([np.mean(errors < k + 1) for k in range(threshold)])
        assert pose_auc(rotation, translation, threshold) == pytest.approx(expected)
    assert pose_auc(rotation, translation, 3) == pytest.approx(0.5)  # half the pairs exceed 3 degrees


def test_translation_direction_error_is_sign_blind_and_bad_shapes_fail():
    gt = _cameras(n=2, seed=3)
    pred = gt.copy()
    centre = -gt[1, :3, :3].T @ gt[1, :3, 3]
    centre0 = -gt[0, :3, :3].T @ gt[0, :3, 3]
    mirrored = 2 * centre0 - centre  # camera 1 moved to the other side of camera 0
    pred[1, :3, 3] = -gt[1, :3, :3] @ mirrored
    rotation, translation = relative_pose_errors(pred, gt)
    assert rotation[0] == pytest.approx(0.0, abs=1e-5) and translation[0] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ShapeError):
        relative_pose_errors(gt[:1], gt[:1])
    with pytest.raises(ShapeError):
        relative_pose_errors(gt, _cameras(n=3))


def test_trajectory_scores_ignore_a_similarity_and_see_noise():
    from anydepth.bench.pose_metrics import camera_centres, trajectory_scores

    gt = _cameras(n=12, seed=4)
    world = np.eye(4)
    world[:3, :3] = _rotation([0.3, 1, -0.2], 50.0)
    world[:3, 3] = [1.0, 2.0, -3.0]
    moved = gt @ np.linalg.inv(world)
    moved[:, :3, 3] *= 0.25
    s = trajectory_scores(moved, gt)
    assert s.ate_rmse < 1e-9 and s.rpe_translation_rmse < 1e-9 and s.rpe_rotation_deg < 1e-4
    assert s.scale == pytest.approx(4.0)
    noisy = gt.copy()
    offsets = np.random.default_rng(0).normal(0.0, 0.05, (12, 3))
    centres = camera_centres(gt) + offsets
    noisy[:, :3, 3] = -np.einsum("nij,nj->ni", gt[:, :3, :3], centres)
    s = trajectory_scores(noisy, gt)
    rms = float(np.sqrt(np.mean(np.sum(offsets**2, axis=1))))
    assert 0.5 * rms < s.ate_rmse <= rms + 1e-12  # the alignment can only take some of it away
