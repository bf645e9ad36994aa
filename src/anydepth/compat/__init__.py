"""Drop-in facades with the upstream class names and signatures."""

from anydepth.compat.depth_anything_v2 import DepthAnythingV2

__all__ = ["DepthAnythingV2"]
