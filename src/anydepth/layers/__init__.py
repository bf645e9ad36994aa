"""Building blocks shared by the networks: attention, 2D RoPE, MLPs, layer scale, DPT fusion blocks, and the
precision policy that configures them."""

from anydepth.layers.attention import HAS_SDPA, Attention, attention, set_fused_attention
from anydepth.layers.layer_scale import LayerScale
from anydepth.layers.mlp import Mlp, SwiGLUFFN, swiglu_hidden_features
from anydepth.layers.precision import PrecisionPolicy
from anydepth.layers.rope import RopeTables, apply_rope, grid_positions, rope_tables

__all__ = [
    "HAS_SDPA",
    "Attention",
    "LayerScale",
    "Mlp",
    "PrecisionPolicy",
    "RopeTables",
    "SwiGLUFFN",
    "apply_rope",
    "attention",
    "grid_positions",
    "rope_tables",
    "set_fused_attention",
    "swiglu_hidden_features",
]
