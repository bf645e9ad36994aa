"""DepthCrafter's network: the Stable Video Diffusion UNet with per-frame image conditioning (needs diffusers)."""
