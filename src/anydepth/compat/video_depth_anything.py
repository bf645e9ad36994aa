"""``VideoDepthAnything`` with the upstream constructor, official ``.pth`` state dicts and ``infer_video_depth``."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from anydepth.errors import InputError, ShapeError
from anydepth.models.video_depth_anything import VideoDepthAnythingConfig, VideoDepthAnythingNet
from anydepth.pipelines.runtime import precision_policy, tune_allocator
from anydepth.pipelines.video_depth import CROSSFADE, OVERLAP, WINDOW, StreamingCache, VideoDepthRunner


class VideoDepthAnything(VideoDepthAnythingNet):
    """Drop-in for ``video_depth_anything.video_depth.VideoDepthAnything`` (and the streaming class of
    ``video_depth_stream.py``, through :meth:`infer_video_depth_one`).

    Args:
        encoder: "vits", "vitb" or "vitl".
        features, out_channels: DPT widths, as in the upstream model configs.
        use_bn: must be False (no official checkpoint uses batch norm in the head).
        use_clstoken: concatenate the class token before the head projections.
        num_frames: frames covered by the temporal positions (32 in the official checkpoints).
        pe: temporal position embedding; "ape" (the official checkpoints' kind).
        metric: the metric checkpoints: windows are joined without rescaling.

    ``infer_video_depth`` runs upstream's algorithm (keyframe alignment) and returns the whole video; for long
    videos use ``anydepth.load_model("vda-small", ...).infer_frames`` which streams frames in and out.

    Example:
        >>> model = VideoDepthAnything(encoder="vits", features=64, out_channels=[48, 96, 192, 384])  # doctest: +SKIP
        >>> model.load_state_dict(torch.load("video_depth_anything_vits.pth", map_location="cpu"))  # doctest: +SKIP
        >>> depths, fps = model.eval().infer_video_depth(frames, 30, device="cpu", fp32=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        encoder: str = "vitl",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        use_bn: bool = False,
        use_clstoken: bool = False,
        num_frames: int = 32,
        pe: str = "ape",
        metric: bool = False,
    ) -> None:
        if use_bn:
            raise InputError("use_bn=True is not supported: no official Video Depth Anything checkpoint uses it")
        try:
            cfg = VideoDepthAnythingConfig.from_encoder(
                encoder, features, tuple(out_channels), num_frames=num_frames, pos_embedding=pe,
                use_clstoken=use_clstoken,
            )  # fmt: skip
        except ValueError as exc:
            raise InputError(str(exc)) from None
        super().__init__(cfg)
        self.encoder = encoder
        self.metric = bool(metric)
        self._stream: Optional[Tuple[StreamingCache, Any, Tuple[int, int]]] = None
        tune_allocator("keep")  # an entry point for whole videos: freed blocks reused, handed back between windows

    def _runner(self, device: str, fp32: bool) -> VideoDepthRunner:
        dev = torch.device(device)
        if next(self.parameters()).device.type != dev.type:
            raise InputError(f"the model is on {next(self.parameters()).device}, not {device}; call .to({device!r})")
        # upstream's autocast: the device's default low precision (fp16 on CUDA, bf16 on the CPU)
        precision = "fp32" if fp32 or dev.type not in ("cpu", "cuda") else "fp16" if dev.type == "cuda" else "bf16"
        return VideoDepthRunner(self, dev, precision_policy(precision))

    @torch.no_grad()
    def infer_video_depth(
        self, frames: np.ndarray, target_fps: float, input_size: int = 518, device: str = "cuda", fp32: bool = False
    ) -> Tuple[np.ndarray, float]:
        """Depth of a whole video, as upstream.

        Args:
            frames: (T, H, W, 3) RGB uint8; never modified.
            target_fps: returned unchanged (upstream's signature).
            input_size: shorter processing side (shrunk for frames wider than 16:9, as upstream).
            device: where the model is ("cuda", "cpu").
            fp32: False runs under autocast (fp16 on CUDA, bf16 on the CPU), as upstream; True in float32.

        Returns:
            ((T, H, W) float32 disparity, or metres for metric checkpoints, target_fps).
        """
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = getattr(frames, "shape", None)
            raise ShapeError(f"infer_video_depth expects (T, H, W, 3) RGB frames, got {shape}")
        if len(frames) == 0:
            raise InputError("infer_video_depth got no frames")
        runner = self._runner(device, fp32)
        depths = runner.windowed(iter(frames), int(input_size), align="keyframes", rescale=not self.metric)
        return np.stack(list(depths)), target_fps

    @torch.no_grad()
    def infer_video_depth_one(
        self, frame: np.ndarray, input_size: int = 518, device: str = "cuda", fp32: bool = False
    ) -> np.ndarray:
        """Streaming mode, one (H, W, 3) RGB uint8 frame per call -> (H, W) float32 depth, as upstream's
        ``video_depth_stream.VideoDepthAnything``. Call :meth:`reset_stream` before a new video."""
        if self._stream is None:
            cache = StreamingCache(WINDOW, OVERLAP, CROSSFADE)
            self._stream = (cache, self._runner(device, fp32), tuple(np.asarray(frame).shape[:2]))
        cache, runner, first_hw = self._stream
        if tuple(np.asarray(frame).shape[:2]) != first_hw:
            raise ShapeError(f"frame is {np.asarray(frame).shape[:2]}, the stream started with {first_hw}")
        return next(runner.streaming([frame], int(input_size), cache=cache))

    def reset_stream(self) -> None:
        """Forget the streamed frames; the next :meth:`infer_video_depth_one` starts a new video."""
        self._stream = None
