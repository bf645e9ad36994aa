"""Video Depth Anything against the upstream reference code, through fixtures (no upstream package needed here).

The fixtures come from ``scripts/make_vda_fixtures.py`` (its docstring says how to regenerate them): upstream's
``VideoDepthAnything`` forward, ``infer_video_depth`` (relative and metric) and the streaming class's
``infer_video_depth_one``, run on deterministic random weights that ``random_weights.random_state_dict`` rebuilds
here from the stored key names, shapes and seed.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch

import anydepth
from anydepth.compat import VideoDepthAnything
from anydepth.layers import set_fused_attention
from anydepth.models.video_depth_anything import SinusoidalPositions, TemporalTransformer
from tests.helpers.parity import p99_rel_err
from tests.helpers.vda_fixtures import CASES, KEYS, VDA, upstream_state_dict

TOLERANCE = 1e-3  # p99 relative error, float32


@cache
def _model(metric: bool = False) -> VideoDepthAnything:
    case = CASES["windowed"]
    model = VideoDepthAnything(case["encoder"], case["features"], case["out_channels"], metric=metric)
    model.load_state_dict(upstream_state_dict(case["encoder"], case["seed"]), strict=True)
    return model.eval()


@pytest.mark.skipif(not hasattr(torch.device("cpu"), "__enter__"), reason="torch.device as a context needs torch 2")
@pytest.mark.parametrize("encoder", ["vits", "vitb", "vitl"])
def test_official_keys_load_strictly(encoder):
    from anydepth.models.depth_anything_v2 import HEAD_WIDTHS

    features, out_channels = HEAD_WIDTHS[encoder]
    with torch.device("meta"):
        model = VideoDepthAnything(encoder, features, list(out_channels))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == KEYS[encoder]
    preset = next(
        p
        for p in anydepth.list_models("vda")
        if p.name == f"vda-{dict(vits='small', vitb='base', vitl='large')[encoder]}"
    )
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - preset.params_m) < 0.05


def test_positions_match_the_stored_sinusoid():
    # the official files store these tables; ours must be the same numbers so either may be used
    pe = SinusoidalPositions(64, 32).pe
    assert pe.shape == (1, 32, 64)
    assert torch.allclose(pe[0, 3, 0], torch.sin(torch.tensor(3.0)))
    assert torch.allclose(pe[0, 5, 1], torch.cos(torch.tensor(5.0)))


@pytest.mark.parametrize("fused", [True, False])
def test_forward_matches_upstream(fused):
    case = CASES["forward"]
    t, (h, w) = case["frames"], case["size"]
    clip = np.random.RandomState(case["seed"]).standard_normal((1, t, 3, h, w)).astype(np.float32)
    model = set_fused_attention(_model(), fused)
    with torch.no_grad():
        depth = model(torch.from_numpy(clip))[0]
    set_fused_attention(model, True)
    assert p99_rel_err(depth, VDA["expected_forward"]) <= TOLERANCE


def test_forward_does_not_depend_on_the_chunk_sizes(monkeypatch):
    case = CASES["forward"]
    t, (h, w) = case["frames"], case["size"]
    clip = torch.from_numpy(np.random.RandomState(case["seed"]).standard_normal((1, t, 3, h, w)).astype(np.float32))
    model = _model()
    with torch.no_grad():
        model.frame_chunk, model.decode_chunk = 1, 3
        one = model(clip)
        model.frame_chunk, model.decode_chunk = 4, 1
        four = model(clip)
        monkeypatch.setattr(TemporalTransformer, "sequence_chunk", 7)  # pixels' sequences over time, 7 at a time
        sevens = model(clip)
    assert torch.allclose(one, four, rtol=1e-4, atol=1e-5)
    assert torch.allclose(sevens, four, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["windowed", "metric"])
def test_infer_video_depth_matches_upstream(name):
    case = CASES[name]
    frames = VDA["frames"][: case["frames"]]
    before = frames.copy()
    depths, fps = _model(metric=name == "metric").infer_video_depth(
        frames, 24, input_size=case["size"], device="cpu", fp32=True
    )
    assert fps == 24
    assert np.array_equal(frames, before)
    assert depths.shape == VDA[f"expected_{name}"].shape and depths.dtype == np.float32
    assert p99_rel_err(depths, VDA[f"expected_{name}"]) <= TOLERANCE


def test_streaming_matches_upstream():
    case = CASES["streaming"]
    model = _model()
    model.reset_stream()
    frames = VDA["frames"][: case["frames"]]
    depths = [model.infer_video_depth_one(f, input_size=case["size"], device="cpu", fp32=True) for f in frames]
    model.reset_stream()
    assert p99_rel_err(np.stack(depths), VDA["expected_streaming"]) <= TOLERANCE


def test_windowed_alignment_matters():
    # the parity above could pass with the stitching skipped if windows happened to agree; they do not
    case = CASES["windowed"]
    expected = VDA["expected_windowed"]
    unscaled, _ = _model(metric=True).infer_video_depth(
        VDA["frames"][: case["frames"]], 24, input_size=case["size"], device="cpu", fp32=True
    )
    assert p99_rel_err(unscaled, expected) > 10 * TOLERANCE


@pytest.mark.precision
def test_mixed_precision_runs_close_to_float32():
    # fp32=False is upstream's autocast (bf16 on the CPU); it must run and stay near the float32 result
    frames = VDA["frames"][:6]
    exact, _ = _model().infer_video_depth(frames, 24, input_size=28, device="cpu", fp32=True)
    mixed, _ = _model().infer_video_depth(frames, 24, input_size=28, device="cpu", fp32=False)
    assert mixed.dtype == np.float32 and np.isfinite(mixed).all()
    assert np.mean(np.abs(mixed - exact)) / np.mean(np.abs(exact)) < 0.05
