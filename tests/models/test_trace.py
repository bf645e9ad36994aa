"""TorchScript tracing at a fixed size (the path torch-neuron and other static-shape targets take)."""

from __future__ import annotations

import pytest
import torch

from anydepth.layers import set_fused_attention
from tests.helpers.networks import random_net, tiny_config

pytestmark = pytest.mark.torch113


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
@torch.no_grad()
def test_trace_at_fixed_size_matches_eager(tmp_path):
    net = set_fused_attention(random_net(tiny_config()), False)  # the explicit path, as on torch 1.13
    x = torch.randn(1, 3, 42, 56)
    traced = torch.jit.trace(net, x, check_trace=False)
    traced.save(str(tmp_path / "net.pt"))
    loaded = torch.jit.load(str(tmp_path / "net.pt"))
    torch.testing.assert_close(loaded(x), net(x), rtol=1e-5, atol=1e-5)
    y = torch.randn(1, 3, 42, 56)
    torch.testing.assert_close(loaded(y), net(y), rtol=1e-5, atol=1e-5)
