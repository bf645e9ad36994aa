"""The application layer: typed options and the jobs every interface runs.

The command line, the backend service and the web app are thin adapters: they build the options of
:mod:`anydepth.jobs.options` and call a job. A job checks every option before any weights load, loads the model
through :func:`anydepth.jobs.loader.load` (every runtime option honoured), runs and writes its outputs.

- :func:`~anydepth.jobs.scene.scene_job`: views of one scene (DA3): depth, cameras, exports in upstream's layout.
- :func:`~anydepth.jobs.images.images_job`: depth of each image on its own (V2), visualisations and raw files.
- :func:`~anydepth.jobs.video.frame_video_job`, :func:`~anydepth.jobs.video.video_depth_job`,
  :func:`~anydepth.jobs.video.depthcrafter_job`: videos, all written by
  :class:`~anydepth.jobs.video.VideoDepthSink`.
"""

from typing import TYPE_CHECKING

from anydepth._lazy import lazy_names
from anydepth.jobs.options import (
    FrameSampling,
    ImageOutputs,
    ModelSpec,
    RuntimeOptions,
    SceneOptions,
    VideoOutputs,
    parse_raw,
)

# The jobs import torch and the pipelines; they load on first use (PEP 562), so that the options above, which the
# command line builds its commands from, come without them.
_JOBS = {
    "JobReport": "anydepth.jobs.images",
    "images_job": "anydepth.jobs.images",
    "run_images": "anydepth.jobs.images",
    "load": "anydepth.jobs.loader",
    "collect_views": "anydepth.jobs.scene",
    "run_scene": "anydepth.jobs.scene",
    "scene_job": "anydepth.jobs.scene",
    "depthcrafter_job": "anydepth.jobs.video",
    "frame_video_job": "anydepth.jobs.video",
    "video_depth_job": "anydepth.jobs.video",
}

if TYPE_CHECKING:
    from anydepth.jobs.images import JobReport, images_job, run_images
    from anydepth.jobs.loader import load
    from anydepth.jobs.scene import collect_views, run_scene, scene_job
    from anydepth.jobs.video import depthcrafter_job, frame_video_job, video_depth_job


__getattr__, __dir__ = lazy_names(globals(), _JOBS)

__all__ = [
    "FrameSampling",
    "ImageOutputs",
    "JobReport",
    "ModelSpec",
    "RuntimeOptions",
    "SceneOptions",
    "VideoOutputs",
    "collect_views",
    "depthcrafter_job",
    "frame_video_job",
    "images_job",
    "load",
    "parse_raw",
    "run_images",
    "run_scene",
    "scene_job",
    "video_depth_job",
]
