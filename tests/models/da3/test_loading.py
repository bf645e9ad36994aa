"""DA3 presets and the hub folder layout (config.json + model.safetensors, ``model.`` prefix, shared tensors once)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import anydepth
from anydepth.errors import InputError, WeightsError
from anydepth.models.da3.network import build_da3_network
from anydepth.presets import PRESETS, get_preset
from tests.helpers.checkpoints import fake_hub_cache

pytestmark = pytest.mark.torch113


def test_da3_presets():
    small = get_preset("da3-small")
    assert small.family == "da3" and small.arch == "da3-small" and small.depth_kind == "depth"
    assert small.weights.repo_id == "depth-anything/DA3-SMALL" and small.weights.filename == "model.safetensors"
    assert small.license == "Apache-2.0"
    assert get_preset("da3-large").weights.repo_id == "depth-anything/DA3-LARGE-1.1"
    assert get_preset("da3-large-1.0").weights.repo_id == "depth-anything/DA3-LARGE"
    assert get_preset("da3-giant").license == "CC-BY-NC-4.0"
    nested = get_preset("da3nested-giant-large")
    assert nested.depth_kind == "metric" and nested.weights.repo_id.endswith("DA3NESTED-GIANT-LARGE-1.1")
    assert get_preset("da3metric-large").depth_kind == "metric"
    assert {m.name for m in anydepth.list_models("da3")} >= {"da3-small", "da3-base", "da3mono-large"}


@pytest.mark.skipif(not hasattr(torch.device("cpu"), "__enter__"), reason="meta device needs torch >= 2")
def test_da3_parameter_counts_in_table():
    for name, preset in PRESETS.items():
        if preset.family != "da3":
            continue
        with torch.device("meta"):
            net = build_da3_network(preset.arch)
        assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - preset.params) < 0.1, name


def test_hub_folder_loads_strictly(da3_small_folder):
    folder, net = da3_small_folder
    stored = load_file(str(folder / "model.safetensors"))
    assert all(k.startswith("model.") for k in stored)
    assert "model.head.scratch.output_conv2_aux.1.2.weight" not in stored  # shared tensor stored once
    loaded = anydepth.load_network("da3-small", weights=folder, device="cpu")
    x = torch.randn(1, 2, 3, 28, 28)
    with torch.no_grad():
        a, b = net(x), loaded(x)
    torch.testing.assert_close(a.depth, b.depth)
    torch.testing.assert_close(a.extrinsics, b.extrinsics)
    loaded_file = anydepth.load_network("da3-small", weights=folder / "model.safetensors", device="cpu")
    assert all(torch.equal(p, q) for p, q in zip(loaded.parameters(), loaded_file.parameters()))


def test_hub_cache_and_wrong_architecture(da3_small_folder, tmp_path):
    folder, _ = da3_small_folder
    fake_hub_cache(tmp_path, "depth-anything/DA3-SMALL", "model.safetensors", folder / "model.safetensors")
    net = anydepth.load_network("da3-small", cache_dir=tmp_path, local_files_only=True, device="cpu")
    assert net.predicts_cameras
    with pytest.raises(WeightsError, match="shape mismatches"):
        anydepth.load_network("da3-base", weights=folder, device="cpu")


def test_load_model_gives_the_multiview_pipeline(da3_small_folder):
    from anydepth.pipelines.multiview import MultiViewModel

    folder, _ = da3_small_folder
    model = anydepth.load_model("da3-small", weights=folder, device="cpu", precision="fp32")
    assert isinstance(model, MultiViewModel) and model.predicts_cameras


def test_infer_gs_without_gaussian_head_is_refused():
    net = build_da3_network("da3-small")
    with pytest.raises(InputError, match="Gaussian head"):
        net(torch.zeros(1, 1, 3, 28, 28), infer_gs=True)
    mono = build_da3_network("da3mono-large")
    with pytest.raises(InputError, match="monocular"):
        mono(torch.zeros(1, 1, 3, 28, 28), use_ray_pose=True)
