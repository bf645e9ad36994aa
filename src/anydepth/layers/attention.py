"""Multi-head self-attention with a fused SDPA path and an explicit softmax path that runs on torch 1.13."""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.layers.linear import Linear
from anydepth.layers.precision import PrecisionPolicy, fast_paths_enabled
from anydepth.layers.rope import PartialRope, Rope, apply_rope, rotate_tokens_

# torch >= 2.0 ships scaled_dot_product_attention; torch 1.13 (AWS Inf1) does not.
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def attention(q: Tensor, k: Tensor, v: Tensor, fused: bool = True) -> Tensor:
    """Softmax attention over the last two dimensions.

    Args:
        q, k, v: (B, heads, N, head_dim) tensors.
        fused: use torch's scaled_dot_product_attention when it exists and the process allows fast paths
            (:func:`~anydepth.layers.precision.fast_paths_enabled`); the explicit path is the reference that
            tests hold the fused one to, and the path traced for torch 1.13 targets.

    Returns:
        (B, heads, N, head_dim)
    """
    if fused and HAS_SDPA and fast_paths_enabled(compilable=True):
        return F.scaled_dot_product_attention(q, k, v)
    scale = q.shape[-1] ** -0.5
    weights = (q * scale) @ k.transpose(-2, -1)
    return weights.softmax(dim=-1) @ v


class Attention(nn.Module):
    """ViT self-attention with a packed ``qkv`` projection (DINOv2 key layout).

    Args:
        dim: token width.
        num_heads: attention heads; ``dim`` must divide evenly.
        qkv_bias, proj_bias: biases of the input and output projections.
        qk_norm: LayerNorm queries and keys over the head dimension before attention (Depth Anything 3), keys
            ``q_norm`` / ``k_norm``; without it the layer has the plain DINOv2 keys.
        qk_norm_eps: epsilon of those norms (DA3 uses torch's default, 1e-5, not the 1e-6 of its block norms).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        qk_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        # Identity has no parameters, so layers without q/k norms keep the DINOv2 state-dict keys
        self.q_norm = nn.LayerNorm(head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.proj = Linear(dim, dim, bias=proj_bias)
        self.fused = HAS_SDPA  # the per-layer switch (set_fused_attention)
        self.fast_paths = True  # the precision policy's (set_precision)

    def set_precision(self, policy: PrecisionPolicy) -> None:
        self.fast_paths = policy.fast_paths

    def forward(self, x: Tensor, rope: Optional[Rope] = None) -> Tensor:
        """Attend over all N tokens of each sequence.

        Args:
            x: (B, N, C) tokens.
            rope: optional rotary tables ``(cos, signed_sin)`` from :func:`anydepth.layers.rope.rope_tables`, each
                broadcastable to (B, heads, N, head_dim), or a :class:`anydepth.layers.rope.PartialRope` (inference
                only: it rotates its few tokens in place); queries and keys are rotated after their norms.

        Returns:
            (B, N, C)
        """
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, heads, N, head_dim)
        q, k = self.q_norm(q), self.k_norm(k)
        if isinstance(rope, PartialRope):
            q, k = rotate_tokens_(q, rope), rotate_tokens_(k, rope)
        elif rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        x = attention(q, k, v, fused=self.fused and self.fast_paths)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


def set_fused_attention(module: nn.Module, enabled: bool) -> nn.Module:
    """Switch every attention layer below ``module`` between the SDPA and the explicit path.

    Returns the module, so it can be chained.
    """
    for sub in module.modules():
        if hasattr(sub, "fused") and isinstance(sub.fused, bool):
            sub.fused = bool(enabled) and HAS_SDPA
    return module
