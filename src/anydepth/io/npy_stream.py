"""Append frames to a ``.npy`` file of shape (T, H, W) without knowing T in advance, in constant memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from anydepth.errors import ShapeError
from anydepth.io.atomic import temporary_sibling

# room for any frame count in the header, rewritten in place when the file is closed
_MAX_FRAMES = 10**12


def _header(shape: Tuple[int, ...], dtype: np.dtype, reserve: int) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    # magic (6) + version (2) + header length (2) + text padded with spaces to `reserve`, ending in a newline
    body = text.ljust(reserve - 10 - 1) + "\n"
    if len(body) + 10 != reserve:
        raise ValueError("npy header does not fit its reserved size")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


class NpyFrameWriter:
    """Writes (H, W) frames one at a time into a (T, H, W) ``.npy``; readable by ``np.load`` once closed.

    The file appears under its final name only when :meth:`close` succeeds (or the ``with`` block ends
    cleanly); an error leaves no file behind.
    """

    def __init__(self, path: Union[str, Path], dtype: np.dtype = np.float32) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.frame_shape: Optional[Tuple[int, int]] = None
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_sibling(self.path)
        self._file = open(self._tmp, "wb")  # noqa: SIM115 (held open across write() calls, closed in close/abort)
        self._reserve = 0

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame, dtype=self.dtype)
        if frame.ndim != 2:
            raise ShapeError(f"expected an (H, W) frame, got shape {frame.shape}")
        if self.frame_shape is None:
            self.frame_shape = (int(frame.shape[0]), int(frame.shape[1]))
            probe = _header_len((_MAX_FRAMES, *self.frame_shape), self.dtype)
            self._reserve = probe
            self._file.write(_header((_MAX_FRAMES, *self.frame_shape), self.dtype, probe))
        elif frame.shape != self.frame_shape:
            raise ShapeError(f"frame {self.count} has shape {frame.shape}, the first had {self.frame_shape}")
        self._file.write(np.ascontiguousarray(frame).tobytes())
        self.count += 1

    def close(self) -> Path:
        if self._file.closed:
            return self.path
        if self.frame_shape is None:
            self.abort()
            raise ShapeError(f"{self.path}: no frames were written")
        self._file.seek(0)
        self._file.write(_header((self.count, *self.frame_shape), self.dtype, self._reserve))
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> NpyFrameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _header_len(shape: Tuple[int, ...], dtype: np.dtype) -> int:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    return ((10 + len(text) + 1 + 63) // 64) * 64
