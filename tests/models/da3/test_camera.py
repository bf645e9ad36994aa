"""DA3 camera encoder/decoder and camera geometry against the upstream reference code, through fixtures.

The fixtures come from ``scripts/make_da3_camera_fixtures.py`` (its docstring says how to regenerate them):
upstream's functions and modules run in float32 on deterministic inputs and on random weights that
``random_weights.random_state_dict`` rebuilds here from the stored key names, shapes and seeds.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Dict

import numpy as np
import pytest
import torch

from anydepth.geometry import (
    affine_inverse,
    align_to_metric,
    alignment_mask,
    apply_metric_scaling,
    camera_from_rays,
    camera_to_pose_encoding,
    fill_sky,
    fill_sky_with_far_depth,
    least_squares_scale,
    non_sky_mask,
    pose_encoding_to_camera,
    quantile,
    quaternion_to_rotation_matrix,
    rotation_matrix_to_quaternion,
    solve_ray_camera,
)
from anydepth.layers import set_fused_attention
from anydepth.models.da3.camera import (
    CAMERA_DECODERS,
    CAMERA_ENCODERS,
    CameraDecoder,
    CameraDecoderConfig,
    CameraEncoder,
    CameraEncoderConfig,
)
from tests.helpers.parity import p99_rel_err
from tests.helpers.paths import FIXTURES
from tests.helpers.random_weights import random_state_dict

pytestmark = pytest.mark.torch113

TOLERANCE = 1e-3  # p99 relative error, float32
EXTRINSICS_TOLERANCE = 2e-3  # absolute
ENCODER_NAMES = {"small": "vits", "base": "vitb", "large": "vitl", "giant": "vitg"}


def _load_npz(name: str) -> Dict[str, np.ndarray]:
    with np.load(FIXTURES / name, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


FIX = _load_npz("da3_camera.npz")
CASES = {c["name"]: c for c in json.loads(str(FIX["cases_json"]))}
KEYS = json.loads((FIXTURES / "da3_camera_keys.json").read_text())
RAY_CASES = [name for name, c in CASES.items() if c["kind"] == "ray"]
NESTED_CASES = [name for name, c in CASES.items() if c["kind"] == "nested"]
SIZES = list(ENCODER_NAMES)
# the full-width large and giant modules take a few seconds each to fill with random weights
SIZE_PARAMS = [s if s in ("small", "base") else pytest.param(s, marks=pytest.mark.slow) for s in SIZES]


def fx(case: str, name: str) -> torch.Tensor:
    return torch.from_numpy(FIX[f"{case}__{name}"])


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, record_property=None, label: str = "") -> None:
    err = p99_rel_err(ours.detach().numpy(), theirs.numpy())
    if record_property is not None:
        record_property(f"p99_rel_{label}", err)
    assert err <= TOLERANCE, f"{label}: p99 relative error {err:.3g}"


# ----------------------------------------------------------------------------------------------- functions


def test_quaternion_to_rotation_matrix_matches_upstream(record_property):
    assert_close(quaternion_to_rotation_matrix(fx("quat_to_mat", "q")), fx("quat_to_mat", "R"), record_property, "R")


def test_rotation_matrix_to_quaternion_matches_upstream(record_property):
    ours = rotation_matrix_to_quaternion(fx("mat_to_quat", "R"))
    theirs = fx("mat_to_quat", "q")
    # absolute: the 180-degree cases have exact zeros
    assert (ours - theirs).abs().max() < 1e-5
    assert_close(ours, theirs, record_property, "q")


def test_affine_inverse_matches_upstream():
    assert (affine_inverse(fx("affine_inverse", "A")) - fx("affine_inverse", "inv")).abs().max() < 1e-5


def test_pose_encoding_matches_upstream(record_property):
    size = CASES["encode"]["image_size"]
    ours = camera_to_pose_encoding(fx("encode", "c2w"), fx("encode", "K"), size)
    assert ours.dtype == torch.float32
    assert_close(ours, fx("encode", "enc"), record_property, "encode")


def test_pose_decoding_matches_upstream(record_property):
    size = CASES["decode"]["image_size"]
    c2w, K = pose_encoding_to_camera(fx("decode", "enc"), size)
    assert (c2w - fx("decode", "c2w")).abs().max() <= EXTRINSICS_TOLERANCE
    assert_close(K, fx("decode", "K"), record_property, "K")


# --------------------------------------------------------------------------------------------- ray pose


@pytest.mark.parametrize("case", RAY_CASES)
def test_ray_pose_matches_upstream(case, record_property):
    rays, conf, groups = fx(case, "rays"), fx(case, "conf"), fx(case, "groups")
    conf_before = conf.clone()
    c2w, focal, pp = solve_ray_camera(rays, conf, sample_groups=groups)
    assert torch.equal(conf, conf_before), "the caller's confidence must not be modified"
    err = float((c2w - fx(case, "c2w")).abs().max())
    record_property("max_abs_c2w", err)
    assert err <= EXTRINSICS_TOLERANCE
    assert_close(focal, fx(case, "focal"), record_property, "focal")
    assert_close(pp, fx(case, "pp"), record_property, "pp")

    extrinsics, intrinsics = camera_from_rays(rays, conf, CASES[case]["image_size"], sample_groups=groups)
    err = float((extrinsics - fx(case, "extrinsics")).abs().max())
    record_property("max_abs_extrinsics", err)
    assert err <= EXTRINSICS_TOLERANCE
    assert_close(intrinsics, fx(case, "intrinsics"), record_property, "intrinsics")


def test_ray_pose_with_own_draws_is_close_to_upstream():
    # without upstream's recorded groups: another draw, the same inliers, nearly the same camera
    case = "ray_noisy"
    c2w, focal, _ = solve_ray_camera(fx(case, "rays"), fx(case, "conf"), seed=3)
    assert (c2w - fx(case, "c2w")).abs().max() < 1e-2
    assert (focal - fx(case, "focal")).abs().max() < 1e-2


def test_ray_pose_offcentre_qr_recovers_the_true_camera():
    case = "ray_offcentre"
    args = (fx(case, "rays"), fx(case, "conf"))
    # DA3's QL split is biased by an off-centre principal point (recorded upstream), the QR split is exact
    ql = solve_ray_camera(*args, sample_groups=fx(case, "groups"))
    assert (ql[0][..., :3, :3] - fx(case, "true_R")).abs().max() > 1e-2
    c2w, focal, pp = solve_ray_camera(*args, decomposition="qr")
    assert (c2w[..., :3, :3] - fx(case, "true_R")).abs().max() < 1e-4
    assert (c2w[..., :3, 3] - fx(case, "true_C")).abs().max() < 1e-4
    assert (focal - fx(case, "true_focal")).abs().max() < 1e-4
    assert (pp - fx(case, "true_pp")).abs().max() < 1e-4


# ------------------------------------------------------------------------------------------- depth scale


def test_alignment_helpers_match_upstream():
    p = CASES["align"]["inputs"]
    depth, conf, sky, K, metric = (fx(p, k) for k in ("depth", "conf", "sky", "K", "metric"))
    scaled = apply_metric_scaling(metric, K)
    assert p99_rel_err(scaled.numpy(), fx("align", "metric_scaled").numpy()) <= 1e-6
    non_sky = non_sky_mask(sky)
    assert torch.equal(non_sky, fx("align", "non_sky"))
    median = quantile(conf[non_sky], 0.5)
    assert torch.allclose(median, fx("align", "median_conf"), rtol=1e-6)
    mask = alignment_mask(conf, non_sky, depth, scaled, median)
    assert torch.equal(mask, fx("align", "mask"))
    scale = least_squares_scale(scaled[mask], depth[mask])
    assert torch.allclose(scale, fx("align", "scale"), rtol=1e-5)
    filled, filled_conf = fill_sky(depth, non_sky, CASES["align"]["sky_depth"], conf)
    assert torch.equal(filled, fx("align", "filled"))
    assert torch.equal(filled_conf, fx("align", "filled_conf"))


@pytest.mark.parametrize("case", NESTED_CASES)
def test_align_to_metric_matches_upstream_nested_model(case, record_property):
    inputs = {k: fx(case, k) for k in ("depth", "conf", "ext", "K", "metric", "sky")}
    before = {k: v.clone() for k, v in inputs.items()}
    out = align_to_metric(inputs["depth"], inputs["conf"], inputs["ext"], inputs["K"], inputs["metric"], inputs["sky"])
    for k, v in inputs.items():
        assert torch.equal(v, before[k]), f"{k} was modified"
    assert float(out.scale[0]) == pytest.approx(float(FIX[f"{case}__scale"]), rel=1e-5)
    assert_close(out.depth, fx(case, "out_depth"), record_property, "depth")
    assert torch.equal(out.depth_conf, fx(case, "out_conf"))
    assert (out.extrinsics - fx(case, "out_ext")).abs().max() <= EXTRINSICS_TOLERANCE


def test_mono_sky_fill_matches_upstream():
    p = CASES["mono_sky"]["inputs"]
    ours = fill_sky_with_far_depth(fx(p, "depth"), fx(p, "sky"))
    assert_close(ours, fx("mono_sky", "depth"), None, "mono_sky")


# ---------------------------------------------------------------------------------------------- modules


def _shapes(module: torch.nn.Module) -> Dict[str, list]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("size", SIZES)
def test_camera_module_keys_match_upstream(size):
    encoder = ENCODER_NAMES[size]
    # build on the meta device where torch has it (>= 2.0): the giant modules are large
    meta = hasattr(torch.device("cpu"), "__enter__")
    with torch.device("meta") if meta else torch.no_grad():
        dec = CameraDecoder(CAMERA_DECODERS[encoder])
        enc = CameraEncoder(CAMERA_ENCODERS[encoder])
    assert _shapes(dec) == KEYS["cam_dec"][size]
    assert _shapes(enc) == KEYS["cam_enc"][size]


@pytest.mark.parametrize("size", SIZE_PARAMS)
def test_camera_decoder_matches_upstream(size, record_property):
    case = CASES[f"cam_dec_{size}"]
    dec = CameraDecoder(CameraDecoderConfig(dim_in=case["dim_in"]))
    dec.load_state_dict(random_state_dict(KEYS["cam_dec"][size], case["seed"]), strict=True)
    tokens = np.random.RandomState(case["token_seed"]).standard_normal(case["token_shape"]).astype(np.float32)
    with torch.no_grad():
        out = dec.eval()(torch.from_numpy(tokens))
    assert out.shape == (*case["token_shape"][:2], 9)
    assert_close(out, fx(case["name"], "out"), record_property, "pose_encoding")


@lru_cache(maxsize=1)
def _camera_encoder(size: str) -> CameraEncoder:
    case = CASES[f"cam_enc_{size}"]
    enc = CameraEncoder(CameraEncoderConfig(dim_out=case["dim_out"]))
    enc.load_state_dict(random_state_dict(KEYS["cam_enc"][size], case["seed"]), strict=True)
    return enc.eval()


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "explicit"])
@pytest.mark.parametrize("size", SIZE_PARAMS)
def test_camera_encoder_matches_upstream(size, fused, record_property):
    case = CASES[f"cam_enc_{size}"]
    enc = set_fused_attention(_camera_encoder(size), fused)
    ext, K = fx("cam_enc", "ext"), fx("cam_enc", "K")
    with torch.no_grad():
        out = enc(ext, K, case["image_size"])
        out_34 = enc(ext[..., :3, :], K, case["image_size"])
    assert out.shape == (1, 4, case["dim_out"])
    assert_close(out, fx(case["name"], "out"), record_property, "tokens")
    assert torch.allclose(out, out_34, atol=1e-6)
