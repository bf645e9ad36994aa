"""Weights resolution (local file, folder, hub cache, offline) and the native load_model / infer API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import anydepth
from anydepth.errors import InputError, UnknownModelError, WeightsError
from anydepth.hub import resolve_weights
from anydepth.presets import PRESETS, get_preset
from tests.helpers.checkpoints import fake_hub_cache

pytestmark = pytest.mark.torch113


def test_presets_table():
    names = [m.name for m in anydepth.list_models()]
    for expected in (
        "dav2-small",
        "dav2-base",
        "dav2-large",
        "dav2-giant",
        "dav2-small-hf",
        "dav2-metric-indoor-small",
        "dav2-metric-outdoor-large",
    ):
        assert expected in names
    p = get_preset("dav2-metric-outdoor-base")
    assert p.max_depth == 80.0 and p.depth_kind == "metric"
    assert p.weights.repo_id == "depth-anything/Depth-Anything-V2-Metric-VKITTI-Base"
    assert p.weights.filename == "depth_anything_v2_metric_vkitti_vitb.pth"
    assert get_preset("dav2-small").license == "Apache-2.0"
    assert get_preset("dav2-large").license == "CC-BY-NC-4.0"
    assert get_preset("dav2-large-hf").weights.layout == "hf"
    assert all(m.family == "dav2" for m in anydepth.list_models("dav2"))
    with pytest.raises(UnknownModelError, match="Did you mean dav2-small"):
        get_preset("dav2-smal")


def test_resolve_local_file_and_folder(vits_weights, tmp_path):
    preset = PRESETS["dav2-small"]
    assert resolve_weights(preset, vits_weights) == vits_weights
    assert resolve_weights(preset, vits_weights.parent) == vits_weights
    (tmp_path / "a.pth").write_bytes(b"")
    (tmp_path / "b.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"expected depth_anything_v2_vits\.pth"):
        resolve_weights(preset, tmp_path)
    with pytest.raises(WeightsError, match="no such weights file"):
        resolve_weights(preset, tmp_path / "nothere.pth")


def test_resolve_from_hub_cache(vits_weights, tmp_path):
    preset = PRESETS["dav2-small"]
    cached = fake_hub_cache(tmp_path, preset.weights.repo_id, preset.weights.filename, vits_weights)
    got = resolve_weights(preset, cache_dir=tmp_path, local_files_only=True)
    assert got.resolve() == cached.resolve()
    # a repo id instead of a path takes the preset's file from that repo
    fake_hub_cache(tmp_path, "someone/mirror", preset.weights.filename, vits_weights)
    got = resolve_weights(preset, "someone/mirror", cache_dir=tmp_path, local_files_only=True)
    assert got.name == preset.weights.filename


def test_offline_error_names_repo_file_and_way_round(tmp_path):
    with pytest.raises(WeightsError) as info:
        anydepth.load_model("dav2-base", cache_dir=tmp_path, local_files_only=True, device="cpu")
    msg = str(info.value)
    assert "depth-anything/Depth-Anything-V2-Base" in msg
    assert "depth_anything_v2_vitb.pth" in msg
    assert "--weights" in msg
    with pytest.raises(WeightsError, match="no published checkpoint"):
        anydepth.load_model("dav2-giant", device="cpu")


@pytest.fixture(scope="module")
def model(vits_weights):
    return anydepth.load_model("dav2-small", weights=vits_weights, device="cpu", precision="fp32")


def _rgb(h=48, w=64, seed=0):
    rng = np.random.RandomState(seed)
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def test_infer_input_kinds_agree(model, tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / "x.png")
    from_np = model.infer(rgb, input_size=56)
    assert from_np.depth.shape == (1, 48, 64) and from_np.depth.dtype == np.float32
    assert from_np.depth_kind == "disparity"
    assert from_np.depth.std() > 0
    for other in (tmp_path / "x.png", str(tmp_path / "x.png"), Image.fromarray(rgb), torch.from_numpy(rgb)):
        np.testing.assert_allclose(model.infer(other, input_size=56).depth, from_np.depth, rtol=1e-5, atol=1e-6)


def test_batched_equals_one_by_one(model):
    images = [_rgb(seed=i) for i in range(3)]
    batched = model.infer(images, input_size=56, batch_size=3)
    singles = [model.infer(im, input_size=56).depth[0] for im in images]
    assert batched.depth.shape == (3, 48, 64)
    np.testing.assert_allclose(batched.depth, np.stack(singles), rtol=1e-4, atol=1e-5)


def test_mixed_sizes_need_infer_iter(model):
    images = [_rgb(48, 64), _rgb(30, 40), _rgb(48, 64)]
    preds = list(model.infer_iter(images, input_size=56, batch_size=2))
    assert [p.depth.shape for p in preds] == [(1, 48, 64), (1, 30, 40), (1, 48, 64)]
    with pytest.raises(InputError, match="infer_iter"):
        model.infer(images, input_size=56)
    processed = model.infer(_rgb(48, 64), input_size=56, output="processed")
    assert processed.depth.shape == (1, 56, 70)  # shorter side 56, width 64 * 56/48 = 74.7 -> 70


def test_input_is_not_modified(model):
    rgb = _rgb()
    keep = rgb.copy()
    model.infer(rgb, input_size=56)
    assert np.array_equal(rgb, keep)


@pytest.mark.precision
@pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 needs torch >= 2.0")
@pytest.mark.parametrize("height, width, input_size", [(96, 128, 112), (480, 640, 518)])
def test_bf16_stays_within_one_percent_of_fp32(vits_weights, height, width, input_size):
    """At a small size and at ``infer_image``'s default size (the benchmark's)."""
    fp32 = anydepth.load_model("dav2-small", weights=vits_weights, device="cpu", precision="fp32")
    bf16 = anydepth.load_model("dav2-small", weights=vits_weights, device="cpu", precision="bf16")
    rgb = _rgb(height, width)
    a = fp32.infer(rgb, input_size=input_size).depth
    b = bf16.infer(rgb, input_size=input_size).depth
    assert b.dtype == np.float32
    # relative L1 over the map: the random network outputs exact zeros (ReLU) on most pixels, where a
    # per-pixel relative error is undefined
    assert np.abs(a - b).sum() / np.abs(a).sum() <= 0.01
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def test_bad_options(vits_weights):
    with pytest.raises(InputError, match="precision"):
        anydepth.load_model("dav2-small", weights=vits_weights, device="cpu", precision="fp8")
    with pytest.raises(InputError, match="fp16 is not supported on the CPU"):
        anydepth.load_model("dav2-small", weights=vits_weights, device="cpu", precision="fp16")
    with pytest.raises(InputError, match="device"):
        anydepth.load_model("dav2-small", weights=vits_weights, device="tpu")


def test_hf_checkpoint_loads(vits_weights, tmp_path):
    from safetensors.torch import save_file

    from anydepth.checkpoints import read_state_dict
    from tests.helpers.checkpoints import to_hf

    sd = read_state_dict(vits_weights)
    save_file({k: v.contiguous() for k, v in to_hf(sd, depth=12).items()}, str(tmp_path / "model.safetensors"))
    hf = anydepth.load_model("dav2-small-hf", weights=tmp_path, device="cpu", precision="fp32")
    ref = anydepth.load_model("dav2-small", weights=vits_weights, device="cpu", precision="fp32")
    rgb = _rgb()
    np.testing.assert_array_equal(hf.infer(rgb, input_size=56).depth, ref.infer(rgb, input_size=56).depth)


def test_unreachable_hub_uses_cache_at_once(vits_weights, tmp_path, monkeypatch):
    import time

    from huggingface_hub import constants

    from anydepth import hub

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # closed port: refused at once
    assert not hub.hub_reachable(timeout=2.0)
    preset = PRESETS["dav2-small"]
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=r"unreachable or offline.*--weights PATH") as refused:
        resolve_weights(preset, cache_dir=tmp_path)
    # where to get the file by hand, and how to pass it in each interface
    url = "https://huggingface.co/depth-anything/Depth-Anything-V2-Small/resolve/main/depth_anything_v2_vits.pth"
    assert url in str(refused.value) and "WEIGHTS=PATH with make run" in str(refused.value)
    assert "--model anydepth-nano, the small built-in model" in str(refused.value)  # what runs with no hub
    cached = fake_hub_cache(tmp_path, preset.weights.repo_id, preset.weights.filename, vits_weights)
    assert resolve_weights(preset, cache_dir=tmp_path).resolve() == cached.resolve()
    assert time.perf_counter() - start < 10  # no retry back-off


def test_guess_preset_from_weights(tmp_path):
    from anydepth.presets import guess_preset

    assert guess_preset("depth-anything/DA3-SMALL") == "da3-small"
    assert guess_preset("depth-anything/Depth-Anything-V2-Large-hf") == "dav2-large-hf"
    pth = tmp_path / "depth_anything_v2_metric_vkitti_vitb.pth"
    pth.write_bytes(b"")
    assert guess_preset(str(pth)) == "dav2-metric-outdoor-base"
    (tmp_path / "renamed.pth").write_bytes(b"")
    assert guess_preset(str(tmp_path / "renamed.pth")) is None
    folder = tmp_path / "DA3"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_name": "da3metric-large"}')
    assert guess_preset(str(folder)) == "da3metric-large"
    (folder / "config.json").write_text("not json")
    assert guess_preset(str(folder)) is None
    assert guess_preset("someone/else") is None


def test_threads_and_compile_options(vits_weights, monkeypatch, caplog):
    import anydepth.pipelines.runtime as runtime

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda net: compiled.append(net) or net, raising=False)
    before = torch.get_num_threads()
    try:
        model = anydepth.load_model("dav2-small", weights=vits_weights, device="cpu", num_threads=1, compile=True)
        assert torch.get_num_threads() == 1 and compiled == [model.net]
        monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
        with caplog.at_level("WARNING"):
            net = runtime.compile_network(model.net, torch.device("cpu"))
        assert net is model.net and len(compiled) == 1 and "C++ compiler" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_guess_preset_from_a_video_checkpoint_name(tmp_path):
    from anydepth.presets import guess_preset

    pth = tmp_path / "video_depth_anything_vitb.pth"
    pth.write_bytes(b"")
    assert guess_preset(str(pth)) == "vda-base"


def test_guess_preset_from_an_export_manifest(tmp_path):
    from anydepth.presets import guess_preset

    artefact = tmp_path / "exported.onnx"
    artefact.write_bytes(b"")
    assert guess_preset(str(artefact)) is None
    (tmp_path / "exported.onnx.json").write_text('{"model": "da3mono-large"}')
    assert guess_preset(str(artefact)) == "da3mono-large"
    (tmp_path / "exported.onnx.json").write_text('{"model": "not-a-preset"}')
    assert guess_preset(str(artefact)) is None
