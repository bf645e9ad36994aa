"""Bonn: tiny sequences named by timestamps with a TUM trajectory, converted with the papers' frames [30, 140) and
the trajectory associated to the frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets.bonn import BONN_K, convert_bonn
from anydepth.bench.score import read_ground_truth
from anydepth.errors import InputError

H, W = 12, 16
T0 = 1548266469.0


def bonn_root(root, scene="balloon2", frames=34, pose_rate=0.01, pose_until=None):
    source = root / f"rgbd_bonn_{scene}"
    (source / "rgb").mkdir(parents=True)
    (source / "depth").mkdir()
    for i in range(frames):
        stamp = T0 + 0.1 * i
        cv2.imwrite(str(source / "rgb" / f"{stamp:.6f}.png"), np.full((H, W, 3), i, np.uint8))
        depth = np.full((H, W), 5000 + 50 * i, np.uint16)  # 1 m + 1 cm per frame
        depth[0, 0] = 0
        cv2.imwrite(str(source / "depth" / f"{stamp + 0.004:.6f}.png"), depth)  # the depth camera's own clock
    s = np.sin(np.pi / 4)
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    end = pose_until if pose_until is not None else frames * 0.1
    for k in range(int(end / pose_rate)):
        t = T0 + k * pose_rate
        lines.append(f"{t:.6f} {k * pose_rate:.4f} 1.0 2.0 0 0 {s:.12f} {s:.12f}")  # 90 degrees about z
    (source / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    return root


def test_bonn_takes_frames_30_to_140_with_associated_poses(tmp_path):
    (folder,) = convert_bonn(bonn_root(tmp_path / "raw"), tmp_path / "gt", scenes=["balloon2"])
    gt = read_ground_truth(folder)
    assert folder.name == "bonn-balloon2" and len(gt.names) == 4  # frames 30..33 of 34
    assert gt.names[0] == f"{T0 + 3.0:.6f}.png"
    assert gt.depth[0][1, 1] == pytest.approx(1.3) and gt.depth[0][0, 0] == 0.0  # /5000; 0 = none
    np.testing.assert_array_equal(gt.intrinsics[2], BONN_K)
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # camera-to-world: 90 degrees about z
    c2w_t = np.array([3.0, 1.0, 2.0])  # the sample at the frame's timestamp
    np.testing.assert_allclose(gt.extrinsics[0][:, :3], R.T, atol=1e-9)
    np.testing.assert_allclose(gt.extrinsics[0][:, 3], -R.T @ c2w_t, atol=1e-6)
    meta = json.loads((folder / "scene.json").read_text())
    assert (meta["max_depth"], meta["has_poses"]) == (10.0, True)
    assert meta["max_rgb_depth_gap_s"] == pytest.approx(0.004, abs=1e-5)
    (early,) = convert_bonn(bonn_root(tmp_path / "raw2"), tmp_path / "gt2", ["balloon2"], max_frames=2, start=0)
    assert read_ground_truth(early).names == [f"{T0:.6f}.png", f"{T0 + 0.1:.6f}.png"]


def test_frames_beyond_the_trajectory_are_written_without_poses(tmp_path):
    root = bonn_root(tmp_path / "raw", pose_until=3.15)  # no sample near frames 32 and 33
    (folder,) = convert_bonn(root, tmp_path / "gt", scenes=["balloon2"])
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["has_poses"] is False
    assert np.array_equal(read_ground_truth(folder).extrinsics[0], np.eye(3, 4))


def test_bonn_bad_roots_fail_naming_the_layout(tmp_path):
    root = bonn_root(tmp_path / "raw")
    with pytest.raises(InputError, match="rgbd_bonn_crowd2: missing"):
        convert_bonn(root, tmp_path / "gt")  # the five sequences by default
    with pytest.raises(InputError, match="none from frame 40"):
        convert_bonn(root, tmp_path / "gt", ["balloon2"], start=40)
    (root / "rgbd_bonn_balloon2" / "groundtruth.txt").write_text("1.0 2.0 3.0\n")
    with pytest.raises(InputError, match="3 columns; expected timestamp tx ty tz qx qy qz qw"):
        convert_bonn(root, tmp_path / "gt", ["balloon2"])
