"""Depth Anything 3 heads against the upstream reference code (through fixtures), key layouts, chunking, precision.

The fixtures come from ``scripts/make_da3_head_fixtures.py`` (its docstring says how to regenerate them): upstream's
DualDPT, DPT, GSDPT and GaussianAdapter run on deterministic random weights, which
``random_weights.random_state_dict`` rebuilds here from the stored key names, shapes and seeds.
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor

from anydepth.errors import ShapeError
from anydepth.geometry.rotations import quaternion_to_rotation_matrix, rotation_matrix_to_quaternion
from anydepth.models.da3.gaussian_head import (
    GAUSSIAN_DPT_CONFIG_VITG,
    GaussianAdapter,
    GaussianAdapterConfig,
    GaussianDPTConfig,
    GaussianDPTHead,
    rotate_sh,
)
from anydepth.models.da3.heads import (
    DPT_SKY_CONFIG_VITL,
    DUALDPT_CONFIGS,
    DPTSkyConfig,
    DPTSkyHead,
    DualDPTConfig,
    DualDPTHead,
    expand_shared_head_keys,
    uv_position_embedding,
)
from tests.helpers.parity import p99_rel_err
from tests.helpers.paths import FIXTURES
from tests.helpers.random_weights import random_state_dict

pytestmark = pytest.mark.torch113

TOLERANCE = 1e-3  # p99 relative error, float32
needs_meta_context = pytest.mark.skipif(
    not hasattr(torch.device("cpu"), "__enter__"), reason="torch.device as a context manager needs torch >= 2.0"
)

with np.load(FIXTURES / "da3_heads.npz", allow_pickle=False) as _z:
    NPZ = {k: _z[k] for k in _z.files}
CASES = {c["name"]: c for c in json.loads(str(NPZ["cases_json"]))}
KEYS = json.loads((FIXTURES / "da3_head_keys.json").read_text())
DROPPED = KEYS.pop("dropped_by_save_model")
SMALL_DROPPED = [k[len("model.") :] for k in DROPPED["da3-small"]]

# the official configs, in our terms (upstream: configs/*.yaml)
OURS = {
    "da3-small/head": lambda: DualDPTHead(DUALDPT_CONFIGS["vits"]),
    "da3-base/head": lambda: DualDPTHead(DUALDPT_CONFIGS["vitb"]),
    "da3-large/head": lambda: DualDPTHead(DUALDPT_CONFIGS["vitl"]),
    "da3-giant/head": lambda: DualDPTHead(DUALDPT_CONFIGS["vitg"]),
    "da3-giant/gs_head": lambda: GaussianDPTHead(GAUSSIAN_DPT_CONFIG_VITG),
    "da3-giant/gs_adapter": lambda: GaussianAdapter(GaussianAdapterConfig()),
    "da3mono-large/head": lambda: DPTSkyHead(DPT_SKY_CONFIG_VITL),
    "da3metric-large/head": lambda: DPTSkyHead(DPT_SKY_CONFIG_VITL),
}


def assert_close_scaled(actual: Tensor, expected: Tensor) -> None:
    """Equal up to float32 reassociation (batched convolutions may sum in another order)."""
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))


def shapes_of(module: torch.nn.Module, prefix: str) -> Dict[str, List[int]]:
    return {f"{prefix}{k}": [int(s) for s in v.shape] for k, v in module.state_dict().items()}


def hub_weights(key_group: str, prefix: str, seed: int, dropped: Tuple[str, ...] = ()) -> Dict[str, Tensor]:
    """Random weights as a hub file stores them (aliases dropped), expanded back, prefix removed."""
    stored = {k: v for k, v in KEYS[key_group].items() if k not in dropped}
    sd = expand_shared_head_keys(random_state_dict(stored, seed))
    return {k[len(prefix) :]: v for k, v in sd.items()}


def features(case: str) -> List[Tuple[Tensor, Tensor]]:
    levels = [torch.from_numpy(NPZ[f"{case}/in/tokens_{i}"]).float() for i in range(4)]
    return [(t, torch.zeros(*t.shape[:2], t.shape[-1])) for t in levels]


def image_size(case: str) -> Tuple[int, int]:
    gh, gw = CASES[case]["grid"]
    return 14 * gh, 14 * gw


@cache
def dualdpt_small() -> DualDPTHead:
    c = CASES["dualdpt_small"]
    head = DualDPTHead(
        DualDPTConfig(c["widths"]["dim_in"], c["widths"]["features"], tuple(c["widths"]["out_channels"]))
    )
    head.load_state_dict(hub_weights(c["keys"], c["prefix"], c["seed"], tuple(SMALL_DROPPED)), strict=True)
    return head.eval()


@cache
def dpt_sky_large() -> DPTSkyHead:
    c = CASES["dpt_sky_large"]
    head = DPTSkyHead(DPTSkyConfig(c["widths"]["dim_in"], c["widths"]["features"], tuple(c["widths"]["out_channels"])))
    head.load_state_dict(hub_weights(c["keys"], c["prefix"], c["seed"]), strict=True)
    return head.eval()


@cache
def gsdpt_small() -> GaussianDPTHead:
    c = CASES["gsdpt_small"]
    w = c["widths"]
    head = GaussianDPTHead(GaussianDPTConfig(w["dim_in"], w["features"], tuple(w["out_channels"]), c["output_dim"]))
    head.load_state_dict(hub_weights(c["keys"], c["prefix"], c["seed"]), strict=True)
    return head.eval()


# ---------------------------------------------------------------------------------------------- key layouts


SMALL_GROUPS = ("da3-small/head", "da3-giant/gs_adapter")  # cheap enough to build for real, on any torch


@pytest.mark.parametrize("group", SMALL_GROUPS)
def test_state_dict_keys_and_shapes_match_upstream_small(group):
    part = group.split("/")[1]
    assert shapes_of(OURS[group](), f"{part}.") == KEYS[group]


@needs_meta_context
@pytest.mark.parametrize("group", sorted(set(OURS) - set(SMALL_GROUPS)))
def test_state_dict_keys_and_shapes_match_upstream(group):
    with torch.device("meta"):
        module = OURS[group]()
    part = group.split("/")[1]
    assert shapes_of(module, f"{part}.") == KEYS[group]


def test_gaussian_adapter_has_no_checkpoint_keys_but_keeps_its_mask():
    adapter = GaussianAdapter(GaussianAdapterConfig())
    assert adapter.state_dict() == {}
    expected = [1.0] + [0.025] * 3 + [0.00625] * 5
    torch.testing.assert_close(adapter.sh_mask, torch.tensor(expected))
    assert GaussianAdapterConfig().raw_dim + 1 == GAUSSIAN_DPT_CONFIG_VITG.output_dim == 38


def test_fixture_gs_head_keys_match_ours():
    c = CASES["gsdpt_small"]
    w = c["widths"]
    head = GaussianDPTHead(GaussianDPTConfig(w["dim_in"], w["features"], tuple(w["out_channels"]), c["output_dim"]))
    assert shapes_of(head, "gs_head.") == KEYS[c["keys"]]


# ---------------------------------------------------------------------------------------------- shared keys


def test_shared_layer_norm_is_one_module_and_the_dropped_keys_are_its_aliases():
    head = DualDPTHead(DualDPTConfig(dim_in=32, features=16, out_channels=(8, 16, 32, 32)))
    norms = {id(seq[2]) for seq in head.scratch.output_conv2_aux}
    assert len(norms) == 1
    expected = [f"model.head.scratch.output_conv2_aux.{i}.2.{leaf}" for i in (1, 2, 3) for leaf in ("bias", "weight")]
    assert DROPPED["da3-small"] == expected
    assert DROPPED["da3nested-giant-large"] == [k.replace("model.head.", "model.da3.head.") for k in expected]


def test_expand_shared_head_keys_restores_what_save_model_drops():
    full = {f"model.{k}": v for k, v in KEYS["da3-small/head"].items()}
    stored = random_state_dict({k: v for k, v in full.items() if k not in DROPPED["da3-small"]}, seed=3)
    stored["model.backbone.pretrained.cls_token"] = torch.zeros(1, 1, 4)  # other keys pass through
    before = dict(stored)
    expanded = expand_shared_head_keys(stored)
    assert stored == before  # not modified in place
    assert set(expanded) == set(full) | {"model.backbone.pretrained.cls_token"}
    for key in DROPPED["da3-small"]:
        level = key.split("output_conv2_aux.")[1][0]
        assert expanded[key] is stored[key.replace(f"output_conv2_aux.{level}.", "output_conv2_aux.0.")]
    assert expand_shared_head_keys(expanded).keys() == expanded.keys()


def test_expand_shared_head_keys_handles_nested_prefixes_and_leaves_mono_heads_alone():
    small = {k[len("head.") :]: v for k, v in KEYS["da3-small/head"].items()}
    mono = {k[len("head.") :]: v for k, v in KEYS["da3metric-large/head"].items()}
    full = {
        **{f"model.da3.head.{k}": v for k, v in small.items()},
        **{f"model.da3_metric.head.{k}": v for k, v in mono.items()},
    }
    stored = {k: torch.zeros(1) for k in full if k not in DROPPED["da3nested-giant-large"]}
    assert set(expand_shared_head_keys(stored)) == set(full)


def test_safetensors_save_model_round_trip_loads_strictly(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    head = dualdpt_small()
    path = str(tmp_path / "model.safetensors")
    safetensors_torch.save_model(head, path)
    stored = safetensors_torch.load_file(path)
    assert sorted(set(head.state_dict()) - set(stored)) == sorted(k[len("head.") :] for k in SMALL_DROPPED)
    fresh = DualDPTHead(head.cfg)
    fresh.load_state_dict(expand_shared_head_keys(stored), strict=True)
    for key, value in head.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


# ---------------------------------------------------------------------------------------------- parity


@torch.no_grad()
def test_dualdpt_matches_upstream(record_property):
    out = dualdpt_small()(features("dualdpt_small"), *image_size("dualdpt_small"))
    for name in ("depth", "depth_conf", "ray", "ray_conf"):
        err = p99_rel_err(getattr(out, name), NPZ[f"dualdpt_small/out/{name}"])
        record_property(f"p99_{name}", err)
        assert err <= TOLERANCE, (name, err)
    assert out.sky is None
    assert out.ray.shape[2:4] == (8 * 2, 8 * 3)  # the ray branch stays at 8x the patch grid


@torch.no_grad()
def test_dpt_sky_matches_upstream(record_property):
    out = dpt_sky_large()(features("dpt_sky_large"), *image_size("dpt_sky_large"))
    for name in ("depth", "sky"):
        err = p99_rel_err(getattr(out, name), NPZ[f"dpt_sky_large/out/{name}"])
        record_property(f"p99_{name}", err)
        assert err <= TOLERANCE, (name, err)
    assert out.depth_conf is None and out.ray is None


@torch.no_grad()
def test_gs_head_matches_upstream(record_property):
    images = torch.from_numpy(NPZ["gsdpt_small/in/images"])
    out = gsdpt_small()(features("gsdpt_small"), images)
    for ours, theirs in (("raw_gaussians", "raw_gs"), ("densities", "raw_gs_conf")):
        err = p99_rel_err(getattr(out, ours), NPZ[f"gsdpt_small/out/{theirs}"])
        record_property(f"p99_{ours}", err)
        assert err <= TOLERANCE, (ours, err)


def _adapter_inputs() -> Dict[str, Tensor]:
    return dict(
        extrinsics=torch.from_numpy(NPZ["gs_adapter/in/extrinsics"]),
        intrinsics=torch.from_numpy(NPZ["gs_adapter/in/intrinsics"]),
        depth=torch.from_numpy(NPZ["gs_adapter/in/depth"]),
        opacities=torch.from_numpy(NPZ["gsdpt_small/out/raw_gs_conf"]),
        raw_gaussians=torch.from_numpy(NPZ["gsdpt_small/out/raw_gs"]),
    )


def _adapter() -> GaussianAdapter:
    c = CASES["gs_adapter"]
    cfg = GaussianAdapterConfig(
        c["sh_degree"], c["pred_color"], c["pred_offset_depth"], c["pred_offset_xy"], c["scale_min"], c["scale_max"]
    )
    return GaussianAdapter(cfg)


@torch.no_grad()
@pytest.mark.parametrize("case", ["gs_adapter", "gs_adapter_scaled"])
def test_gaussian_adapter_matches_upstream(case, record_property):
    # upstream's own GS-DPT output is the input, so this isolates the adapter
    pose_scales = torch.from_numpy(NPZ[f"{case}/in/pose_scales"]) if case.endswith("scaled") else None
    gaussians = _adapter()(**_adapter_inputs(), pose_scales=pose_scales)
    names = [k.rsplit("/", 1)[1] for k in NPZ if k.startswith(f"{case}/out/")]
    assert names
    for name in names:
        err = p99_rel_err(getattr(gaussians, name), NPZ[f"{case}/out/{name}"])
        record_property(f"p99_{name}", err)
        assert err <= TOLERANCE, (name, err)


@torch.no_grad()
def test_gaussian_adapter_accepts_3x4_extrinsics():
    inputs = _adapter_inputs()
    full = _adapter()(**inputs)
    inputs["extrinsics"] = inputs["extrinsics"][..., :3, :]
    short = _adapter()(**inputs)
    torch.testing.assert_close(short.means, full.means)


# ---------------------------------------------------------------------------------------------- chunking, precision


@torch.no_grad()
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_chunked_views_equal_one_pass(chunk_size):
    feats, (h, w) = features("dualdpt_small"), image_size("dualdpt_small")
    head = dualdpt_small()
    whole, chunked = head(feats, h, w, chunk_size=None), head(feats, h, w, chunk_size=chunk_size)
    for name in ("depth", "depth_conf", "ray", "ray_conf"):
        assert_close_scaled(getattr(chunked, name), getattr(whole, name))
    images = torch.from_numpy(NPZ["gsdpt_small/in/images"])
    gs_feats = features("gsdpt_small")
    whole, chunked = gsdpt_small()(gs_feats, images, chunk_size=None), gsdpt_small()(gs_feats, images, chunk_size=2)
    assert_close_scaled(chunked.raw_gaussians, whole.raw_gaussians)
    assert_close_scaled(chunked.densities, whole.densities)


@pytest.mark.precision
@torch.no_grad()
def test_heads_stay_float32_under_bf16_autocast():
    feats, (h, w) = features("dualdpt_small"), image_size("dualdpt_small")
    head = dualdpt_small()
    reference = head(feats, h, w)
    bf16_feats = [(t.bfloat16(), c.bfloat16()) for t, c in feats]
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = head(bf16_feats, h, w)
    for name in ("depth", "depth_conf", "ray", "ray_conf"):
        value = getattr(out, name)
        assert value.dtype == torch.float32, name
    # same float32 computation from the bf16-rounded tokens
    exact = head([(t.float(), c.float()) for t, c in bf16_feats], h, w)
    torch.testing.assert_close(out.depth, exact.depth, rtol=1e-5, atol=1e-6)
    assert p99_rel_err(out.depth, reference.depth.numpy()) < 0.05  # bf16 inputs, float32 head
    sky_feats, (h, w) = features("dpt_sky_large"), image_size("dpt_sky_large")
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        sky_out = dpt_sky_large()(sky_feats, h, w)
    assert sky_out.depth.dtype == sky_out.sky.dtype == torch.float32


@torch.no_grad()
def test_patch_start_idx_skips_leading_tokens():
    feats, (h, w) = features("dualdpt_small"), image_size("dualdpt_small")
    head = dualdpt_small()
    padded = [(torch.cat([torch.randn_like(t[:, :, :2]), t], dim=2), c) for t, c in feats]
    torch.testing.assert_close(head(padded, h, w, patch_start_idx=2).depth, head(feats, h, w).depth)


def test_wrong_token_shapes_raise_shape_error():
    feats, (h, w) = features("dualdpt_small"), image_size("dualdpt_small")
    with pytest.raises(ShapeError, match="expected"):
        dualdpt_small()(feats, h + 14, w)
    with pytest.raises(ShapeError, match="4"):
        dualdpt_small()(feats[:3], h, w)
    with pytest.raises(ShapeError):
        gsdpt_small()(features("gsdpt_small"), torch.zeros(1, 3, 3, 29, 28))


# ---------------------------------------------------------------------------------------------- math pieces


def test_uv_position_embedding_hand_computed():
    pe = uv_position_embedding(2, 3, 8, aspect_ratio=4 / 3)
    assert pe.shape == (8, 2, 3)
    # aspect 4/3: the grid spans (+-0.8, +-0.6) shrunk by half a cell -> x in {-0.5333, 0, 0.5333}, y = +-0.3
    x, y = 0.8 * 2 / 3, 0.6 * 1 / 2
    # 8 channels: per axis sin(c), sin(c / 10), cos(c), cos(c / 10); scaled by 0.1
    expected_last = [math.sin(x), math.sin(x / 10), math.cos(x), math.cos(x / 10)]
    expected_last += [math.sin(y), math.sin(y / 10), math.cos(y), math.cos(y / 10)]
    torch.testing.assert_close(pe[:, 1, 2], 0.1 * torch.tensor(expected_last), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(pe[:4, 0, 1], 0.1 * torch.tensor([0.0, 0.0, 1.0, 1.0]), rtol=0, atol=1e-7)


def _sh_basis(d: Tensor) -> Tensor:
    """The 3DGS real SH polynomials of degrees 0..2 at unit directions d (..., 3) -> (..., 9)."""
    x, y, z = d.unbind(-1)
    c1 = 0.4886025119029199
    c2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
    degree0 = [torch.full_like(x, 0.28209479177387814)]
    degree1 = [-c1 * y, c1 * z, -c1 * x]
    degree2 = [
        c2[0] * x * y,
        c2[1] * y * z,
        c2[2] * (2 * z * z - x * x - y * y),
        c2[3] * x * z,
        c2[4] * (x * x - y * y),
    ]
    return torch.stack(degree0 + degree1 + degree2, dim=-1)


def test_rotate_sh_makes_the_colour_along_d_the_old_colour_along_r_transpose_d():
    g = torch.Generator().manual_seed(0)
    rotation = quaternion_to_rotation_matrix(torch.randn(4, 4, generator=g, dtype=torch.float64))
    coefficients = torch.randn(4, 9, generator=g, dtype=torch.float64)
    directions = torch.nn.functional.normalize(torch.randn(4, 16, 3, generator=g, dtype=torch.float64), dim=-1)
    rotated = rotate_sh(coefficients, rotation)
    new_colour = (_sh_basis(directions) * rotated[:, None]).sum(-1)
    old_colour = (_sh_basis(directions @ rotation) * coefficients[:, None]).sum(-1)  # rows: R^T d
    torch.testing.assert_close(new_colour, old_colour, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(rotate_sh(coefficients, torch.eye(3, dtype=torch.float64)), coefficients)


def test_quaternion_round_trip_and_sign():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(64, 4, generator=g, dtype=torch.float64), dim=-1)
    q = torch.where(q[..., 3:] < 0, -q, q)
    torch.testing.assert_close(rotation_matrix_to_quaternion(quaternion_to_rotation_matrix(q)), q)
    # 90 degrees about z: (x, y, z, w) = (0, 0, sin 45, cos 45)
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    s = math.sqrt(0.5)
    torch.testing.assert_close(rotation_matrix_to_quaternion(rz), torch.tensor([0.0, 0.0, s, s], dtype=torch.float64))


@torch.no_grad()
def test_ray_branch_runs_only_when_asked():
    feats, (h, w) = features("dualdpt_small"), image_size("dualdpt_small")
    head = dualdpt_small()
    calls = []
    head.scratch.output_conv1_aux[-1].register_forward_hook(lambda *args: calls.append(1))
    full = head(feats, h, w)
    assert len(calls) == 1
    depth_only = head(feats, h, w, rays=False)
    assert len(calls) == 1 and depth_only.ray is None and depth_only.ray_conf is None
    torch.testing.assert_close(depth_only.depth, full.depth, rtol=0, atol=0)
    torch.testing.assert_close(depth_only.depth_conf, full.depth_conf, rtol=0, atol=0)
