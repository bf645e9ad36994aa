"""DepthCrafter on a video read lazily: windows denoised one after another, depth written out as it becomes final.

Upstream (Tencent/DepthCrafter) reads the whole video into memory, encodes every frame to latents, denoises all
windows and decodes at the end. Here a window's frames are encoded when it starts, the overlap's encodings are
carried to the next window, and frames are decoded and yielded as soon as no later window touches them, so
memory holds about one window whatever the video's length. The numbers are upstream's (same frames, same noise:
see :class:`DepthCrafterModel`); the default join of windows adds a scale and shift fit (``align=True``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from anydepth.errors import InputError
from anydepth.pipelines.depthcrafter.windows import (
    DECODE_CHUNK,
    FPS_ID,
    GUIDANCE,
    MAX_RES,
    MOTION_BUCKET,
    NOISE_AUG,
    OVERLAP,
    STEPS,
    WINDOW,
    DepthStitcher,
    InitialNoise,
    LatentStitcher,
    check_windows,
    processing_size,
)
from anydepth.pipelines.video_depth import checked_frames, with_progress
from anydepth.prediction import Prediction
from anydepth.presets import Preset

logger = logging.getLogger(__name__)

CLIP_SIZE = (224, 224)
DEFAULT_SEED = 42  # upstream run.py's default


@dataclass(frozen=True)
class DepthCrafterOptions:
    """Settings of one DepthCrafter run (defaults: upstream's ``run.py``).

    Attributes:
        steps: denoising steps of the Euler scheduler.
        guidance: classifier-free guidance scale; 1.0 runs no unconditional branch.
        window: frames denoised together.
        overlap: frames shared by consecutive windows.
        max_res: longest processing side (sides are multiples of 64).
        seed: seeds the noise (see :class:`DepthCrafterModel` for the two streams).
        align: fit each window's depth onto the earlier output by one scale and shift over the overlap frames,
            then cross-fade in depth; False joins windows exactly as upstream (cross-fade of latents only).
        decode_chunk_size: frames the VAE encodes and decodes at once (its decoder mixes frames of a chunk).
    """

    steps: int = STEPS
    guidance: float = GUIDANCE
    window: int = WINDOW
    overlap: int = OVERLAP
    max_res: int = MAX_RES
    seed: int = DEFAULT_SEED
    align: bool = True
    decode_chunk_size: int = DECODE_CHUNK

    def check(self) -> None:
        check_windows(self.window, self.overlap)
        if self.steps < 1:
            raise InputError(f"steps {self.steps} must be at least 1")
        if not self.guidance >= 1.0:
            raise InputError(f"guidance {self.guidance} must be at least 1.0 (1.0: no guidance)")
        if self.decode_chunk_size < 1:
            raise InputError(f"decode_chunk_size {self.decode_chunk_size} must be at least 1")
        processing_size(64, 64, self.max_res)  # rejects a max_res below 64


def normalize_video_depth(depth: np.ndarray, low: Optional[float] = None, high: Optional[float] = None) -> np.ndarray:
    """Upstream's output: ``(depth - min) / (max - min)`` over the whole video (bounds given, or taken)."""
    low = float(depth.min()) if low is None else low
    high = float(depth.max()) if high is None else high
    return (depth - np.float32(low)) / np.float32(high - low) if high > low else np.zeros_like(depth)


class DepthCrafterModel:
    """DepthCrafter (diffusers networks, upstream's windows) with lazy frames in and depth frame by frame out.

    Made by :func:`anydepth.load_model` for the ``depthcrafter`` preset. Noise: the noise augmentation of the
    frames is drawn frame after frame from a CPU generator seeded with ``seed`` (the numbers upstream draws for
    the whole video at once from the same seed), the windows' initial latents from a second generator seeded
    with ``seed + 1`` (upstream draws them from the first stream after the augmentation noise, which would need
    the video's length in advance; pass them to upstream as ``latents=`` to reproduce a run).

    Args:
        components: :class:`~anydepth.pipelines.depthcrafter.components.DepthCrafterComponents`.
        preset: the preset it was loaded for.
        device: where the networks run (with CPU offload: the GPU they are moved to).
        dtype: the networks' dtype.
        image_mean, image_std: CLIP normalisation from the ``feature_extractor`` folder.
        cpu_offload: "model", "sequential" or None, as enabled on ``components``.
    """

    depth_kind = "disparity"

    def __init__(
        self,
        components: Any,
        preset: Preset,
        device: torch.device,
        dtype: torch.dtype,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        cpu_offload: Optional[str] = None,
    ) -> None:
        self.components = components
        self.preset = preset
        self.device = device
        self.dtype = dtype
        self.cpu_offload = cpu_offload
        self._mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        vae = components.vae
        # SVD's VAE overflows in float16 when encoding; upstream encodes in float32 and decodes in float16
        self._encode_dtype = torch.float32 if dtype == torch.float16 and vae.config.force_upcast else dtype
        self.precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]

    def __repr__(self) -> str:
        offload = f", cpu_offload={self.cpu_offload!r}" if self.cpu_offload else ""
        return f"DepthCrafterModel({self.preset.name!r}, device={self.device}, precision={self.precision!r}{offload})"

    # ---- the networks -------------------------------------------------------------------------------------------

    def _encode(self, video: torch.Tensor, noise: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frames ``(n, 3, H, W)`` in [-1, 1] -> CLIP embeddings ``(n, C)`` and VAE latents ``(n, 4, h, w)``."""
        parts = self.components
        video = video.to(self.device, self.dtype)
        small = (_clip_resize()(video.float(), CLIP_SIZE) + 1.0) / 2.0
        pixels = ((small - self._mean.to(small.device)) / self._std.to(small.device)).to(self.dtype)
        embeddings = parts.image_encoder(pixels).image_embeds
        # one draw per frame from the CPU generator: the same numbers as one draw for all frames (3*H*W % 16 == 0)
        aug = torch.stack([torch.randn(video.shape[1:], generator=noise) for _ in range(video.shape[0])])
        noisy = video + NOISE_AUG * aug.to(video.device, video.dtype)
        latents = parts.vae.encode(noisy.to(self._encode_dtype)).latent_dist.mode()
        return embeddings, latents.to(self.dtype)

    def _denoise(
        self,
        latents: torch.Tensor,  # (1, n, 4, h, w) initial noise
        frame_latents: torch.Tensor,  # (1, n, 4, h, w)
        embeddings: torch.Tensor,  # (1, n, C)
        earlier: Optional[torch.Tensor],  # (1, overlap, 4, h, w) latents the earlier windows left, or None
        guidance: float,
        steps: int,
    ) -> torch.Tensor:
        parts = self.components
        scheduler = parts.scheduler
        scheduler.set_timesteps(steps, device=self.device)
        time_ids = torch.tensor([[FPS_ID, MOTION_BUCKET, NOISE_AUG]], dtype=embeddings.dtype, device=self.device)
        for i, t in enumerate(scheduler.timesteps):
            if i == 0 and earlier is not None:
                # the overlap resumes from the earlier latents, noised to the first step's level
                k = earlier.shape[1]
                latents[:, :k] = earlier + latents[:, :k] / scheduler.init_noise_sigma * scheduler.sigmas[i]
            scaled = scheduler.scale_model_input(latents, t)
            noise_pred = parts.unet(
                torch.cat([scaled, frame_latents], dim=2), t, encoder_hidden_states=embeddings,
                added_time_ids=time_ids, return_dict=False,
            )[0]  # fmt: skip
            if guidance > 1.0:
                unconditional = parts.unet(
                    torch.cat([scaled, torch.zeros_like(scaled)], dim=2), t,
                    encoder_hidden_states=torch.zeros_like(embeddings), added_time_ids=time_ids, return_dict=False,
                )[0]  # fmt: skip
                noise_pred = unconditional + guidance * (noise_pred - unconditional)
            latents = scheduler.step(noise_pred, t, latents).prev_sample
        return latents

    def _decode(self, latents: torch.Tensor, chunk: int) -> Iterator[np.ndarray]:
        """Latents ``(n, 4, h, w)`` -> depth ``(H, W)`` float32 per frame: VAE output in [0, 1], channel mean."""
        vae = self.components.vae
        latents = (1.0 / vae.config.scaling_factor) * latents
        for i in range(0, latents.shape[0], chunk):
            part = latents[i : i + chunk]
            rgb = vae.decode(part, num_frames=part.shape[0]).sample.float()
            depth = (rgb / 2 + 0.5).clamp(0, 1).sum(dim=1) / rgb.shape[1]
            yield from depth.cpu().numpy()

    # ---- the windows --------------------------------------------------------------------------------------------

    def _frames(self, frames: Iterable[Any], max_res: int, sizes: List[Tuple[int, int]]) -> Iterator[torch.Tensor]:
        """(H, W, 3) RGB frames -> ``(3, h, w)`` float32 in [-1, 1] at the processing size."""
        import cv2

        target = None
        for frame in checked_frames(frames):
            if target is None:
                sizes.append(frame.shape[:2])
                target = processing_size(frame.shape[0], frame.shape[1], max_res)
            image = frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32)
            if image.shape[:2] != target:
                shrink = target[0] < image.shape[0]
                image = cv2.resize(image, target[::-1], interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            yield torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) * 2.0 - 1.0

    @torch.no_grad()
    def _depth(self, frames: Iterable[Any], options: DepthCrafterOptions, sizes: List[Tuple[int, int]]):
        """Depth at the processing size, frame by frame, in order."""
        o = options
        source = self._frames(frames, o.max_res, sizes)
        held: List[torch.Tensor] = []  # the one look-ahead frame, read but not encoded yet
        aug_noise = torch.Generator().manual_seed(o.seed)
        embeddings: List[torch.Tensor] = []  # per frame of the current window, (C,)
        frame_latents: List[torch.Tensor] = []  # per frame of the current window, (4, h, w)

        def fill() -> None:  # encode frames, a chunk at a time, until the window is full or the video ends
            while len(embeddings) < o.window:
                need = min(o.decode_chunk_size, o.window - len(embeddings))
                batch = held[:need]
                del held[:need]
                while len(batch) < need:
                    frame = next(source, None)
                    if frame is None:
                        break
                    batch.append(frame)
                if not batch:
                    return
                e, z = self._encode(torch.stack(batch), aug_noise)
                embeddings.extend(e)
                frame_latents.extend(z)
                if len(batch) < need:
                    return

        def more() -> bool:  # is there a frame after the current window? (read it, encode it later)
            if not held:
                frame = next(source, None)
                if frame is not None:
                    held.append(frame)
            return bool(held)

        fill()
        if not embeddings:
            raise InputError("the video has no frames")
        last = len(embeddings) < o.window or not more()
        # a video no longer than one window is one window without overlap, as upstream
        window, overlap = (len(embeddings), 0) if last else (o.window, o.overlap)
        scheduler = self.components.scheduler
        scheduler.set_timesteps(o.steps, device=self.device)
        shape = (1, window, frame_latents[0].shape[0], *frame_latents[0].shape[1:])
        init = torch.randn(shape, generator=torch.Generator().manual_seed(o.seed + 1)) * scheduler.init_noise_sigma
        noise = InitialNoise(init.to(self.device, self.dtype), overlap)
        latent_join, depth_join = LatentStitcher(overlap), DepthStitcher(overlap, align=True)
        queue: List[torch.Tensor] = []  # final latents waiting for a full decode chunk (upstream's join)
        while True:
            n = len(embeddings)
            latents = self._denoise(
                noise.take(n), torch.stack(frame_latents)[None], torch.stack(embeddings)[None], latent_join.tail,
                o.guidance, o.steps,
            )  # fmt: skip
            final = latent_join.add(latents, last)
            if o.align:
                yield from depth_join.add(self._decode(latents[0], o.decode_chunk_size), n, last)
            else:
                queue.extend(final[0])
                whole = len(queue) - len(queue) % o.decode_chunk_size
                if whole:
                    yield from self._decode(torch.stack(queue[:whole]), o.decode_chunk_size)
                    del queue[:whole]
            if last:
                break
            carried = len(embeddings) - overlap
            del embeddings[:carried], frame_latents[:carried]
            fill()
            last = len(embeddings) < o.window or not more()
        if queue:
            yield from self._decode(torch.stack(queue), o.decode_chunk_size)

    def infer_frames(
        self,
        frames: Iterable[Any],
        steps: int = STEPS,
        guidance: float = GUIDANCE,
        window: int = WINDOW,
        overlap: int = OVERLAP,
        max_res: int = MAX_RES,
        seed: int = DEFAULT_SEED,
        align: bool = True,
        decode_chunk_size: int = DECODE_CHUNK,
        output_resolution: str = "input",
        progress: bool = False,
        total: Optional[int] = None,
    ) -> Iterator[np.ndarray]:
        """Depth of a video's frames, one (H, W) float32 map per frame, in order, read and written lazily.

        The maps are the network's relative disparity in [0, 1] per window (the channel mean of the VAE output),
        before upstream's min-max normalisation over the whole video, which needs every frame:
        :meth:`infer` and ``anydepth video`` apply it (:func:`normalize_video_depth`).

        Args:
            frames: (H, W, 3) RGB frames of one size (uint8, or float in [0, 1]), read lazily; at most about one
                window is held.
            steps, guidance, window, overlap, max_res, seed, align, decode_chunk_size: see
                :class:`DepthCrafterOptions`.
            output_resolution: "input" (the frames' size, bilinear) or "processing" (upstream's, multiples of 64).
            progress: show a progress bar.
            total: number of frames, for the progress bar.

        Yields:
            depth: (H, W) float32 relative disparity (larger is nearer).
        """
        options = DepthCrafterOptions(steps, guidance, window, overlap, max_res, seed, align, decode_chunk_size)
        options.check()
        if output_resolution not in ("input", "processing"):
            raise InputError(f"output_resolution must be 'input' or 'processing', not {output_resolution!r}")
        sizes: List[Tuple[int, int]] = []
        depths = self._depth(frames, options, sizes)
        if output_resolution == "input":
            depths = _resized(depths, sizes)
        yield from with_progress(depths, progress, total, self.preset.name)

    def infer(self, frames: Any, **kwargs: Any) -> Prediction:
        """Depth of a whole (short) video: frames (T, H, W, 3) -> Prediction with depth (T, H, W) in [0, 1].

        Min-max normalised over the video, as upstream's output; keyword arguments as :meth:`infer_frames`.
        """
        depth = list(self.infer_frames(frames, **kwargs))
        if not depth:
            raise InputError("the video has no frames")
        return Prediction(depth=normalize_video_depth(np.stack(depth)), depth_kind=self.depth_kind)


@functools.cache
def _clip_resize() -> Callable[..., torch.Tensor]:
    """diffusers' antialiased resize that SVD applies before CLIP (Gaussian blur, then bicubic).

    Its module imports transformers' CLIPImageProcessor, which warns when torchvision is missing though we never
    use that class: the import runs with transformers' logging at ERROR.
    """
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
            _resize_with_antialiasing,
        )
    finally:
        transformers_logging.set_verbosity(level)
    return _resize_with_antialiasing


def _resized(depths: Iterator[np.ndarray], sizes: List[Tuple[int, int]]) -> Iterator[np.ndarray]:
    import cv2

    for depth in depths:
        height, width = sizes[0]
        if depth.shape != (height, width):
            depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
        yield depth
