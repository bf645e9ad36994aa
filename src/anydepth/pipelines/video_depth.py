"""Video depth with Video Depth Anything: frames in lazily, temporally consistent depth out frame by frame.

Two modes:

- "windowed" (upstream's offline algorithm): windows of 32 frames advancing by 22. Slot 0 of every window is the
  video's first frame and slot 1 a keyframe of the previous window (its slot 12), so the network sees the same
  anchors; slots 2-9 repeat the previous window's last 8 frames, slots 10-31 are new. Each window's depth is
  mapped onto the output so far by one least-squares scale and shift, and the 8 repeated frames are cross-faded
  linearly. Upstream fits on the two keyframes only (``align="keyframes"``); the default here fits on the two
  keyframes and all 8 overlap frames (``align="overlap"``), which follows the earlier output more closely.
  Metric models are not rescaled.
- "streaming" (upstream's experimental mode): one frame at a time; the temporal attention sees cached states of
  earlier frames (:class:`~anydepth.models.video_depth_anything.StreamingCache`). No alignment, lowest latency.

Either way at most one window of frames (and its depth) is held, so memory does not grow with the video. The
windowed mode keeps one window's per-frame encodings (backbone and reassembly) from one window to the next, which
repeats 10 of its frames, so that every frame goes through the backbone once.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from anydepth.errors import InputError, ShapeError
from anydepth.layers.precision import PrecisionPolicy
from anydepth.models.video_depth_anything import FrameLevels, StreamingCache, VideoDepthAnythingNet
from anydepth.pipelines.preprocess import lower_bound_size, normalize_resize
from anydepth.pipelines.runtime import precision_policy, release_free_memory
from anydepth.prediction import Prediction
from anydepth.presets import IMAGENET_MEAN, IMAGENET_STD, Preset

logger = logging.getLogger(__name__)

WINDOW = 32
OVERLAP = 10
CROSSFADE = 8
STRIDE = WINDOW - OVERLAP
# slots of a window that become slots 0-9 of the next one: the first frame, a keyframe, the last 8 frames
CARRIED_SLOTS = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)
ANCHOR_SLOTS = 2  # slots 0 and 1 of a later window hold the first frame and the previous window's slot 12
KEYFRAME_SLOT = CARRIED_SLOTS[1]
MODES = ("windowed", "streaming")
ALIGNMENTS = ("overlap", "keyframes")
# upstream shrinks the processing size of frames wider than 16:9 by this rule, to bound memory
_MAX_RATIO, _RATIO_REF = 1.78, 1.777


def video_processing_size(height: int, width: int, input_size: int = 518, multiple: int = 14) -> Tuple[int, int]:
    """Network input size (h, w) of Video Depth Anything for frames of ``height`` x ``width``.

    Both sides at least ``input_size`` keeping the aspect ratio (snapped to ``multiple``), except that for frames
    more elongated than 1.78:1 ``input_size`` first shrinks to ``round(int(input_size * 1.777 / ratio) / 14) * 14``.

    >>> video_processing_size(360, 640, 518)
    (518, 924)
    """
    if height <= 0 or width <= 0:
        raise ShapeError(f"frame size {height}x{width} is empty")
    ratio = max(height, width) / min(height, width)
    if ratio > _MAX_RATIO:
        input_size = round(int(input_size * _RATIO_REF / ratio) / multiple) * multiple
    return lower_bound_size(height, width, max(int(input_size), multiple), multiple)


def fit_scale_shift(prediction: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> Tuple[float, float]:
    """Least-squares ``(s, t)`` minimising ``|s * prediction + t - target|^2`` over all pixels of all maps.

    The normal equations are summed in float32, as upstream does, so windows align to the same numbers;
    ``(1, 0)`` if the system is singular (constant prediction).
    """
    p = np.concatenate([np.asarray(a, np.float32).ravel() for a in prediction])
    q = np.concatenate([np.asarray(a, np.float32).ravel() for a in target])
    a00, a01, a11 = np.sum(p * p), np.sum(p), np.float32(p.size)
    b0, b1 = np.sum(p * q), np.sum(q)
    det = a00 * a11 - a01 * a01
    if det == 0:
        return 1.0, 0.0
    return (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det


def _affine(depth: Optional[np.ndarray], scale: float, shift: float) -> Optional[np.ndarray]:
    if depth is None:  # a padding slot left undecoded
        return None
    out = depth * scale + shift
    out[out < 0] = 0  # scale and shift can push disparity below zero; upstream clamps it
    return out


class WindowStitcher:
    """Joins the depth of consecutive windows into one sequence, emitting frames as soon as they are final.

    Holds the first frame's depth, the keyframe's and the 8 frames that the next window will cross-fade.
    """

    def __init__(self, align: str = "overlap", rescale: bool = True) -> None:
        if align not in ALIGNMENTS:
            raise InputError(f"align must be one of {ALIGNMENTS}, not {align!r}")
        self.align = align
        self.rescale = rescale
        self._first: Optional[np.ndarray] = None  # depth of video frame 0 in the first window
        self._keyframe: Optional[np.ndarray] = None  # aligned depth of the previous window's slot 12
        self._pending: List[Optional[np.ndarray]] = []  # aligned depth of the previous window's last CROSSFADE slots
        self.scales: List[Tuple[float, float]] = []

    def add(self, depth: Sequence[Optional[np.ndarray]]) -> List[Optional[np.ndarray]]:
        """Take one window's WINDOW depth maps; return the frames that are now final, in video order.

        The last window may give None for its padding slots past the video's end: they come back as None, after
        every frame of the video, and are never output.
        """
        if len(depth) != WINDOW:
            raise ShapeError(f"a window has {WINDOW} depth maps, got {len(depth)}")
        if self._first is None:
            self._first, self._keyframe = depth[0], depth[KEYFRAME_SLOT]
            final, self._pending = list(depth[: WINDOW - CROSSFADE]), list(depth[WINDOW - CROSSFADE :])
            return final
        overlap = depth[ANCHOR_SLOTS:OVERLAP]
        if not self.rescale:
            scale, shift = 1.0, 0.0
        elif self.align == "keyframes":
            scale, shift = fit_scale_shift(depth[:ANCHOR_SLOTS], [self._first, self._keyframe])
        else:
            scale, shift = fit_scale_shift(
                list(depth[:ANCHOR_SLOTS]) + list(overlap), [self._first, self._keyframe, *self._pending]
            )
        self.scales.append((float(scale), float(shift)))
        weights = np.linspace(0.0, 1.0, CROSSFADE)
        final = [
            None if after is None else before * (1 - float(w)) + _affine(after, scale, shift) * float(w)
            for before, after, w in zip(self._pending, overlap, weights)
        ]
        new = [_affine(d, scale, shift) for d in depth[OVERLAP:]]
        self._keyframe = _affine(depth[KEYFRAME_SLOT], scale, shift)
        final += new[: -CROSSFADE or None]
        self._pending = new[-CROSSFADE:]
        return final

    def finish(self) -> List[Optional[np.ndarray]]:
        """The frames still held after the last window."""
        rest, self._pending = self._pending, []
        return rest


class Window(NamedTuple):
    """One window of preprocessed frames, as :func:`_windows` cuts it."""

    frames: torch.Tensor  # (WINDOW, 3, h, w)
    read: int  # frames of the video read so far
    real: int  # slots holding frames of the video; the slots after them hold copies of the last one
    last: bool  # no window follows


def _windows(frames: Iterator[torch.Tensor]) -> Iterator[Window]:
    """Windows of WINDOW preprocessed frames advancing by STRIDE, as upstream cuts them.

    A window starts at every multiple of STRIDE before the end of the video; those that reach past it are padded
    with copies of the last frame.
    """
    buffer: List[torch.Tensor] = []
    read = 0
    exhausted = False
    while True:
        while len(buffer) < WINDOW and not exhausted:
            try:
                buffer.append(next(frames))
                read += 1
            except StopIteration:
                exhausted = True
        if not buffer:
            return
        window = torch.stack(buffer + [buffer[-1]] * (WINDOW - len(buffer)))
        real = len(buffer)
        buffer = buffer[STRIDE:]  # before the window is used: its frames are not held twice meanwhile
        yield Window(window, read, real, exhausted and not buffer)


def checked_frames(frames: Iterable[Any]) -> Iterator[np.ndarray]:
    """The frames of a video as arrays, each checked to be (H, W, 3) and of the first frame's size."""
    first = None
    for index, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ShapeError(f"frame {index}: expected an (H, W, 3) RGB frame, got shape {frame.shape}")
        if first is None:
            first = frame.shape[:2]
        elif frame.shape[:2] != first:
            raise ShapeError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                             f"{first[1]}x{first[0]}; all frames of a video must have one size")  # fmt: skip
        yield frame


def with_progress(frames: Iterator[np.ndarray], show: bool, total: Optional[int], desc: str) -> Iterator[np.ndarray]:
    """``frames`` unchanged, counted on a tqdm bar when ``show``."""
    if not show:
        yield from frames
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="frame", desc=desc) as bar:
        for frame in frames:
            bar.update(1)
            yield frame


class VideoDepthRunner:
    """The windowed and streaming loops around a Video Depth Anything network (shared by the native model and
    the compat facade).

    Args:
        net: the network, on ``device``, in eval mode.
        device: where the network runs.
        policy: its precision policy, applied to it before each video and whose autocast wraps each call
            (default: float32).
        mean, std: input normalisation.
    """

    def __init__(
        self,
        net: VideoDepthAnythingNet,
        device: torch.device,
        policy: Optional[PrecisionPolicy] = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.net = net
        self.device = device
        self.policy = policy if policy is not None else PrecisionPolicy()
        self.mean, self.std = mean, std
        self.fixed_size: Optional[Tuple[int, int]] = None  # an exported network takes one frame size only

    def _prepared(self, frames: Iterable[np.ndarray], input_size: int, first_hw: List[Tuple[int, int]]):
        processing = None
        for frame in checked_frames(frames):
            if processing is None:
                first_hw.append(frame.shape[:2])
                processing = self.fixed_size or video_processing_size(frame.shape[0], frame.shape[1], input_size)
            yield torch.from_numpy(normalize_resize(frame, processing, self.mean, self.std))

    def _to_frames(self, depth: torch.Tensor, hw: Tuple[int, int]) -> List[np.ndarray]:
        depth = depth.float()[:, None]
        if tuple(depth.shape[-2:]) != tuple(hw):
            depth = F.interpolate(depth, size=tuple(hw), mode="bilinear", align_corners=True)
        return list(depth[:, 0].cpu().numpy())

    def _window_levels(self, window: torch.Tensor, real: int, levels: Optional[FrameLevels]) -> FrameLevels:
        """The per-frame encodings (backbone and reassembly) of a window's WINDOW slots, in ``levels``: the
        previous window's, reused in place (None for the first window).

        Upstream's windows overlap: slots 0-9 repeat frames of the previous window, whose encodings are moved
        into place, and the padding slots of the last window are copies of one frame, encoded once. So each frame
        of the video goes through the backbone once instead of about 1.45 times (and far more in a short last
        window). Reusing one buffer also keeps the allocations of every window alike, so that the heap does not
        fragment over a long video.
        """
        if levels is None:  # the first window: the slots after the video's frames are copies of the last one
            end = min(real, WINDOW)
            levels = self.net.encode(window[:end])
            return levels if end == WINDOW else levels.take(torch.arange(WINDOW).clamp(max=end - 1))
        for slot, source in enumerate(CARRIED_SLOTS):  # in place: no source comes before its slot
            if source != slot:
                for level in levels:
                    level[slot].copy_(level[source])
        end = min(max(OVERLAP, real), WINDOW)  # slots OVERLAP to end hold frames not encoded yet
        if end > OVERLAP:
            self.net.encode(window[OVERLAP:end], out=levels.rows(OVERLAP, end))
        if end < WINDOW:  # padding: copies of the last frame, which is usually in a slot already
            pad = window[WINDOW - 1]
            same = [j for j in range(end) if torch.equal(window[j], pad)]
            source, first = (same[-1], end) if same else (end, end + 1)
            if not same:
                self.net.encode(window[WINDOW - 1 :], out=levels.rows(end, end + 1))
            for level, one in zip(levels.rows(first, WINDOW), levels.rows(source, source + 1)):
                level.copy_(one.expand_as(level))
        return levels

    @torch.no_grad()
    def windowed(
        self, frames: Iterable[np.ndarray], input_size: int = 518, align: str = "overlap", rescale: bool = True
    ) -> Iterator[np.ndarray]:
        """Upstream's offline algorithm, lazily: yields (H, W) float32 depth per frame, in order."""
        stitcher = WindowStitcher(align, rescale)
        first_hw: List[Tuple[int, int]] = []
        carried: Optional[torch.Tensor] = None
        levels: Optional[FrameLevels] = None  # the per-frame encodings of the window's slots, reused
        emitted = read = 0
        self.policy.apply(self.net)
        # an exported network runs whole windows; the PyTorch one encodes each frame once (see _window_levels)
        split = isinstance(self.net, VideoDepthAnythingNet)
        for window, read, real, last in _windows(self._prepared(frames, input_size, first_hw)):
            window = window.to(self.device)
            if carried is not None:
                window[:OVERLAP] = carried
            carried = window[list(CARRIED_SLOTS)].clone()
            with self.policy.autocast(self.device):
                if split:
                    # the last window's padding slots are neither output nor carried: their per-frame decoding
                    # is skipped (the temporal part still sees them, as upstream's network does)
                    count = max(real, 1 if levels is None else OVERLAP) if last else None
                    levels = self._window_levels(window, real, levels)
                    depth = self.net.decode(levels, WINDOW, tuple(window.shape[-2:]), count=count)[0]
                else:
                    depth = self.net(window[None])[0]
            maps: List[Optional[np.ndarray]] = list(self._to_frames(depth, first_hw[0]))
            maps += [None] * (WINDOW - len(maps))
            del depth
            release_free_memory()
            for d in stitcher.add(maps):
                if emitted < read:  # frames past the end are padding
                    emitted += 1
                    yield d
        for d in stitcher.finish():
            if emitted < read:
                emitted += 1
                yield d

    @torch.no_grad()
    def streaming(
        self, frames: Iterable[np.ndarray], input_size: int = 518, cache: Optional[StreamingCache] = None
    ) -> Iterator[np.ndarray]:
        """Upstream's streaming mode: yields (H, W) float32 depth per frame as soon as the frame arrives.

        ``cache`` continues an earlier stream (a new one starts otherwise)."""
        cache = cache if cache is not None else StreamingCache(WINDOW, OVERLAP, CROSSFADE)
        first_hw: List[Tuple[int, int]] = []
        self.policy.apply(self.net)
        for frame in self._prepared(frames, input_size, first_hw):
            with self.policy.autocast(self.device):
                depth, states = self.net.forward_stream(frame[None].to(self.device), cache.context())
            cache.push(states)
            yield self._to_frames(depth, first_hw[0])[0]


class VideoDepthModel:
    """A loaded Video Depth Anything network with its preprocessing, device and precision.

    Made by :func:`anydepth.load_model` for ``vda-*`` presets. :meth:`infer_frames` takes any iterable of frames
    (a :class:`~anydepth.io.video.VideoReader`, a generator, an array) and yields depth frame by frame.
    """

    def __init__(self, net: VideoDepthAnythingNet, preset: Preset, device: torch.device, precision: str) -> None:
        self.net = net.eval()
        self.preset = preset
        self.device = device
        self.precision = precision
        self.precision_policy = precision_policy(precision)
        self.precision_policy.apply(self.net)
        self._runner = VideoDepthRunner(self.net, device, self.precision_policy, mean=preset.mean, std=preset.std)

    @property
    def depth_kind(self) -> str:
        return self.preset.depth_kind

    def __repr__(self) -> str:
        return f"VideoDepthModel({self.preset.name!r}, device={self.device}, precision={self.precision!r})"

    def infer_frames(
        self,
        frames: Iterable[np.ndarray],
        input_size: Optional[int] = None,
        mode: str = "windowed",
        align: str = "overlap",
        progress: bool = False,
        total: Optional[int] = None,
    ) -> Iterator[np.ndarray]:
        """Depth of a video's frames, one (H, W) float32 map per frame, in order, at the frames' resolution.

        Args:
            frames: (H, W, 3) RGB uint8 frames of one size, read lazily; at most one window is held.
            input_size: shorter processing side (default: the preset's, 518).
            mode: "windowed" (upstream's offline algorithm, best quality) or "streaming" (one frame at a time).
            align: windowed mode: "overlap" fits each window's scale and shift on the keyframes and the overlap
                frames (default); "keyframes" on the two keyframes only, as upstream.
            progress: show a progress bar.
            total: number of frames, for the progress bar.

        Yields:
            depth: (H, W) float32; disparity up to scale and shift, or metres for metric models.
        """
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, not {mode!r}")
        if align not in ALIGNMENTS:
            raise InputError(f"align must be one of {ALIGNMENTS}, not {align!r}")
        size = int(input_size or self.preset.input_size)
        if size < 14:
            raise InputError(f"input_size {size} is too small; use at least 14")
        if mode == "streaming":
            depths = self._runner.streaming(frames, size)
        else:
            depths = self._runner.windowed(frames, size, align, rescale=self.depth_kind != "metric")
        yield from with_progress(depths, progress, total, self.preset.name)

    def infer(self, frames: Any, input_size: Optional[int] = None, mode: str = "windowed", align: str = "overlap",
              progress: bool = False) -> Prediction:  # fmt: skip
        """Depth of a whole (short) video held in memory: frames (T, H, W, 3) -> Prediction with depth (T, H, W)."""
        depth = list(self.infer_frames(frames, input_size, mode, align, progress))
        if not depth:
            raise InputError("the video has no frames")
        return Prediction(depth=np.stack(depth), depth_kind=self.depth_kind)
