"""The DepthCrafter networks held in a diffusers pipeline object, so that diffusers' CPU offloading applies."""

from __future__ import annotations

from typing import Any

from diffusers import DiffusionPipeline


class DepthCrafterComponents(DiffusionPipeline):
    """Holds the VAE, the CLIP image encoder, the DepthCrafter UNet and the Euler scheduler.

    Only a container: the windowed loop lives in :mod:`anydepth.pipelines.depthcrafter.pipeline`. Being a
    ``DiffusionPipeline`` gives it ``enable_model_cpu_offload`` (one network on the GPU at a time, in the order
    they run) and ``enable_sequential_cpu_offload`` (layer by layer), as upstream uses them.
    """

    model_cpu_offload_seq = "image_encoder->unet->vae"

    def __init__(self, vae: Any, image_encoder: Any, unet: Any, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler)
