"""Building blocks shared by the networks: attention, MLPs, layer scale, DPT fusion blocks."""

from anydepth.layers.attention import HAS_SDPA, Attention, attention, set_fused_attention
from anydepth.layers.layer_scale import LayerScale
from anydepth.layers.mlp import Mlp, SwiGLUFFN, swiglu_hidden_features

__all__ = [
    "HAS_SDPA",
    "Attention",
    "LayerScale",
    "Mlp",
    "SwiGLUFFN",
    "attention",
    "set_fused_attention",
    "swiglu_hidden_features",
]
