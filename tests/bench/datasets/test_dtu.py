"""The DTU reader, on a small scan written here in the layout of MVSNet's DTU evaluation data."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets.dtu import convert_dtu, read_pfm, reference_first
from anydepth.bench.score import read_ground_truth
from anydepth.errors import InputError

W, H = 8, 6
VIEWS = 36  # more than 34, so that upstream's reference view (the 34th) moves first


def write_cam(path, view):
    w2c = np.eye(4)
    w2c[:3, 3] = [view, 0.0, 500.0]  # millimetres
    K = [[100.0, 0, 4], [0, 100.0, 3], [0, 0, 1]]
    text = ["extrinsic", *(" ".join(str(v) for v in row) for row in w2c), "", "intrinsic",
            *(" ".join(str(v) for v in row) for row in K), "", "425 2.5"]  # fmt: skip
    path.write_text("\n".join(text) + "\n")


def write_pfm(path, array):
    """A greyscale little-endian PFM, bottom row first as the format stores it."""
    with open(path, "wb") as handle:
        handle.write(f"Pf\n{array.shape[1]} {array.shape[0]}\n-1.0\n".encode())
        handle.write(np.flipud(array).astype("<f4").tobytes())


def _dtu(root, scan="scan1", pfm=True):
    (root / "Rectified" / scan).mkdir(parents=True)
    (root / "Cameras").mkdir()
    depths = root / "depth_raw" / "Depths" / scan
    depths.mkdir(parents=True)
    for view in range(VIEWS):
        cv2.imwrite(
            str(root / "Rectified" / scan / f"rect_{view + 1:03d}_3_r5000.png"), np.full((H, W, 3), view, np.uint8)
        )
        write_cam(root / "Cameras" / f"{view:08d}_cam.txt", view)
        visual = np.full((H, W), 200, np.uint8)
        visual[0, :] = 10  # not above 10: no ground truth there (upstream's mask)
        cv2.imwrite(str(depths / f"depth_visual_{view:04d}.png"), visual)
        if pfm:
            depth = np.full((H, W), 500.0 + view, np.float32)
            depth[H - 1, W - 1] = 700.0  # bottom-right, to catch a PFM read upside down
            write_pfm(depths / f"depth_map_{view:04d}.pfm", depth)
    (root / "Points" / "stl").mkdir(parents=True)
    (root / "Points" / "stl" / "stl001_total.ply").write_text("ply\n")
    obs = root / "SampleSet" / "mvs_data" / "ObsMask"
    obs.mkdir(parents=True)
    (obs / "ObsMask1_10.mat").write_bytes(b"mask")
    (obs / "Plane1.mat").write_bytes(b"plane")
    return root


def test_dtu_view_order_depth_in_mm_and_protocol(tmp_path):
    root = _dtu(tmp_path / "dtu")
    (folder,) = convert_dtu(root, tmp_path / "gt", scenes=["scan1"])
    gt = read_ground_truth(folder)
    expected = [f"rect_{v:03d}_3_r5000.png" for v in [34, *range(1, 34), 35, 36]]
    assert gt.names == expected  # the 34th view first, as upstream
    np.testing.assert_allclose(gt.extrinsics[0][:, 3], [33.0, 0.0, 500.0])  # Cameras/00000033_cam.txt, mm
    np.testing.assert_allclose(gt.intrinsics[0], [[100, 0, 4], [0, 100, 3], [0, 0, 1]])
    depth = gt.depth[0]  # view 33: 533 mm
    assert depth[2, 2] == 533.0 and depth[H - 1, W - 1] == 700.0 and (depth[0] == 0).all()
    mask = cv2.imread(str(folder / "masks" / "rect_034_3_r5000.png"), cv2.IMREAD_GRAYSCALE)
    assert (mask[0] == 0).all() and (mask[1:] == 255).all()
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["units"] == "mm" and meta["fscore_threshold"] is None and meta["has_depth"] is True
    assert meta["reference"] == "reference.ply" and (folder / "reference.ply").read_text() == "ply\n"
    assert meta["dtu"] == {"obs_mask": "obs_mask.mat", "ground_plane": "ground_plane.mat", "masks": "masks",
                           "max_dist": 20, "patch_size": 60, "down_dense": 0.2, "dist_thresh": 0.2,
                           "num_consist": 4, "max_points": 4_000_000}  # fmt: skip
    assert (folder / "obs_mask.mat").read_bytes() == b"mask" and (folder / "ground_plane.mat").read_bytes() == b"plane"


def test_dtu_without_depth_maps_keeps_the_masks(tmp_path):
    root = _dtu(tmp_path / "dtu", pfm=False)
    (folder,) = convert_dtu(root, tmp_path / "gt", scenes=["scan1"])
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["has_depth"] is False and all((d == 0).all() for d in read_ground_truth(folder).depth)
    assert (folder / "masks" / "rect_001_3_r5000.png").is_file()


def test_pfm_and_reference_order(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_pfm(tmp_path / "a.pfm", array)
    np.testing.assert_array_equal(read_pfm(tmp_path / "a.pfm"), array)
    assert reference_first([1, 2, 3]) == [1, 2, 3]


def test_dtu_bad_input_is_one_line(tmp_path):
    with pytest.raises(InputError, match="Rectified: missing"):
        convert_dtu(tmp_path, tmp_path / "gt")
    root = _dtu(tmp_path / "dtu")
    with pytest.raises(InputError, match="unknown DTU scene 'scan2'"):
        convert_dtu(root, tmp_path / "gt", scenes=["scan2"])
    with pytest.raises(InputError, match="Rectified/scan4: missing"):
        convert_dtu(root, tmp_path / "gt", scenes=["scan1", "scan4"])
    assert not (tmp_path / "gt").exists()
    (root / "Cameras" / "00000005_cam.txt").write_text("extrinsic\n1 0 0\n")
    with pytest.raises(InputError, match=r"00000005_cam\.txt: missing or not an MVSNet camera file"):
        convert_dtu(root, tmp_path / "gt", scenes=["scan1"])
