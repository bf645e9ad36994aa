"""Depth Anything 3: multi-view DINOv2 backbone, reference-view selection, heads and camera encoder/decoder."""
