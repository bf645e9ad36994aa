"""ScanNet: a tiny exported scan (colour at twice the depth's size, 16-bit mm depth, camera-to-world poses)
converted with the papers' frames, crop and intrinsics."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets.scannet import convert_scannet
from anydepth.bench.score import read_ground_truth, score
from anydepth.errors import InputError

H, W = 24, 30  # depth grid; cropped by 8 rows and 11 columns on each side -> 8 x 8
K4 = np.array([[30.0, 0.0, 15.0, 0.0], [0.0, 31.0, 12.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def scannet_root(root, scene="scene0707_00", frames=11, bad_pose=None):
    source = root / scene
    for folder in ("color", "depth", "pose", "intrinsic"):
        (source / folder).mkdir(parents=True)
    np.savetxt(source / "intrinsic" / "intrinsic_depth.txt", K4)
    for i in range(frames):
        colour = np.zeros((H, W, 3), np.uint8)
        colour[..., 1] = 10 * i
        cv2.imwrite(
            str(source / "color" / f"{i}.jpg"), cv2.resize(colour, (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
        )
        depth = np.full((H, W), 1000 + 100 * i, np.uint16)
        depth[10, 12] = 0
        cv2.imwrite(str(source / "depth" / f"{i}.png"), depth)
        c2w = np.eye(4)
        c2w[:3, 3] = [0.1 * i, 0.2, 0.0]
        if i == bad_pose:
            c2w[:] = -np.inf
        np.savetxt(source / "pose" / f"{i}.txt", c2w)
    return root


def test_scannet_takes_every_third_frame_crops_and_inverts_poses(tmp_path):
    root = scannet_root(tmp_path / "raw")
    (folder,) = convert_scannet(root, tmp_path / "gt", max_frames=3)
    gt = read_ground_truth(folder)
    assert folder.name == "scannet-scene0707_00" and gt.names == ["000000.png", "000003.png", "000006.png"]
    assert gt.depth[1].shape == (8, 8) and gt.depth[1][0, 0] == pytest.approx(1.3)  # mm -> m, cropped to 8 x 8
    assert gt.depth[0][10 - 8, 12 - 11] == 0.0  # the hole at row 10, column 12 moved with the crop
    np.testing.assert_allclose(gt.intrinsics[0], [[30.0, 0.0, 4.0], [0.0, 31.0, 4.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(gt.extrinsics[2][:, 3], [-0.6, -0.2, 0.0])  # camera-to-world inverted
    image = cv2.imread(str(folder / "images" / "000006.png"))
    assert image.shape == (8, 8, 3) and abs(int(image[4, 4, 1]) - 60) <= 2  # colour resized onto the depth grid
    meta = json.loads((folder / "scene.json").read_text())
    assert (meta["max_depth"], meta["has_poses"], meta["source_frames"]) == (10.0, True, [0, 3, 6])
    (tae,) = convert_scannet(root, tmp_path / "tae", max_frames=4, start=1, stride=1)  # the TAE protocol's shape
    assert read_ground_truth(tae).names == ["000001.png", "000002.png", "000003.png", "000004.png"]
    (default,) = convert_scannet(root, tmp_path / "all")  # 90 at stride 3 of 11 frames: 0, 3, 6, 9
    assert read_ground_truth(default).names[-1] == "000009.png"


def test_scannet_frames_are_ordered_by_number_not_by_name(tmp_path):
    root = scannet_root(tmp_path / "raw", frames=12)
    (folder,) = convert_scannet(root, tmp_path / "gt", stride=5)
    assert read_ground_truth(folder).names == ["000000.png", "000005.png", "000010.png"]  # not 0, 10, 2 ...


def test_a_lost_pose_writes_the_scene_without_poses_and_no_tae(tmp_path):
    root = scannet_root(tmp_path / "raw", bad_pose=3)
    (folder,) = convert_scannet(root, tmp_path / "gt", max_frames=3)
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["has_poses"] is False and meta["invalid_pose_frames"] == [3]
    gt = read_ground_truth(folder)
    assert np.array_equal(gt.extrinsics, np.repeat(np.eye(3, 4)[None], 3, axis=0))
    np.savez(tmp_path / "pred.npz", depth=np.stack(gt.depth) + 1.0)
    result = score(tmp_path / "pred.npz", folder, modes=["video"])["video"]
    assert result["tae"] is None and result["abs_rel"] > 0.0


def test_scannet_bad_roots_fail_naming_the_layout(tmp_path):
    with pytest.raises(InputError, match="no such ScanNet folder"):
        convert_scannet(tmp_path / "nothing", tmp_path / "gt")
    root = scannet_root(tmp_path / "raw")
    with pytest.raises(InputError, match="unknown ScanNet scene 'scene9999_00'"):
        convert_scannet(root, tmp_path / "gt", scenes=["scene9999_00"])
    (root / "scene0707_00" / "pose" / "3.txt").unlink()
    with pytest.raises(InputError, match=r"pose/3\.txt: missing or not a 4x4 matrix"):
        convert_scannet(root, tmp_path / "gt")
    assert not (tmp_path / "gt").exists()  # checked before any work
