"""Tiny DepthCrafter networks with deterministic random weights, saved in the official folder layouts.

``tencent/DepthCrafter`` holds ``unet/`` (config.json + diffusion_pytorch_model.safetensors);
``stabilityai/stable-video-diffusion-img2vid-xt`` holds ``vae/``, ``image_encoder/``, ``scheduler/`` and
``feature_extractor/``. The networks are SVD's classes at a tiny size; every weight comes from
``random_weights`` (name, shape, seed), so the tests and ``scripts/make_depthcrafter_fixtures.py`` (which runs
upstream's pipeline) build the same numbers without storing a checkpoint. Needs diffusers and transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from tests.helpers.random_weights import randomize_

UPSTREAM_UNET_CLASS = "DiffusersUNetSpatioTemporalConditionModelDepthCrafter"
UNET_CONFIG: Dict[str, Any] = dict(
    sample_size=None,
    in_channels=8,
    out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    block_out_channels=(32, 64),
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=24,  # 3 micro-conditions x addition_time_embed_dim
    layers_per_block=1,
    cross_attention_dim=16,
    transformer_layers_per_block=1,
    num_attention_heads=(2, 4),
    num_frames=8,
)
VAE_CONFIG: Dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    block_out_channels=(32, 32, 32),  # latents at 1/4 of the frame size
    layers_per_block=1,
    latent_channels=4,
    sample_size=64,
    scaling_factor=0.18215,
    force_upcast=True,
)
CLIP_CONFIG: Dict[str, Any] = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=224,
    patch_size=32,
    projection_dim=16,
)
# Stable Video Diffusion img2vid-xt's scheduler_config.json
SCHEDULER_CONFIG: Dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    interpolation_type="linear",
    use_karras_sigmas=True,
    sigma_min=0.002,
    sigma_max=700.0,
    timestep_spacing="leading",
    timestep_type="continuous",
    steps_offset=1,
)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_networks(
    seed: int = 0, unet_class: Any = None, configs: Optional[Dict[str, Dict[str, Any]]] = None
) -> Tuple[Any, Any, Any, Any]:
    """``(unet, vae, image_encoder, scheduler)`` at the tiny size, weights from ``seed``, float32, eval mode.

    ``configs`` replaces the tiny ``"unet"``, ``"vae"`` and ``"clip"`` configurations (a benchmark's real shapes).
    """
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    configs = {"unet": UNET_CONFIG, "vae": VAE_CONFIG, "clip": CLIP_CONFIG, **(configs or {})}
    unet = randomize_((unet_class or UNetSpatioTemporalConditionModel)(**configs["unet"]), seed)
    vae = randomize_(AutoencoderKLTemporalDecoder(**configs["vae"]), seed + 1)
    encoder = randomize_(CLIPVisionModelWithProjection(CLIPVisionConfig(**configs["clip"])), seed + 2)
    scheduler = EulerDiscreteScheduler(**SCHEDULER_CONFIG)
    return unet.eval(), vae.eval(), encoder.eval(), scheduler


def save_official_layout(
    root: Path, seed: int = 0, configs: Optional[Dict[str, Dict[str, Any]]] = None
) -> Tuple[Path, Path]:
    """Write ``root/DepthCrafter/unet/`` and ``root/svd/{vae,image_encoder,scheduler,feature_extractor}/``.

    The UNet's config names upstream's class, as the hub file does. Returns the two repo folders. ``configs``: as
    for :func:`build_networks`.
    """
    unet, vae, encoder, scheduler = build_networks(seed, configs=configs)
    depthcrafter, svd = root / "DepthCrafter", root / "svd"
    unet.save_pretrained(depthcrafter / "unet")
    config_path = depthcrafter / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["_class_name"] = UPSTREAM_UNET_CLASS
    config_path.write_text(json.dumps(config, indent=2))
    vae.save_pretrained(svd / "vae")
    encoder.save_pretrained(svd / "image_encoder")
    scheduler.save_pretrained(svd / "scheduler")
    extractor = svd / "feature_extractor"
    extractor.mkdir(parents=True, exist_ok=True)
    (extractor / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "CLIPImageProcessor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD})
    )
    return depthcrafter, svd


def synthetic_frames(num_frames: int, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 frames of a pattern sliding sideways, as a tensor (numpy via ``.numpy()``)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand((height, width + num_frames, 3), generator=g)
    ramp = torch.linspace(0, 1, width + num_frames)[None, :, None]
    image = (0.6 * base + 0.4 * ramp) * 255
    return torch.stack([image[:, t : t + width] for t in range(num_frames)]).round().to(torch.uint8)
