"""`anydepth export`, `--backend` and the batch-folder behaviour (`--skip-existing`, failures reported) end to end
on a random dav2-small checkpoint."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.helpers.cli import assert_one_line_error, run_cli
from tests.helpers.inputs import write_photo
from tests.helpers.parity import p99_relative

pytestmark = pytest.mark.torch113

SIZE = ["--input-size", "28", "--quiet"]


@pytest.fixture(scope="module")
def torchscript_export(tmp_path_factory, request):
    vits_weights = request.getfixturevalue("vits_weights")
    out = tmp_path_factory.mktemp("export")
    code, output = run_cli(
        "export", "dav2-small", "--weights", vits_weights, "--format", "torchscript", "--size", "28x42",
        "--batch", "2", "--output", out,
    )  # fmt: skip
    assert code == 0, output
    assert "wrote" in output and "dav2-small_28x42.pt" in output
    return out / "dav2-small_28x42.pt"


def test_export_writes_the_artefact_and_its_manifest(torchscript_export):
    manifest = json.loads(torchscript_export.with_name(torchscript_export.name + ".json").read_text())
    assert manifest["model"] == "dav2-small" and manifest["format"] == "torchscript"
    assert (manifest["height"], manifest["width"], manifest["batch"]) == (28, 42, 2)
    assert list(manifest["files"]) == ["dav2-small_28x42.pt"]


def test_images_with_the_torchscript_backend_match_pytorch(tmp_path, vits_weights, torchscript_export):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_photo(folder / f"p{i}.png", h=40, w=60, seed=i)  # lower-bound 28 -> 28x42, the export size
    common = ["--raw", "npy", "--no-vis", *SIZE]
    code, output = run_cli(
        "images", folder, "--weights", vits_weights, "--precision", "fp32", "-o", tmp_path / "pt", *common
    )
    assert code == 0, output
    code, output = run_cli(
        "images", folder, "--weights", torchscript_export, "--backend", "torchscript", "-o", tmp_path / "ts", *common
    )
    assert code == 0, output
    for i in range(3):
        got = np.load(tmp_path / "ts" / f"p{i}_depth.npy")
        want = np.load(tmp_path / "pt" / f"p{i}_depth.npy")
        assert got.shape == want.shape == (40, 60)
        assert p99_relative(got, want) <= 1e-3


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--format", "onnx", "--size", "500x500"], ["500 is not a positive multiple of 14", "490 or 504"]),
        (["--format", "neuron", "--size", "518x518", "--dynamic"], ["--dynamic", "fixed at compile time"]),
        (["--format", "onnx", "--size", "big"], ["HEIGHTxWIDTH"]),
        (["--format", "coreml", "--size", "518x518"], ["unknown export format"]),
        (["--format", "onnx", "--size", "518x518", "--views", "4"], ["takes one image at a time"]),
    ],
)
def test_export_refuses_bad_requests_in_one_line_before_any_work(tmp_path, args, needles):
    missing = tmp_path / "missing.pth"  # never read: refusals come first
    code, output = run_cli("export", "dav2-small", "--weights", missing, "--output", tmp_path / "out", *args)
    assert_one_line_error(code, output, *needles)
    assert not (tmp_path / "out").exists()


def test_export_refuses_models_a_target_cannot_take(tmp_path):
    code, output = run_cli("export", "da3nested-giant-large", "--format", "onnx", "--size", "504x504", "-o", tmp_path)
    assert_one_line_error(code, output, "cannot be exported")
    code, output = run_cli("export", "da3-giant", "--format", "neuron", "--size", "504x504", "-o", tmp_path)
    assert_one_line_error(code, output, "too large for AWS Inferentia")


def test_neuron_export_says_how_to_get_torch_neuron(tmp_path, vits_weights):
    try:
        import torch_neuron  # noqa: F401

        pytest.skip("torch-neuron is installed here")
    except ImportError:
        pass
    code, output = run_cli(
        "export", "dav2-small", "-w", vits_weights, "--format", "neuron", "--size", "28x28", "-o", tmp_path
    )
    assert_one_line_error(code, output, "torch-neuron is not installed", "pip.repos.neuron.amazonaws.com")


def test_backend_with_a_wrong_model_is_one_line(tmp_path, torchscript_export):
    img = write_photo(tmp_path / "a.png")
    code, output = run_cli(
        "image",
        img,
        "--model",
        "dav2-base",
        "--weights",
        torchscript_export,
        "--backend",
        "torchscript",
        "-o",
        tmp_path,
    )
    assert_one_line_error(code, output, "export of dav2-small", "--model dav2-small")
    code, output = run_cli("image", img, "--weights", torchscript_export, "--backend", "tensorrt", "-o", tmp_path)
    assert_one_line_error(code, output, "unknown backend")


def test_images_skip_existing_and_report_failures_without_stopping(tmp_path, vits_weights):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("a", "b", "c"):
        write_photo(folder / f"{name}.png", seed=ord(name))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    args = ["images", folder, "--weights", vits_weights, "-o", out, "--raw", "png16", "--input-size", "28"]
    code, output = run_cli(*args)
    assert code == 1  # the broken image is reported, the others are written
    assert "broken.jpg" in output and "3 image(s) written" in output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a.png", "a_depth16.png", "b.png", "b_depth16.png", "c.png", "c_depth16.png"]

    os.utime(out / "a.png", (1, 1))
    (out / "b_depth16.png").unlink()  # b is no longer complete
    code, output = run_cli(*args, "--skip-existing")
    assert "1 image(s) written" in output and "(2 already done)" in output, output
    assert (out / "b_depth16.png").is_file()
    assert os.stat(out / "a.png").st_mtime == 1  # not rewritten


def test_auto_runs_an_exported_da3_scene(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'anydepth[deploy]'")
    from anydepth.deploy.export import ExportRequest, export_network
    from anydepth.pipelines.da3_preprocess import preprocess_da3
    from tests.helpers.inputs import photo_array
    from tests.helpers.networks import tiny_da3

    folder = tmp_path / "scene"
    folder.mkdir()
    views = [photo_array(60, 80, seed=i) for i in range(3)]
    for i, view in enumerate(views):
        Image.fromarray(view).save(folder / f"{i}.png")
    H, W = preprocess_da3(views, process_res=56).size
    result = export_network(tiny_da3(True), "da3-small", ExportRequest("onnx", H, W, views=3), tmp_path / "m")
    args = ["--model", "da3-small", "--backend", "onnxruntime", "--weights", result.path, "--quiet"]
    code, output = run_cli("auto", folder, *args, "--process-res", "56", "--export-format", "mini_npz", "--export-dir",
                        tmp_path / "out")  # fmt: skip
    assert code == 0, output
    with np.load(tmp_path / "out" / "exports" / "mini_npz" / "results.npz") as data:
        assert data["depth"].shape == (3, H, W) and data["extrinsics"].shape == (3, 3, 4)
    code, output = run_cli("auto", folder, *args, "--process-res", "112", "--export-dir", tmp_path / "out2")
    assert_one_line_error(code, output, "export it again for this size")


def test_an_image_whose_outputs_cannot_be_written_is_reported_and_the_run_goes_on(tmp_path, vits_weights):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    for name in ("a", "b"):
        write_photo(folder / f"{name}.png", seed=len(name))
    (out / "a_depth16.png").mkdir()  # a folder where a's 16-bit PNG should go: its rename fails
    code, output = run_cli(
        "images", folder, "--weights", vits_weights, "-o", out, "--raw", "png16", "--input-size", "28"
    )
    assert code == 1 and "Traceback" not in output
    assert "error: a: outputs not written" in output and "1 image(s) written" in output
    assert (out / "b_depth16.png").is_file() and (out / "b.png").is_file()
