"""DepthCrafter's sliding windows without the networks: sizes, window schedule, initial noise, joins of windows.

Upstream (Tencent/DepthCrafter) denoises windows of 110 frames that advance by 85 (25 frames of overlap). The
overlap frames of a window start from the latents the previous windows left for them plus fresh noise scaled to
the first step, and after denoising the overlap is cross-faded linearly into the earlier latents. The
:class:`DepthStitcher` here goes further (on by default): it maps each window's depth onto the output so far by one
least-squares scale and shift fitted over all overlap frames before the cross-fade, so windows cannot drift apart.
Pure numpy / torch: nothing here needs diffusers.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch

from anydepth.errors import InputError, ShapeError
from anydepth.pipelines.video_depth import fit_scale_shift

WINDOW = 110
OVERLAP = 25
STEPS = 5
GUIDANCE = 1.0
MAX_RES = 1024
SIZE_MULTIPLE = 64
DECODE_CHUNK = 8
# Stable Video Diffusion's micro-conditioning as upstream sets it: fps id, motion bucket, noise augmentation
FPS_ID, MOTION_BUCKET, NOISE_AUG = 7, 127, 0.02


def processing_size(height: int, width: int, max_res: int = MAX_RES) -> Tuple[int, int]:
    """Size (h, w) the frames are resized to, as upstream's ``read_video_frames`` picks it.

    Both sides rounded to multiples of 64; if the longer one then exceeds ``max_res``, the frame is first scaled so
    that its longer side is ``max_res`` and rounded again (Python's round, half to even, as upstream).

    >>> processing_size(576, 1024), processing_size(1080, 1920), processing_size(480, 640, 512)
    ((576, 1024), (576, 1024), (384, 512))
    """
    if max_res < SIZE_MULTIPLE:
        raise InputError(f"max_res {max_res} is too small; use at least {SIZE_MULTIPLE}")
    h = round(height / SIZE_MULTIPLE) * SIZE_MULTIPLE
    w = round(width / SIZE_MULTIPLE) * SIZE_MULTIPLE
    if max(h, w) > max_res:
        scale = max_res / max(height, width)
        h = round(height * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE
        w = round(width * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE
    if h == 0 or w == 0:
        raise ShapeError(
            f"frames of {width}x{height} round to an empty {w}x{h} processing size (sides are multiples of "
            f"{SIZE_MULTIPLE}); use frames of at least {SIZE_MULTIPLE // 2} pixels per side or a larger max_res"
        )
    return h, w


def check_windows(window: int, overlap: int) -> None:
    """Raise an InputError unless ``0 <= overlap < window``."""
    if window < 1:
        raise InputError(f"window {window} must be at least 1 frame")
    if not 0 <= overlap < window:
        raise InputError(f"overlap {overlap} must be at least 0 and smaller than the window ({window})")


def window_schedule(num_frames: int, window: int = WINDOW, overlap: int = OVERLAP) -> List[Tuple[int, int]]:
    """``[(start, end), ...]`` frame ranges of the windows upstream runs on a video of ``num_frames``.

    A video no longer than one window is one window without overlap. Otherwise windows start every
    ``window - overlap`` frames while the start lies before ``num_frames - overlap``; the last one may be short.

    >>> window_schedule(200)
    [(0, 110), (85, 195), (170, 200)]
    """
    check_windows(window, overlap)
    if num_frames <= window:
        return [(0, num_frames)] if num_frames > 0 else []
    stride = window - overlap
    return [(start, min(start + window, num_frames)) for start in range(0, num_frames - overlap, stride)]


def blend_weights(overlap: int) -> torch.Tensor:
    """Weight of the newer window in each overlap frame, ``linspace(0, 1, overlap)``: the older one fades out."""
    return torch.linspace(0.0, 1.0, overlap)


class InitialNoise:
    """The initial latents of each window, as upstream draws and reuses them.

    One ``(1, window, C, h, w)`` draw, scaled by the scheduler's initial sigma, serves every window: after each
    window the buffer is rotated so that its last ``overlap`` frames lead, followed by its first ``stride`` ones.
    A window of ``n`` frames takes the first ``n``.
    """

    def __init__(self, noise: torch.Tensor, overlap: int) -> None:
        self.buffer = noise  # (1, window, C, h, w)
        self.overlap = overlap

    def take(self, num_frames: int) -> torch.Tensor:
        """Initial latents ``(1, num_frames, C, h, w)`` of the next window."""
        latents = self.buffer[:, :num_frames].clone()
        stride = self.buffer.shape[1] - self.overlap
        # the last `overlap` frames, then the first `stride` (with no overlap: the same buffer again)
        self.buffer = torch.cat([self.buffer[:, stride:], self.buffer[:, :stride]], dim=1)
        return latents


class LatentStitcher:
    """Upstream's join of windows in latent space: the overlap is cross-faded linearly, older to newer.

    Keeps the last ``overlap`` latents of the output so far (they start the next window and are blended with it);
    everything before them is final.
    """

    def __init__(self, overlap: int) -> None:
        self.overlap = overlap
        self.tail: Optional[torch.Tensor] = None  # (1, overlap, C, h, w)

    def add(self, latents: torch.Tensor, last: bool) -> torch.Tensor:
        """Take one window's denoised ``(1, n, C, h, w)`` latents; return the latents that are now final."""
        if self.tail is not None:
            w = blend_weights(self.overlap).to(latents.device, latents.dtype).view(1, -1, 1, 1, 1)
            head = latents[:, : self.overlap] * w + self.tail * (1 - w)
            latents = torch.cat([head, latents[:, self.overlap :]], dim=1)
        if last or self.overlap == 0:
            self.tail = None
            return latents
        self.tail = latents[:, -self.overlap :]
        return latents[:, : -self.overlap]


class DepthStitcher:
    """Join windows of depth maps: optional scale and shift fit over the overlap, then a linear cross-fade.

    Each window's depth is mapped onto the output so far by one least-squares ``(scale, shift)`` fitted over all
    pixels of all its overlap frames (``align=True``), then its overlap frames are cross-faded with the earlier
    ones using :func:`blend_weights`. Holds only the ``overlap`` pending frames between windows.
    """

    def __init__(self, overlap: int, align: bool = True) -> None:
        self.overlap = overlap
        self.align = align
        self._pending: List[np.ndarray] = []
        self.fits: List[Tuple[float, float]] = []

    def add(self, depth: Iterable[np.ndarray], num_frames: int, last: bool) -> Iterator[np.ndarray]:
        """Take one window's ``num_frames`` depth maps lazily; yield the frames that become final, in order."""
        maps = iter(depth)
        scale, shift = 1.0, 0.0
        blended: List[np.ndarray] = []
        if self._pending:
            head = [next(maps) for _ in range(self.overlap)]
            if self.align:
                scale, shift = (float(v) for v in fit_scale_shift(head, self._pending))
            self.fits.append((scale, shift))
            weights = blend_weights(self.overlap).tolist()
            blended = [
                before * np.float32(1 - w) + (after * np.float32(scale) + np.float32(shift)) * np.float32(w)
                for before, after, w in zip(self._pending, head, weights)
            ]
            self._pending = []
        keep = 0 if last else self.overlap
        tail: Deque[np.ndarray] = deque()
        count = 0
        for d in _chain(blended, maps, scale, shift):
            count += 1
            tail.append(d)
            if len(tail) > keep:
                yield tail.popleft()
        if count != num_frames:
            raise ShapeError(f"a window of {num_frames} frames gave {count} depth maps")
        self._pending = list(tail)


def _chain(blended: List[np.ndarray], maps: Iterator[np.ndarray], scale: float, shift: float) -> Iterator[np.ndarray]:
    """The cross-faded overlap frames, then the window's other frames under the fitted scale and shift."""
    yield from blended
    identity = (scale, shift) == (1.0, 0.0)
    for d in maps:
        yield d if identity else d * np.float32(scale) + np.float32(shift)
