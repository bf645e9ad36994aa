"""Video jobs: lazy frames in, a depth video and raw depth files out, with memory flat in the video's length.

Frames are decoded one at a time and every depth frame goes to :class:`VideoDepthSink` as soon as it is final. The
sink writes every output of every video job; what differs between the models is only where files go
(:class:`VideoLayout`) and how the depth is brought to a visible range:

- ``"frame"``: each frame by its own range, written at once (V2 models, frame by frame, as Depth Anything V2's
  video script): ``<stem>.mp4`` (input and depth side by side, or depth only), ``<stem>_depth.npy`` (T, H, W)
  float32, ``<stem>_depth/000000.png`` (16-bit) and ``.exr`` sequences.
- ``"video"``: by the range of the whole video, no brightness flicker (Video Depth Anything, as upstream's
  ``run.py``): ``<stem>_vis.mp4``, ``<stem>_depths.npz`` (key ``depths``), ``<stem>_depths.npy``,
  ``<stem>_depths_exr/frame_00000.exr`` (channel ``Z``), ``<stem>_depths_png16/frame_00000.png`` (millimetres for
  metric models, else the video's range over 0..65535). Raw files hold the model's values.
- ``"unit"``: the depth itself is min-max normalised over the whole video to [0, 1] before any output
  (DepthCrafter, as upstream): ``<stem>_vis.mp4``, ``<stem>.npz`` (key ``depth``), ``<stem>/frame_0000.exr``,
  ``<stem>_depths.npy``, ``<stem>_depths_png16/frame_00000.png``.

The whole-video ranges need every frame first: depth frames go to a float32 ``.npy`` on disk as they come (with
the running minimum and maximum), and a second pass reads them back one at a time.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import numpy as np

from anydepth.errors import InputError, OptionError
from anydepth.io.atomic import atomic_path
from anydepth.jobs.images import metric_png_scale, visualise
from anydepth.jobs.loader import load
from anydepth.jobs.options import (
    FRAME_RAW_FORMATS,
    FrameSampling,
    ImageOutputs,
    ModelSpec,
    RuntimeOptions,
    VideoOutputs,
    check_input_size,
)
from anydepth.pipelines.background import BackgroundWriter, prefetch
from anydepth.pipelines.runtime import tune_allocator

logger = logging.getLogger(__name__)

NORMALISATIONS = ("frame", "video", "unit")


@dataclass(frozen=True)
class VideoLayout:
    """File names of a video job's outputs inside the output folder: ``{stem}`` is the video's, ``{index}`` the
    frame's in sequences. An empty ``npz`` means the layout has no ``.npz`` output."""

    vis: str
    npy: str
    exr: str
    png16: str
    npz: str = ""
    npz_key: str = "depths"
    cmap: str = "inferno"


FRAME_LAYOUT = VideoLayout(
    vis="{stem}.mp4", npy="{stem}_depth.npy", exr="{stem}_depth/{index:06d}.exr",
    png16="{stem}_depth/{index:06d}.png", cmap="spectral_r",
)  # fmt: skip
VDA_LAYOUT = VideoLayout(
    vis="{stem}_vis.mp4", npy="{stem}_depths.npy", exr="{stem}_depths_exr/frame_{index:05d}.exr",
    png16="{stem}_depths_png16/frame_{index:05d}.png", npz="{stem}_depths.npz", npz_key="depths",
)  # fmt: skip
DEPTHCRAFTER_LAYOUT = VideoLayout(
    vis="{stem}_vis.mp4", npy="{stem}_depths.npy", exr="{stem}/frame_{index:04d}.exr",
    png16="{stem}_depths_png16/frame_{index:05d}.png", npz="{stem}.npz", npz_key="depth",
)  # fmt: skip


def _npy_to_npz(npy: Path, npz: Path, key: str) -> Path:
    """Compress a ``.npy`` into an ``.npz`` member without loading it (np.savez_compressed's format)."""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(npz))
        archive = stack.enter_context(zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True))
        src = stack.enter_context(open(npy, "rb"))
        shutil.copyfileobj(src, stack.enter_context(archive.open(f"{key}.npy", "w", force_zip64=True)), 1 << 20)
    return npz


def frames_of(npy: Path) -> Iterator[np.ndarray]:
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


class VideoDepthSink:
    """Every output of one video job, written as depth frames arrive (see the module docstring).

    Use as a context manager; :meth:`write` each depth frame (with its input frame where the visualisation shows
    it), then leave the block: the second pass runs, and :attr:`written` lists the files. On an error, temporary
    files are removed and half-written ones never appear under their names.

    Args:
        outdir, stem: the output folder and the name the files start with.
        raw: raw outputs, among "npy", "npz", "exr", "png16" (those the layout has).
        vis: write the depth video.
        fps: its frame rate.
        layout: the file names.
        normalise: "frame", "video" or "unit".
        metric: the depth is in metres (16-bit PNGs then hold ``round(depth * metric_scale)``).
        metric_scale: stored value per metre in metric 16-bit PNGs.
        frame_vis: ``(input frame, depth) -> RGB`` picture of a frame, for "frame" normalisation (default: the
            colourised depth alone).
        grayscale: grey instead of the layout's colour map.
        source: how messages name the video (default: ``stem``).
    """

    def __init__(
        self,
        outdir: Path,
        stem: str,
        raw: Any,
        vis: bool,
        fps: float,
        layout: VideoLayout,
        normalise: str = "video",
        metric: bool = False,
        metric_scale: float = 1000.0,
        frame_vis: Optional[Callable[[Any, np.ndarray], np.ndarray]] = None,
        grayscale: bool = False,
        source: Optional[str] = None,
    ) -> None:
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, not {normalise!r}")
        self.outdir, self.stem, self.raw, self.vis = Path(outdir), stem, tuple(raw), vis
        self.fps, self.layout, self.normalise = fps, layout, normalise
        self.metric, self.metric_scale = metric, metric_scale
        self.frame_vis = frame_vis
        self.source = source or stem
        self.cmap = "gray" if grayscale else layout.cmap
        self.written: List[Path] = []
        self.count = 0
        self.low, self.high = np.inf, -np.inf
        self._stack = contextlib.ExitStack()
        self._video: Any = None
        self._npy: Any = None
        keep = "npy" in self.raw
        self._kept_npy = self._path(layout.npy)
        # "unit" keeps the normalised depth in the .npy, so the model's values go to a scratch file first
        self._first_npy = self._kept_npy if keep and normalise == "video" else self._scratch("raw")
        self._temporaries = [p for p in (self._first_npy,) if p != self._kept_npy]

    def _path(self, pattern: str, index: int = 0) -> Path:
        return self.outdir / pattern.format(stem=self.stem, index=index)

    def _scratch(self, tag: str) -> Path:
        return self.outdir / f".{self.stem}_{tag}.partial.npy"

    def __enter__(self) -> VideoDepthSink:
        from anydepth.io.npy_stream import NpyFrameWriter
        from anydepth.io.video import VideoWriter

        self.outdir.mkdir(parents=True, exist_ok=True)
        if self.normalise == "frame":
            if self.vis:
                self._video = self._stack.enter_context(VideoWriter(self._path(self.layout.vis), fps=self.fps))
            if "npy" in self.raw:
                self._npy = self._stack.enter_context(NpyFrameWriter(self._kept_npy))
        else:
            self._npy = self._stack.enter_context(NpyFrameWriter(self._first_npy))
        return self

    def write(self, depth: np.ndarray, frame: Any = None) -> None:
        """One depth frame (H, W) float32, with its input frame for "frame" pictures that show it."""
        from anydepth.export import depth_maps as dm

        index = self.count
        self.count += 1
        finite = depth[np.isfinite(depth)]
        if finite.size:
            self.low, self.high = min(self.low, float(finite.min())), max(self.high, float(finite.max()))
        if self._npy is not None:
            self._npy.write(depth)
        if self.normalise == "unit":
            return  # every output is of the normalised depth: the second pass
        if "exr" in self.raw:
            self.written.append(dm.save_exr(self._path(self.layout.exr, index), depth))
        if "png16" in self.raw and (self.metric or self.normalise == "frame"):
            self.written.append(self._png16(self._path(self.layout.png16, index), depth))
        if self._video is not None:
            picture = self.frame_vis(frame, depth) if self.frame_vis else dm.colorize(depth, cmap=self.cmap)
            self._video.write(picture)

    def _png16(self, path: Path, depth: np.ndarray) -> Path:
        from anydepth.export import depth_maps as dm

        if self.metric:
            return dm.save_png16_metric(path, depth, scale=self.metric_scale)
        return dm.save_png16(path, depth)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None and self.count == 0:
                empty = InputError(f"{self.source}: the video has no frames to process")
                self._stack.__exit__(InputError, empty, None)  # aborts the writers: no empty files
                raise empty
            self._stack.__exit__(exc_type, exc, tb)  # closes (or, on an error, aborts) the first pass's writers
            if exc_type is None:
                self._finish()
        finally:
            for temporary in self._temporaries:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()

    def _finish(self) -> None:
        from anydepth.export import depth_maps as dm
        from anydepth.io.npy_stream import NpyFrameWriter
        from anydepth.io.video import VideoWriter

        if self.normalise == "frame":
            if self.vis:
                self.written.append(self._path(self.layout.vis))
            if "npy" in self.raw:
                self.written.append(self._kept_npy)
            return
        unit = self.normalise == "unit"
        npz = "npz" in self.raw and self.layout.npz
        # the .npy the .npz is made from: the model's values ("video"), the normalised ones ("unit")
        needs_npy = unit and ("npy" in self.raw or npz)
        second_npy = self._kept_npy if "npy" in self.raw else self._scratch("depths")
        if needs_npy and second_npy not in (self._kept_npy,):
            self._temporaries.append(second_npy)
        vmin, vmax = (0.0, 1.0) if unit else (self.low, self.high)
        with contextlib.ExitStack() as stack:
            video = stack.enter_context(VideoWriter(self._path(self.layout.vis), fps=self.fps)) if self.vis else None
            normalised = stack.enter_context(NpyFrameWriter(second_npy)) if needs_npy else None
            relative_png = "png16" in self.raw and not self.metric
            if video is not None or normalised is not None or relative_png or (unit and "exr" in self.raw):
                for index, depth in enumerate(frames_of(self._first_npy)):
                    if unit:
                        depth = _to_unit(depth, self.low, self.high)
                        if normalised is not None:
                            normalised.write(depth)
                        if "exr" in self.raw:
                            self.written.append(dm.save_exr(self._path(self.layout.exr, index), depth))
                    if video is not None:
                        video.write(dm.colorize(depth, cmap=self.cmap, vmin=vmin, vmax=vmax))
                    if relative_png:
                        path = self._path(self.layout.png16, index)
                        self.written.append(dm.save_png16(path, depth, vmin=vmin, vmax=vmax))
        if self.vis:
            self.written.append(self._path(self.layout.vis))
        if npz:
            source = second_npy if unit else self._first_npy
            self.written.append(_npy_to_npz(source, self._path(self.layout.npz), key=self.layout.npz_key))
        if "npy" in self.raw:
            self.written.append(self._kept_npy)


def _to_unit(depth: np.ndarray, low: float, high: float) -> np.ndarray:
    from anydepth.pipelines.depthcrafter.pipeline import normalize_video_depth

    return normalize_video_depth(depth, low, high)


def check_video_input(path: Path, sampling: FrameSampling, method: str) -> None:
    """Refuse bad sampling, an image or an unreadable video before any weights load."""
    from anydepth.io.inputs import is_image_path
    from anydepth.io.video import VideoReader

    sampling.check()
    if is_image_path(path):
        raise InputError(f"{path} is an image, not a video; {method} needs a video")
    with VideoReader(path):
        pass


def run_frame_video(
    model: Any,
    path: Path,
    outputs: ImageOutputs,
    sampling: FrameSampling = FrameSampling(),
    input_size: Optional[int] = None,
    batch_size: int = 4,
    progress: bool = True,
) -> Path:
    """Per-frame depth of a video with an image model (V2), each frame normalised on its own for the picture
    (Depth Anything V2's video script); returns the depth video. Files: "frame" in the module docstring."""
    from anydepth.io.video import VideoReader

    outputs.check(FRAME_RAW_FORMATS, need_output=False)
    stem = Path(path).stem
    metric = model.depth_kind == "metric"
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(
            VideoReader(path, fps=sampling.fps, stride=sampling.stride, max_frames=sampling.max_frames)
        )
        sink = stack.enter_context(
            VideoDepthSink(
                outputs.outdir, stem, outputs.raw, True, reader.out_fps, FRAME_LAYOUT, "frame", metric,
                metric_png_scale(model.preset.max_depth), functools.partial(_frame_picture, outputs=outputs),
                source=str(path),
            )
        )  # fmt: skip
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = stack.enter_context(tqdm(total=reader.num_frames, unit="frame", desc=stem))
        # entered last, so it finishes its queued writes before the sink closes
        writer = stack.enter_context(BackgroundWriter(depth=2 * batch_size))
        frames: collections.deque = collections.deque()

        def read() -> Iterator[np.ndarray]:
            for frame in reader:
                frames.append(frame)
                yield frame

        inputs = prefetch(read(), depth=2 * batch_size)
        for pred in model.infer_iter(inputs, input_size=input_size, batch_size=batch_size):
            writer.submit(functools.partial(sink.write, pred.depth[0], frames.popleft()))
            if bar is not None:
                bar.update(1)
        writer.close()
    return sink._path(FRAME_LAYOUT.vis)


def _frame_picture(frame: np.ndarray, depth: np.ndarray, outputs: ImageOutputs) -> np.ndarray:
    return visualise(frame, depth, outputs)


def run_video_depth(
    model: Any,
    path: Path,
    outputs: VideoOutputs,
    sampling: FrameSampling = FrameSampling(),
    input_size: Optional[int] = None,
    mode: str = "windowed",
    align: str = "overlap",
    progress: bool = True,
) -> List[Path]:
    """Depth of a video with a Video Depth Anything model; returns the files written ("video" in the module
    docstring).

    Args:
        model: from ``anydepth.load_model("vda-...")``.
        path: the video file.
        outputs: what to write, and where.
        sampling: which frames.
        input_size: shorter processing side (default the preset's, 518).
        mode: "windowed" or "streaming" (see :meth:`VideoDepthModel.infer_frames`).
        align: windowed mode's join of windows, "overlap" or "keyframes".
        progress: show a progress bar.
    """

    def depths(reader: Any) -> Iterator[np.ndarray]:
        return model.infer_frames(
            reader, input_size, mode=mode, align=align, progress=progress, total=reader.num_frames
        )

    return _whole_video(path, outputs, sampling, VDA_LAYOUT, "video", model.depth_kind == "metric", depths)


def run_depthcrafter_video(
    model: Any,
    path: Path,
    outputs: VideoOutputs,
    sampling: FrameSampling = FrameSampling(),
    progress: bool = True,
    **options: Any,
) -> List[Path]:
    """Depth of a video with DepthCrafter; returns the files written ("unit" in the module docstring).

    ``options`` are :meth:`~anydepth.pipelines.depthcrafter.pipeline.DepthCrafterModel.infer_frames` settings
    (steps, guidance, window, overlap, max_res, seed, align, decode_chunk_size).
    """

    def depths(reader: Any) -> Iterator[np.ndarray]:
        return model.infer_frames(reader, progress=progress, total=reader.num_frames, **options)

    return _whole_video(path, outputs, sampling, DEPTHCRAFTER_LAYOUT, "unit", False, depths)


def _whole_video(
    path: Path,
    outputs: VideoOutputs,
    sampling: FrameSampling,
    layout: VideoLayout,
    normalise: str,
    metric: bool,
    depths: Callable[[Any], Iterator[np.ndarray]],
) -> List[Path]:
    """A video model's run: the video read lazily, ``depths(reader)`` written frame by frame through one sink.
    Returns the files written."""
    from anydepth.io.video import VideoReader

    outputs.check()
    with VideoReader(path, fps=sampling.fps, stride=sampling.stride, max_frames=sampling.max_frames) as reader:
        sink = VideoDepthSink(
            outputs.outdir, Path(path).stem, outputs.raw, outputs.vis, reader.out_fps or 30.0, layout, normalise,
            metric=metric, grayscale=outputs.grayscale, source=str(path),
        )  # fmt: skip
        with sink:
            for depth in depths(reader):
                sink.write(depth)
    logger.info("%s: %d frames, %d files written to %s", path, sink.count, len(sink.written), outputs.outdir)
    return sink.written


def frame_video_job(
    spec: ModelSpec,
    runtime: RuntimeOptions,
    path: Path,
    outputs: ImageOutputs,
    sampling: FrameSampling = FrameSampling(),
    input_size: Optional[int] = None,
    batch_size: int = 4,
    progress: bool = True,
    loader: Callable[[ModelSpec, RuntimeOptions], Any] = load,
) -> Path:
    """A whole per-frame video job with an image model: checks, the video opened, the model loaded, run."""
    check_input_size(input_size)
    outputs.check(FRAME_RAW_FORMATS, need_output=False)
    check_video_input(path, sampling, spec.name)
    return run_frame_video(loader(spec, runtime), path, outputs, sampling, input_size, batch_size, progress)


def video_depth_job(
    spec: ModelSpec,
    runtime: RuntimeOptions,
    path: Path,
    outputs: VideoOutputs,
    sampling: FrameSampling = FrameSampling(),
    input_size: Optional[int] = None,
    mode: str = "windowed",
    align: str = "overlap",
    progress: bool = True,
    loader: Callable[[ModelSpec, RuntimeOptions], Any] = load,
) -> List[Path]:
    """A whole Video Depth Anything job: every option and the video checked before weights load."""
    from anydepth.pipelines.video_depth import ALIGNMENTS, MODES

    outputs.check()
    if mode not in MODES:
        raise OptionError("mode", repr(mode), f"choose one of {', '.join(MODES)}")
    if align not in ALIGNMENTS:
        raise OptionError("align", repr(align), f"choose one of {', '.join(ALIGNMENTS)}")
    check_input_size(input_size)
    if runtime.backend != "pytorch" and mode != "windowed":
        raise OptionError("mode", mode, "exported models run whole windows; use the windowed mode")
    check_video_input(path, sampling, "Video Depth Anything")
    tune_allocator("keep")  # reuse freed blocks within a window; the windowed loop hands them back between windows
    model = loader(spec, runtime)
    return run_video_depth(model, path, outputs, sampling, input_size, mode=mode, align=align, progress=progress)


def depthcrafter_job(
    spec: ModelSpec,
    runtime: RuntimeOptions,
    path: Path,
    outputs: VideoOutputs,
    sampling: FrameSampling = FrameSampling(),
    options: Any = None,
    progress: bool = True,
    loader: Callable[[ModelSpec, RuntimeOptions], Any] = load,
) -> List[Path]:
    """A whole DepthCrafter job: ``options`` a :class:`~anydepth.pipelines.depthcrafter.pipeline.DepthCrafterOptions`
    (default: upstream's settings); everything is checked before weights load."""
    from dataclasses import asdict

    from anydepth.pipelines.depthcrafter.pipeline import DepthCrafterOptions

    options = options or DepthCrafterOptions()
    outputs.check()
    options.check()
    if runtime.backend != "pytorch":
        raise OptionError("backend", runtime.backend, "DepthCrafter runs with the pytorch backend only")
    check_video_input(path, sampling, "DepthCrafter")
    tune_allocator("release")  # each window allocates and frees the same large tensors: hand them back at once
    model = loader(spec, runtime)
    return run_depthcrafter_video(model, path, outputs, sampling, progress=progress, **asdict(options))
