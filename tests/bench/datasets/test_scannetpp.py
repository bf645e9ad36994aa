"""The ScanNet++ reader, on a small scene written here in upstream DA3's ``merge_dslr_iphone`` layout."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets.scannetpp import SCANNETPP_SIZE, convert_scannetpp
from anydepth.bench.score import read_ground_truth
from anydepth.errors import InputError

pytest.importorskip("pycolmap")  # the reader reads the COLMAP model with it

SCENE = "09c1414f1b"
W, H = 32, 24  # 4:3 like the iPhone's 1920x1440; 1024x768 is 32 times larger


def _scannetpp(root, camera="PINHOLE 30 28 16 12", frames=3):
    base = root / SCENE / "merge_dslr_iphone"
    model = base / "colmap" / "sparse_render_rgb"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text(f"# cameras\n1 {camera.split()[0]} {W} {H} {' '.join(camera.split()[1:])}\n")
    lines = ["# images"]
    names = [f"iphone/frame_{i:06d}.jpg" for i in range(frames)] + ["dslr/DSC00001.JPG"]
    for i, name in enumerate(names):
        lines += [f"{i + 1} 1 0 0 0 {0.1 * i} 0.2 0.3 1 {name}", ""]
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    (model / "points3D.txt").write_text("")
    for i, name in enumerate(names):
        (base / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(base / "images" / name), np.full((H, W, 3), 30 * i, np.uint8))
    (base / "render_depth").mkdir()
    for i in range(frames):
        depth = np.full((H, W), 1500 + 100 * i, np.uint16)
        depth[0, 0] = 0  # no rendered surface
        cv2.imwrite(str(base / "render_depth" / f"frame_{i:06d}.png"), depth)
    (root / SCENE / "scans").mkdir()
    (root / SCENE / "scans" / "mesh_aligned_0.05.ply").write_text("ply\n")
    return root


def test_scannetpp_iphone_views_at_768x1024(tmp_path):
    root = _scannetpp(tmp_path / "scannetpp")
    (folder,) = convert_scannetpp(root, tmp_path / "gt", scenes=[SCENE])
    gt = read_ground_truth(folder)
    assert SCANNETPP_SIZE == (768, 1024)
    assert gt.names == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]  # iPhone only, not DSLR
    image = cv2.imread(str(folder / "images" / "frame_000002.png"))
    assert image.shape == (768, 1024, 3) and image[400, 500, 0] == 60
    # PINHOLE 30 28 16 12 at 32x24, times 32: COLMAP's centres at +0.5 scale like the focal lengths
    np.testing.assert_allclose(gt.intrinsics[0], [[960, 0, 512], [0, 896, 384], [0, 0, 1]])
    np.testing.assert_allclose(gt.extrinsics[1], np.c_[np.eye(3), [0.1, 0.2, 0.3]], atol=1e-12)
    depth = gt.depth[1]
    assert depth.shape == (768, 1024) and depth[400, 500] == pytest.approx(1.6)  # mm -> m
    assert (depth[:32, :32] == 0).all() and depth[32, 32] == pytest.approx(1.6)  # nearest: the 0 stays a block
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["fscore_threshold"] == 0.05 and meta["reference"] == "reference.ply"
    assert (meta["voxel_length"], meta["sdf_trunc"], meta["fusion_max_depth"]) == (0.02, 0.15, 5.0)
    assert (meta["sampling_number"], meta["down_sample"], meta["input_size"]) == (1_000_000, 0.02, [768, 1024])


def test_scannetpp_opencv_camera_is_undistorted_and_cropped(tmp_path):
    root = _scannetpp(tmp_path / "scannetpp", camera="OPENCV 30 30 16 12 -0.2 0.05 0 0", frames=1)
    (folder,) = convert_scannetpp(root, tmp_path / "gt", scenes=[SCENE])
    gt = read_ground_truth(folder)
    K_raw = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])  # OpenCV's centres at integers
    K_new, (x, y, w, h) = cv2.getOptimalNewCameraMatrix(K_raw, np.array([-0.2, 0.05, 0, 0, 0]), (W, H), 1, (W, H))
    expected = [[K_new[0, 0] * 1024 / w, 0, (K_new[0, 2] + 0.5 - x) * 1024 / w],
                [0, K_new[1, 1] * 768 / h, (K_new[1, 2] + 0.5 - y) * 768 / h], [0, 0, 1]]  # fmt: skip
    np.testing.assert_allclose(gt.intrinsics[0], expected)
    depth = gt.depth[0]
    valid = depth > 0
    assert depth.shape == (768, 1024) and valid.mean() > 0.9 and np.allclose(depth[valid], 1.5)


def test_scannetpp_undistorted_pixels_land_where_the_intrinsics_say(tmp_path):
    distortion = np.array([-0.2, 0.05, 0, 0, 0])
    root = _scannetpp(tmp_path / "scannetpp", camera="OPENCV 30 30 16 12 -0.2 0.05 0 0", frames=1)
    raw = np.zeros((H, W, 3), np.uint8)
    raw[5, 25] = 255  # one bright pixel off the centre, where distortion moves it
    cv2.imwrite(str(root / SCENE / "merge_dslr_iphone/images/iphone/frame_000000.jpg"), raw)
    (folder,) = convert_scannetpp(root, tmp_path / "gt", scenes=[SCENE])
    K = read_ground_truth(folder).intrinsics[0]
    image = cv2.imread(str(folder / "images" / "frame_000000.png"), cv2.IMREAD_GRAYSCALE).astype(float)
    v, u = np.nonzero(image > 0.5 * image.max())
    weights = image[v, u]
    seen = np.array([np.average(u, weights=weights), np.average(v, weights=weights)]) + 0.5  # centres at +0.5
    K_raw = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])
    ray = cv2.undistortPoints(np.array([[[25.0, 5.0]]]), K_raw, distortion)[0, 0]
    expected = (K @ [ray[0], ray[1], 1.0])[:2]
    np.testing.assert_allclose(seen, expected, atol=6.0)  # JPEG and resampling blur; half a raw pixel is 18


def test_scannetpp_bad_input_is_one_line(tmp_path):
    root = _scannetpp(tmp_path / "scannetpp")
    with pytest.raises(InputError, match="unknown ScanNet\\+\\+ scene 'scene0000_00'"):
        convert_scannetpp(root, tmp_path / "gt", scenes=["scene0000_00"])
    with pytest.raises(InputError, match="1ada7a0617/merge_dslr_iphone/colmap/sparse_render_rgb: no COLMAP model"):
        convert_scannetpp(root, tmp_path / "gt", scenes=[SCENE, "1ada7a0617"])
    assert not (tmp_path / "gt").exists()
