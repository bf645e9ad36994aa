"""``anydepth video --model depthcrafter``: outputs read back with independent readers, option checks first."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from anydepth.cli.main import app
from anydepth.io.video import VideoReader, VideoWriter
from tests.helpers.depthcrafter_tiny import synthetic_frames

FRAMES = 7
FAST = ["--dc-window", 4, "--dc-overlap", 1, "--dc-steps", 1, "--dc-decode-chunk", 2, "--seed", 3]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(depthcrafter_folders):
    return depthcrafter_folders


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("dc_clip") / "clip.mp4"
    with VideoWriter(path, fps=10) as writer:
        for frame in synthetic_frames(FRAMES, 64, 96).numpy():
            writer.write(frame)
    return path


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_video_outputs_read_back(tmp_path, folders, clip):
    import cv2
    import OpenEXR
    from PIL import Image

    depthcrafter, svd = folders
    out = tmp_path / "out"
    code, output = _run("video", clip, "--model", "depthcrafter", "--weights", depthcrafter, "--svd-weights", svd,
                        "--device", "cpu", "--raw", "npz,npy,exr,png16", *FAST, "-o", out, "-q")  # fmt: skip
    assert code == 0, output
    with np.load(out / "clip.npz") as z:
        assert z.files == ["depth"]  # upstream's --save_npz key
        depth = z["depth"]
    assert depth.shape == (FRAMES, 64, 96) and depth.dtype == np.float32
    assert depth.min() == 0.0 and depth.max() == pytest.approx(1.0)  # min-max over the video, as upstream
    np.testing.assert_array_equal(np.load(out / "clip_depths.npy"), depth)
    # the same numbers as the Python API on the decoded frames
    import anydepth

    model = anydepth.load_model("depthcrafter", weights=depthcrafter, svd_weights=svd, device="cpu")
    with VideoReader(clip) as reader:
        api = model.infer(list(reader), window=4, overlap=1, steps=1, decode_chunk_size=2, seed=3).depth
    np.testing.assert_allclose(depth, api, atol=1e-5)

    with OpenEXR.File(str(out / "clip" / "frame_0005.exr")) as exr:
        channels = exr.channels()
        assert list(channels) == ["Z"]
        np.testing.assert_allclose(channels["Z"].pixels, depth[5], atol=1e-6)
    png = cv2.imread(str(out / "clip_depths_png16" / "frame_00002.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (64, 96)
    np.testing.assert_allclose(png / 65535.0, depth[2], atol=1.0 / 65535 + 1e-6)
    assert np.array_equal(np.asarray(Image.open(out / "clip_depths_png16" / "frame_00002.png")), png)
    with VideoReader(out / "clip_vis.mp4") as vis:
        frames = list(vis)
    assert len(frames) == FRAMES and frames[0].shape == (64, 96, 3)
    assert not list(out.glob(".*partial*"))  # no temporary file left behind


def test_options_are_checked_before_any_weights(tmp_path, clip):
    missing = tmp_path / "no_such_weights"
    code, output = _run("video", clip, "--model", "depthcrafter", "--weights", missing, "--dc-window", 4,
                        "--dc-overlap", 4, "-o", tmp_path)  # fmt: skip
    assert code != 0 and "overlap 4" in output and "--dc-" in output
    code, output = _run("video", clip, "--model", "depthcrafter", "--weights", missing, "--raw", "tiff")
    assert code != 0 and "unknown raw format" in output
    code, output = _run("video", clip, "--model", "depthcrafter", "--weights", missing, "--device", "cpu",
                        "--cpu-offload", "model")  # fmt: skip
    assert code != 0 and "needs a CUDA device" in output
    code, output = _run("video", clip, "--model", "vda-small", "--svd-weights", missing)
    assert code != 0 and "DepthCrafter options" in output
    code, output = _run("image", clip, "--model", "depthcrafter")
    assert code != 0 and "video model" in output


def test_help_documents_the_options():
    code, output = _run("video", "--help")
    assert code == 0
    for option in ("--dc-steps", "--dc-guidance", "--dc-window", "--dc-overlap", "--dc-max-res", "--dc-no-align",
                   "--cpu-offload", "--seed", "--svd-weights"):  # fmt: skip
        assert option in output


def test_global_threads_and_compile_reach_depthcrafter(tmp_path, folders, clip, monkeypatch):
    import torch

    from anydepth.pipelines import runtime

    compiled = []

    def record(net, device):
        compiled.append(type(net).__name__)
        return net  # the eager network: compiling a tiny UNet takes minutes

    monkeypatch.setattr(runtime, "compile_network", record)
    depthcrafter, svd = folders
    before = torch.get_num_threads()
    try:
        code, output = _run("--threads", 2 if before == 1 else 1, "--compile", "video", clip, "--model", "depthcrafter",
                            "--weights", depthcrafter, "--svd-weights", svd, "--device", "cpu", "--max-frames", 3,
                            *FAST, "-o", tmp_path / "out", "-q")  # fmt: skip
        assert code == 0, output
        assert torch.get_num_threads() == (2 if before == 1 else 1)
    finally:
        torch.set_num_threads(before)
    assert compiled == ["DepthCrafterUNet"]
