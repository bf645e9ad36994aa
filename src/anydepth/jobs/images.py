"""Image jobs: depth of each image on its own (V2 models), with Depth Anything V2's visualisation and raw files."""

from __future__ import annotations

import collections
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np

from anydepth.errors import AnyDepthError, InputError
from anydepth.jobs.loader import load
from anydepth.jobs.options import ImageOutputs, ModelSpec, RuntimeOptions, check_input_size
from anydepth.pipelines.background import BackgroundWriter, prefetch
from anydepth.pipelines.mono import MonoDepthModel

logger = logging.getLogger(__name__)


def visualise(image: np.ndarray, depth: np.ndarray, opts: ImageOutputs) -> np.ndarray:
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


def output_paths(stem: str, opts: ImageOutputs) -> List[Path]:
    """The files :func:`write_image_outputs` writes for one input, in the order it writes them."""
    names = [f"{stem}.png"] if opts.vis else []
    suffixes = {"png16": "_depth16.png", "npy": "_depth.npy", "npz": "_depth.npz", "exr": "_depth.exr"}
    names += [stem + suffixes[fmt] for fmt in opts.raw if fmt in suffixes]
    return [opts.outdir / name for name in names]


def write_image_outputs(
    stem: str,
    image: np.ndarray,
    depth: np.ndarray,
    opts: ImageOutputs,
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
    opts: ImageOutputs,
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


def images_job(
    spec: ModelSpec,
    runtime: RuntimeOptions,
    paths: Sequence[Path],
    outputs: ImageOutputs,
    input_size: Optional[int] = None,
    batch_size: int = 4,
    progress: bool = True,
    on_error: Optional[Callable[[str], None]] = None,
    skip_existing: bool = False,
    loader: Callable[[ModelSpec, RuntimeOptions], Any] = load,
) -> JobReport:
    """A whole image job: check the options, load the model, then :func:`run_images`."""
    if spec.task != "image":
        raise InputError(f"{spec.name} is not an image model; image jobs run Depth Anything V2 models (dav2-*)")
    check_input_size(input_size)
    outputs.check()
    model = loader(spec, runtime)
    return run_images(model, paths, outputs, input_size, batch_size, progress, on_error, skip_existing)
