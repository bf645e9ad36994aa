"""The DTU-64 reader (poses only), on a small scan written here in upstream DA3's ``dtu64/`` layout."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets.dtu64 import convert_dtu64
from anydepth.bench.score import read_ground_truth, score
from anydepth.errors import InputError

from .test_dtu import write_cam

W, H = 8, 6


def _dtu64(root, views=36, no_camera=5):
    (root / "scan24" / "image").mkdir(parents=True)
    (root / "Cameras").mkdir()
    for view in range(views):
        cv2.imwrite(str(root / "scan24" / "image" / f"{view:08d}.png"), np.full((H, W, 3), view, np.uint8))
        if view != no_camera:
            write_cam(root / "Cameras" / f"{view:08d}_cam.txt", view)
    return root


def test_dtu64_is_pose_only(tmp_path):
    root = _dtu64(tmp_path / "dtu64")
    (folder,) = convert_dtu64(root, tmp_path / "gt", scenes=["scan24"])
    gt = read_ground_truth(folder)
    # the 34th file first, as upstream; view 5 has no camera file and is skipped
    assert gt.names == [f"{v:08d}.png" for v in [33, 0, 1, 2, 3, 4, *range(6, 33), 34, 35]]
    np.testing.assert_allclose(gt.extrinsics[0][:, 3], [33.0, 0.0, 500.0])
    assert all(d.shape == (H, W) and (d == 0).all() for d in gt.depth)
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["has_depth"] is False and meta["has_poses"] is True and meta["units"] == "mm"
    assert meta["reference"] is None

    pred = tmp_path / "pred.npz"
    np.savez(pred, depth=np.ones((len(gt.names), H, W)), extrinsics=gt.extrinsics)
    assert score(pred, folder)["pose"]["auc03"] == 1.0  # the default modes are pose alone
    with pytest.raises(InputError, match="has no ground-truth depth; the depth, recon-posed mode"):
        score(pred, folder, modes=["depth", "pose", "recon-posed"])


def test_dtu64_bad_input_is_one_line(tmp_path):
    with pytest.raises(InputError, match="Cameras: missing"):
        convert_dtu64(tmp_path, tmp_path / "gt")
    root = _dtu64(tmp_path / "dtu64", views=3)
    with pytest.raises(InputError, match="unknown DTU-64 scene 'scan1'"):
        convert_dtu64(root, tmp_path / "gt", scenes=["scan1"])
    with pytest.raises(InputError, match="scan37/image: missing"):
        convert_dtu64(root, tmp_path / "gt", scenes=["scan24", "scan37"])
    assert not (tmp_path / "gt").exists()
