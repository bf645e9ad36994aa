"""Sintel: a tiny training folder with .dpt / .cam files written here by the format's definition, converted,
scored, and run end to end with a random Video Depth Anything."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from anydepth.bench.datasets.sintel import SINTEL_TAG, convert_sintel, read_cam, read_dpt
from anydepth.bench.score import read_ground_truth, score
from anydepth.errors import InputError

H, W = 12, 16
ROWS = np.linspace(2.0, 9.0, H, dtype=np.float32)  # depth per row: a plane that a sideways camera sees unchanged
K = np.array([[20.0, 0.0, 7.5], [0.0, 21.0, 5.5], [0.0, 0.0, 1.0]])


def write_dpt(path, depth):
    height, width = depth.shape
    path.write_bytes(np.array([SINTEL_TAG], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
                     + depth.astype("<f4").tobytes())  # fmt: skip


def write_cam(path, intrinsics, extrinsics):
    path.write_bytes(np.array([SINTEL_TAG], "<f4").tobytes() + intrinsics.astype("<f8").tobytes()
                     + extrinsics.astype("<f8").tobytes())  # fmt: skip


def image(i):
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 15 + i, y * 20, np.full_like(x, 7 * i)], axis=-1).astype(np.uint8)


def sintel_root(root, scene="alley_1", frames=(1, 2, 3, 10)):
    training = root / "training"
    for folder in ("clean", "depth", "camdata_left"):
        (training / folder / scene).mkdir(parents=True)
    for i in frames:
        stem = f"frame_{i:04d}"
        cv2.imwrite(str(training / "clean" / scene / f"{stem}.png"), image(i)[..., ::-1])
        depth = np.repeat(ROWS[:, None], W, axis=1)
        if i == 2:
            depth[0, 0], depth[0, 1], depth[0, 2] = np.nan, np.inf, -1.0
        write_dpt(training / "depth" / scene / f"{stem}.dpt", depth)
        w2c = np.concatenate([np.eye(3), [[-0.05 * i], [0.0], [0.0]]], axis=1)  # camera moving along +x
        write_cam(training / "camdata_left" / scene / f"{stem}.cam", K, w2c)
    return root


def test_binary_readers_follow_the_format(tmp_path):
    depth = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_dpt(tmp_path / "a.dpt", depth)
    assert np.array_equal(read_dpt(tmp_path / "a.dpt"), depth)
    E = np.arange(12.0).reshape(3, 4)
    write_cam(tmp_path / "a.cam", K, E)
    intrinsics, extrinsics = read_cam(tmp_path / "a.cam")
    assert np.array_equal(intrinsics, K) and np.array_equal(extrinsics, E)
    (tmp_path / "bad.dpt").write_bytes(np.array([1.0, 2.0, 3.0], "<f4").tobytes())
    with pytest.raises(InputError, match=r"bad.dpt: missing or not a Sintel .dpt"):
        read_dpt(tmp_path / "bad.dpt")
    (tmp_path / "short.dpt").write_bytes((tmp_path / "a.dpt").read_bytes()[:-4])
    with pytest.raises(InputError, match="cannot hold 4x3"):
        read_dpt(tmp_path / "short.dpt")


def test_sintel_converts_whole_sequences_with_cameras(tmp_path):
    root = sintel_root(tmp_path / "raw")
    (folder,) = convert_sintel(root, tmp_path / "gt", scenes=["alley_1"])
    assert folder.name == "sintel-alley_1"
    gt = read_ground_truth(folder)
    assert gt.names == ["frame_0001.png", "frame_0002.png", "frame_0003.png", "frame_0010.png"]  # all, in order
    assert np.array_equal(gt.depth[0][:, 3], ROWS)  # float metres as stored, no crop
    assert gt.depth[1][0, :3].tolist() == [0.0, 0.0, 0.0]  # NaN, inf and negative -> none
    np.testing.assert_array_equal(gt.extrinsics[3][:, 3], [-0.5, 0.0, 0.0])  # world-to-camera, as the .cam holds it
    np.testing.assert_array_equal(gt.intrinsics[2], K)
    assert np.array_equal(cv2.imread(str(folder / "images" / "frame_0003.png"))[..., ::-1], image(3))
    meta = json.loads((folder / "scene.json").read_text())
    assert (meta["max_depth"], meta["min_depth"], meta["has_poses"], meta["units"]) == (70.0, 1e-3, True, "m")
    # kept as converted
    (again,) = convert_sintel(root, tmp_path / "gt", scenes=["alley_1"], max_frames=2)
    assert len(read_ground_truth(again).names) == 4
    (short,) = convert_sintel(root, tmp_path / "gt2", scenes=["alley_1"], max_frames=2)
    assert read_ground_truth(short).names == ["frame_0001.png", "frame_0002.png"]


def test_ground_truth_as_prediction_scores_zero_with_tae(tmp_path):
    (folder,) = convert_sintel(sintel_root(tmp_path / "raw"), tmp_path / "gt", scenes=["alley_1"])
    gt = read_ground_truth(folder)
    plane = np.broadcast_to(ROWS[None, :, None], (len(gt.names), H, W))  # also where frame 2 has no depth
    np.savez(tmp_path / "pred.npz", depth=plane * 3.0)  # depth up to scale
    result = score(tmp_path / "pred.npz", folder, modes=["video"])["video"]
    assert result["abs_rel"] == pytest.approx(0.0, abs=1e-6) and result["delta1"] == 1.0
    assert result["tae"] == pytest.approx(0.0, abs=1e-6)  # the plane seen from a sideways camera keeps its depth


def test_sintel_bad_roots_fail_naming_the_layout(tmp_path):
    with pytest.raises(InputError, match="no training/clean folder"):
        convert_sintel(tmp_path, tmp_path / "gt")
    root = sintel_root(tmp_path / "raw")
    with pytest.raises(InputError, match="unknown Sintel scene 'forest_9'"):
        convert_sintel(root, tmp_path / "gt", scenes=["forest_9"])
    with pytest.raises(InputError, match=r"clean/alley_2: missing \(expected training/clean"):
        convert_sintel(root, tmp_path / "gt")  # the default list: all 23 sequences
    (root / "training" / "depth" / "alley_1" / "frame_0003.dpt").unlink()
    with pytest.raises(InputError, match=r"frame_0003\.dpt: missing or not a Sintel \.dpt"):
        convert_sintel(root, tmp_path / "gt", scenes=["alley_1"])
    assert not (tmp_path / "gt" / "sintel-alley_1" / "cameras.npz").exists()  # not marked complete


@pytest.fixture(scope="module")
def vda_weights(tmp_path_factory):
    from tests.helpers.vda_fixtures import CASES, upstream_state_dict

    path = tmp_path_factory.mktemp("vda_bench") / "video_depth_anything_vits.pth"
    torch.save(upstream_state_dict("vits", CASES["windowed"]["seed"]), path)
    return path


def test_bench_run_sintel_with_a_video_model_end_to_end(tmp_path, vda_weights):
    from anydepth.cli.main import app

    root = sintel_root(tmp_path / "raw")
    out = tmp_path / "run"
    args = ["bench", "run", "--dataset", "sintel", "--root", str(root), "--scenes", "alley_1", "--model",
            "vda-small", "--weights", str(vda_weights), "--device", "cpu", "--precision", "fp32",
            "--process-res", "28", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "video          abs_rel" in res.output and "video          tae" in res.output
    with np.load(out / "sintel-alley_1" / "results.npz") as prediction:
        assert prediction["depth"].shape[0] == 4 and str(prediction["depth_kind"]) == "disparity"
    result = json.loads((out / "sintel-alley_1.json").read_text())
    assert result["views"] == 4 and result["video"]["abs_rel"] >= 0.0 and result["video"]["tae"] is not None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenes"] == ["sintel-alley_1"] and set(summary["mean"]) == {"video"}
