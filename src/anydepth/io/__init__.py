"""Input and output of images and videos: readers, writers, input expansion and atomic file writing."""

from anydepth.io.atomic import atomic_open, atomic_path
from anydepth.io.images import IMAGE_SUFFIXES, read_image
from anydepth.io.inputs import VIDEO_SUFFIXES, expand_inputs, is_image_path, is_video_path
from anydepth.io.video import VideoReader, VideoWriter

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "VideoReader",
    "VideoWriter",
    "atomic_open",
    "atomic_path",
    "expand_inputs",
    "is_image_path",
    "is_video_path",
    "read_image",
]
