"""``anydepth video --model vda-*``: outputs read back with independent readers, checks before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from anydepth.cli.main import app
from anydepth.io.video import VideoReader, VideoWriter
from tests.helpers.vda_fixtures import CASES, upstream_state_dict

FRAMES, H, W = 26, 48, 64


@pytest.fixture(scope="module")
def vda_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("vda_cli") / "video_depth_anything_vits.pth"
    torch.save(upstream_state_dict("vits", CASES["windowed"]["seed"]), path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("vda_clip") / "clip.mp4"
    y, x = np.mgrid[0:H, 0 : 2 * W]
    base = np.stack([x * 255 // (2 * W), y * 255 // H, (x * y) % 256], axis=-1).astype(np.uint8)
    with VideoWriter(path, fps=12) as writer:
        for i in range(FRAMES):
            writer.write(np.ascontiguousarray(base[:, i : i + W]))
    return path


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_video_outputs_read_back(tmp_path, vda_weights, clip):
    import OpenEXR

    out = tmp_path / "out"
    options = ["--device", "cpu", "--precision", "fp32", "--input-size", 28, "--raw", "npz,npy,exr,png16"]
    code, output = _run("video", clip, "--model", "vda-small", "--weights", vda_weights, *options, "-o", out, "-q")
    assert code == 0, output
    with np.load(out / "clip_depths.npz") as z:
        assert z.files == ["depths"]
        depths = z["depths"]
    assert depths.shape == (FRAMES, H, W) and depths.dtype == np.float32
    np.testing.assert_array_equal(np.load(out / "clip_depths.npy"), depths)
    # the same numbers as the Python API on the decoded frames
    import anydepth

    model = anydepth.load_model("vda-small", weights=vda_weights, device="cpu", precision="fp32")
    with VideoReader(clip) as reader:
        api = np.stack(list(model.infer_frames(reader, input_size=28)))
    np.testing.assert_allclose(depths, api, rtol=1e-5, atol=1e-6)

    with OpenEXR.File(str(out / "clip_depths_exr" / "frame_00007.exr")) as exr:
        z = exr.channels()["Z"].pixels
    np.testing.assert_array_equal(z, depths[7])

    import cv2

    png = np.stack([cv2.imread(str(out / "clip_depths_png16" / f"frame_{i:05d}.png"), -1) for i in range(FRAMES)])
    assert png.dtype == np.uint16 and png.min() == 0 and png.max() == 65535  # one range for the whole video
    expected = np.rint((depths - depths.min()) / (depths.max() - depths.min()) * 65535)
    assert np.abs(png.astype(np.float64) - expected).max() <= 1

    import av

    with av.open(str(out / "clip_vis.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES and frames[0].shape == (H, W, 3)
    assert not list(out.glob(".*partial*"))


def test_streaming_mode_and_only_the_video(tmp_path, vda_weights, clip):
    out = tmp_path / "out"
    code, output = _run("video", clip, "-m", "vda-small", "-w", vda_weights, "--device", "cpu", "--input-size", 28,
                        "--vda-mode", "streaming", "--max-frames", 5, "--grayscale", "-o", out, "-q")  # fmt: skip
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["clip_vis.mp4"]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--raw", "tiff"], "unknown raw format"),
        (["--vda-mode", "offline"], "--vda-mode"),
        (["--vda-align", "median"], "--vda-align"),
    ],
)
def test_bad_options_fail_before_loading(tmp_path, clip, extra, needle):
    code, output = _run("video", clip, "-m", "vda-small", "-w", tmp_path / "missing.pth", "-o", tmp_path, *extra)
    assert code == 1 and needle in output and len(output.strip().splitlines()) == 1


def test_image_commands_point_video_models_to_video(tmp_path):
    code, output = _run("image", tmp_path / "x.png", "-m", "vda-small")
    assert code == 1 and "anydepth video" in output


def test_global_threads_and_compile_reach_video_depth_anything(tmp_path, vda_weights, clip, monkeypatch):
    import anydepth.api

    compiled = []

    def record(net, device):
        compiled.append(type(net).__name__)
        return net

    monkeypatch.setattr(anydepth.api, "compile_network", record)
    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1
    try:
        options = ["--device", "cpu", "--input-size", 28, "--max-frames", 4, "-o", tmp_path / "out", "-q"]
        code, output = _run("--threads", threads, "--compile", "video", clip, "-m", "vda-small", "-w", vda_weights,
                            *options)  # fmt: skip
        assert code == 0, output
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert compiled == ["VideoDepthAnythingNet"]
