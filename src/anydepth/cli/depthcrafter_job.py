"""The ``video`` command for DepthCrafter: lazy frames in, normalised depth out through the video job's writers.

Upstream's output is the depth min-max normalised over the whole video, so the job runs in two passes with flat
memory: the model's per-frame maps go to a float32 ``.npy`` on disk as they come (with the running minimum and
maximum), then each frame is read back, normalised and handed to every writer. Outputs in ``outdir``:

- ``<stem>_vis.mp4``: the depth video, inferno colour map (``--grayscale``: grey), as upstream's ``_vis.mp4``.
- ``npz``: ``<stem>.npz`` with key ``depth`` (T, H, W) float32 in [0, 1], as upstream's ``--save_npz``.
- ``exr``: ``<stem>/frame_0000.exr``..., float32 channel ``Z``, as upstream's ``--save_exr``.
- ``npy``: ``<stem>_depths.npy`` (T, H, W) float32; ``png16``: ``<stem>_depths_png16/frame_00000.png``, [0, 1]
  over 0..65535.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import List, Optional

import numpy as np

from anydepth.cli.video_depth_job import VideoDepthOutputs, _frames_of, _npy_to_npz, check_video_input
from anydepth.errors import InputError

logger = logging.getLogger(__name__)


def run_depthcrafter_video(
    model,
    path: Path,
    outputs: VideoDepthOutputs,
    fps: Optional[float] = None,
    stride: int = 1,
    max_frames: Optional[int] = None,
    progress: bool = True,
    **options,
) -> List[Path]:
    """Depth of a video with DepthCrafter; returns the files written.

    Args:
        model: from ``anydepth.load_model("depthcrafter", ...)``.
        path: the video file.
        outputs: what to write, and where.
        fps, stride, max_frames: frame sampling, as :class:`~anydepth.io.video.VideoReader` takes them.
        progress: show a progress bar.
        options: :meth:`~anydepth.pipelines.depthcrafter.pipeline.DepthCrafterModel.infer_frames` settings
            (steps, guidance, window, overlap, max_res, seed, align, decode_chunk_size).
    """
    from anydepth.export import depth_maps as dm
    from anydepth.io.npy_stream import NpyFrameWriter
    from anydepth.io.video import VideoReader, VideoWriter
    from anydepth.pipelines.depthcrafter.pipeline import normalize_video_depth

    outputs.check()
    stem = Path(path).stem
    outdir = outputs.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    raw_npy = outdir / f".{stem}_raw.partial.npy"
    keep_npy = "npy" in outputs.raw
    npy = outdir / (f"{stem}_depths.npy" if keep_npy else f".{stem}_depths.partial.npy")
    written: List[Path] = []
    low, high, count = np.inf, -np.inf, 0
    try:
        with VideoReader(path, fps=fps, stride=stride, max_frames=max_frames) as reader:
            out_fps = reader.out_fps or 30.0
            with NpyFrameWriter(raw_npy) as frames_out:
                for depth in model.infer_frames(reader, progress=progress, total=reader.num_frames, **options):
                    frames_out.write(depth)
                    low, high = min(low, float(depth.min())), max(high, float(depth.max()))
                    count += 1
        if count == 0:
            raise InputError(f"{path}: the video has no frames to process")
        needs_npy = keep_npy or "npz" in outputs.raw
        with contextlib.ExitStack() as stack:
            video = None
            if outputs.vis:
                vis_path = outdir / f"{stem}_vis.mp4"
                video = stack.enter_context(VideoWriter(vis_path, fps=out_fps))
            normalized_out = stack.enter_context(NpyFrameWriter(npy)) if needs_npy else None
            cmap = "gray" if outputs.grayscale else "inferno"
            for index, raw in enumerate(_frames_of(raw_npy)):
                depth = normalize_video_depth(raw, low, high)
                if video is not None:
                    video.write(dm.colorize(depth, cmap=cmap, vmin=0.0, vmax=1.0))
                if normalized_out is not None:
                    normalized_out.write(depth)
                if "exr" in outputs.raw:
                    written.append(dm.save_exr(outdir / stem / f"frame_{index:04d}.exr", depth))
                if "png16" in outputs.raw:
                    png = outdir / f"{stem}_depths_png16" / f"frame_{index:05d}.png"
                    written.append(dm.save_png16(png, depth, vmin=0.0, vmax=1.0))
        if outputs.vis:
            written.append(outdir / f"{stem}_vis.mp4")
        if "npz" in outputs.raw:
            written.append(_npy_to_npz(npy, outdir / f"{stem}.npz", key="depth"))
        if keep_npy:
            written.append(npy)
    finally:
        for temporary in (raw_npy, None if keep_npy else npy):
            if temporary is not None:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
    logger.info("%s: %d frames, %d files written to %s", path, count, len(written), outdir)
    return written


def run_depthcrafter_command(
    path: Path,
    weights: Optional[str],
    svd_weights: Optional[str],
    device: str,
    precision: str,
    revision: Optional[str],
    outdir: Path,
    grayscale: bool,
    raw: Optional[str],
    fps: Optional[float],
    stride: int,
    max_frames: Optional[int],
    cpu_offload: Optional[str],
    quiet: bool = False,
    num_threads: Optional[int] = None,
    compile: bool = False,
    **options,
) -> List[str]:
    """``anydepth video --model depthcrafter``: checks the options and the video before loading weights, then runs.

    ``num_threads`` and ``compile`` are the global ``--threads`` and ``--compile``. Returns the lines to show the
    user.
    """
    from anydepth.api import load_model
    from anydepth.cli.jobs import parse_raw
    from anydepth.pipelines.depthcrafter.pipeline import DepthCrafterOptions

    outputs = VideoDepthOutputs(outdir=outdir, raw=parse_raw(raw), grayscale=grayscale)
    outputs.check()
    try:
        DepthCrafterOptions(**options).check()
    except InputError as exc:
        raise InputError(f"{exc} (--dc-* options)") from None
    offload = None if cpu_offload in (None, "none") else cpu_offload
    check_video_input(path, fps, "DepthCrafter")
    model = load_model(
        "depthcrafter",
        weights=weights,
        svd_weights=svd_weights,
        device=device,
        precision=precision,
        revision=revision,
        cpu_offload=offload,
        num_threads=num_threads,
        compile=compile,
    )
    written = run_depthcrafter_video(model, path, outputs, fps, stride, max_frames, progress=not quiet, **options)
    return [] if quiet else [f"wrote {len(written)} file(s) to {outdir}"]
