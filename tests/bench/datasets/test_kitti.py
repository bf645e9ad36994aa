"""KITTI: tiny annotated sequences with raw images and calibration, converted with the papers' frames, crop and
depth cap; no poses, so the video mode reports no TAE."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets.kitti import convert_kitti
from anydepth.bench.score import read_ground_truth, score
from anydepth.errors import InputError

SCENE = "2011_09_26_drive_0002_sync"
CALIB = (
    "calib_time: x\nP_rect_00: 1 0 2 0 0 1 3 0 0 0 1 0\n"
    "P_rect_02: 7.2e+02 0 6.1e+02 4.5e+01 0 7.2e+02 1.7e+02 2.1e-01 0 0 1 2.7e-03\n"
)


def kitti_root(root, scene=SCENE, frames=(5, 6, 7), size=(13, 17)):
    depth_dir = root / "data_depth_annotated" / "val" / scene / "proj_depth" / "groundtruth" / "image_02"
    image_dir = root / "raw_data" / scene[:10] / scene / "image_02" / "data"
    depth_dir.mkdir(parents=True)
    image_dir.mkdir(parents=True)
    (root / "raw_data" / scene[:10] / "calib_cam_to_cam.txt").write_text(CALIB)
    H, W = size
    for i in frames:
        name = f"{i:010d}.png"
        depth = np.zeros((H, W), np.uint16)
        depth[::2, ::3] = 256 * (10 + i)  # sparse lidar points
        depth[1, 0] = 256 * 90  # beyond the 80 m cap
        cv2.imwrite(str(depth_dir / name), depth)
        cv2.imwrite(str(image_dir / name), np.full((H, W, 3), 20 * i, np.uint8))
    return root


def test_kitti_crops_to_even_size_and_has_no_poses(tmp_path):
    root = kitti_root(tmp_path / "raw")
    (folder,) = convert_kitti(root, tmp_path / "gt", scenes=[SCENE])
    gt = read_ground_truth(folder)
    assert folder.name == f"kitti-{SCENE}" and gt.names == ["0000000005.png", "0000000006.png", "0000000007.png"]
    assert gt.depth[0].shape == (12, 16) and gt.depth[0][0, 0] == 15.0 and gt.depth[0][0, 1] == 0.0  # /256, holes
    np.testing.assert_allclose(gt.intrinsics[0], [[720.0, 0.0, 610.0], [0.0, 720.0, 170.0], [0.0, 0.0, 1.0]])
    assert np.array_equal(gt.extrinsics[1], np.eye(3, 4))
    meta = json.loads((folder / "scene.json").read_text())
    assert (meta["max_depth"], meta["has_poses"]) == (80.0, False)
    assert cv2.imread(str(folder / "images" / "0000000006.png")).shape == (12, 16, 3)
    (short,) = convert_kitti(root, tmp_path / "short", scenes=[SCENE], max_frames=2)
    assert len(read_ground_truth(short).names) == 2


def test_kitti_window_keeps_image_and_depth_aligned(tmp_path):
    root = kitti_root(tmp_path / "raw", frames=(5,), size=(377, 1245))
    (folder,) = convert_kitti(root, tmp_path / "gt", scenes=[SCENE])
    gt = read_ground_truth(folder)
    assert gt.depth[0].shape == (374, 1242)  # even (376 x 1244), then the 374 x 1242 eval window
    assert cv2.imread(str(folder / "images" / "0000000005.png")).shape == (374, 1242, 3)


def test_video_mode_reports_no_tae_without_poses(tmp_path):
    (folder,) = convert_kitti(kitti_root(tmp_path / "raw"), tmp_path / "gt", scenes=[SCENE])
    gt = read_ground_truth(folder)
    np.savez(tmp_path / "pred.npz", depth=np.maximum(np.stack(gt.depth), 5.0) * 2.0)
    result = score(tmp_path / "pred.npz", folder, modes=["video"])["video"]
    assert result["tae"] is None  # identity extrinsics are not cameras: no number made up from them
    assert result["abs_rel"] == pytest.approx(0.0, abs=1e-6) and result["delta1"] == 1.0  # 90 m point not scored
    with pytest.raises(InputError, match="no ground-truth cameras"):
        np.savez(tmp_path / "cams.npz", depth=np.stack(gt.depth), extrinsics=gt.extrinsics)
        score(tmp_path / "cams.npz", folder, modes=["pose"])


def test_kitti_bad_roots_fail_naming_the_layout(tmp_path):
    with pytest.raises(InputError, match="no data_depth_annotated/val or raw_data folder"):
        convert_kitti(tmp_path, tmp_path / "gt")
    root = kitti_root(tmp_path / "raw")
    with pytest.raises(InputError, match="2011_09_26_drive_0005_sync: missing"):
        convert_kitti(root, tmp_path / "gt")  # the 13 val sequences by default
    image = root / "raw_data" / "2011_09_26" / SCENE / "image_02" / "data" / "0000000006.png"
    image.unlink()
    with pytest.raises(InputError, match=r"0000000006\.png: missing raw image"):
        convert_kitti(root, tmp_path / "gt", scenes=[SCENE])
    cv2.imwrite(str(image), np.zeros((13, 17, 3), np.uint8))
    (root / "raw_data" / "2011_09_26" / "calib_cam_to_cam.txt").write_text("P_rect_02: 1 2 3\n")
    with pytest.raises(InputError, match="no 12-number P_rect_02: line"):
        convert_kitti(root, tmp_path / "gt", scenes=[SCENE])
