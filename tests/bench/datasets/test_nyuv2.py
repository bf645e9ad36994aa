"""NYUv2: tiny extracted raw scenes (640 x 480 frames, depth PNGs at 6000 per metre) converted with the Eigen crop;
no poses."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets.nyuv2 import NYUV2_K, convert_nyuv2
from anydepth.bench.score import read_ground_truth
from anydepth.errors import InputError


def nyu_root(root, scene="kitchen_0003", frames=3):
    source = root / scene
    (source / "rgb").mkdir(parents=True)
    (source / "depth").mkdir()
    for i in range(frames):
        depth = np.full((480, 640), 6000 + 600 * i, np.uint16)  # 1 m + 10 cm per frame
        depth[45, 41] = 0
        cv2.imwrite(str(source / "depth" / f"r-{i:04d}.png"), depth)
        cv2.imwrite(str(source / "rgb" / f"r-{i:04d}.jpg"), np.full((480, 640, 3), 30 * i, np.uint8))
    return root


def test_nyuv2_crops_the_border_and_has_no_poses(tmp_path):
    (folder,) = convert_nyuv2(nyu_root(tmp_path / "raw"), tmp_path / "gt", scenes=["kitchen_0003"], max_frames=2)
    gt = read_ground_truth(folder)
    assert folder.name == "nyuv2-kitchen_0003" and gt.names == ["r-0000.png", "r-0001.png"]
    assert gt.depth[1].shape == (426, 560) and gt.depth[1][5, 5] == pytest.approx(1.1)  # rows 45:471, cols 41:601
    assert gt.depth[0][0, 0] == 0.0  # the hole at (45, 41) is the crop's corner
    expected = NYUV2_K.copy()
    expected[0, 2] -= 41
    expected[1, 2] -= 45
    np.testing.assert_allclose(gt.intrinsics[0], expected)
    assert np.array_equal(gt.extrinsics[0], np.eye(3, 4))
    assert cv2.imread(str(folder / "images" / "r-0001.png")).shape == (426, 560, 3)
    meta = json.loads((folder / "scene.json").read_text())
    assert (meta["max_depth"], meta["has_poses"], meta["crop"]) == (10.0, False, [45, 471, 41, 601])


def test_nyuv2_bad_roots_fail_naming_the_layout(tmp_path):
    root = nyu_root(tmp_path / "raw")
    with pytest.raises(InputError, match="basement_0001a: missing"):
        convert_nyuv2(root, tmp_path / "gt")  # the eight scenes by default
    (root / "kitchen_0003" / "depth" / "r-0001.png").unlink()
    with pytest.raises(InputError, match=r"depth/r-0001\.png: missing"):
        convert_nyuv2(root, tmp_path / "gt", scenes=["kitchen_0003"])
    small = tmp_path / "small" / "office_0004"
    (small / "rgb").mkdir(parents=True)
    (small / "depth").mkdir()
    cv2.imwrite(str(small / "rgb" / "a-0001.jpg"), np.zeros((12, 16, 3), np.uint8))
    cv2.imwrite(str(small / "depth" / "a-0001.png"), np.ones((12, 16), np.uint16))
    with pytest.raises(InputError, match="smaller than the 480 x 640 frame"):
        convert_nyuv2(tmp_path / "small", tmp_path / "gt", scenes=["office_0004"])
