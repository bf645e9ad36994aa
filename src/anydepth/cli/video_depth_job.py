"""The ``video`` command for Video Depth Anything models: lazy frames in, depth video and raw sequences out.

Memory stays flat in the video's length: frames are decoded one at a time, the model holds one window, and each
depth frame goes to disk as soon as it is final. The depth video and the relative 16-bit PNGs are normalised by
the range of the whole video (upstream's look, and no brightness flicker), so they are written in a second pass
that reads the depth frames back from the float32 ``.npy`` on disk one at a time.

Outputs, named as upstream's ``run.py`` names them, in ``outdir``:

- ``<stem>_vis.mp4``: the depth video, inferno colour map (``--grayscale``: grey), min-max over the whole video.
- ``npz``: ``<stem>_depths.npz`` with key ``depths`` (T, H, W) float32, compressed, as upstream.
- ``npy``: ``<stem>_depths.npy`` (T, H, W) float32.
- ``exr``: ``<stem>_depths_exr/frame_00000.exr``..., float32 channel ``Z``, as upstream.
- ``png16``: ``<stem>_depths_png16/frame_00000.png``...: millimetres for metric models, otherwise the video's
  min-max range over 0..65535.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np

from anydepth.errors import InputError, require
from anydepth.io.atomic import atomic_path
from anydepth.pipelines.video_depth import VideoDepthModel

logger = logging.getLogger(__name__)

VDA_RAW_FORMATS = ("npz", "npy", "exr", "png16")


@dataclass
class VideoDepthOutputs:
    """What to write for a video depth run (see the module docstring for the files)."""

    outdir: Path
    raw: Sequence[str] = field(default_factory=tuple)
    grayscale: bool = False
    vis: bool = True

    def check(self) -> None:
        bad = [r for r in self.raw if r not in VDA_RAW_FORMATS]
        if bad:
            raise InputError(f"unknown raw format {', '.join(bad)}; choose from {', '.join(VDA_RAW_FORMATS)}")
        if "exr" in self.raw:
            require("OpenEXR", "export")
        if not self.vis and not self.raw:
            raise InputError("--no-vis leaves nothing to write; add --raw npz, npy, exr or png16")


def _npy_to_npz(npy: Path, npz: Path, key: str = "depths") -> Path:
    """Compress a ``.npy`` into an ``.npz`` member without loading it (np.savez_compressed's format)."""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(npz))
        archive = stack.enter_context(zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True))
        src = stack.enter_context(open(npy, "rb"))
        shutil.copyfileobj(src, stack.enter_context(archive.open(f"{key}.npy", "w", force_zip64=True)), 1 << 20)
    return npz


def _frames_of(npy: Path) -> Iterator[np.ndarray]:
    """The frames of a (T, H, W) ``.npy``, read one at a time.

    Plain reads, not a memory map: pages of a mapped file that has been read count as resident memory of this
    process until the kernel needs them back, so a map would make peak RSS grow with the video's length.
    """
    with open(npy, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if fortran or len(shape) != 3:
            raise InputError(f"{npy}: not a (T, H, W) C-order array")
        for _ in range(shape[0]):
            frame = np.empty(shape[1:], dtype)
            if f.readinto(memoryview(frame).cast("B")) != frame.nbytes:
                raise InputError(f"{npy}: the file ends before its last frame")
            yield frame


def run_video_depth(
    model: VideoDepthModel,
    path: Path,
    outputs: VideoDepthOutputs,
    input_size: Optional[int] = None,
    fps: Optional[float] = None,
    stride: int = 1,
    max_frames: Optional[int] = None,
    mode: str = "windowed",
    align: str = "overlap",
    progress: bool = True,
) -> List[Path]:
    """Depth of a video with a Video Depth Anything model; returns the files written.

    Args:
        model: from ``anydepth.load_model("vda-...")``.
        path: the video file.
        outputs: what to write, and where.
        input_size: shorter processing side (default the preset's, 518).
        fps, stride, max_frames: frame sampling, as :class:`~anydepth.io.video.VideoReader` takes them.
        mode: "windowed" or "streaming" (see :meth:`VideoDepthModel.infer_frames`).
        align: windowed mode's join of windows, "overlap" or "keyframes".
        progress: show a progress bar.
    """
    from anydepth.export import depth_maps as dm
    from anydepth.io.npy_stream import NpyFrameWriter
    from anydepth.io.video import VideoReader, VideoWriter

    outputs.check()
    stem = Path(path).stem
    outdir = outputs.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    metric = model.depth_kind == "metric"
    keep_npy = "npy" in outputs.raw
    npy = outdir / (f"{stem}_depths.npy" if keep_npy else f".{stem}_depths.partial.npy")
    exr_dir, png_dir = outdir / f"{stem}_depths_exr", outdir / f"{stem}_depths_png16"
    written: List[Path] = []
    low, high, count = np.inf, -np.inf, 0
    try:
        with VideoReader(path, fps=fps, stride=stride, max_frames=max_frames) as reader:
            out_fps = reader.out_fps or 30.0
            with NpyFrameWriter(npy) as frames_out:
                depths = model.infer_frames(
                    reader, input_size, mode=mode, align=align, progress=progress, total=reader.num_frames
                )
                for index, depth in enumerate(depths):
                    frames_out.write(depth)
                    finite = depth[np.isfinite(depth)]
                    if finite.size:
                        low, high = min(low, float(finite.min())), max(high, float(finite.max()))
                    if "exr" in outputs.raw:
                        written.append(dm.save_exr(exr_dir / f"frame_{index:05d}.exr", depth))
                    if "png16" in outputs.raw and metric:
                        written.append(dm.save_png16_metric(png_dir / f"frame_{index:05d}.png", depth))
                    count += 1
                if count == 0:
                    raise InputError(f"{path}: the video has no frames to process")
        if keep_npy:
            written.append(npy)
        if outputs.vis:
            vis_path = outdir / f"{stem}_vis.mp4"
            cmap = "gray" if outputs.grayscale else "inferno"
            with VideoWriter(vis_path, fps=out_fps) as video:
                for depth in _frames_of(npy):
                    video.write(dm.colorize(depth, cmap=cmap, vmin=low, vmax=high))
            written.append(vis_path)
        if "png16" in outputs.raw and not metric:
            for index, depth in enumerate(_frames_of(npy)):
                written.append(dm.save_png16(png_dir / f"frame_{index:05d}.png", depth, vmin=low, vmax=high))
        if "npz" in outputs.raw:
            written.append(_npy_to_npz(npy, outdir / f"{stem}_depths.npz"))
    finally:
        if not keep_npy:
            with contextlib.suppress(FileNotFoundError):
                npy.unlink()
    logger.info("%s: %d frames, %d files written to %s", path, count, len(written), outdir)
    return written


def check_video_input(path: Path, fps: Optional[float], method: str) -> None:
    """Refuse a bad --fps, an image or an unreadable video before any weights load; then trim the heap."""
    from anydepth.io.inputs import is_image_path
    from anydepth.io.video import VideoReader

    if fps is not None and fps <= 0:
        raise InputError(f"--fps {fps} must be positive")
    if is_image_path(path):
        raise InputError(f"{path} is an image, not a video; {method} needs a video")
    with VideoReader(path):
        pass
    return_freed_memory_early()


def return_freed_memory_early() -> bool:
    """Make glibc hand large freed blocks back to the system at once (the command line's process only).

    Each window allocates and frees the same few hundred MB of tensors; with glibc's adaptive threshold these end
    up on the heap, whose fragments keep the peak growing over the first windows (3.0 GiB after 3 windows at
    518x924, against 2.4 GiB with this). Returns False where it does not apply (not Linux/glibc).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3  # glibc's mallopt parameter; a fixed value also turns its adaptation off
    return bool(libc.mallopt(m_mmap_threshold, 128 * 1024))


def run_vda_command(
    path: Path,
    model_name: str,
    weights: Optional[str],
    device: str,
    precision: str,
    revision: Optional[str],
    input_size: int,
    outdir: Path,
    grayscale: bool,
    raw: Optional[str],
    fps: Optional[float],
    stride: int,
    max_frames: Optional[int],
    quiet: bool = False,
    mode: str = "windowed",
    align: str = "overlap",
    backend: str = "pytorch",
    num_threads: Optional[int] = None,
    compile: bool = False,
) -> List[str]:
    """``anydepth video --model vda-*``: checks the options and the video before loading weights, then runs.

    ``num_threads`` and ``compile`` are the global ``--threads`` and ``--compile``. Returns the lines to show the
    user.
    """
    from anydepth.api import load_model
    from anydepth.cli.jobs import parse_raw
    from anydepth.pipelines.video_depth import ALIGNMENTS, MODES

    outputs = VideoDepthOutputs(outdir=outdir, raw=parse_raw(raw), grayscale=grayscale)
    outputs.check()
    if mode not in MODES:
        raise InputError(f"--vda-mode {mode!r}: choose one of {', '.join(MODES)}")
    if align not in ALIGNMENTS:
        raise InputError(f"--vda-align {align!r}: choose one of {', '.join(ALIGNMENTS)}")
    if input_size < 14:
        raise InputError(f"--input-size {input_size} is too small; use at least 14")
    if backend != "pytorch" and mode != "windowed":
        raise InputError(f"--vda-mode {mode}: exported models run whole windows; use --vda-mode windowed")
    check_video_input(path, fps, "Video Depth Anything")
    model = load_model(
        model_name,
        weights=weights,
        device=device,
        precision=precision,
        revision=revision,
        backend=backend,
        num_threads=num_threads,
        compile=compile,
    )
    written = run_video_depth(
        model, path, outputs, input_size, fps, stride, max_frames, mode=mode, align=align, progress=not quiet
    )
    return [] if quiet else [f"wrote {len(written)} file(s) to {outdir}"]
