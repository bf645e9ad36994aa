"""The HiRoom reader, on a small scene written here in upstream DA3's ``hiroom/`` layout."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets.hiroom import convert_hiroom
from anydepth.bench.score import read_ground_truth
from anydepth.errors import InputError

PATH = "houses/h1/room2/cam0"  # a scene path of the list; upstream names it by its last three parts
NAME = "h1-room2-cam0"
W, H = 16, 12
K = np.array([[12.0, 0, 8], [0, 12.0, 6], [0, 0, 1]])


def _hiroom(root, frames=4, no_pose=2):
    (root / "selected_scene_list_val.txt").parent.mkdir(parents=True)
    (root / "selected_scene_list_val.txt").write_text(f"{PATH}\nhouses/h2/room1/cam0\n")
    scene = root / "data" / PATH
    for sub in ("image", "depth", "pose", "aliasing_mask"):
        (scene / sub).mkdir(parents=True)
    np.save(scene / "cam_K.npy", K)
    for i in range(frames):
        cv2.imwrite(str(scene / "image" / f"{i:04d}.jpg"), np.full((H, W, 3), 10 * i, np.uint8))
        if i != no_pose:
            w2c = np.eye(4)
            w2c[:3, 3] = [i, 0.0, 0.0]
            np.save(scene / "pose" / f"{i:04d}.npy", w2c)
        depth = np.full((H, W), 655 * (i + 1), np.uint16)
        depth[0, 0] = 0
        cv2.imwrite(str(scene / "depth" / f"{i:04d}.png"), depth)
        aliasing = np.zeros((H, W), np.uint8)
        aliasing[3, 4] = 255
        cv2.imwrite(str(scene / "aliasing_mask" / f"{i:04d}.png"), aliasing)
    (root / "fused_pcd").mkdir()
    (root / "fused_pcd" / f"{NAME}.ply").write_text("ply\n")
    return root


def test_hiroom_frames_depth_poses_and_metadata(tmp_path):
    root = _hiroom(tmp_path / "hiroom")
    (folder,) = convert_hiroom(root, tmp_path / "gt", scenes=[NAME])
    assert folder.name == f"hiroom-{NAME}"
    gt = read_ground_truth(folder)
    assert gt.names == ["0000.jpg", "0001.jpg", "0003.jpg"]  # 0002 has no pose
    np.testing.assert_allclose(gt.extrinsics[2], np.c_[np.eye(3), [3.0, 0, 0]])  # world-to-camera as stored
    np.testing.assert_allclose(gt.intrinsics, np.repeat(K[None], 3, 0))
    depth = gt.depth[2]  # 655 * 4 of 65535 over 100 m
    assert depth[5, 5] == pytest.approx(655 * 4 / 65535 * 100, rel=1e-6)
    assert depth[0, 0] == 0.0 and depth[3, 4] == 0.0  # no depth, and the aliasing mask
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["scene"] == NAME and meta["fscore_threshold"] == 0.05 and meta["reference"] == "reference.ply"
    assert meta["voxel_length"] == pytest.approx(4 / 512) and meta["sdf_trunc"] == 0.04
    assert (meta["fusion_max_depth"], meta["sampling_number"], meta["down_sample"]) == (10000.0, 1_000_000, 4 / 512)
    assert (folder / "reference.ply").read_text() == "ply\n"


def test_hiroom_takes_the_scene_path_and_samples(tmp_path):
    root = _hiroom(tmp_path / "hiroom", frames=6, no_pose=None)
    (folder,) = convert_hiroom(root, tmp_path / "gt", scenes=[PATH], max_frames=4)
    assert folder.name == f"hiroom-{NAME}" and len(read_ground_truth(folder).names) == 4


def test_hiroom_bad_input_is_one_line(tmp_path):
    with pytest.raises(InputError, match=r"selected_scene_list_val\.txt: missing"):
        convert_hiroom(tmp_path, tmp_path / "gt")
    root = _hiroom(tmp_path / "hiroom")
    with pytest.raises(InputError, match="unknown HiRoom scene 'x-y-z'"):
        convert_hiroom(root, tmp_path / "gt", scenes=["x-y-z"])
    with pytest.raises(InputError, match="h2/room1/cam0/image: missing"):
        convert_hiroom(root, tmp_path / "gt")  # the second listed scene is not there: nothing converted
    assert not (tmp_path / "gt").exists()
