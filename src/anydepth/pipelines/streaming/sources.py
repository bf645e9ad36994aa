"""Where a long sequence's frames come from: a list (image paths, arrays) or a video decoded lazily, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from anydepth.errors import InputError, ShapeError


class FrameList:
    """Frames already addressable by index: image paths (read by the predictor when their chunk runs), arrays, or
    anything else the predictor takes. Optionally with known cameras (a COLMAP dataset) for pose conditioning.

    Args:
        frames: the frames, in sequence order.
        extrinsics: (N, 3|4, 4) world-to-camera of every frame, or None.
        intrinsics: (N, 3, 3) pixel intrinsics of every frame (needed with ``extrinsics``).
        fps: frame rate for the trajectory's timestamps (None: timestamps are frame numbers).
        name: what the sequence is called in messages.
    """

    def __init__(
        self,
        frames: Sequence[Any],
        extrinsics: Optional[np.ndarray] = None,
        intrinsics: Optional[np.ndarray] = None,
        fps: Optional[float] = None,
        name: str = "frames",
    ) -> None:
        self.frames = list(frames)
        if not self.frames:
            raise InputError(f"{name}: no frames to process")
        if (extrinsics is None) != (intrinsics is None):
            raise InputError(f"{name}: known cameras need both extrinsics and intrinsics")
        if extrinsics is not None and (len(extrinsics) != len(self.frames) or len(intrinsics) != len(self.frames)):
            raise ShapeError(f"{name}: {len(self.frames)} frames but cameras for {len(extrinsics)}")
        self.extrinsics = None if extrinsics is None else np.asarray(extrinsics, np.float32)
        self.intrinsics = None if intrinsics is None else np.asarray(intrinsics, np.float32)
        self.fps = fps
        self.name = name

    @property
    def has_cameras(self) -> bool:
        return self.extrinsics is not None

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.frames)

    def read(self, indices: Sequence[int]) -> List[Any]:
        """The frames at ``indices``."""
        return [self.frames[i] for i in indices]

    def cameras(self, indices: Sequence[int]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(extrinsics, intrinsics) of ``indices``, or None without known cameras."""
        if self.extrinsics is None or self.intrinsics is None:
            return None
        index = np.asarray(list(indices), dtype=np.int64)
        return self.extrinsics[index], self.intrinsics[index]


class VideoFrames:
    """A video's frames, decoded one at a time as the chunks need them (never the whole video in memory).

    The file is opened, and its first frame decoded, on construction: an unreadable video fails here, before any
    work. Random access (:meth:`read`, for the loop closures' frames) decodes the video again from the start once
    per call, keeping only the frames asked for.

    Args:
        path: the video file.
        fps: sample at this frame rate (None: every frame).
        max_frames: at most this many frames.
    """

    has_cameras = False

    def __init__(self, path: Path, fps: Optional[float] = None, max_frames: Optional[int] = None) -> None:
        from anydepth.io.video import VideoReader

        self.path = Path(path)
        self.name = str(path)
        self._fps, self._max_frames = fps, max_frames
        self._reader = VideoReader(self.path, fps=fps, max_frames=max_frames)
        self.fps: Optional[float] = self._reader.out_fps or None

    def __len__(self) -> int:
        """Estimated frame count (exact for most files); the pipeline counts the frames it reads itself."""
        return int(self._reader.num_frames or 0)

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self._reader

    def read(self, indices: Sequence[int]) -> List[np.ndarray]:
        wanted = sorted(set(int(i) for i in indices))
        found = {}
        for index, frame in enumerate(self._reader):
            if index in wanted:
                found[index] = frame
                if len(found) == len(wanted):
                    break
        missing = [i for i in wanted if i not in found]
        if missing:
            raise InputError(f"{self.path}: frame {missing[0]} is past the end of the video")
        return [found[int(i)] for i in indices]

    def cameras(self, indices: Sequence[int]) -> None:
        return None

    def close(self) -> None:
        self._reader.close()
