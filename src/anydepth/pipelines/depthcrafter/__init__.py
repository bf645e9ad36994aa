"""DepthCrafter video depth: windowed diffusion over lazily read frames (the diffusers parts load on demand)."""
