"""The hand-fused CPU paths step aside under ``torch.compile``, which then compiles the blocks that use them."""

from __future__ import annotations

import shutil

import pytest
import torch

from anydepth.layers import precision
from anydepth.layers.dpt_blocks import ResidualConvUnit
from anydepth.layers.linear import Linear
from anydepth.layers.mlp import Mlp
from anydepth.layers.precision import PrecisionPolicy
from anydepth.models.dinov2 import PatchEmbed

needs_bf16 = pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 autocast needs torch >= 2.0")
# the fast paths themselves are under test: on whatever ANYDEPTH_FAST_PATHS says
pytestmark = [pytest.mark.precision, pytest.mark.usefixtures("fast_paths_on")]


@needs_bf16
def test_linear_takes_the_plain_path_while_compiling(monkeypatch):
    torch.manual_seed(0)
    layer = PrecisionPolicy.for_precision("bf16").apply(Linear(8, 4).eval())
    x = torch.randn(3, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = layer(x, activation="gelu")
        assert layer._bf16 is not None  # the cached bf16 weights of the fast path
        layer._bf16 = None
        monkeypatch.setattr("anydepth.layers.precision.compiling", lambda: True)
        plain = layer(x, activation="gelu")
    assert layer._bf16 is None
    assert plain.dtype == torch.bfloat16
    torch.testing.assert_close(plain.float(), fast.float(), rtol=2e-2, atol=2e-2)


def test_compiling_is_false_in_eager_code():
    assert precision.compiling() is False


class _Blocks(torch.nn.Module):
    """One of each fast path: patch matmul, bf16 linear with fused GELU, float32 conv with fused ReLU / add."""

    def __init__(self) -> None:
        super().__init__()
        bf16 = PrecisionPolicy.for_precision("bf16")
        self.embed = bf16.apply(PatchEmbed(14, 16))  # the float32 region of a bf16 backbone, as a matmul
        self.mlp = bf16.apply(Mlp(16, 32))
        self.unit = ResidualConvUnit(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tokens = tokens + self.mlp(tokens)
        grid = tokens.float().transpose(1, 2).reshape(x.shape[0], 16, x.shape[2] // 14, x.shape[3] // 14)
        return self.unit(grid)


@needs_bf16
@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile needs torch >= 2.0")
@pytest.mark.skipif(not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")), reason="needs a C++ compiler")
def test_fast_paths_compile():
    """torch 2.13 failed to lower the bf16 linear kernel (mkldnn._linear_pointwise) before these paths stepped
    aside: ``load_model(..., compile=True)`` raised on the first call under precision "auto"."""
    torch.manual_seed(0)
    blocks = _Blocks().eval()
    x = torch.randn(2, 3, 28, 42)
    with torch.inference_mode():
        eager = blocks(x)
        compiled = torch.compile(blocks)(x)
    assert compiled.shape == eager.shape == (2, 16, 2, 3)
    torch.testing.assert_close(compiled, eager, rtol=3e-2, atol=3e-2)
