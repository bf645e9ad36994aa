"""What a backend job weighs before it runs, from its files' headers: its pixels (refused at submission over
``max_job_pixels``) and its working memory (reserved in the server's memory budget before it starts)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from anydepth.io.images import ImageHeader, read_header
from anydepth.jobs.memory import scene_working_bytes
from anydepth.jobs.options import SceneOptions
from anydepth.web.security import ServiceError


def job_views(
    inputs: Sequence[str], kind: str, options: Dict[str, Any], max_pixels: int
) -> Tuple[List[ImageHeader], bool]:
    """The headers of a job's views, and whether the job holds them all in memory (a video's frames do).

    A video's frame count is its header's at the job's ``fps``, at most ``max_frames``. An image whose header
    PIL cannot read (HEIC without its plugin) counts as the largest image the server accepts, ``max_pixels``.
    """
    max_frames: Optional[int] = options.get("max_frames")
    if kind == "video":
        from anydepth.io.video import VideoReader

        with VideoReader(inputs[0], fps=options.get("fps", 1.0), max_frames=max_frames) as video:
            count = video.num_frames if video.num_frames is not None else (max_frames or 1)
            return [ImageHeader(video.height, video.width)] * count, True
    side = math.isqrt(max_pixels)
    paths = list(inputs)[:max_frames] if max_frames else list(inputs)
    headers = [read_header(Path(p)) or ImageHeader(side, side) for p in paths]
    return headers, False


def check_job_pixels(views: Sequence[ImageHeader], max_job_pixels: Optional[int]) -> None:
    """Refuses (413) a job whose views hold more than ``max_job_pixels`` pixels in all."""
    total = sum(v.height * v.width for v in views)
    if max_job_pixels is not None and total > max_job_pixels:
        raise ServiceError(
            413,
            f"{len(views)} view(s) of {total / 2**20:.1f} megapixels in all; this server takes at most "
            f"{max_job_pixels / 2**20:.1f} megapixels per job",
        )


def job_working_bytes(
    views: Sequence[ImageHeader], in_memory: bool, encoder: str, options: Dict[str, Any], reduce_on_decode: bool
) -> int:
    """The working memory of a scene job with these views and options (see
    :func:`anydepth.jobs.memory.scene_working_bytes`), with the frames a video job holds."""
    scene = {**SceneOptions.defaults(), **options}
    working = scene_working_bytes(
        views,
        encoder,
        process_res=int(scene["process_res"]),
        process_res_method=scene["process_res_method"],
        export_at_input_res=bool(scene["export_at_input_res"]),
        reduce_on_decode=reduce_on_decode and not in_memory,
    )
    return working + (3 * sum(v.height * v.width for v in views) if in_memory else 0)
