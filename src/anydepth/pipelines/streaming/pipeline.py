"""Long-sequence reconstruction in chunks (DA3-Streaming's method): per-chunk inference, chunk-to-chunk Sim(3)
alignment on the overlaps, loop closure over a Sim(3) pose graph, in bounded memory and resumable."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from anydepth.errors import InputError
from anydepth.pipelines.streaming.align import AlignOptions, align_views, transform_prediction
from anydepth.pipelines.streaming.chunks import Chunk, check_chunking, iter_chunks, loop_window, owned_range
from anydepth.pipelines.streaming.loops import LoopCandidate, LoopOptions, find_loops, optimize_pose_graph
from anydepth.pipelines.streaming.predictors import ChunkPrediction, ChunkPredictor
from anydepth.pipelines.streaming.store import WorkDir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamOptions:
    """The pipeline's settings (upstream's names where it has them).

    Attributes:
        chunk_size: frames per chunk (upstream: 120).
        overlap: frames shared by consecutive chunks (upstream: 60); below ``chunk_size``.
        align: chunk alignment (method, IRLS, point budget).
        loop: detect loops and close them (upstream's ``loop_enable``).
        loops: loop detection and pose-graph settings.
        prefer_faiss: search descriptors with faiss when installed (else NumPy, exact either way).
    """

    chunk_size: int = 120
    overlap: int = 60
    align: AlignOptions = field(default_factory=AlignOptions)
    loop: bool = True
    loops: LoopOptions = field(default_factory=LoopOptions)
    prefer_faiss: bool = True

    def check(self) -> None:
        check_chunking(self.chunk_size, self.overlap)
        self.align.check()
        self.loops.check()


@dataclass(frozen=True)
class LoopClosure:
    """A loop that made it into the pose graph: ``matrix`` (4x4) takes chunk ``chunk_later``'s coordinates into
    chunk ``chunk_earlier``'s, measured on a mini-chunk of ``frames`` re-inferred together."""

    candidate: LoopCandidate
    chunk_later: int
    chunk_earlier: int
    matrix: np.ndarray
    frames: Tuple[int, ...]


@dataclass
class StreamResult:
    """A finished run.

    Attributes:
        num_frames: frames in the sequence.
        chunks: the chunks, in order.
        transforms: (K, 4, 4) each chunk's Sim(3) into the first chunk's frame, after loop closure.
        chained: (K, 4, 4) the same before loop closure (the chained overlap alignments).
        loops: the loops closed.
        search_engine: "faiss" or "numpy" (None when no loop search ran).
        work: the work folder holding every chunk's frames.
        overlap: the chunks' overlap.
        seconds: wall time of the run (0 for the chunks a resumed run did not recompute).
    """

    num_frames: int
    chunks: List[Chunk]
    transforms: np.ndarray
    chained: np.ndarray
    loops: List[LoopClosure]
    search_engine: Optional[str]
    work: WorkDir
    overlap: int
    seconds: float = 0.0

    def owned(self, k: int) -> Tuple[int, int]:
        chunk = self.chunks[k]
        last = k == len(self.chunks) - 1
        return owned_range(chunk, last, self.overlap) if len(self.chunks) > 1 else (chunk.start, chunk.end)

    def frames(self) -> Iterator[Tuple[int, ChunkPrediction]]:
        """Each chunk's own frames in the common frame (cameras moved, depth scaled), one chunk at a time:
        ``(first frame number, prediction)``. Every frame comes once, from the chunk that owns it."""
        for k in range(len(self.chunks)):
            owned = self.work.load_owned(k, k == len(self.chunks) - 1)
            yield self.owned(k)[0], transform_prediction(owned, self.transforms[k])


def _owned_window(chunks: List[Chunk], overlap: int, frame: int, half_window: int) -> Tuple[int, Tuple[int, int]]:
    """The chunk that owns ``frame`` and a loop window inside the frames it owns (those it keeps on disk)."""
    for k, chunk in enumerate(chunks):
        start, end = owned_range(chunk, k == len(chunks) - 1, overlap) if len(chunks) > 1 else (chunk.start, chunk.end)
        if start <= frame < end:
            return k, loop_window(Chunk(k, start, end), frame, half_window)
    raise IndexError(f"frame {frame} is in no chunk")


def _matrix(values: Optional[List[float]]) -> np.ndarray:
    return np.eye(4) if values is None else np.asarray(values, np.float64).reshape(4, 4)


def run_streaming(
    source: Any,
    predictor: ChunkPredictor,
    options: StreamOptions,
    work: WorkDir,
    on_chunk: Optional[Callable[[Chunk], None]] = None,
    progress: bool = False,
) -> StreamResult:
    """Reconstruct a long sequence chunk by chunk.

    Frames are read in order, a chunk at a time (:func:`~anydepth.pipelines.streaming.chunks.iter_chunks`); each
    chunk is inferred, aligned to the previous chunk on their shared frames, and written to ``work`` at once, so
    memory holds the current chunk and the previous one's tail. Chunks already in ``work`` (an interrupted run) are
    not inferred again. With known cameras (``source.has_cameras``) every chunk is inferred in their frame and no
    alignment or loop closure is needed. Then loops are searched over the frames' descriptors, each loop's two
    windows re-inferred together, and the chunk transforms solved as a Sim(3) pose graph.

    Args:
        source: frames (:class:`~anydepth.pipelines.streaming.sources.FrameList` or ``VideoFrames``).
        predictor: per-chunk inference (:class:`~anydepth.pipelines.streaming.predictors.ChunkPredictor`).
        options: chunking, alignment and loop settings.
        work: the work folder.
        on_chunk: called after each chunk is on disk (progress reports; tests interrupt a run here).
        progress: show a progress bar.
    """
    options.check()
    began = time.perf_counter()
    overlap, chunk_size = options.overlap, options.chunk_size
    known = bool(getattr(source, "has_cameras", False))
    expected = len(source) if hasattr(source, "__len__") else 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=expected or None, unit="frame", desc="stream")
    chunks: List[Chunk] = []
    previous_tail: Optional[ChunkPrediction] = None
    for chunk, frames in iter_chunks(source, chunk_size, overlap):
        chunks.append(chunk)
        record = work.chunk_record(chunk.index)
        if record is not None:
            if (record["start"], record["end"]) != (chunk.start, chunk.end):
                raise InputError(f"{work.folder}: chunk {chunk.index} was frames {record['start']}..{record['end']} "
                                 "in the interrupted run; the input changed: delete the work folder")  # fmt: skip
            previous_tail = None
            if bar is not None:
                bar.update(len(chunk) - (overlap if chunk.index else 0))
            continue
        indices = list(range(chunk.start, chunk.end))
        pred = predictor(frames, indices, source.cameras(indices))
        pred.check(len(chunk))
        del frames
        relative, info = None, {}
        if chunk.index > 0 and not known:
            if previous_tail is None:
                previous_tail = work.load_part(chunk.index - 1, "tail")
            alignment = align_views(previous_tail, pred.take(0, overlap), options.align)
            relative = alignment.matrix
            info = {"points": alignment.points, "residual": alignment.residual, "scale": alignment.scale}
            logger.info("chunk %d -> %d: scale %.4f, residual %.4g on %d points", chunk.index, chunk.index - 1,
                        alignment.scale, alignment.residual, alignment.points)  # fmt: skip
        work.save_chunk(chunk.index, chunk.start, chunk.end, pred, overlap, relative, info)
        if expected > chunk.end and chunk.end > 0:
            work.check_budget(projected_bytes=work.used_bytes() * expected / chunk.end)
        previous_tail = pred.take(max(len(pred) - overlap, 0), len(pred))
        del pred
        if bar is not None:
            bar.update(len(chunk) - (overlap if chunk.index else 0))
        if on_chunk is not None:
            on_chunk(chunk)
    if bar is not None:
        bar.close()
    if not chunks:
        raise InputError(f"{getattr(source, 'name', 'input')}: no frames to process")
    chained = [np.eye(4)]
    for chunk in chunks[1:]:
        chained.append(chained[-1] @ _matrix(work.chunk_record(chunk.index)["relative"]))
    chained_arr = np.stack(chained)
    loops: List[LoopClosure] = []
    engine = None
    transforms = chained_arr
    if options.loop and not known and len(chunks) > 2:
        loops, engine = _close_loops(source, predictor, options, work, chunks)
        if loops:
            sequential = [(k - 1, k, _matrix(work.chunk_record(k)["relative"])) for k in range(1, len(chunks))]
            edges = [(lc.chunk_earlier, lc.chunk_later, lc.matrix) for lc in loops]
            transforms = optimize_pose_graph(chained_arr, sequential, edges, options.loops.max_iterations)
    work.state["finished"] = True
    work.state["num_frames"] = chunks[-1].end
    work.save_state()
    return StreamResult(chunks[-1].end, chunks, transforms, chained_arr, loops, engine, work, overlap,
                        time.perf_counter() - began)  # fmt: skip


def _close_loops(
    source: Any, predictor: ChunkPredictor, options: StreamOptions, work: WorkDir, chunks: List[Chunk]
) -> Tuple[List[LoopClosure], Optional[str]]:
    """Detect loops over every frame's descriptor and measure each one on a re-inferred mini-chunk."""
    last = len(chunks) - 1
    parts = [work.load_descriptors(k, k == last) for k in range(len(chunks))]
    if any(p is None for p in parts):
        logger.warning("the predictions carry no place descriptors; loop closure skipped")
        return [], None
    candidates, engine = find_loops(np.concatenate(parts), options.loops, options.prefer_faiss)
    logger.info("loop search (%s): %d candidate(s)", engine, len(candidates))
    saved: Dict[str, Any] = work.state.get("loops", {})
    half = options.loops.loop_chunk_size // 2
    closures: List[LoopClosure] = []
    seen = set()
    for candidate in candidates:
        k_later, (a0, a1) = _owned_window(chunks, options.overlap, candidate.later, half)
        k_earlier, (b0, b1) = _owned_window(chunks, options.overlap, candidate.earlier, half)
        if k_later == k_earlier or (k_later, k_earlier) in seen:  # as upstream: one loop per pair of chunks
            continue
        seen.add((k_later, k_earlier))
        key = f"{candidate.later}-{candidate.earlier}"
        if key in saved:
            matrix = _matrix(saved[key])
        else:
            indices = list(range(a0, a1)) + list(range(b0, b1))
            pred = predictor(source.read(indices), indices, source.cameras(indices))
            pred.check(len(indices))
            n_a = a1 - a0
            own_later = work.load_owned(k_later, k_later == last)
            own_earlier = work.load_owned(k_earlier, k_earlier == last)
            start_later, start_earlier = chunks[k_later].start, chunks[k_earlier].start  # owned frames start there
            to_later = align_views(own_later.take(a0 - start_later, a1 - start_later), pred.take(0, n_a), options.align)
            to_earlier = align_views(
                own_earlier.take(b0 - start_earlier, b1 - start_earlier), pred.take(n_a, len(pred)), options.align
            )
            matrix = to_earlier.matrix @ np.linalg.inv(to_later.matrix)  # later chunk -> mini-chunk -> earlier
            saved[key] = matrix.reshape(-1).tolist()
            work.state["loops"] = saved
            work.save_state()
        closures.append(LoopClosure(candidate, k_later, k_earlier, matrix, tuple(range(a0, a1)) + tuple(range(b0, b1))))
        logger.info("loop: frames %d ~ %d (similarity %.3f), chunks %d -> %d", candidate.later, candidate.earlier,
                    candidate.similarity, k_later, k_earlier)  # fmt: skip
    return closures, engine
