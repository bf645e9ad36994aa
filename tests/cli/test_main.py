"""The command line end to end on a random dav2-small checkpoint; every output read back by another library."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.cli import assert_one_line_error, run_cli
from tests.helpers.inputs import write_photo, write_video

pytestmark = pytest.mark.torch113

SIZE = ["--input-size", "28", "--quiet"]


def test_image_with_all_raw_outputs(tmp_path, vits_weights):
    img = write_photo(tmp_path / "room.jpg")
    out = tmp_path / "out"
    code, output = run_cli(
        "image", img, "--weights", vits_weights, "--outdir", out, "--raw", "png16,npy,npz,exr", *SIZE
    )
    assert code == 0, output
    vis = np.asarray(Image.open(out / "room.png"))
    assert vis.shape == (48, 64 * 2 + 50, 3)  # input, white gap, depth: V2's run.py layout
    assert (vis[:, 64:114] == 255).all()
    depth = np.load(out / "room_depth.npy")
    assert depth.shape == (48, 64) and depth.dtype == np.float32 and depth.std() > 0
    np.testing.assert_array_equal(np.load(out / "room_depth.npz")["depth"], depth)
    png16 = Image.open(out / "room_depth16.png")
    assert png16.mode.startswith("I")
    levels = np.asarray(png16).astype(np.float64)
    assert levels.max() == 65535 and levels.min() == 0
    expected = (depth - depth.min()) / (depth.max() - depth.min()) * 65535
    assert np.abs(levels - expected).max() <= 1.0
    import OpenEXR

    with OpenEXR.File(str(out / "room_depth.exr")) as exr:
        channels = exr.channels()
        z = channels["Z"].pixels if "Z" in channels else next(iter(channels.values())).pixels
    np.testing.assert_allclose(np.asarray(z, np.float32).reshape(48, 64), depth, rtol=1e-6)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["room.png", "room_depth.npy", "room_depth.npz", "room_depth16.png", "room_depth.exr"]
    )


def test_image_pred_only_grayscale(tmp_path, vits_weights):
    img = write_photo(tmp_path / "a.png")
    code, output = run_cli("image", img, "-w", vits_weights, "-o", tmp_path / "o", "--pred-only", "--grayscale", *SIZE)
    assert code == 0, output
    vis = np.asarray(Image.open(tmp_path / "o" / "a.png"))
    assert vis.shape == (48, 64, 3)
    assert np.array_equal(vis[..., 0], vis[..., 1]) and np.array_equal(vis[..., 1], vis[..., 2])
    assert vis.min() == 0 and vis.max() == 255


def test_images_folder_glob_and_list(tmp_path, vits_weights):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        write_photo(src / f"img{i}.png", seed=i)
    write_photo(src / "small.jpg", h=30, w=40)
    code, output = run_cli("images", src, "-w", vits_weights, "-o", tmp_path / "dir", "--batch-size", "2", *SIZE)
    assert code == 0, output
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["img0.png", "img1.png", "img2.png", "small.png"]
    assert np.asarray(Image.open(tmp_path / "dir" / "small.png")).shape == (30, 40 * 2 + 50, 3)

    code, output = run_cli("images", f"{src}/img*.png", "-w", vits_weights, "-o", tmp_path / "glob", *SIZE)
    assert code == 0, output
    assert len(list((tmp_path / "glob").iterdir())) == 3

    listing = tmp_path / "list.txt"
    listing.write_text("# two of them\nsrc/img2.png\n\nsrc/small.jpg\n")
    code, output = run_cli(
        "images", listing, "-w", vits_weights, "-o", tmp_path / "txt", "--no-vis", "--raw", "npy", *SIZE
    )
    assert code == 0, output
    assert sorted(p.name for p in (tmp_path / "txt").iterdir()) == ["img2_depth.npy", "small_depth.npy"]


def _batched_and_single(tmp_path, vits_weights, precision):
    """Depth of three images from one ``images`` run in a batch of 3, and from one ``image`` run each."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        write_photo(src / f"img{i}.png", seed=i)
    options = ["-w", vits_weights, "--precision", precision, "--raw", "npy", *SIZE]
    code, output = run_cli("images", src, "-o", tmp_path / "b", "--batch-size", "3", *options)
    assert code == 0, output
    pairs = []
    for i in range(3):
        code, output = run_cli("image", src / f"img{i}.png", "-o", tmp_path / "s", *options)
        assert code == 0, output
        pairs.append((np.load(tmp_path / "b" / f"img{i}_depth.npy"), np.load(tmp_path / "s" / f"img{i}_depth.npy")))
    return pairs


def test_batched_folder_equals_single_images(tmp_path, vits_weights):
    # float32: batching must not change the result (convolution algorithms may differ by batch size, 2e-6 seen)
    for batched, single in _batched_and_single(tmp_path, vits_weights, "fp32"):
        np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)


@pytest.mark.precision
@pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 needs torch >= 2.0")
def test_batched_folder_under_bf16_within_the_precision_policy(tmp_path, vits_weights):
    """Under bf16, oneDNN may round a batch of 3 differently from one image (1.6e-3 apart on an AMD EPYC, 2e-6 on
    an Intel AMX CPU); the policy holds each within 1% of float32, so the two stay within 2% of each other."""
    for batched, single in _batched_and_single(tmp_path, vits_weights, "bf16"):
        assert batched.shape == single.shape == (48, 64)
        assert np.abs(batched - single).sum() <= 0.02 * np.abs(single).sum()


def test_corrupt_image_in_folder_is_reported_and_skipped(tmp_path, vits_weights):
    src = tmp_path / "src"
    src.mkdir()
    write_photo(src / "good.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    code, output = run_cli("images", src, "-w", vits_weights, "-o", tmp_path / "out", *SIZE)
    assert_one_line_error(code, output, "broken.jpg")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


def test_video_outputs(tmp_path, vits_weights):
    video = write_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    code, output = run_cli("video", video, "-w", vits_weights, "-o", out, "--raw", "npy,png16", *SIZE)
    assert code == 0, output
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 12
    assert frames[0].shape[:2] == (48, 64 * 2 + 50)
    depth = np.load(out / "clip_depth.npy")
    assert depth.shape == (12, 48, 64) and depth.dtype == np.float32
    pngs = sorted((out / "clip_depth").glob("*.png"))
    assert len(pngs) == 12 and np.asarray(Image.open(pngs[0])).shape == (48, 64)


def test_video_stride_and_max_frames(tmp_path, vits_weights):
    video = write_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    code, output = run_cli(
        "video", video, "-w", vits_weights, "-o", out, "--stride", "3", "--pred-only", "--raw", "npy", *SIZE
    )
    assert code == 0, output
    assert np.load(out / "clip_depth.npy").shape == (4, 48, 64)
    code, output = run_cli("video", video, "-w", vits_weights, "-o", out, "--max-frames", "5", "--raw", "npy", *SIZE)
    assert code == 0, output
    assert np.load(out / "clip_depth.npy").shape[0] == 5


@pytest.mark.parametrize(
    "args,needles",
    [
        (["image", "{tmp}/missing.jpg"], ["missing.jpg"]),
        (["image", "{tmp}/corrupt.png"], ["corrupt.png"]),
        (["image", "{tmp}/ok.png", "--model", "dav2-tiny"], ["dav2-tiny"]),
        (["image", "{tmp}/ok.png", "--raw", "tiff"], ["tiff"]),
        (["image", "{tmp}/ok.png", "--precision", "fp8"], ["fp8"]),
        (["image", "{tmp}/ok.png", "--weights", "{tmp}/nothing.pth"], ["nothing.pth"]),
        (["image", "{tmp}/ok.png", "--weights", "{tmp}/corrupt.png"], ["corrupt.png"]),
        (["images", "{tmp}/empty"], ["empty"]),
        (["video", "{tmp}/corrupt.mp4"], ["corrupt.mp4"]),
        (["video", "{tmp}/ok.png"], ["ok.png"]),
    ],
)
def test_bad_input_gives_one_line_and_no_output(tmp_path, vits_weights, args, needles):
    write_photo(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--weights" not in argv:
        argv += ["--weights", str(vits_weights)]
    code, output = run_cli(*argv, "--outdir", out, *SIZE)
    assert_one_line_error(code, output, *needles)
    assert not out.exists() or not any(out.rglob("*"))


def test_console_script_entry_point(tmp_path, vits_weights):
    img = write_photo(tmp_path / "p.png")
    proc = subprocess.run(
        [sys.executable, "-m", "anydepth", "image", str(img), "-w", str(vits_weights), "-o", str(tmp_path), *SIZE],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.png").exists()
    proc = subprocess.run([sys.executable, "-m", "anydepth", "image", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_global_threads_option(tmp_path, vits_weights):
    import torch

    before = torch.get_num_threads()
    try:
        img = write_photo(tmp_path / "room.jpg")
        code, output = run_cli("--threads", "1", "image", img, "--weights", vits_weights, "--outdir", tmp_path, *SIZE)
        assert code == 0, output
        assert torch.get_num_threads() == 1 and (tmp_path / "room.png").is_file()
    finally:
        torch.set_num_threads(before)


def test_models_table_keeps_its_columns():
    code, output = run_cli("models")
    assert code == 0, output
    lines = output.splitlines()
    header = lines[0]
    assert header.split() == ["name", "kind", "params", "repo", "license"]
    repo_at, license_at = header.index("repo"), header.index("license")
    rows = {line.split()[0]: line for line in lines[1:]}
    assert {"dav2-small", "da3-small", "vda-small", "depthcrafter"} <= set(rows)
    for line in rows.values():  # every repo and licence starts under its heading, the long ones too
        assert line[repo_at - 1] == " " and line[repo_at] != " ", line
        assert line[license_at - 1] == " " and line[license_at] != " ", line
    assert rows["depthcrafter"][repo_at:].startswith("tencent/DepthCrafter ")


def test_piped_help_names_the_argument_and_keeps_option_names_whole():
    # stdout is a pipe here, as in `anydepth auto --help | less`
    proc = subprocess.run([sys.executable, "-m", "anydepth", "auto", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: anydepth auto [OPTIONS] PATH\n")
    assert "-w, --weights, --model-dir" in proc.stdout and "…" not in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "anydepth", "export", "--help"], capture_output=True, text=True)
    assert proc.stdout.startswith("Usage: anydepth export [OPTIONS] MODEL\n")


def test_the_package_and_the_command_line_import_without_torch():
    """`import anydepth`, building the commands (`anydepth --help`) and listing the models (`anydepth models`) do
    not import torch: it loads with the first job that runs a model."""
    import subprocess
    import sys

    code = (
        "import sys, anydepth, anydepth.cli.main, anydepth.jobs\n"
        "assert any(m.name == 'anydepth-nano' and m.card for m in anydepth.list_models())  # `anydepth models`\n"
        "heavy = sorted(m for m in ('torch', 'cv2', 'fastapi', 'gradio', 'trimesh') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert 'load_model' in dir(anydepth) and anydepth.load_model.__module__ == 'anydepth.api'\n"
        "assert 'torch' in sys.modules and callable(anydepth.jobs.images_job)\n"
        "from anydepth import Prediction, export, list_models\n"
        "from anydepth.jobs.options import PRECISIONS\n"
        "assert 'bf16' in PRECISIONS\n"
        "try:\n"
        "    anydepth.no_such_name\n"
        "except AttributeError as exc:\n"
        "    assert 'no_such_name' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
