"""One replica of the batch job: :class:`BatchWorker` turns groups of items into written outputs and result rows,
whichever engine calls it; and how much memory a replica needs, which sets its batch size.

Kept apart from :mod:`anydepth.jobs.batch` (the driver's side) so that the Ray engine's actors import only this.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from anydepth.errors import InputError
from anydepth.jobs.batch_store import empty_row, finite_or_none, local_file, read_source_image
from anydepth.jobs.loader import load
from anydepth.jobs.options import ImageOutputs, ModelSpec, RuntimeOptions

RUNTIME_BYTES = 256 * 2**20
"""A replica's interpreter with torch and anydepth imported, before any model (239 MiB measured on CPU)."""

SEGMENTS_DIR = ".segments"
"""Folder of OUTPUT holding video segments' depth until their video is stitched."""


def batch_size_for(preset: Any, input_size: int, budget_bytes: int, cap: int = 32) -> int:
    """Images per forward pass that fit a replica's memory budget, from the measured working memory per pixel
    (:data:`anydepth.jobs.memory.WORKING_BYTES_PER_PIXEL`, a DA3 forward and its outputs: an upper bound for the
    V2 networks of the same backbone), for 4:3 images processed at ``input_size`` on the shorter side.

    >>> from anydepth.presets import get_preset
    >>> batch_size_for(get_preset("dav2-small"), 518, 4 * 2**30)
    20
    """
    free = budget_bytes - replica_bytes(preset, input_size, 0)
    return int(max(1, min(cap, free // image_working_bytes(preset, input_size))))


def replica_weight_bytes(preset: Any) -> int:
    """float32 weights of one replica (``Preset.params`` is in millions)."""
    return int(preset.params * 1e6 * 4)


def image_working_bytes(preset: Any, input_size: int) -> int:
    """Working memory of one 4:3 image through the network at ``input_size`` (see :func:`batch_size_for`)."""
    from anydepth.jobs.memory import WORKING_BYTES_PER_PIXEL

    per_pixel = WORKING_BYTES_PER_PIXEL.get(preset.encoder, WORKING_BYTES_PER_PIXEL["vitg"])
    return per_pixel * input_size**2 * 4 // 3


def replica_bytes(preset: Any, input_size: int, batch_size: int) -> int:
    """Memory one replica reserves (its Ray ``memory`` resource): its runtime, weights, a batch in flight, a job's
    fixed share.

    >>> from anydepth.presets import get_preset
    >>> round(replica_bytes(get_preset("dav2-small"), 518, 8) / 2**30, 2)  # GiB
    1.93
    """
    from anydepth.jobs.memory import JOB_BYTES

    weights = replica_weight_bytes(preset)
    return RUNTIME_BYTES + JOB_BYTES + weights + batch_size * image_working_bytes(preset, input_size)


@dataclass(frozen=True)
class Item:
    """One unit of output: an image, or a video segment ``[start, stop)`` read from ``start - lead``.

    ``key`` is its manifest key: the URI of an image, ``uri#frames=start-stop`` of a segment, ``uri`` of the
    stitched video."""

    key: str
    uri: str
    name: str
    kind: str  # "image" or "segment"
    start: int = 0
    stop: int = 0
    lead: int = 0
    fps: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Item:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a replica needs, picklable (Ray ships it to every actor)."""

    spec: ModelSpec
    runtime: RuntimeOptions
    outdir: str
    formats: Tuple[str, ...]
    input_size: Optional[int]
    batch_size: int


def failure_row(item: Item, exc: BaseException, seconds: float = 0.0) -> Dict[str, Any]:
    row = empty_row()
    row.update(key=item.key, uri=item.uri, name=item.name, kind=item.kind, status="failed",
               reason=f"{type(exc).__name__}: {exc}", start=item.start, stop=item.stop, seconds=seconds)  # fmt: skip
    return row


def depth_statistics(depth: np.ndarray, exact: bool = True) -> Dict[str, Any]:
    """Summary of a depth map (or frames): range, mean, and (``exact``) median and 5th / 95th percentiles of its
    finite values; ``valid_fraction`` is the share of finite values above zero."""
    finite = depth[np.isfinite(depth)]
    stats: Dict[str, Any] = {"valid_fraction": float(np.count_nonzero(finite > 0)) / max(depth.size, 1)}
    if finite.size:
        stats.update(depth_min=float(finite.min()), depth_max=float(finite.max()), depth_mean=float(finite.mean()))
        if exact:
            p05, median, p95 = np.percentile(finite, [5, 50, 95])
            stats.update(depth_median=float(median), depth_p05=float(p05), depth_p95=float(p95))
    return stats


class BatchWorker:
    """One model replica: loads the model once, then turns groups of items into result rows.

    Thread-safe: the local engine calls :meth:`process` from several threads, so reading and writing overlap the
    network, which runs one group at a time (a lock: one replica's network is one device's work).

    Args:
        config: the replica's settings.
        loader: ``(ModelSpec, RuntimeOptions) -> model`` (tests pass their own).
    """

    def __init__(self, config: WorkerConfig, loader: Callable[[ModelSpec, RuntimeOptions], Any] = load) -> None:
        self.config = config
        self.model = loader(config.spec, config.runtime)
        self.task = config.spec.task
        self.outdir = Path(config.outdir)
        # scene models say it per prediction (DA3METRIC is metric only with intrinsics): the preset's by default
        self.depth_kind = getattr(self.model, "depth_kind", self.model.preset.depth_kind)
        self._network = threading.Lock()

    def process(self, items: Sequence[Item]) -> List[Dict[str, Any]]:
        """Result rows of a group, one per item: "ok" with its statistics and files, or "failed" with why."""
        rows: List[Dict[str, Any]] = []
        images = [it for it in items if it.kind == "image"]
        if images:
            rows.extend(self._images(images))
        for segment in (it for it in items if it.kind == "segment"):
            started = time.perf_counter()
            try:
                rows.append(self._segment(segment, started))
            except Exception as exc:
                rows.append(failure_row(segment, exc, time.perf_counter() - started))
        return rows

    def _images(self, items: Sequence[Item]) -> List[Dict[str, Any]]:
        started = time.perf_counter()
        rows, decoded = [], []
        for item in items:
            try:
                if self.task == "video":
                    raise InputError(f"{self.config.spec.name} is a video model; it takes videos, not images")
                decoded.append((item, read_source_image(item.uri)))
            except Exception as exc:
                rows.append(failure_row(item, exc))
        try:
            predictions = self._infer([image for _, image in decoded])
        except Exception:  # the group's forward failed: try each image alone, so only the guilty one fails
            predictions = []
            for _, image in decoded:
                try:
                    predictions.append(self._infer([image])[0])
                except Exception as exc:
                    predictions.append(exc)
        seconds = (time.perf_counter() - started) / max(len(items), 1)
        for (item, image), pred in zip(decoded, predictions):
            try:
                if isinstance(pred, BaseException):
                    raise pred
                rows.append(self._write_image(item, image, pred, seconds))
            except Exception as exc:
                rows.append(failure_row(item, exc, seconds))
        return rows

    def _infer(self, images: List[np.ndarray]) -> List[Any]:
        """One Prediction (N = 1) per image at its own resolution."""
        if not images:
            return []
        size = self.config.input_size
        with self._network:
            if self.task == "scene":  # DA3: each image is a scene of one view, for its depth and camera
                kwargs = {"process_res": size} if size else {}
                return [self.model.infer([image], output="input", **kwargs) for image in images]
            return list(self.model.infer_iter(images, input_size=size, output="input", batch_size=len(images)))

    def _ok_row(self, item: Item, depth: np.ndarray, outputs: List[Path], seconds: float) -> Dict[str, Any]:
        row = empty_row()
        row.update(key=item.key, uri=item.uri, name=item.name, kind=item.kind, status="ok", start=item.start,
                   stop=item.stop, lead=item.lead, fps=item.fps, height=int(depth.shape[-2]),
                   width=int(depth.shape[-1]), depth_kind=self.depth_kind, model=self.config.spec.name,
                   seconds=seconds, outputs=[p.relative_to(self.outdir).as_posix() for p in outputs])  # fmt: skip
        return row

    def _write_image(self, item: Item, image: np.ndarray, pred: Any, seconds: float) -> Dict[str, Any]:
        from anydepth.jobs.images import write_image_outputs

        name = Path(item.name)
        depth = pred.depth[0]
        outputs = ImageOutputs(self.outdir / name.parent, vis=False, raw=self.config.formats)
        max_depth = self.model.preset.max_depth
        written = write_image_outputs(name.name, image, depth, outputs, pred.depth_kind, max_depth)
        row = self._ok_row(item, depth, written, seconds)
        row.update(depth_statistics(depth), frames=1, depth_kind=pred.depth_kind)
        if pred.intrinsics is not None:
            row["intrinsics"] = [float(v) for v in np.asarray(pred.intrinsics[0]).ravel()]
        if pred.extrinsics is not None:
            row["extrinsics"] = [float(v) for v in np.asarray(pred.extrinsics[0])[:3].ravel()]
        return row

    def _segment(self, item: Item, started: float) -> Dict[str, Any]:
        """A segment's depth, lead frames included, to ``.segments/<name>/<start>-<stop>.npy`` (atomically)."""
        from anydepth.io.npy_stream import NpyFrameWriter
        from anydepth.io.video import VideoReader

        path = segment_path(self.outdir, item)
        first = item.start - item.lead
        low, high, total, count = np.inf, -np.inf, 0.0, 0
        with local_file(item.uri) as local, VideoReader(local, max_frames=None if item.stop < 0 else item.stop) as rd:
            frames = (f for i, f in enumerate(rd) if i >= first)
            with self._network, NpyFrameWriter(path) as writer:
                for index, depth in enumerate(self._frame_depths(frames)):
                    writer.write(depth)
                    if index >= item.lead:  # the segment's own frames: the lead belongs to the one before
                        stats = depth_statistics(depth, exact=False)
                        low, high = min(low, stats.get("depth_min", low)), max(high, stats.get("depth_max", high))
                        total, count = total + stats.get("depth_mean", 0.0), count + 1
        if writer.count <= item.lead:
            raise InputError(f"{item.uri}: no frames in {item.start}-{item.stop}")
        row = self._ok_row(item, np.empty(writer.frame_shape or (0, 0)), [path], time.perf_counter() - started)
        row.update(frames=count, depth_min=finite_or_none(low), depth_max=finite_or_none(high),
                   depth_mean=total / count if count else None)  # fmt: skip
        if item.stop < 0:
            row["stop"] = item.start + count
        return row

    def _frame_depths(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        size = self.config.input_size
        if self.task == "video":
            return self.model.infer_frames(frames, input_size=size)
        if self.task == "scene":
            kwargs = {"process_res": size} if size else {}
            return (self.model.infer([f], output="input", **kwargs).depth[0] for f in frames)
        preds = self.model.infer_iter(frames, input_size=size, output="input", batch_size=self.config.batch_size)
        return (p.depth[0] for p in preds)


def segment_path(outdir: Path, item: Item) -> Path:
    return Path(outdir) / SEGMENTS_DIR / item.name / f"{item.start:09d}-{item.stop:09d}.npy"
