"""Depth Anything V2 against the upstream reference code, through fixtures (no upstream package needed here).

The fixtures come from ``scripts/make_v2_fixtures.py`` (its docstring says how to regenerate them): upstream's own
``DepthAnythingV2.infer_image`` and transformers' ``DepthAnythingForDepthEstimation`` run on deterministic random
weights, which ``random_weights.random_state_dict`` rebuilds here from the stored key names, shapes and seeds.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Dict, Optional, Tuple

import numpy as np
import pytest
import torch

from anydepth.checkpoints import convert_hf_to_v2, load_strict
from anydepth.compat import DepthAnythingV2
from anydepth.errors import WeightsError
from anydepth.layers import set_fused_attention
from anydepth.models.depth_anything_v2 import DepthAnythingV2Config, DepthAnythingV2Net
from tests.helpers.parity import p99_rel_err
from tests.helpers.paths import FIXTURES
from tests.helpers.random_weights import random_state_dict

pytestmark = pytest.mark.torch113

TOLERANCE = 1e-3  # p99 relative error, float32
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# ``with torch.device("meta"):`` (building ViT-L/G without allocating them) needs torch >= 2.0
needs_meta_context = pytest.mark.skipif(
    not hasattr(torch.device("cpu"), "__enter__"), reason="torch.device as a context manager needs torch >= 2.0"
)


def _load_npz(name: str) -> Dict[str, np.ndarray]:
    with np.load(FIXTURES / name, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


V2 = _load_npz("v2_parity.npz")
V2_CASES = json.loads(str(V2["cases_json"]))
V2_KEYS = json.loads((FIXTURES / "v2_keys.json").read_text())
HF = _load_npz("v2_hf_parity.npz")
HF_CASES = json.loads(str(HF["cases_json"]))
HF_KEYS = json.loads((FIXTURES / "v2_hf_keys.json").read_text())


@cache
def _upstream_weights(encoder: str, seed: int) -> Dict[str, torch.Tensor]:
    return random_state_dict(V2_KEYS[encoder], seed)


@cache
def _compat_model(encoder: str, features: int, out_channels: Tuple[int, ...], max_depth: Optional[float], seed: int):
    torch.manual_seed(0)
    model = DepthAnythingV2(encoder=encoder, features=features, out_channels=list(out_channels), max_depth=max_depth)
    model.load_state_dict(_upstream_weights(encoder, seed))
    return model.eval()


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "explicit"])
@pytest.mark.parametrize("case", V2_CASES, ids=[c["name"] for c in V2_CASES])
def test_infer_image_matches_upstream(case, fused, record_property):
    model = _compat_model(
        case["encoder"], case["features"], tuple(case["out_channels"]), case["max_depth"], case["seed"]
    )
    set_fused_attention(model, fused)
    image = V2[f"image_{case['image']}"]
    before = image.copy()
    expected = V2[f"expected_{case['name']}"]
    with torch.no_grad():
        depth = model.infer_image(image, input_size=case["input_size"])
    assert isinstance(depth, np.ndarray)
    assert depth.dtype == np.float32
    assert depth.shape == image.shape[:2] == expected.shape
    assert np.array_equal(image, before), "infer_image modified the caller's image"
    err = p99_rel_err(depth, expected)
    record_property("p99_rel_err", err)
    print(f"{case['name']} [{'sdpa' if fused else 'explicit'}] p99 rel err {err:.3g}")
    assert err <= TOLERANCE, f"{case['name']}: p99 relative error {err:.3g} > {TOLERANCE}"


@needs_meta_context
@pytest.mark.parametrize("encoder", ["vits", "vitb", "vitl", "vitg"])
@pytest.mark.parametrize("max_depth", [None, 20.0], ids=["relative", "metric"])
def test_state_dict_layout_matches_upstream(encoder, max_depth):
    expected = {k: list(v) for k, v in V2_KEYS[encoder].items()}
    cfg = DepthAnythingV2Config.from_encoder(encoder, max_depth=max_depth)
    with torch.device("meta"):
        net = DepthAnythingV2Net(cfg)
        features, out_channels = cfg.head.features, list(cfg.head.out_channels)
        compat = DepthAnythingV2(encoder=encoder, features=features, out_channels=out_channels, max_depth=max_depth)
    for model in (net, compat):
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert sorted(set(ours) - set(expected)) == [], "keys upstream does not have"
        assert sorted(set(expected) - set(ours)) == [], "upstream keys we lack"
        assert ours == expected


# ------------------------------------------------------------------------------------- transformers (-hf) layout


@cache
def _hf_weights(kind: str, seed: int) -> Dict[str, torch.Tensor]:
    return random_state_dict(HF_KEYS[kind], seed)


def _hf_input(case) -> torch.Tensor:
    if case["input"] == "input_70x84":
        return torch.from_numpy(HF["input_70x84"])
    # a 74x74 RGB image repeated 7x7 to 518x518, normalised in float32 (the rule stored in meta_json)
    rgb = np.repeat(np.repeat(HF[case["input"]], 7, axis=0), 7, axis=1)
    x = (rgb.astype(np.float32) / np.float32(255.0) - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32))


@pytest.mark.parametrize("case", HF_CASES, ids=[c["name"] for c in HF_CASES])
def test_hf_layout_converts_to_matching_network(case, record_property):
    torch.manual_seed(0)
    sd = convert_hf_to_v2(_hf_weights(case["hf_keys"], case["seed"]), depth=case["depth"], swiglu=case["swiglu"])
    net = DepthAnythingV2Net(DepthAnythingV2Config.from_encoder("vits", max_depth=case["max_depth"]))
    load_strict(net, sd, source=case["name"]).eval()
    x = _hf_input(case)
    assert list(x.shape[-2:]) == case["input_hw"]
    with torch.no_grad():
        depth = net(x)[0].numpy()
    if case["subsample"]:
        offset, stride = case["subsample"]
        depth = depth[offset::stride, offset::stride]
    expected = HF[f"expected_{case['name']}"]
    err = p99_rel_err(depth, expected)
    record_property("p99_rel_err", err)
    print(f"{case['name']} p99 rel err {err:.3g}")
    assert err <= TOLERANCE, f"{case['name']}: p99 relative error {err:.3g} > {TOLERANCE}"


@pytest.mark.parametrize(
    "kind,encoder,depth,swiglu",
    [("small", "vits", 12, False), ("large", "vitl", 24, False), ("giant", "vitg", 40, True)],
)
def test_hf_key_table_maps_every_key(kind, encoder, depth, swiglu):
    hf = {k: torch.empty(v, device="meta") for k, v in HF_KEYS[kind].items()}
    out = convert_hf_to_v2(hf, depth=depth, swiglu=swiglu)
    assert {k: list(v.shape) for k, v in out.items()} == {k: list(v) for k, v in V2_KEYS[encoder].items()}


def _meta_small() -> Dict[str, torch.Tensor]:
    return {k: torch.empty(v, device="meta") for k, v in HF_KEYS["small"].items()}


def test_hf_extra_key_is_named():
    sd = _meta_small()
    sd["backbone.encoder.layer.0.bogus.weight"] = torch.empty(3, device="meta")
    with pytest.raises(WeightsError, match=r"backbone\.encoder\.layer\.0\.bogus\.weight"):
        convert_hf_to_v2(sd, depth=12)


def test_hf_too_deep_checkpoint_is_refused():
    hf = {k: torch.empty(v, device="meta") for k, v in HF_KEYS["large"].items()}
    with pytest.raises(WeightsError, match=r"backbone\.encoder\.layer\.1[2-9]\."):
        convert_hf_to_v2(hf, depth=12)


@needs_meta_context
def test_hf_missing_key_is_named():
    sd = _meta_small()
    del sd["neck.convs.2.weight"]
    converted = convert_hf_to_v2(sd, depth=12)
    with torch.device("meta"):
        net = DepthAnythingV2Net(DepthAnythingV2Config.from_encoder("vits"))
    with pytest.raises(WeightsError, match=r"depth_head\.scratch\.layer3_rn\.weight"):
        load_strict(net, converted)


def test_hf_incomplete_qkv_is_refused():
    sd = _meta_small()
    del sd["backbone.encoder.layer.3.attention.attention.key.weight"]
    with pytest.raises(WeightsError, match=r"layer 3"):
        convert_hf_to_v2(sd, depth=12)
