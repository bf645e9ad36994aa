"""Dataset readers, on small folders written here in each dataset's own layout."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from anydepth.bench.datasets import sample_frames
from anydepth.bench.datasets.sevenscenes import convert_7scenes
from anydepth.bench.score import read_ground_truth
from anydepth.errors import InputError


def test_sampling_is_upstreams_and_leaves_the_global_generator_alone():
    random.seed(7)
    before = random.random()
    random.seed(7)
    picked = sample_frames(30, 10)
    assert random.random() == before  # the caller's stream is untouched
    random.seed(42)
    indices = list(range(30))
    random.shuffle(indices)
    assert picked == sorted(indices[:10])  # what upstream's evaluator draws
    assert sample_frames(10, 10) == list(range(10)) and sample_frames(10, -1) == list(range(10))


def _seven_scenes(root, frames=4, skip_pose=None):
    seq = root / "7Scenes" / "chess" / "seq-01"
    seq.mkdir(parents=True)
    for i in range(frames):
        stem = seq / f"frame-{i:06d}"
        cv2.imwrite(str(stem) + ".color.png", np.full((48, 64, 3), 40 * i, np.uint8))
        depth = np.full((48, 64), 1500 + 100 * i, np.uint16)
        depth[0, 0] = 65535
        cv2.imwrite(str(stem) + ".depth.png", depth)
        if i != skip_pose:
            c2w = np.eye(4)
            c2w[:3, 3] = [0.1 * i, 0.0, 0.0]
            np.savetxt(str(stem) + ".pose.txt", c2w)
    return root


def test_7scenes_converts_to_the_ground_truth_layout(tmp_path):
    root = _seven_scenes(tmp_path / "raw", frames=4, skip_pose=2)
    (folder,) = convert_7scenes(root, tmp_path / "gt", scenes=["chess"], max_frames=100)
    gt = read_ground_truth(folder)
    assert gt.names == ["frame-000000.png", "frame-000001.png", "frame-000003.png"]  # frame 2 has no pose
    assert gt.depth[2][1, 1] == pytest.approx(1.8) and gt.depth[0][0, 0] == 0.0  # mm -> m; 65535 -> none
    np.testing.assert_allclose(gt.extrinsics[1][:, 3], [-0.1, 0.0, 0.0])  # camera-to-world inverted
    assert gt.intrinsics[0][0, 0] == 585.0 and gt.intrinsics[0][1, 2] == 240.0
    (again,) = convert_7scenes(root, tmp_path / "gt", scenes=["chess"], max_frames=2)  # kept as converted
    assert len(read_ground_truth(again).names) == 3


def test_7scenes_bad_roots_fail_naming_the_layout(tmp_path):
    with pytest.raises(InputError, match="no 7Scenes/ folder"):
        convert_7scenes(tmp_path, tmp_path / "gt")
    root = _seven_scenes(tmp_path / "raw")
    with pytest.raises(InputError, match="heads/seq-01: missing"):
        convert_7scenes(root, tmp_path / "gt", scenes=["heads"])
    with pytest.raises(InputError, match="unknown 7-Scenes scene"):
        convert_7scenes(root, tmp_path / "gt", scenes=["garden"])


def test_cli_convert_then_score_the_ground_truth_as_prediction(tmp_path):
    from typer.testing import CliRunner

    from anydepth.bench.score import score
    from anydepth.cli.main import app

    root = _seven_scenes(tmp_path / "raw")
    args = ["bench", "convert", "--dataset", "7scenes", "--root", str(root), "--out", str(tmp_path / "gt"),
            "--scenes", "chess"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    gt = read_ground_truth(tmp_path / "gt" / "7scenes-chess")
    pred = tmp_path / "pred.npz"
    np.savez(pred, depth=np.stack(gt.depth) * 2.0, extrinsics=gt.extrinsics)
    result = score(pred, gt.folder)
    assert result["depth"]["mean"]["abs_rel"] == pytest.approx(0.0, abs=1e-6) and result["pose"]["auc03"] == 1.0
    res = CliRunner().invoke(app, ["bench", "convert", "--dataset", "eth4d", "--root", "x", "--out", "y"])
    assert res.exit_code == 1 and "choose one of 7scenes" in res.output
