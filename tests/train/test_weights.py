"""Trained weights in the official layouts: read back by the family loaders and by anydepth.load_model."""

from __future__ import annotations

import json

import pytest
import torch

import anydepth
from anydepth.checkpoints import convert_da3_state_dict, read_state_dict
from anydepth.families import build_network, load_network_weights
from anydepth.presets import get_preset
from anydepth.train.weights import official_da3_state_dict, save_official_weights
from tests.helpers.networks import random_net, tiny_config, tiny_da3, tiny_vda
from tests.helpers.random_weights import fill_


def _same_outputs(a, b, x):
    with torch.no_grad():
        out_a, out_b = a.eval()(x), b.eval()(x)
    if hasattr(out_a, "depth"):
        out_a, out_b = out_a.depth, out_b.depth
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)


def test_da3_layout_is_the_inverse_of_the_loader_conversion():
    sd = tiny_da3(anyview=True).state_dict()
    official = official_da3_state_dict(sd)
    assert all(k.startswith("model.") for k in official)
    # the shared aux LayerNorm is stored once, under level 0, as the hub files do
    assert "model.head.scratch.output_conv2_aux.0.2.weight" in official
    assert not any(f"output_conv2_aux.{level}.2." in k for k in official for level in (1, 2, 3))
    back = convert_da3_state_dict(official)
    assert back.keys() == sd.keys()
    for k in sd:
        torch.testing.assert_close(back[k], sd[k], rtol=0, atol=0)


@pytest.mark.parametrize(
    "preset, make",
    [
        ("dav2-small", lambda: random_net(tiny_config(), seed=3)),
        ("dav2-metric-indoor-small", lambda: random_net(tiny_config(max_depth=20.0), seed=3)),
        ("da3-small", lambda: tiny_da3(anyview=True, seed=4)),
        ("da3mono-large", lambda: tiny_da3(anyview=False, seed=4)),
        ("vda-small", lambda: tiny_vda(seed=5)),
    ],
)
def test_tiny_networks_round_trip_through_the_family_loader(tmp_path, preset, make):
    preset = get_preset(preset)
    net = make()
    path = save_official_weights(net, preset, tmp_path)
    if preset.family == "da3":
        assert path.is_dir() and json.loads((path / "config.json").read_text()) == {"model_name": preset.arch}
        path = path / "model.safetensors"
        assert all(k.startswith("model.") for k in read_state_dict(path))
    else:
        assert path.name == preset.weights.filename
    fresh = fill_(make(), seed=99)  # same architecture, other weights
    load_network_weights(fresh, preset, path)
    shape = (1, 4, 3, 42, 56) if preset.family == "vda" else (1, 2, 3, 42, 56) if preset.name == "da3-small" else None
    x = torch.randn(shape or (1, 3, 42, 56)) if preset.family != "da3" else torch.randn(shape or (1, 1, 3, 42, 56))
    _same_outputs(net, fresh, x)


@pytest.mark.parametrize("name", ["dav2-small", "da3-small", "vda-small"])
def test_official_sizes_load_with_load_model(tmp_path, name):
    """Every CLI command and export loads weights through load_model: the written files must pass it."""
    preset = get_preset(name)
    net = fill_(build_network(preset), seed=21).eval()
    path = save_official_weights(net, preset, tmp_path)
    model = anydepth.load_model(name, weights=str(path), device="cpu", precision="fp32")
    shape = {"dav2": (1, 3, 28, 42), "da3": (1, 1, 3, 28, 42), "vda": (1, 2, 3, 28, 42)}[preset.family]
    _same_outputs(net, model.net, torch.randn(shape))
