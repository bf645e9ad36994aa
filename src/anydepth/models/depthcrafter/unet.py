"""DepthCrafter's UNet: diffusers' spatio-temporal UNet, conditioned on one CLIP image embedding per frame.

Stable Video Diffusion conditions every frame on the embedding of one input image; DepthCrafter gives each frame
its own embedding, so ``encoder_hidden_states`` is ``(B, T, C)`` instead of ``(B, 1, C)``. Everything else (blocks,
time and ``added_time_ids`` embeddings) is diffusers' own, so the official ``unet/`` folder loads with
``from_pretrained``. This module imports diffusers at import time; only the DepthCrafter path imports it.
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput


class DepthCrafterUNet(UNetSpatioTemporalConditionModel):
    """The DepthCrafter denoiser: ``(B, T, 8, h, w)`` noisy latents and frame latents -> ``(B, T, 4, h, w)``."""

    def _embed_time(self, timestep: Union[torch.Tensor, float, int], batch: int, added_time_ids: torch.Tensor,
                    device: torch.device) -> torch.Tensor:  # fmt: skip
        """Timestep plus (fps, motion bucket, noise strength) embedding: (B, C_emb)."""
        if not torch.is_tensor(timestep):
            dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            timestep = torch.tensor([timestep], dtype=dtype, device=device)
        elif timestep.ndim == 0:
            timestep = timestep[None].to(device)
        # the sinusoidal projection returns float32 whatever the weights are: cast to the network's dtype
        weight_dtype = self.conv_in.weight.dtype
        emb = self.time_embedding(self.time_proj(timestep.expand(batch)).to(weight_dtype))
        extra = self.add_time_proj(added_time_ids.flatten()).reshape(batch, -1).to(emb.dtype)
        return emb + self.add_embedding(extra)

    def forward(
        self,
        sample: torch.Tensor,  # (B, T, C_in, h, w)
        timestep: Union[torch.Tensor, float, int],
        encoder_hidden_states: torch.Tensor,  # (B, T, C_cross): one image embedding per frame
        added_time_ids: torch.Tensor,  # (B, 3)
        return_dict: bool = True,
    ) -> Union[UNetSpatioTemporalConditionOutput, Tuple[torch.Tensor]]:
        B, T = sample.shape[:2]
        emb = self._embed_time(timestep, B, added_time_ids, sample.device).repeat_interleave(T, dim=0)
        # each frame attends to its own embedding: (B, T, C) -> (B * T, 1, C)
        context = encoder_hidden_states.reshape(B * T, 1, encoder_hidden_states.shape[-1])
        hidden = self.conv_in(sample.flatten(0, 1).to(self.conv_in.weight.dtype))
        frame_flags = torch.zeros(B, T, dtype=hidden.dtype, device=hidden.device)  # every frame is video

        skips = (hidden,)
        for block in self.down_blocks:
            kwargs = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
            hidden, block_skips = block(hidden_states=hidden, temb=emb, image_only_indicator=frame_flags, **kwargs)
            skips += block_skips
        hidden = self.mid_block(
            hidden_states=hidden, temb=emb, encoder_hidden_states=context, image_only_indicator=frame_flags
        )
        for block in self.up_blocks:
            taken = len(block.resnets)
            block_skips, skips = skips[-taken:], skips[:-taken]
            kwargs = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
            hidden = block(
                hidden_states=hidden,
                res_hidden_states_tuple=block_skips,
                temb=emb,
                image_only_indicator=frame_flags,
                **kwargs,
            )
        out = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        out = out.reshape(B, T, *out.shape[1:])
        return UNetSpatioTemporalConditionOutput(sample=out) if return_dict else (out,)
