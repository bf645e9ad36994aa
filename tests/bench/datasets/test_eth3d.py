"""The ETH3D reader, on a small scene written here in the layout of ETH3D's high-res JPG training data."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets import sample_frames
from anydepth.bench.datasets.eth3d import convert_eth3d, quaternion_to_rotation
from anydepth.bench.score import read_ground_truth
from anydepth.errors import InputError

W, H = 16, 12
QUARTER_TURN_Z = (np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4))  # (w, x, y, z): 90 degrees about z


def _eth3d(root, scene="relief", views=("DSC_0100.JPG", "DSC_0427.JPG", "DSC_0101.JPG", "DSC_0102.JPG",
                                        "DSC_0103.JPG"), missing_image="DSC_0102.JPG", depth_size=(W, H)):  # fmt: skip
    scene_dir = root / scene
    calibration = scene_dir / "dslr_calibration_jpg"
    calibration.mkdir(parents=True)
    params = "10 11 8 6 0.1 0.01 0 0 0 0 0 0"  # THIN_PRISM_FISHEYE: fx fy cx cy, then distortion
    (calibration / "cameras.txt").write_text(f"# Camera list\n# ID MODEL W H PARAMS\n# Number: 1\n"
                                             f"0 THIN_PRISM_FISHEYE {W} {H} {params}\n")  # fmt: skip
    lines = ["# Image list", "# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", "# POINTS2D", "# Number"]
    for i, name in enumerate(views):
        qw, qx, qy, qz = QUARTER_TURN_Z
        lines += [f"{i} {qw} {qx} {qy} {qz} {i} 2 3 0 dslr_images/{name}", "" if i % 2 else "1.0 2.0 -1"]
    (calibration / "images.txt").write_text("\n".join(lines) + "\n")
    (scene_dir / "images" / "dslr_images").mkdir(parents=True)
    (scene_dir / "ground_truth_depth" / "dslr_images").mkdir(parents=True)
    (scene_dir / "masks_for_images" / "dslr_images").mkdir(parents=True)
    for i, name in enumerate(views):
        if name != missing_image:
            _, jpg = cv2.imencode(".jpg", np.full((H, W, 3), 20 * i, np.uint8))
            (scene_dir / "images" / "dslr_images" / name).write_bytes(jpg.tobytes())
        depth = np.full(depth_size[::-1], 2.0 + i, np.float32)
        depth[0, 0] = np.inf  # no laser return
        depth.astype("<f4").tofile(scene_dir / "ground_truth_depth" / "dslr_images" / name)
        mask = np.zeros((H, W), np.uint8)
        mask[1, 1], mask[2, 2] = 1, 2  # 1 = occluded (dropped, as upstream); other values kept
        cv2.imwrite(str(scene_dir / "masks_for_images" / "dslr_images" / name.replace(".JPG", ".png")), mask)
    (scene_dir / "combined_mesh.ply").write_text("ply\n")
    return root


def test_eth3d_views_filters_depth_and_metadata(tmp_path):
    root = _eth3d(tmp_path / "eth3d")
    (folder,) = convert_eth3d(root, tmp_path / "gt", scenes=["relief"])
    gt = read_ground_truth(folder)
    # 427 is one of ETH3D_FILTER_KEYS["relief"]; DSC_0102 has no image file
    assert gt.names == ["DSC_0100.JPG", "DSC_0101.JPG", "DSC_0103.JPG"]
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(gt.extrinsics[2], np.c_[R, [4.0, 2.0, 3.0]], atol=1e-12)  # COLMAP's w2c as is
    np.testing.assert_allclose(gt.intrinsics[0], [[10, 0, 8], [0, 11, 6], [0, 0, 1]])  # pinhole part only
    depth = gt.depth[1]  # view 2 of images.txt: 4 m
    assert depth.shape == (H, W) and depth[5, 5] == 4.0
    assert depth[0, 0] == 0.0 and depth[1, 1] == 0.0 and depth[2, 2] == 4.0  # inf and mask 1 -> none
    assert (folder / "images" / "DSC_0103.JPG").read_bytes() == (
        root / "relief/images/dslr_images/DSC_0103.JPG"
    ).read_bytes()
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["fscore_threshold"] == 0.25 and meta["reference"] == "reference.ply" and meta["units"] == "m"
    assert meta["voxel_length"] == pytest.approx(5 * 4 / 512) and meta["sdf_trunc"] == pytest.approx(0.2)
    assert meta["fusion_max_depth"] == 100000.0 and meta["sampling_number"] == 1_000_000
    assert meta["down_sample"] == pytest.approx(5 * 4 / 512) and meta["has_depth"] is True
    assert (folder / "reference.ply").read_text() == "ply\n"


def test_eth3d_samples_in_images_txt_order(tmp_path):
    names = tuple(f"DSC_{i:04d}.JPG" for i in (9, 3, 7, 1, 5))  # not sorted: upstream keeps the file's order
    root = _eth3d(tmp_path / "eth3d", "courtyard", names, missing_image=None)
    (folder,) = convert_eth3d(root, tmp_path / "gt", scenes=["courtyard"], max_frames=3)
    assert read_ground_truth(folder).names == [names[k] for k in sample_frames(5, 3)]
    (again,) = convert_eth3d(root, tmp_path / "gt", scenes=["courtyard"], max_frames=5)  # kept as converted
    assert len(read_ground_truth(again).names) == 3


def test_quaternion_matches_a_rotation_about_z():
    np.testing.assert_allclose(quaternion_to_rotation(1.0, 0, 0, 0), np.eye(3))
    np.testing.assert_allclose(quaternion_to_rotation(*QUARTER_TURN_Z) @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-12)


def test_eth3d_bad_input_is_one_line_before_any_work(tmp_path):
    root = _eth3d(tmp_path / "eth3d")
    with pytest.raises(InputError, match="left out of upstream"):
        convert_eth3d(root, tmp_path / "gt", scenes=["terrace"])
    with pytest.raises(InputError, match="unknown ETH3D scene 'garden'"):
        convert_eth3d(root, tmp_path / "gt", scenes=["garden"])
    with pytest.raises(InputError, match=r"courtyard/dslr_calibration_jpg/cameras.txt: missing"):
        convert_eth3d(root, tmp_path / "gt", scenes=["relief", "courtyard"])
    assert not (tmp_path / "gt").exists()  # relief was not converted before courtyard was found missing
    with pytest.raises(InputError, match="no such folder"):
        convert_eth3d(tmp_path / "nothing", tmp_path / "gt")
    bad = _eth3d(tmp_path / "bad", depth_size=(W, H - 1))
    with pytest.raises(InputError, match="expected 16x12"):
        convert_eth3d(bad, tmp_path / "gt2", scenes=["relief"])
