"""The Linear layer's CPU bf16 fast path: cached bf16 weights, bias and GELU inside the matmul."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anydepth.layers.linear import Linear
from anydepth.layers.mlp import Mlp

needs_cpu_bf16 = pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 needs torch >= 2.0")


def _layer():
    torch.manual_seed(0)
    return Linear(64, 96), torch.randn(2, 50, 64)


def test_float32_is_exactly_linear_then_gelu():
    layer, x = _layer()
    with torch.inference_mode():
        torch.testing.assert_close(
            layer(x, activation="gelu"), F.gelu(F.linear(x, layer.weight, layer.bias)), rtol=0, atol=0
        )
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=0, atol=0)
    assert layer._bf16 is None  # no bf16 copy outside bf16 autocast


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
