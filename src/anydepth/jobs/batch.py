"""The batch job: depth for every image and video of a folder, glob, list or bucket, on one machine or on Ray.

The job is split so that both engines run the same code:

1. The driver lists the inputs (:func:`~anydepth.jobs.batch_store.list_sources`), drops what the manifest already
   holds, cuts long videos into frame ranges (segments) with an overlap, and packs the rest into *groups*
   (:func:`plan`). A group is the unit of work: up to ``batch_size`` images that go through the network together,
   or one video segment. Groups are fixed by the listing, not by the engine, so an image's result does not depend
   on which engine ran it, nor on a resume (batched float results differ from unbatched ones in the last bits).
2. A :class:`BatchWorker` (one model replica) reads, decodes, infers and writes a group; every item that fails
   becomes a failure row with its reason, never an exception, so one corrupt file never fails a group or a block.
3. The driver records rows in the manifest as groups finish and, once every segment of a video is done, stitches
   them in order (:func:`stitch_video`): each segment's overlap frames are fitted onto the previous segment's by
   one scale and shift, as the video models join their windows, and cross-faded.

Engines: ``"local"`` (:func:`run_local`, a bounded thread pool around one replica) and ``"ray"``
(:mod:`anydepth.jobs.batch_ray`, Ray Data with an actor pool of replicas).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from anydepth.errors import InputError, OptionError
from anydepth.jobs.batch_store import (
    MANIFEST_FORMATS,
    Manifest,
    Source,
    empty_row,
    finite_or_none,
    list_sources,
    local_file,
    output_name,
)
from anydepth.jobs.batch_worker import (
    SEGMENTS_DIR,
    BatchWorker,
    Item,
    WorkerConfig,
    batch_size_for,
    depth_statistics,
    failure_row,
    segment_path,
)
from anydepth.jobs.loader import load
from anydepth.jobs.options import ModelSpec, RuntimeOptions

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
BATCH_FORMATS = ("png16", "npz")
"""Per-item files: ``<name>_depth16.png`` (16-bit: millimetres for metric models, else the item's min-max range)
and ``<name>_depth.npz`` (key ``depth``); a video gets ``<name>_depths_png16/frame_00000.png`` and
``<name>_depths.npz`` (key ``depths``), normalised over the whole video. With none, the rows are the results."""


@dataclass(frozen=True)
class BatchOptions:
    """What a batch job does and how it spreads (one place for every default).

    Attributes:
        formats: per-item files among :data:`BATCH_FORMATS` (empty: manifest rows only).
        manifest: "jsonl" or "parquet".
        input_size: the network's processing size (default: the preset's).
        batch_size: images per group and forward pass (None: from the model's measured memory and
            ``replica_memory``, :func:`batch_size_for`).
        replica_memory: bytes one replica may use (weights, a batch in flight, decoding).
        workers: local engine: groups in flight at once (reading and writing overlap the network).
        replicas: Ray engine: model replicas (actors); None: as many as the cluster's CPUs (or GPUs) hold.
        cpus_per_replica, gpus_per_replica: Ray resources of each replica.
        segment_frames: frames per video segment (0: a video is one segment).
        segment_overlap: frames a segment reads before its range, to be aligned with the one before.
        engine: "local" or "ray"; address: the Ray cluster (None: a local one).
    """

    formats: Tuple[str, ...] = ("png16",)
    manifest: str = "jsonl"
    input_size: Optional[int] = None
    batch_size: Optional[int] = None
    replica_memory: int = 4 * 2**30
    workers: int = 2
    replicas: Optional[int] = None
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    segment_frames: int = 256
    segment_overlap: int = 16
    engine: str = "local"
    address: Optional[str] = None

    def check(self) -> None:
        bad = [f for f in self.formats if f not in BATCH_FORMATS]
        if bad:
            raise OptionError("format", ",".join(bad), f"choose from {', '.join(BATCH_FORMATS)} (or none)")
        if self.manifest not in MANIFEST_FORMATS:
            raise OptionError("manifest", self.manifest, f"choose one of {', '.join(MANIFEST_FORMATS)}")
        if self.engine not in ENGINES:
            raise OptionError("engine", self.engine, f"choose one of {', '.join(ENGINES)}")
        if self.input_size is not None and self.input_size < 14:
            raise OptionError("input_size", self.input_size, "is too small; use at least 14")
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionError("batch_size", self.batch_size, "use at least 1")
        if self.workers < 1:
            raise OptionError("workers", self.workers, "use at least 1")
        if self.replicas is not None and self.replicas < 1:
            raise OptionError("replicas", self.replicas, "use at least 1")
        if self.segment_frames < 0 or (self.segment_frames and self.segment_overlap >= self.segment_frames):
            raise OptionError("segment_overlap", self.segment_overlap, "must be smaller than --segment-frames")
        if self.segment_overlap < 0:
            raise OptionError("segment_overlap", self.segment_overlap, "must be 0 or more")


def segments_of(source: Source, num_frames: Optional[int], fps: float, options: BatchOptions) -> List[Item]:
    """A video's segments: ranges of ``segment_frames`` frames, each read from ``segment_overlap`` frames earlier
    (one segment when the video is short, its length unknown, or ``segment_frames`` is 0).

    >>> opts = BatchOptions(segment_frames=10, segment_overlap=3)
    >>> [(s.start, s.stop, s.lead) for s in segments_of(Source("/v.mp4", "v.mp4"), 25, 30.0, opts)]
    [(0, 10, 0), (10, 20, 3), (20, 25, 3)]
    """
    name = output_name(source)
    size = options.segment_frames
    if not num_frames or not size or num_frames <= size:
        stop = num_frames or -1
        return [Item(f"{source.uri}#frames=0-{stop}", source.uri, name, "segment", 0, stop, 0, fps)]
    items = []
    for start in range(0, num_frames, size):
        stop = min(start + size, num_frames)
        lead = min(options.segment_overlap, start)
        items.append(Item(f"{source.uri}#frames={start}-{stop}", source.uri, name, "segment", start, stop, lead, fps))
    return items


def _video_header(uri: str) -> Tuple[Optional[int], float]:
    from anydepth.io.video import VideoReader

    with local_file(uri) as path, VideoReader(path) as reader:
        return reader.num_frames, reader.fps or 30.0


@dataclass
class Plan:
    """What is left to do: groups of items, the videos to stitch once their segments are done, and the inputs that
    could not even be planned (an unreadable video header) as failure rows."""

    groups: List[List[Item]]
    videos: Dict[str, List[Item]]
    failures: List[Dict[str, Any]]
    skipped: int = 0

    @property
    def items(self) -> int:
        return sum(len(g) for g in self.groups)


def plan(sources: Sequence[Source], done: Any, options: BatchOptions, batch_size: int) -> Plan:
    """Groups of the items not in ``done`` (manifest keys). Images are packed ``batch_size`` at a time in the
    listing's order, each group keeping its place even when some of its images are done (so an image is batched
    with the same companions on every run); each pending segment is a group of its own."""
    result = Plan([], {}, [])
    images = [s for s in sources if not s.is_video]
    for i in range(0, len(images), batch_size):
        chunk = [Item(s.uri, s.uri, output_name(s), "image") for s in images[i : i + batch_size]]
        pending = [it for it in chunk if it.key not in done]
        result.skipped += len(chunk) - len(pending)
        if pending:
            result.groups.append(pending)
    for source in (s for s in sources if s.is_video):
        if source.uri in done:
            result.skipped += 1
            continue
        try:
            num_frames, fps = _video_header(source.uri)
        except Exception as exc:  # one unreadable video never stops the job
            row = failure_row(Item(source.uri, source.uri, output_name(source), "video"), exc)
            result.failures.append(row)
            continue
        segments = segments_of(source, num_frames, fps, options)
        result.videos[source.uri] = segments
        result.groups.extend([s] for s in segments if s.key not in done)
    return result


def stitch_frames(
    segments: Sequence[Tuple[int, Iterator[np.ndarray]]], hold: int, rescale: bool = True
) -> Iterator[np.ndarray]:
    """Join segments' depth frames into one sequence, in order, holding back at most ``hold`` frames (the
    longest overlap).

    Each segment is ``(lead, frames)``: its first ``lead`` frames repeat the previous segment's last ``lead``.
    Those are fitted onto the (already aligned) earlier frames by one least-squares scale and shift
    (:func:`~anydepth.pipelines.video_depth.fit_scale_shift`; none with ``rescale=False``, for metric depth), and
    cross-faded linearly from the earlier frames to the new ones, as Video Depth Anything joins its windows.
    """
    from anydepth.pipelines.video_depth import fit_scale_shift

    held: collections.deque = collections.deque()  # the aligned frames a next segment may overlap
    for index, (lead, frames) in enumerate(segments):
        frames = iter(frames)
        new_lead = [next(frames) for _ in range(lead)] if index else []
        if len(new_lead) > len(held):
            raise InputError(f"segment {index} overlaps {lead} frames, but only {len(held)} came before")
        before = list(held)[len(held) - len(new_lead) :] if new_lead else []
        for _ in range(len(held) - len(before)):
            yield held.popleft()
        held.clear()
        scale, shift = fit_scale_shift(new_lead, before) if new_lead and rescale else (1.0, 0.0)
        weights = np.linspace(0.0, 1.0, len(new_lead) + 2)[1:-1]  # strictly between: both sides count
        for old, new, w in zip(before, new_lead, weights):
            yield old * (1 - float(w)) + (new * scale + shift) * float(w)
        for depth in frames:
            held.append(depth * scale + shift if (scale, shift) != (1.0, 0.0) else depth)
            if len(held) > hold:
                yield held.popleft()
    yield from held


def stitch_video(outdir: Path, segments: Sequence[Item], rows: Dict[str, Dict[str, Any]], formats: Sequence[str],
                 metric: bool, metric_scale: float, model: str) -> Dict[str, Any]:  # fmt: skip
    """Write a video's outputs from its finished segments (``rows``: their manifest rows) and return its row."""
    from anydepth.jobs.video import VDA_LAYOUT, VideoDepthSink, frames_of

    started = time.perf_counter()
    first = segments[0]
    name = Path(first.name)
    depth_kind = rows[first.key]["depth_kind"]
    sink = VideoDepthSink(outdir / name.parent, name.name, tuple(formats), False, first.fps or 30.0, VDA_LAYOUT,
                          "video", metric=metric, metric_scale=metric_scale, source=first.uri)  # fmt: skip
    low, high, total, count = np.inf, -np.inf, 0.0, 0
    parts = [(s.lead, frames_of(segment_path(outdir, s))) for s in segments]
    hold = max(s.lead for s in segments)
    with sink:
        for depth in stitch_frames(parts, hold, rescale=not metric):
            depth = depth.astype(np.float32, copy=False)
            sink.write(depth)
            stats = depth_statistics(depth, exact=False)
            low, high = min(low, stats.get("depth_min", low)), max(high, stats.get("depth_max", high))
            total, count = total + stats.get("depth_mean", 0.0), count + 1
    row = empty_row()
    height, width = rows[first.key]["height"], rows[first.key]["width"]
    row.update(key=first.uri, uri=first.uri, name=first.name, kind="video", status="ok", start=0, stop=count,
               frames=count, fps=first.fps, height=height, width=width, depth_kind=depth_kind, model=model,
               depth_min=finite_or_none(low), depth_max=finite_or_none(high),
               depth_mean=total / count if count else None, seconds=time.perf_counter() - started,
               outputs=[Path(p).relative_to(outdir).as_posix() for p in sink.written])  # fmt: skip
    return row


@dataclass
class BatchReport:
    """What a run did: items done now, skipped (already in the manifest), failed (in the failures file)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    videos: int = 0
    seconds: float = 0.0
    engine: str = "local"


class BatchDriver:
    """The driver's side, whatever the engine: records rows as groups finish and stitches each video as soon as
    its last segment is in."""

    def __init__(self, manifest: Manifest, work: Plan, config: WorkerConfig, preset: Any, progress: bool) -> None:
        self.manifest, self.work, self.config, self.preset = manifest, work, config, preset
        self.report = BatchReport(skipped=work.skipped)
        self._lock = threading.Lock()
        self._segment_of = {s.key: uri for uri, segs in work.videos.items() for s in segs}
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=work.items, unit="item", desc=config.spec.name)

    def take(self, rows: Sequence[Dict[str, Any]]) -> None:
        done = self.manifest.record(rows)
        with self._lock:
            self.report.done += sum(1 for r in done if r["kind"] != "segment")
            self.report.failed += sum(1 for r in rows if r.get("status") != "ok")
            if self.bar is not None:
                self.bar.update(len(rows))
        for uri in {self._segment_of[r["key"]] for r in done if r["key"] in self._segment_of}:
            self._maybe_stitch(uri)

    def _maybe_stitch(self, uri: str) -> None:
        segments = self.work.videos[uri]
        if uri in self.manifest.done or any(s.key not in self.manifest.done for s in segments):
            return
        from anydepth.jobs.images import metric_png_scale

        outdir = Path(self.config.outdir)
        metric = self.preset.depth_kind == "metric"
        try:
            row = stitch_video(outdir, segments, self.manifest.rows, self.config.formats, metric,
                               metric_png_scale(self.preset.max_depth), self.config.spec.name)  # fmt: skip
        except Exception as exc:
            self.take([failure_row(Item(uri, uri, segments[0].name, "video"), exc)])
            return
        if self.manifest.record([row]):
            with self._lock:
                self.report.done += 1
                self.report.videos += 1
            shutil.rmtree(outdir / SEGMENTS_DIR / segments[0].name, ignore_errors=True)

    def finish(self) -> BatchReport:
        for uri in self.work.videos:  # videos whose segments were all done by an earlier run
            self._maybe_stitch(uri)
        self.manifest.flush()
        if self.bar is not None:
            self.bar.close()
        return self.report


def run_local(
    driver: BatchDriver,
    options: BatchOptions,
    loader: Callable[[ModelSpec, RuntimeOptions], Any] = load,
) -> None:
    """The local engine: one replica, ``options.workers`` groups in flight (reading and writing overlap the
    network), at most twice that many submitted, so memory does not grow with the input."""
    groups = driver.work.groups
    if not groups:
        return
    worker = BatchWorker(driver.config, loader)
    limit = 2 * options.workers
    with concurrent.futures.ThreadPoolExecutor(max_workers=options.workers) as pool:
        in_flight: set = set()
        for group in groups:
            if len(in_flight) >= limit:
                finished, in_flight = concurrent.futures.wait(in_flight, return_when="FIRST_COMPLETED")
                for future in finished:
                    driver.take(future.result())
            in_flight.add(pool.submit(worker.process, group))
        for future in concurrent.futures.as_completed(in_flight):
            driver.take(future.result())


def batch_job(
    input_spec: str,
    outdir: Path,
    spec: ModelSpec,
    runtime: RuntimeOptions,
    options: BatchOptions = BatchOptions(),
    progress: bool = True,
    loader: Callable[[ModelSpec, RuntimeOptions], Any] = load,
) -> BatchReport:
    """A whole batch job: options checked, inputs listed, the manifest's items skipped, the rest run on the
    engine, videos stitched. Failures go to ``failures.jsonl`` and never stop the job.

    Args:
        input_spec: a folder, glob, ``.txt`` list, file, or fsspec URI of one of those.
        outdir: the OUTPUT folder (local or mounted): per-item files, manifest, failures.
        spec, runtime: the model and how it runs.
        options: formats, manifest, batching, segments, engine.
        progress: a progress bar.
        loader: the local engine's model loader (tests pass their own).
    """
    from anydepth.presets import get_preset

    options.check()
    runtime.check()
    preset = get_preset(spec.name)
    input_size = options.input_size or preset.input_size
    batch_size = options.batch_size or batch_size_for(preset, input_size, options.replica_memory)
    outdir = Path(outdir)
    started = time.perf_counter()
    sources = list_sources(input_spec)
    manifest = Manifest(outdir, options.manifest)
    work = plan(sources, manifest.done, options, batch_size)
    manifest.record(work.failures)
    config = WorkerConfig(spec, runtime, str(outdir), tuple(options.formats), options.input_size, batch_size)
    driver = BatchDriver(manifest, work, config, preset, progress)
    driver.report.failed += len(work.failures)
    driver.report.engine = options.engine
    logger.info("%d inputs: %d groups to run, %d items already done", len(sources), len(work.groups), work.skipped)
    if options.engine == "ray":
        from anydepth.jobs.batch_ray import run_ray

        run_ray(driver, options, loader)
    else:
        run_local(driver, options, loader)
    report = driver.finish()
    report.seconds = time.perf_counter() - started
    return report
