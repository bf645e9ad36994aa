"""Stream video frames in and out with PyAV, one frame at a time, so memory stays flat in the video's length."""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import numpy as np

from anydepth.errors import InputError, ShapeError, require
from anydepth.io.atomic import PathLike, PendingFile

logger = logging.getLogger(__name__)

# Encoders tried in order when none is named: H.264 plays everywhere; MPEG-4 part 2 is in every FFmpeg build.
_PREFERRED_CODECS = ("libx264", "h264", "mpeg4")
_DEFAULT_QUALITY = {"libx264": 18, "h264": 18, "libx265": 23, "mpeg4": 3}
_MP4_SUFFIXES = frozenset({".mp4", ".mov", ".m4v"})
_TIME_EPS = 1e-6  # seconds; timestamps are exact fractions turned into floats


def _av() -> Any:
    return require("av", "video")


def _av_errors(av_module: Any) -> Tuple[type, ...]:
    return (av_module.error.FFmpegError, OSError)


class VideoReader:
    """Decode a video lazily into RGB frames, optionally resampled in time.

    The container is opened (and its first frame decoded, to learn the displayed size) on construction. Iterating
    decodes frame by frame; a second iteration starts again from the beginning. Rotation metadata (the display
    matrix, as phones write it) is applied in multiples of 90 degrees; flips in it are ignored.

    Args:
        path: video file (anything FFmpeg reads).
        fps: target frame rate; frames are kept whenever their timestamp reaches the next multiple of ``1/fps``
            from the first frame. ``None`` or a rate at or above the source's keeps every frame.
        stride: keep every ``stride``-th frame after the ``fps`` resampling.
        max_frames: stop after this many output frames.

    Example:
        >>> with VideoReader("clip.mp4", fps=10) as video:  # doctest: +SKIP
        ...     for frame in video:  # (H, W, 3) uint8 RGB
        ...         ...

    Raises:
        InputError: missing file, no video stream, or undecodable data (also while iterating).
    """

    def __init__(
        self,
        path: PathLike,
        fps: Optional[float] = None,
        stride: int = 1,
        max_frames: Optional[int] = None,
    ) -> None:
        self.path = Path(path)
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise InputError(f"{self.path}: fps must be a positive number, got {fps}")
        if int(stride) != stride or stride < 1:
            raise InputError(f"{self.path}: stride must be a positive integer, got {stride}")
        if max_frames is not None and (int(max_frames) != max_frames or max_frames < 0):
            raise InputError(f"{self.path}: max_frames must be a non-negative integer, got {max_frames}")
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, not a video file")
        self._target_fps = fps
        self.stride = int(stride)
        self.max_frames = None if max_frames is None else int(max_frames)

        self._av = _av()
        self._container: Any = None
        self._peeked: Any = None  # first decoded frame, kept for the first iteration
        self._pending_frames: Optional[Iterator[Any]] = None  # the decoding that produced it, to continue
        self._container, stream = self._open()
        try:
            self._pending_frames = self._decode(self._container, stream)
            self._peeked = next(self._pending_frames, None)
        except BaseException:
            self.close()
            raise
        if self._peeked is None:
            self.close()
            raise InputError(f"{self.path}: cannot read video (the video stream has no decodable frames)")

        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps: float = float(rate) if rate else 0.0
        """Frame rate of the source, frames per second (0.0 if the file does not say)."""
        self._rotation = _quarter_turns(getattr(self._peeked, "rotation", 0) or 0, self.path)
        width, height = self._peeked.width, self._peeked.height
        self.width, self.height = (height, width) if self._rotation % 2 else (width, height)
        self.source_num_frames = _count_frames(stream, self._container, self.fps)
        """Number of frames in the source: from the header or estimated from the duration; ``None`` if unknown."""

    @property
    def out_fps(self) -> float:
        """Frame rate of the yielded frames, after ``fps`` resampling and ``stride``."""
        if self._target_fps is None:
            base = self.fps
        elif not self.fps:  # source rate unknown: trust the target
            base = self._target_fps
        else:
            base = min(self._target_fps, self.fps)
        return base / self.stride

    @property
    def num_frames(self) -> Optional[int]:
        """Estimated number of frames the iteration yields (``None`` if the source length is unknown).

        Exact for files whose header counts frames and a plain ``stride``; an estimate with ``fps`` resampling.
        """
        count = self.source_num_frames
        if count is not None:
            if self._target_fps is not None and self.fps and self._target_fps < self.fps:
                count = math.ceil(count * self._target_fps / self.fps - 1e-9)
            count = math.ceil(count / self.stride)
        if self.max_frames is not None:
            count = self.max_frames if count is None else min(count, self.max_frames)
        return count

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield ``(H, W, 3)`` uint8 RGB frames, C-contiguous, one at a time."""
        if self._peeked is not None and self._pending_frames is not None:
            # continue the decoding that produced the first frame: a second decode() on the same container
            # would lose the frames buffered in the decoder (or fail after it was flushed)
            frames = _chain_first(self._peeked, self._pending_frames)
            self._peeked = self._pending_frames = None
        else:  # a later iteration: reopen from the start
            self._close_container()
            self._container, stream = self._open()
            frames = self._decode(self._container, stream)
        yield from self._sample(frames)

    def _sample(self, frames: Iterator[Any]) -> Iterator[np.ndarray]:
        if self.max_frames == 0:
            return
        resample = self._target_fps is not None and not (self.fps and self._target_fps >= self.fps)
        period = 1.0 / self._target_fps if resample else None
        start_time: Optional[float] = None
        next_slot = 0  # index k of the next target time start + k * period
        kept = emitted = 0
        for index, frame in enumerate(frames):
            if period is not None:
                t = frame.time if frame.time is not None else index / (self.fps or self._target_fps)
                if start_time is None:
                    start_time = t
                if t - start_time + _TIME_EPS < next_slot * period:
                    continue
                # skip target times this frame already passed, so a gap in the source does not cause a burst
                next_slot = math.floor((t - start_time + _TIME_EPS) / period) + 1
            kept += 1
            if (kept - 1) % self.stride:
                continue
            yield self._to_rgb(frame)
            emitted += 1
            if self.max_frames is not None and emitted >= self.max_frames:
                return

    def _to_rgb(self, frame: Any) -> np.ndarray:
        image = frame.to_ndarray(format="rgb24")
        if self._rotation:
            image = np.rot90(image, self._rotation)  # counter-clockwise quarter turns, as the display matrix says
        return np.ascontiguousarray(image)

    def _open(self) -> Tuple[Any, Any]:
        av = self._av
        try:
            container = av.open(str(self.path), mode="r")
        except _av_errors(av) as exc:
            raise InputError(f"{self.path}: cannot read video ({_reason(exc)})") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.path}: cannot read video (the file has no video stream)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threading in the decoder
        return container, stream

    def _decode(self, container: Any, stream: Any) -> Iterator[Any]:
        errors = _av_errors(self._av)
        iterator = container.decode(stream)
        while True:
            try:
                frame = next(iterator)
            except StopIteration:
                return
            except errors as exc:
                raise InputError(f"{self.path}: cannot read video ({_reason(exc)})") from None
            yield frame

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def close(self) -> None:
        """Close the file; iterating afterwards reopens it."""
        self._peeked = self._pending_frames = None
        self._close_container()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VideoReader({str(self.path)!r}, {self.width}x{self.height}, fps={self.fps:.3f}, "
            f"out_fps={self.out_fps:.3f}, num_frames={self.num_frames})"
        )


def _chain_first(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _quarter_turns(degrees: float, path: Path) -> int:
    turns = round(degrees / 90.0)
    if abs(degrees - 90.0 * turns) > 1.0:
        logger.warning("%s: rotation of %s degrees is not a multiple of 90; frames are left unrotated", path, degrees)
        return 0
    return turns % 4


def _count_frames(stream: Any, container: Any, fps: float) -> Optional[int]:
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base and fps:
        return max(1, round(float(stream.duration * stream.time_base) * fps))
    if container.duration and fps:  # container duration is in microseconds
        return max(1, round(container.duration / 1_000_000 * fps))
    return None


def _reason(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def available_video_codecs() -> Tuple[str, ...]:
    """The encoders of :data:`_PREFERRED_CODECS` that the installed PyAV/FFmpeg build can write, best first."""
    av = _av()
    found = []
    for name in _PREFERRED_CODECS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # UnknownCodecError; its name differs across PyAV versions
            continue
        found.append(name)
    return tuple(found)


class VideoWriter:
    """Encode RGB frames into a video file, written under a temporary name and renamed on a clean close.

    Frames are padded at the right and bottom edges (edge pixels repeated) to even sizes, which the yuv420p pixel
    format that players expect needs. If the ``with`` block raises, or :meth:`abort` is called, the temporary
    file is deleted and nothing appears at ``path``.

    Args:
        path: output file; the container format follows its suffix (``.mp4``, ``.mkv``, ``.mov``, ``.avi``...).
        fps: frame rate of the output.
        width: frame width; ``None`` takes it from the first frame.
        height: frame height; ``None`` takes it from the first frame.
        codec: FFmpeg encoder name; ``None`` picks libx264 if this FFmpeg has it, else mpeg4.
        quality: codec-specific, lower is better: CRF for libx264 (0-51, default 18), fixed quantiser for mpeg4
            (2-31, default 3); other encoders use their own defaults.
        speed: the x264/x265 preset ("veryfast", "medium", "slow", ...): slower packs the same quality into fewer
            bytes; default "medium". Other encoders ignore it.

    Example:
        >>> with VideoWriter("out.mp4", fps=30) as writer:  # doctest: +SKIP
        ...     for frame in frames:  # (H, W, 3) uint8 RGB
        ...         writer.write(frame)
    """

    def __init__(
        self,
        path: PathLike,
        fps: float,
        width: Optional[int] = None,
        height: Optional[int] = None,
        codec: Optional[str] = None,
        quality: Optional[int] = None,
        speed: str = "medium",
    ) -> None:
        self.path = Path(path)
        if not (fps > 0 and math.isfinite(fps)):
            raise InputError(f"{self.path}: fps must be a positive number, got {fps}")
        for name, value in (("width", width), ("height", height)):
            if value is not None and (int(value) != value or value < 1):
                raise InputError(f"{self.path}: {name} must be a positive integer, got {value}")
        self._av = _av()
        codecs = available_video_codecs()
        if codec is None:
            if not codecs:
                raise InputError(f"{self.path}: this FFmpeg build has no H.264 or MPEG-4 encoder; pass codec=...")
            codec = codecs[0]
        else:
            try:
                self._av.codec.Codec(codec, "w")
            except Exception:
                raise InputError(f"{self.path}: FFmpeg has no encoder named {codec!r}; try one of {codecs}") from None
        self.codec = codec
        self.fps = float(fps)
        self.quality = quality
        self.speed = speed
        self.width = None if width is None else int(width)
        self.height = None if height is None else int(height)
        self.frames_written = 0
        self._pending: Optional[PendingFile] = None
        self._container: Any = None
        self._stream: Any = None
        try:
            self._pending = PendingFile(self.path)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write video ({exc})") from None

    def _start(self, width: int, height: int) -> None:
        assert self._pending is not None
        av = self._av
        self.width, self.height = width, height
        try:
            options = {"movflags": "+faststart"} if self.path.suffix.lower() in _MP4_SUFFIXES else {}
            # faststart puts the index first, so players and browsers can start before the whole file loads
            self._container = av.open(str(self._pending.temp_path), mode="w", options=options)
            rate = Fraction(self.fps).limit_denominator(1001)
            stream = self._container.add_stream(self.codec, rate=rate, options=self._codec_options())
            stream.width, stream.height = _even(width), _even(height)
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = 1 / rate  # frame i has pts i
            stream.thread_type = "AUTO"
            if self.codec == "mpeg4":
                quality = self.quality if self.quality is not None else _DEFAULT_QUALITY["mpeg4"]
                # a fixed quantiser instead of the 200 kb/s default rate control; PyAV cannot set the per-frame
                # quality that FFmpeg's qscale flag reads, so pin the quantiser range instead
                stream.codec_context.qmin = stream.codec_context.qmax = int(quality)
            self._stream = stream
        except _av_errors(av) as exc:
            self._fail()
            raise InputError(f"{self.path}: cannot write video ({_reason(exc)})") from None

    def _codec_options(self) -> dict:
        if self.codec in ("libx264", "h264", "libx265"):
            quality = self.quality if self.quality is not None else _DEFAULT_QUALITY[self.codec]
            return {"crf": str(int(quality)), "preset": self.speed}
        return {}

    def write(self, frame: np.ndarray) -> None:
        """Append one frame.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB, the same size for every frame.
        """
        if self._pending is None:
            raise InputError(f"{self.path}: the video writer is closed")
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ShapeError(f"{self.path}: video frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        height, width = frame.shape[:2]
        if self._container is None:
            if (self.width or width) != width or (self.height or height) != height:
                raise ShapeError(
                    f"{self.path}: frame is {width}x{height} but the writer was opened for {self.width}x{self.height}"
                )
            self._start(width, height)
        elif (width, height) != (self.width, self.height):
            raise ShapeError(
                f"{self.path}: frame {self.frames_written} is {width}x{height}, expected {self.width}x{self.height}"
            )
        if width % 2 or height % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames_written
        video_frame.time_base = self._stream.codec_context.time_base
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        except _av_errors(self._av) as exc:
            raise InputError(f"{self.path}: cannot write video ({_reason(exc)})") from None
        self.frames_written += 1

    def close(self) -> Path:
        """Flush the encoder, close the file and rename it into place; return the final path.

        Raises:
            InputError: no frame was written (nothing is saved), or the encoder or disk failed.
        """
        if self._pending is None:
            return self.path
        if self.frames_written == 0:
            self._fail()
            raise InputError(f"{self.path}: no frames were written; nothing saved")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
            self._pending.commit()
        except _av_errors(self._av) as exc:
            self._fail()
            raise InputError(f"{self.path}: cannot write video ({_reason(exc)})") from None
        self._pending = None
        logger.debug("wrote %d frames to %s with %s", self.frames_written, self.path, self.codec)
        return self.path

    def abort(self) -> None:
        """Close without saving: the temporary file is deleted and nothing appears at ``path``."""
        self._fail()

    def _fail(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception as exc:  # the original error matters more than a failing close
                logger.debug("ignoring error while closing %s: %s", self.path, exc)
            self._container = None
        if self._pending is not None:
            self._pending.discard()
            self._pending = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fail()

    def __del__(self) -> None:  # a writer dropped without close() must not leave a temporary file behind
        if getattr(self, "_pending", None) is not None:
            self._fail()


def _even(size: int) -> int:
    return size + size % 2
