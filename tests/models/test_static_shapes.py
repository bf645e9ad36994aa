"""The networks' static-shape hooks (``freeze_input_size`` / ``unfreeze_input_size``): a frozen network computes
what the dynamic one does at its size, refuses other sizes, keeps its checkpoint keys, and traces without the
position-embedding resize or the position-table construction."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from anydepth.errors import ShapeError
from anydepth.layers import set_fused_attention
from tests.helpers.networks import random_net, tiny_config, tiny_da3, tiny_vda

pytestmark = pytest.mark.torch113


def _ops(module: nn.Module, example: torch.Tensor) -> set:
    """The operator kinds of ``module`` traced on ``example``."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python ints: shapes are static here by design
        traced = torch.jit.trace(module, example, check_trace=False)
    return {node.kind() for node in traced.inlined_graph.nodes()}


class _Predict(nn.Module):
    """A DA3 network's ``predict`` as a module returning a tuple (what the exporters trace)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor):
        out = self.net.predict(images)
        return tuple(t for t in (out.depth, out.depth_conf, out.extrinsics, out.intrinsics, out.sky) if t is not None)


@torch.no_grad()
def test_v2_frozen_equals_dynamic_at_its_size_and_refuses_others():
    net = random_net(tiny_config())
    keys = set(net.state_dict())
    x = torch.randn(2, 3, 42, 56, generator=torch.Generator().manual_seed(0))
    dynamic = net(x)
    net.freeze_input_size(42, 56)
    assert net.pretrained.frozen_grid == (3, 4)
    assert torch.equal(net(x), dynamic)
    assert set(net.state_dict()) == keys  # the frozen table is not a checkpoint entry
    with pytest.raises(ShapeError, match=r"frozen to 42x56 inputs.*not 56x56.*unfreeze_input_size"):
        net(torch.zeros(1, 3, 56, 56))
    net.unfreeze_input_size()
    assert net.pretrained.frozen_grid is None and "frozen_pos_embed" not in dict(net.named_buffers(prefix=""))
    assert net(torch.zeros(1, 3, 56, 56)).shape == (1, 56, 56)
    torch.testing.assert_close(net(x), dynamic, rtol=0, atol=0)


def test_freezing_checks_the_size():
    net = random_net(tiny_config())
    with pytest.raises(ShapeError, match="multiples of 14"):
        net.freeze_input_size(40, 56)
    da3 = tiny_da3(anyview=True)
    with pytest.raises(ShapeError, match="num_views"):
        da3.freeze_input_size(28, 42, num_views=0)


def test_v2_traced_frozen_graph_has_no_position_embedding_resize():
    net = set_fused_attention(random_net(tiny_config()), False)
    x = torch.randn(1, 3, 42, 56)
    assert "aten::upsample_bicubic2d" in _ops(net, x)  # the check below means something
    net.freeze_input_size(42, 56)
    assert "aten::upsample_bicubic2d" not in _ops(net, x)


@pytest.mark.parametrize("anyview", [True, False])
@torch.no_grad()
def test_da3_frozen_equals_dynamic_at_its_size_and_refuses_others(anyview):
    net = tiny_da3(anyview)
    S = 3 if anyview else 1
    keys = set(net.state_dict())
    x = torch.randn(1, S, 3, 28, 42, generator=torch.Generator().manual_seed(1))
    dynamic = net(x)
    net.freeze_input_size(28, 42, num_views=S)
    frozen = net(x)
    for name in ("depth", "depth_conf", "extrinsics", "intrinsics", "sky"):
        a, b = getattr(frozen, name), getattr(dynamic, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.equal(a, b), name
    assert set(net.state_dict()) == keys
    buffers = dict(net.named_buffers())
    assert "backbone.pretrained.frozen_pos_embed" in buffers
    assert ("backbone.rope_global_cos" in buffers) == anyview and ("head.uv_embed_0" in buffers) == anyview
    with pytest.raises(ShapeError, match="unfreeze_input_size"):
        net(torch.zeros(1, S, 3, 42, 42))
    if anyview:
        with pytest.raises(ShapeError, match=r"frozen to 3 view\(s\) of 28x42.*not 2 of 28x42"):
            net(x[:, :2])
    net.unfreeze_input_size()
    assert not [n for n, _ in net.named_buffers() if "frozen" in n or "rope_" in n or "uv_embed" in n]
    assert net(torch.zeros(1, S, 3, 42, 42)).depth.shape == (1, S, 42, 42)


def test_da3_traced_frozen_predict_has_no_position_tables_or_resize():
    net = set_fused_attention(tiny_da3(anyview=True), False)
    x = torch.randn(1, 2, 3, 28, 42)
    table_ops = {"aten::upsample_bicubic2d", "aten::sin", "aten::cos", "aten::linspace"}
    assert table_ops <= _ops(_Predict(net), x)  # RoPE and UV tables, position-embedding resize
    net.freeze_input_size(28, 42, num_views=2)
    assert not table_ops & _ops(_Predict(net), x)


@torch.no_grad()
def test_da3_head_alone_freezes_its_uv_tables():
    from anydepth.models.da3.heads import DualDPTConfig, DualDPTHead

    torch.manual_seed(0)
    head = DualDPTHead(DualDPTConfig(dim_in=32, features=16, out_channels=(8, 16, 32, 32))).eval()
    features = [(torch.randn(1, 2, 6, 32), torch.randn(1, 2, 32)) for _ in range(4)]
    dynamic = head(features, 28, 42)
    head.freeze_input_size(28, 42)
    frozen = head(features, 28, 42)
    for name in ("depth", "depth_conf", "ray", "ray_conf"):
        assert torch.equal(getattr(frozen, name), getattr(dynamic, name)), name
    with pytest.raises(ShapeError, match="frozen to 28x42 images"):
        head([(torch.randn(1, 2, 9, 32), c) for _, c in features], 42, 42)


@torch.no_grad()
def test_video_depth_anything_frozen_equals_dynamic():
    net = tiny_vda()
    clip = torch.randn(1, 4, 3, 28, 42, generator=torch.Generator().manual_seed(2))
    dynamic = net(clip)
    net.freeze_input_size(28, 42)
    assert torch.equal(net(clip), dynamic)
    with pytest.raises(ShapeError, match="unfreeze_input_size"):
        net(torch.zeros(1, 4, 3, 42, 42))
