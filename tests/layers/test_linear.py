"""The Linear layer's CPU bf16 fast path: cached bf16 weights, bias and GELU inside the matmul."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anydepth.layers.linear import Linear
from anydepth.layers.mlp import Mlp
from anydepth.layers.precision import PrecisionPolicy, fast_paths

needs_cpu_bf16 = pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 needs torch >= 2.0")
# the fast path itself is under test: on whatever ANYDEPTH_FAST_PATHS says
pytestmark = [pytest.mark.precision, pytest.mark.usefixtures("fast_paths_on")]


BF16 = PrecisionPolicy.for_precision("bf16")


def _layer(policy=BF16):
    """A layer configured by ``policy`` (the bf16 policy by default), and an input."""
    torch.manual_seed(0)
    return policy.apply(Linear(64, 96)), torch.randn(2, 50, 64)


def test_float32_is_exactly_linear_then_gelu():
    layer, x = _layer(PrecisionPolicy())
    with torch.inference_mode():
        torch.testing.assert_close(
            layer(x, activation="gelu"), F.gelu(F.linear(x, layer.weight, layer.bias)), rtol=0, atol=0
        )
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=0, atol=0)
    assert layer._bf16 is None  # no bf16 copy under the float32 policy


@needs_cpu_bf16
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_bf16_matches_autocast_within_bf16_rounding(activation):
    layer, x = _layer()
    exact = F.linear(x, layer.weight, layer.bias)
    exact = F.gelu(exact) if activation == "gelu" else exact
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x, activation=activation)
        autocast = F.linear(x, layer.weight, layer.bias)
        autocast = F.gelu(autocast) if activation == "gelu" else autocast
    assert got.dtype == torch.bfloat16 and got.shape == (2, 50, 96)
    exact = exact.detach()
    scale = float(exact.abs().max())
    # no worse than autocast's own result against float32 (one bf16 rounding more at most)
    assert float((got.float() - exact).abs().max()) <= 2 * float((autocast.float() - exact).abs().max()) + 1e-6 * scale
    assert float((got.float() - exact).abs().max()) > 0  # bf16 really ran


@needs_cpu_bf16
def test_bf16_weights_are_cast_once_and_again_after_new_weights():
    layer, x = _layer()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
        first = layer._bf16
        layer(x)
        assert layer._bf16 is first
    layer.load_state_dict({"weight": layer.weight * 2, "bias": layer.bias})
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        doubled = layer(x)
    assert layer._bf16 is not first
    torch.testing.assert_close(layer._bf16[1], (layer.weight).to(torch.bfloat16), rtol=0, atol=0)
    assert doubled.abs().max() > 0


@needs_cpu_bf16
def test_grad_mode_keeps_autocast_and_the_graph():
    layer, x = _layer()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x, activation="gelu")
    assert out.requires_grad and layer._bf16 is None
    out.float().sum().backward()
    assert layer.weight.grad is not None


def test_mlp_keys_are_the_official_ones():
    assert set(Mlp(8, 32).state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


@needs_cpu_bf16
def test_a_cpu_without_onednn_bf16_kernels_takes_the_plain_linear(monkeypatch):
    """oneDNN's fused linear raises on CPUs without AVX512 (BW, VL, DQ) or AVX-NE-CONVERT, as torch words it."""
    import anydepth.layers.linear as linear

    def refuse(*args):
        raise RuntimeError("mkldnn_linear_pointwise: bf16 path needs the cpu support avx512bw, avx512vl and avx512dq")

    layer, x = _layer()
    monkeypatch.setattr(linear, "_FUSED", refuse)
    linear.fused_bf16_linear_supported.cache_clear()
    try:
        assert not linear.fused_bf16_linear_supported()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            got = layer(x, activation="gelu")
            autocast = F.gelu(F.linear(x, layer.weight, layer.bias))
        assert layer._bf16 is not None  # still the cached bf16 weights
        torch.testing.assert_close(got, autocast, rtol=0, atol=0)
    finally:
        linear.fused_bf16_linear_supported.cache_clear()


@needs_cpu_bf16
def test_the_plain_twin_runs_where_the_policy_or_the_process_turns_fast_paths_off():
    expected_layer, x = _layer()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = F.gelu(F.linear(x, expected_layer.weight, expected_layer.bias))
        for layer, switch in ((_layer(PrecisionPolicy.for_precision("bf16", fast_paths=False))[0], True),
                              (_layer()[0], False)):  # fmt: skip
            with fast_paths(switch):
                got = layer(x, activation="gelu")
            assert layer._bf16 is None
            torch.testing.assert_close(got, plain, rtol=0, atol=0)


@needs_cpu_bf16
def test_bf16_copy_bytes_counts_the_copy_before_and_after_it_is_made():
    layer, x = _layer()
    expected = 2 * (64 * 96 + 96)
    assert layer.bf16_copy_bytes() == expected  # announced from the policy, before any call
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert layer._bf16 is not None and layer.bf16_copy_bytes() == expected  # held
    assert _layer(PrecisionPolicy())[0].bf16_copy_bytes() == 0
    assert _layer(PrecisionPolicy.for_precision("bf16", fast_paths=False))[0].bf16_copy_bytes() == 0
