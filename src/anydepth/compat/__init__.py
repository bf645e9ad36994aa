"""Drop-in facades with the upstream class names and signatures."""

from anydepth.compat.depth_anything_3 import DepthAnything3
from anydepth.compat.depth_anything_v2 import DepthAnythingV2
from anydepth.compat.video_depth_anything import VideoDepthAnything

__all__ = ["DepthAnything3", "DepthAnythingV2", "VideoDepthAnything"]
