"""`anydepth stream`: the real pipeline end to end (a short video through a random da3-small), and its one-line
errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.cli import assert_one_line_error, run_cli
from tests.helpers.inputs import write_video


def test_stream_a_video_end_to_end(tmp_path, da3_small_folder):
    pytest.importorskip("av")
    weights, _ = da3_small_folder
    video = write_video(tmp_path / "clip.mp4", frames=16, fps=10)
    out = tmp_path / "out"
    args = ("stream", video, "--weights", weights, "--export-dir", out, "--chunk-size", "6", "--overlap", "2",
            "--process-res", "56", "--device", "cpu", "--quiet", "--keep-work")  # fmt: skip
    code, output = run_cli(*args, "--no-loop")
    assert code == 0, output
    assert "16 frames in 4 chunk(s)" in output
    c2w = np.loadtxt(out / "camera_poses.txt").reshape(-1, 4, 4)
    assert c2w.shape == (16, 4, 4) and np.allclose(c2w[:, 3], [0, 0, 0, 1])
    assert np.allclose(np.linalg.det(c2w[:, :3, :3]), 1.0, atol=1e-4)  # rigid: the chunks' scales went into depth
    with np.load(out / "results_output" / "frame_15.npz") as frame:
        assert frame["depth"].shape == frame["conf"].shape == frame["image"].shape[:2] == (42, 56)
        assert np.isfinite(frame["depth"]).all() and frame["intrinsics"].shape == (3, 3)
    plyfile = pytest.importorskip("plyfile")
    assert len(plyfile.PlyData.read(str(out / "pointcloud.ply"))["vertex"]) > 0
    assert sorted(p.name for p in (out / "_work").glob("chunk_*")) == [
        "chunk_0000_head.npz", "chunk_0001_head.npz", "chunk_0002_head.npz", "chunk_0003_head.npz",
        "chunk_0003_tail.npz",
    ]  # fmt: skip
    # the same command again finds every chunk finished: nothing is inferred, the outputs are the same
    code, output = run_cli(*args, "--no-loop")
    assert code == 0, output
    assert np.allclose(np.loadtxt(out / "camera_poses.txt").reshape(-1, 4, 4), c2w)


def test_stream_with_loop_closure_on_the_backbone_descriptors(tmp_path, da3_small_folder):
    pytest.importorskip("av")
    pytest.importorskip("pypose")
    weights, _ = da3_small_folder
    video = write_video(tmp_path / "clip.mp4", frames=16, fps=10)
    code, output = run_cli(
        "stream", video, "--weights", weights, "--export-dir", tmp_path / "out", "--chunk-size", "6", "--overlap",
        "2", "--process-res", "56", "--device", "cpu", "--quiet", "--loop-threshold", "-1", "--loop-chunk-size", "4",
    )  # fmt: skip
    assert code == 0, output
    assert "1 loop(s) closed (search: " in output  # any similarity passes -1: one loop survives the suppression
    assert np.loadtxt(tmp_path / "out" / "camera_poses.txt").shape == (16, 16)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--chunk-size", "10", "--overlap", "10"), ("--overlap 10", "below the chunk size")),
        (("--align", "affine"), ("--align-method affine", "sim3")),
        (("--disk-budget", "0"), ("--disk-budget",)),
    ],
)
def test_stream_bad_options_one_line(tmp_path, args, needles):
    video = tmp_path / "x.mp4"
    video.write_bytes(b"\0" * 100)
    code, output = run_cli("stream", video, "--export-dir", tmp_path / "out", *args)
    assert_one_line_error(code, output, *needles)
    assert not (tmp_path / "out").exists()


def test_stream_unreadable_video_one_line(tmp_path):
    pytest.importorskip("av")
    video = tmp_path / "x.mp4"
    video.write_bytes(b"\0" * 100)
    code, output = run_cli("stream", video, "--export-dir", tmp_path / "out", "--no-loop")
    assert_one_line_error(code, output, "x.mp4")
    assert not (tmp_path / "out").exists()


def test_stream_a_colmap_dataset_in_its_cameras(tmp_path, da3_small_folder):
    """Every chunk is conditioned on the dataset's cameras and reported in them: the trajectory is the dataset's."""
    pytest.importorskip("pycolmap")
    from PIL import Image

    from anydepth.export.colmap import export_colmap
    from anydepth.prediction import Prediction
    from tests.helpers.inputs import scene_cameras, scene_views

    weights, _ = da3_small_folder
    root = tmp_path / "dataset"
    (root / "images").mkdir(parents=True)
    paths = [root / "images" / f"view{i}.png" for i in range(3)]
    for path, view in zip(paths, scene_views()):
        Image.fromarray(view).save(path)
    ext, K = scene_cameras()
    pred = Prediction(depth=np.full((3, 60, 80), 4.0, np.float32), depth_kind="depth", extrinsics=ext[:, :3],
                      intrinsics=K, processed_images=np.stack(scene_views()))  # fmt: skip
    export_colmap(pred, root / "sparse" / "0", image_paths=[str(p) for p in paths])
    out = tmp_path / "out"
    code, output = run_cli(
        "stream", root, "--weights", weights, "--export-dir", out, "--chunk-size", "2", "--overlap", "1",
        "--process-res", "56", "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert code == 0, output
    assert "3 frames in 2 chunk(s), 0 loop(s)" in output
    assert np.allclose(np.load(out / "w2c.npy")[:, :3], ext[:, :3], atol=1e-4)
