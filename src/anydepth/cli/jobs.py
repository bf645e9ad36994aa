"""What the depth commands do, apart from argument parsing: run a model over images or a video and write outputs."""

from __future__ import annotations

import collections
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from anydepth.errors import AnyDepthError, InputError, require
from anydepth.pipelines.background import BackgroundWriter, prefetch
from anydepth.pipelines.mono import MonoDepthModel

logger = logging.getLogger(__name__)

RAW_FORMATS = ("png16", "npy", "npz", "exr")
VIDEO_RAW_FORMATS = ("png16", "npy", "exr")


@dataclass
class OutputOptions:
    """What to write for each input.

    Attributes:
        outdir: output folder.
        pred_only: write only the colourised depth, not the input beside it.
        grayscale: grey instead of the Spectral colour map.
        raw: raw depth formats besides the visualisation ("png16", "npy", "npz", "exr").
        vis: write the colourised visualisation at all.
    """

    outdir: Path
    pred_only: bool = False
    grayscale: bool = False
    raw: Sequence[str] = field(default_factory=tuple)
    vis: bool = True

    def check(self, allowed: Sequence[str] = RAW_FORMATS) -> None:
        bad = [r for r in self.raw if r not in allowed]
        if bad:
            raise InputError(f"unknown raw format {', '.join(bad)}; choose from {', '.join(allowed)}")
        if "exr" in self.raw:
            require("OpenEXR", "export")


def parse_raw(value: Optional[str]) -> Tuple[str, ...]:
    """Raw format list: "png16,npy" -> ("png16", "npy")."""
    if not value:
        return ()
    return tuple(dict.fromkeys(v.strip().lower() for v in value.replace("-", ",").split(",") if v.strip()))


def visualise(image: np.ndarray, depth: np.ndarray, opts: OutputOptions) -> np.ndarray:
    """Depth Anything V2's visualisation: the colourised map, or the input, a white gap and the map."""
    from anydepth.export.depth_maps import colorize, side_by_side

    vis = colorize(depth, cmap="gray" if opts.grayscale else "spectral_r")
    if opts.pred_only:
        return vis
    if image.dtype != np.uint8:
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return side_by_side(image, vis)


def unique_stems(paths: Sequence[Path]) -> List[str]:
    """Output names: each input's stem, with ``_2``, ``_3``, ... where two inputs share one."""
    seen: collections.Counter = collections.Counter()
    stems = []
    for p in paths:
        seen[p.stem] += 1
        stems.append(p.stem if seen[p.stem] == 1 else f"{p.stem}_{seen[p.stem]}")
    return stems


def output_paths(stem: str, opts: OutputOptions) -> List[Path]:
    """The files :func:`write_image_outputs` writes for one input, in the order it writes them."""
    names = [f"{stem}.png"] if opts.vis else []
    suffixes = {"png16": "_depth16.png", "npy": "_depth.npy", "npz": "_depth.npz", "exr": "_depth.exr"}
    names += [stem + suffixes[fmt] for fmt in opts.raw if fmt in suffixes]
    return [opts.outdir / name for name in names]


def write_image_outputs(
    stem: str,
    image: np.ndarray,
    depth: np.ndarray,
    opts: OutputOptions,
    depth_kind: str = "disparity",
    max_depth: Optional[float] = None,
) -> List[Path]:
    """Every requested output for one image; each file is written atomically.

    The 16-bit PNG holds millimetres for metric models and the min-max normalised map otherwise.
    """
    from anydepth.export import depth_maps as dm

    out = opts.outdir
    written = []
    if opts.vis:
        written.append(dm.save_image(out / f"{stem}.png", visualise(image, depth, opts)))
    for fmt in opts.raw:
        if fmt == "png16":
            written.append(_save_png16(out / f"{stem}_depth16.png", depth, depth_kind, max_depth))
        elif fmt == "npy":
            written.append(dm.save_npy(out / f"{stem}_depth.npy", depth))
        elif fmt == "npz":
            written.append(dm.save_npz(out / f"{stem}_depth.npz", depth=depth))
        elif fmt == "exr":
            written.append(dm.save_exr(out / f"{stem}_depth.exr", depth))
    return [Path(p) for p in written if p is not None]


def metric_png_scale(max_depth: Optional[float]) -> float:
    """Stored value per metre in metric 16-bit PNGs: millimetres where the range fits (indoor, 20 m), else
    KITTI's 1/256 m (outdoor, 80 m would overflow 65535 mm)."""
    return 1000.0 if max_depth is None or max_depth * 1000.0 <= 65535 else 256.0


def _save_png16(path: Path, depth: np.ndarray, depth_kind: str, max_depth: Optional[float] = None) -> Path:
    from anydepth.export import depth_maps as dm

    if depth_kind == "metric":
        return dm.save_png16_metric(path, depth, scale=metric_png_scale(max_depth))
    return dm.save_png16(path, depth)


@dataclass
class JobReport:
    done: int = 0
    failures: List[str] = field(default_factory=list)
    skipped: int = 0


def run_images(
    model: MonoDepthModel,
    paths: Sequence[Path],
    opts: OutputOptions,
    input_size: Optional[int] = None,
    batch_size: int = 4,
    progress: bool = True,
    on_error: Optional[Callable[[str], None]] = None,
    skip_existing: bool = False,
) -> JobReport:
    """Depth for every image; an unreadable image, or one whose outputs cannot be written, is reported and
    skipped, the others still run. With ``skip_existing``, images whose outputs all exist are not run again
    (outputs are written atomically, so an existing file is a complete one)."""
    from anydepth.io.images import read_image

    opts.check()
    report = JobReport()
    stems = unique_stems(paths)
    order: collections.deque = collections.deque()

    def fail(message: str) -> None:
        report.failures.append(message)
        if on_error:
            on_error(message)

    def readable() -> Iterator[np.ndarray]:
        for path, stem in zip(paths, stems):
            if skip_existing and all(p.is_file() for p in output_paths(stem, opts)):
                report.skipped += 1
                if bar is not None:
                    bar.update(1)
                continue
            try:
                image = read_image(path)
            except AnyDepthError as exc:
                fail(str(exc))
                continue
            order.append((stem, image))
            yield image

    def write(stem: str, image: np.ndarray, depth: np.ndarray, kind: str, max_depth: Optional[float]) -> None:
        try:
            write_image_outputs(stem, image, depth, opts, kind, max_depth)
        except (AnyDepthError, OSError) as exc:
            fail(f"{stem}: outputs not written ({exc})")
        else:
            report.done += 1

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), unit="img", desc=model.preset.name)
    # the next images are decoded and finished outputs encoded while the model runs
    with BackgroundWriter(depth=2 * batch_size) as writer:
        inputs = prefetch(readable(), depth=2 * batch_size)
        for pred in model.infer_iter(inputs, input_size=input_size, batch_size=batch_size):
            stem, image = order.popleft()
            kind, max_depth = model.depth_kind, model.preset.max_depth
            writer.submit(functools.partial(write, stem, image, pred.depth[0], kind, max_depth))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return report


def run_video(
    model: MonoDepthModel,
    path: Path,
    opts: OutputOptions,
    input_size: Optional[int] = None,
    fps: Optional[float] = None,
    stride: int = 1,
    max_frames: Optional[int] = None,
    batch_size: int = 4,
    progress: bool = True,
) -> Path:
    """Per-frame depth of a video, decoded and encoded frame by frame so memory stays flat in its length.

    Writes ``<stem>.mp4`` (input and depth side by side, or depth only) and, on request, a (T, H, W) float32
    ``<stem>_depth.npy`` and per-frame 16-bit PNG / EXR sequences in ``<stem>_depth/``. Frames are normalised
    one by one for the visualisation, as Depth Anything V2's video script does.
    """
    import contextlib

    from anydepth.export import depth_maps as dm
    from anydepth.io.npy_stream import NpyFrameWriter
    from anydepth.io.video import VideoReader, VideoWriter

    opts.check(VIDEO_RAW_FORMATS)
    stem = Path(path).stem
    out_video = opts.outdir / f"{stem}.mp4"
    seq_dir = opts.outdir / f"{stem}_depth"
    kind, max_depth = model.depth_kind, model.preset.max_depth
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(path, fps=fps, stride=stride, max_frames=max_frames))
        frames_q: collections.deque = collections.deque()
        video = stack.enter_context(VideoWriter(out_video, fps=reader.out_fps))
        npy = stack.enter_context(NpyFrameWriter(opts.outdir / f"{stem}_depth.npy")) if "npy" in opts.raw else None

        def write(index: int, frame: np.ndarray, depth: np.ndarray) -> None:
            video.write(visualise(frame, depth, opts))
            if npy is not None:
                npy.write(depth)
            if "png16" in opts.raw:
                _save_png16(seq_dir / f"{index:06d}.png", depth, kind, max_depth)
            if "exr" in opts.raw:
                dm.save_exr(seq_dir / f"{index:06d}.exr", depth)

        def frames() -> Iterator[np.ndarray]:
            for frame in reader:
                frames_q.append(frame)
                yield frame

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = stack.enter_context(tqdm(total=reader.num_frames, unit="frame", desc=stem))
        # entered last, so it finishes its queued writes before the video and .npy writers close
        writer = stack.enter_context(BackgroundWriter(depth=2 * batch_size))
        index = 0
        inputs = prefetch(frames(), depth=2 * batch_size)
        for pred in model.infer_iter(inputs, input_size=input_size, batch_size=batch_size):
            writer.submit(functools.partial(write, index, frames_q.popleft(), pred.depth[0]))
            index += 1
            if bar is not None:
                bar.update(1)
        writer.close()
        if index == 0:
            raise InputError(f"{path}: the video has no frames to process")
    return out_video
