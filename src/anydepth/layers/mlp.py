"""Feed-forward blocks of the ViT: GELU MLP and the SwiGLU of DINOv2-giant."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.layers.linear import Linear


class Mlp(nn.Module):
    """Linear -> GELU (exact, erf) -> Linear, keys ``fc1`` / ``fc2``; the GELU is fused into ``fc1`` where it can."""

    def __init__(self, dim: int, hidden_features: int, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden_features, bias=bias)
        self.fc2 = Linear(hidden_features, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x, activation="gelu"))


def swiglu_hidden_features(dim: int, mlp_ratio: float = 4.0) -> int:
    """Hidden width of DINOv2's fused SwiGLU: 2/3 of the MLP width, rounded up to a multiple of 8."""
    return (int(dim * mlp_ratio * 2 / 3) + 7) // 8 * 8


class SwiGLUFFN(nn.Module):
    """SwiGLU feed-forward with one packed input projection, keys ``w12`` / ``w3``."""

    def __init__(self, dim: int, hidden_features: int, bias: bool = True) -> None:
        super().__init__()
        self.w12 = Linear(dim, 2 * hidden_features, bias=bias)
        self.w3 = Linear(hidden_features, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)
