"""Chunk planning for long sequences: overlapping windows of frames, which chunk owns each frame, loop windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Sequence, Tuple, TypeVar

from anydepth.errors import OptionError

T = TypeVar("T")


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, end)`` of the sequence, inferred together; ``index`` counts chunks from 0."""

    index: int
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def check_chunking(chunk_size: int, overlap: int) -> None:
    """Refuse chunkings that cannot be chained: chunk k+1 is aligned to chunk k on their shared frames, so there must
    be at least one shared frame and at least one new frame per chunk.

    Raises:
        OptionError: on ``chunk_size`` or ``overlap``.
    """
    if int(chunk_size) < 2:
        raise OptionError("chunk_size", chunk_size, "use at least 2 frames per chunk")
    if int(overlap) < 1:
        raise OptionError("overlap", overlap, "chunks must share at least one frame to be aligned")
    if int(overlap) >= int(chunk_size):
        raise OptionError("overlap", overlap, f"must be below the chunk size ({chunk_size})")


def plan_chunks(num_frames: int, chunk_size: int, overlap: int) -> List[Chunk]:
    """Upstream's chunking: chunk ``i`` starts at ``i * (chunk_size - overlap)``; the last one ends at the last frame;
    a sequence no longer than one chunk is one chunk.

    Example:
        >>> [(c.start, c.end) for c in plan_chunks(10, 4, 2)]
        [(0, 4), (2, 6), (4, 8), (6, 10)]
        >>> [(c.start, c.end) for c in plan_chunks(3, 4, 2)]
        [(0, 3)]
    """
    check_chunking(chunk_size, overlap)
    if num_frames <= chunk_size:
        return [Chunk(0, 0, num_frames)] if num_frames > 0 else []
    step = chunk_size - overlap
    count = (num_frames - overlap + step - 1) // step
    return [Chunk(i, i * step, min(i * step + chunk_size, num_frames)) for i in range(count)]


def iter_chunks(items: Iterable[T], chunk_size: int, overlap: int) -> Iterator[Tuple[Chunk, List[T]]]:
    """Cut a stream of frames into the chunks of :func:`plan_chunks` without knowing its length in advance.

    At most ``chunk_size`` items are held at once (the current chunk; its last ``overlap`` items stay for the next),
    so a video is decoded once, in order, in bounded memory.

    Example:
        >>> [(c.start, c.end, xs) for c, xs in iter_chunks(range(7), 4, 2)]
        [(0, 4, [0, 1, 2, 3]), (2, 6, [2, 3, 4, 5]), (4, 7, [4, 5, 6])]
    """
    check_chunking(chunk_size, overlap)
    step = chunk_size - overlap
    buffer: List[T] = []
    start, index, fresh = 0, 0, 0  # fresh: items in the buffer that no yielded chunk held
    for item in items:
        buffer.append(item)
        fresh += 1
        if len(buffer) == chunk_size:
            yield Chunk(index, start, start + chunk_size), list(buffer)
            buffer, start, index, fresh = buffer[step:], start + step, index + 1, 0
    if fresh > 0:
        yield Chunk(index, start, start + len(buffer)), buffer


def owned_range(chunk: Chunk, is_last: bool, overlap: int) -> Tuple[int, int]:
    """The frames whose outputs come from ``chunk``: as upstream, every chunk but the last gives up its last
    ``overlap`` frames to the next one, so each frame is written (and put into the point cloud) once."""
    return (chunk.start, chunk.end if is_last else chunk.end - overlap)


def owner_of(frame: int, chunks: Sequence[Chunk], overlap: int) -> Chunk:
    """The chunk that owns ``frame`` (see :func:`owned_range`)."""
    for k, chunk in enumerate(chunks):
        start, end = owned_range(chunk, k == len(chunks) - 1, overlap)
        if start <= frame < end:
            return chunk
    raise IndexError(f"frame {frame} is in no chunk")


def loop_window(chunk: Chunk, frame: int, half_window: int) -> Tuple[int, int]:
    """``2 * half_window`` frames around ``frame`` inside ``chunk`` (shifted to stay inside it), as upstream's
    ``get_frame_range``: the frames a loop's mini-chunk re-infers on this side.

    Example:
        >>> loop_window(Chunk(0, 0, 120), 3, 10), loop_window(Chunk(0, 0, 120), 50, 10)
        ((0, 20), (40, 60))
    """
    size = 2 * half_window
    if frame - half_window < chunk.start:
        return chunk.start, min(chunk.end, chunk.start + size)
    if frame + half_window > chunk.end:
        return max(chunk.start, chunk.end - size), chunk.end
    return frame - half_window, frame + half_window
