"""Video Depth Anything: the Depth Anything V2 encoder and a DPT head with temporal attention, official keys.

The head is the V2 DPT head with four temporal modules (AnimateDiff-style motion modules): after the two deepest
reassembled levels and after the two deepest fusion blocks, every spatial position attends over the frames of the
clip. Keys are those of the official ``.pth`` files (``pretrained.*``, ``head.*`` with
``head.motion_modules.{0-3}.temporal_transformer.*``), so they load with ``load_state_dict(strict=True)``.

The forward pass is split into a per-frame part (:meth:`VideoDepthAnythingNet.encode`: backbone and reassembly,
run in chunks of frames to bound memory), a temporal part over the whole clip and a per-frame decoder. Streaming
runs the same pieces on one frame, with the temporal attention's keys extended by cached states of past frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.layers.attention import HAS_SDPA, attention
from anydepth.layers.dpt_blocks import token_map
from anydepth.layers.precision import PrecisionPolicy, float32_region
from anydepth.models.depth_anything_v2 import DepthAnythingV2Config
from anydepth.models.dinov2 import DinoV2Config, DinoVisionTransformer
from anydepth.models.dpt import DPTHead, DPTHeadConfig

TemporalStates = List[Tensor]
"""Inputs of the eight temporal attention layers (4 modules x 2 blocks), each ``(B * h_i * w_i, T, C_i)``."""


@dataclass(frozen=True)
class VideoDepthAnythingConfig:
    """Architecture of a Video Depth Anything network.

    Attributes:
        encoder: DINOv2 backbone configuration.
        head: DPT head configuration (relative head: ReLU output; the metric checkpoints use the same head).
        layers: backbone blocks fed to the head.
        num_frames: frames the learned temporal positions cover (32 in every official checkpoint).
        temporal_heads: attention heads of the temporal modules.
        pos_embedding: "ape" (sinusoidal absolute positions; the only kind with official weights).
    """

    encoder: DinoV2Config
    head: DPTHeadConfig
    layers: Tuple[int, int, int, int] = (2, 5, 8, 11)
    num_frames: int = 32
    temporal_heads: int = 8
    pos_embedding: str = "ape"

    @classmethod
    def from_encoder(
        cls,
        encoder: str = "vitl",
        features: Optional[int] = None,
        out_channels: Optional[Sequence[int]] = None,
        num_frames: int = 32,
        pos_embedding: str = "ape",
        use_clstoken: bool = False,
    ) -> VideoDepthAnythingConfig:
        """Configuration of an official encoder size ("vits", "vitb", "vitl")."""
        if encoder not in ("vits", "vitb", "vitl"):
            raise ValueError(f"unknown encoder {encoder!r}; Video Depth Anything has vits, vitb and vitl")
        if pos_embedding != "ape":
            raise ValueError(f"pos_embedding {pos_embedding!r} is not supported; the official checkpoints use 'ape'")
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, not {num_frames}")
        # the spatial part is Depth Anything V2's relative model of the same size
        v2 = DepthAnythingV2Config.from_encoder(
            encoder, features, None if out_channels is None else tuple(out_channels), use_clstoken=use_clstoken
        )
        return cls(encoder=v2.encoder, head=v2.head, layers=v2.layers, num_frames=int(num_frames))


# --- temporal modules ------------------------------------------------------------------------------------------


class SinusoidalPositions(nn.Module):
    """Adds fixed sine/cosine positions over the time axis. Key ``pe`` (1, max_len, dim), stored in checkpoints."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        frequencies = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * frequencies)
        pe[0, :, 1::2] = torch.cos(position * frequencies)
        self.register_buffer("pe", pe)

    def forward(self, x: Tensor) -> Tensor:  # x: (N, T, C), T <= max_len
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(nn.Module):
    """Self-attention over time with sinusoidal positions. Keys to_q, to_k, to_v (no bias), to_out.0, pos_encoder.

    With cached states, the queries are the new frames only and the keys and values span the cached frames
    followed by the new ones; positions count from the first cached frame.
    """

    def __init__(self, dim: int, num_heads: int, max_len: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.pos_encoder = SinusoidalPositions(dim, max_len)
        self.fused = HAS_SDPA  # the per-layer switch (set_fused_attention)
        self.fast_paths = True  # the precision policy's (set_precision)

    def set_precision(self, policy: PrecisionPolicy) -> None:
        self.fast_paths = policy.fast_paths

    def forward(self, x: Tensor, cached: Optional[Tensor] = None) -> Tensor:
        """x: (N, T, C) sequences over time; cached: (N, T_past, C) inputs of earlier frames. Returns (N, T, C)."""
        N, T, C = x.shape
        sequence = x if cached is None else torch.cat((cached.to(x.dtype), x), dim=1)
        sequence = self.pos_encoder(sequence)
        heads, head_dim = self.num_heads, C // self.num_heads

        def split(t: Tensor) -> Tensor:  # (N, L, C) -> (N, heads, L, head_dim)
            return t.reshape(N, t.shape[1], heads, head_dim).transpose(1, 2)

        q = split(self.to_q(sequence[:, -T:]))
        k, v = split(self.to_k(sequence)), split(self.to_v(sequence))
        out = attention(q, k, v, fused=self.fused and self.fast_paths)
        return self.to_out[0](out.transpose(1, 2).reshape(N, T, C))


class GEGLU(nn.Module):
    """Linear to twice the width, then value * GELU(gate). Key ``proj``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class GatedFeedForward(nn.Module):
    """GEGLU feed-forward, width x4. Keys ``net.0.proj`` and ``net.2`` (index 1 is a weightless dropout)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TemporalTransformerBlock(nn.Module):
    """Two pre-norm temporal attentions and a GEGLU feed-forward. Keys attention_blocks, norms, ff, ff_norm."""

    def __init__(self, dim: int, num_heads: int, max_len: int, num_attention: int = 2) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalAttention(dim, num_heads, max_len) for _ in range(num_attention))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_attention))
        self.ff = GatedFeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, cached: Optional[Sequence[Tensor]] = None) -> Tuple[Tensor, TemporalStates]:
        """x: (N, T, C). Returns the output and each attention's normed input (what a stream caches)."""
        states = []
        for i, (attn, norm) in enumerate(zip(self.attention_blocks, self.norms)):
            normed = norm(x)
            states.append(normed)
            x = x + attn(normed, None if cached is None else cached[i])
        return x + self.ff(self.ff_norm(x)), states


class TemporalTransformer(nn.Module):
    """GroupNorm, per-position projection in, temporal blocks, projection out, plus the input.

    Keys norm, proj_in, transformer_blocks.{i}, proj_out. After the GroupNorm every pixel's sequence over time is
    independent of the others, so they run ``sequence_chunk`` at a time: the feed-forward is 8x as wide as the
    features, for every frame and pixel, and would otherwise set the peak memory of a window.
    """

    sequence_chunk = 4096

    def __init__(self, channels: int, num_heads: int, max_len: int, num_blocks: int = 1, groups: int = 32) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(channels, num_heads, max_len) for _ in range(num_blocks)
        )
        self.proj_out = nn.Linear(channels, channels)

    @property
    def num_states(self) -> int:
        return sum(len(b.attention_blocks) for b in self.transformer_blocks)

    def _sequences(self, h: Tensor, cached: Optional[Sequence[Tensor]]) -> Tuple[Tensor, TemporalStates]:
        h = self.proj_in(h)
        states: TemporalStates = []
        for block in self.transformer_blocks:
            n = len(block.attention_blocks)
            h, block_states = block(h, None if cached is None else cached[len(states) : len(states) + n])
            states += block_states
        return self.proj_out(h), states

    def forward(
        self, x: Tensor, cached: Optional[Sequence[Tensor]] = None, keep_states: bool = True
    ) -> Tuple[Tensor, TemporalStates]:
        """x: (B, T, C, H, W) feature maps of consecutive frames -> the same shape, and the states to cache
        (an empty list without ``keep_states``)."""
        B, T, C, H, W = x.shape
        h = self.norm(x.flatten(0, 1))
        # one sequence over time per batch element and pixel
        h = h.reshape(B, T, C, H * W).permute(0, 3, 1, 2).reshape(B * H * W, T, C)
        outs, chunk_states = [], []
        for i in range(0, h.shape[0], self.sequence_chunk):
            part = slice(i, i + self.sequence_chunk)
            out, states = self._sequences(h[part], None if cached is None else [c[part] for c in cached])
            outs.append(out)
            if keep_states:
                chunk_states.append(states)
        h = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
        h = h.reshape(B, H * W, T, C).permute(0, 2, 3, 1).reshape(B, T, C, H, W)
        return x + h, [torch.cat(parts, dim=0) for parts in zip(*chunk_states)]


class TemporalModule(nn.Module):
    """Holder that reproduces the official ``motion_modules.{i}.temporal_transformer.*`` key names."""

    def __init__(self, channels: int, num_heads: int, max_len: int) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, num_heads, max_len)

    def forward(
        self, x: Tensor, cached: Optional[Sequence[Tensor]] = None, keep_states: bool = True
    ) -> Tuple[Tensor, TemporalStates]:
        return self.temporal_transformer(x, cached, keep_states)


# --- head ------------------------------------------------------------------------------------------------------


class FrameLevels(NamedTuple):
    """Per-frame reassembled features, the input of the temporal part of the head (N frames)."""

    # the first level is kept as the backbone's map and reassembled per frame in the decoder: at 4x the patch
    # grid with `features` channels it would be the largest tensor of a window (320 MB for 32 frames at 518x924)
    level1: Tensor  # (N, in_channels, grid_h, grid_w)
    layer2_rn: Tensor  # (N, features, 2 grid_h, 2 grid_w)
    layer3: Tensor  # (N, out_channels[2], grid_h, grid_w), before its 3x3 projection
    layer4: Tensor  # (N, out_channels[3], ceil(grid_h / 2), ceil(grid_w / 2)), before its 3x3 projection

    @staticmethod
    def cat(chunks: Sequence[FrameLevels]) -> FrameLevels:
        """The levels of several groups of frames, one after the other."""
        return FrameLevels(*(torch.cat(parts, dim=0) for parts in zip(*chunks)))

    def take(self, rows: Tensor) -> FrameLevels:
        """The levels of the frames at ``rows`` (a 1-D index tensor), in that order."""
        return FrameLevels(*(t.index_select(0, rows.to(t.device)) for t in self))

    def rows(self, start: int, stop: int) -> FrameLevels:
        """Views of frames ``start`` to ``stop`` (writing into them writes into these levels)."""
        return FrameLevels(*(t[start:stop] for t in self))


_ENCODE_TOKENS = 10_000  # patch tokens per backbone pass when frame_chunk is None
_DECODE_PIXELS = 500_000  # output pixels per decoding pass when decode_chunk is None


def _chunk(fixed: Optional[int], budget: int, per_frame: int, minimum: int = 1) -> int:
    """Frames per pass: ``fixed`` where given, else as many as fit ``budget`` (at least ``minimum``)."""
    if fixed is not None:
        return max(int(fixed), 1)
    return max(budget // max(per_frame, 1), minimum)


class TemporalDPTHead(DPTHead):
    """The V2 DPT head plus ``motion_modules.{0-3}``: temporal attention on levels 3 and 4 and after the
    fusion blocks 4 and 3."""

    def __init__(self, cfg: DPTHeadConfig, num_frames: int = 32, temporal_heads: int = 8) -> None:
        super().__init__(cfg)
        c, f = cfg.out_channels, cfg.features
        self.motion_modules = nn.ModuleList(
            TemporalModule(channels, temporal_heads, num_frames) for channels in (c[2], c[3], f, f)
        )

    @property
    def num_states(self) -> int:
        return sum(m.temporal_transformer.num_states for m in self.motion_modules)

    def reassemble(self, features: Sequence[Tuple[Tensor, Tensor]], grid_h: int, grid_w: int) -> FrameLevels:
        """Per-frame part: four ``(patch_tokens (N, grid_h * grid_w, C), class_token (N, C))`` -> FrameLevels."""
        maps = []
        for i, (tokens, cls_token) in enumerate(features):
            if self.cfg.use_clstoken:
                readout = cls_token.unsqueeze(1).expand_as(tokens)
                tokens = self.readout_projects[i](torch.cat((tokens, readout), dim=-1))
            maps.append(token_map(tokens, grid_h, grid_w))
        layer2, layer3, layer4 = (self.resize_layers[i](self.projects[i](maps[i])) for i in (1, 2, 3))
        return FrameLevels(maps[0], self.scratch.layer2_rn(layer2), layer3, layer4)

    def temporal(
        self,
        levels: FrameLevels,
        num_frames: int,
        cached: Optional[Sequence[Tensor]] = None,
        keep_states: bool = True,
    ) -> Tuple[Tensor, TemporalStates]:
        """Temporal part over clips of ``num_frames`` consecutive frames: the fused level-3 path
        (N, features, 2 grid_h, 2 grid_w) and the eight temporal states (none without ``keep_states``)."""
        s = self.scratch
        states: TemporalStates = []
        used = [0]  # cached states consumed so far

        def over_time(module: TemporalModule, x: Tensor) -> Tensor:
            k = module.temporal_transformer.num_states
            part = None if cached is None else cached[used[0] : used[0] + k]
            used[0] += k
            out, new = module(x.reshape(-1, num_frames, *x.shape[1:]), part, keep_states)
            states.extend(new)
            return out.flatten(0, 1)

        layer3 = over_time(self.motion_modules[0], levels.layer3)
        layer4 = over_time(self.motion_modules[1], levels.layer4)
        layer3_rn, layer4_rn = s.layer3_rn(layer3), s.layer4_rn(layer4)
        path = s.refinenet4(layer4_rn, size=layer3_rn.shape[2:])
        path = over_time(self.motion_modules[2], path)
        path = s.refinenet3(path, layer3_rn, size=levels.layer2_rn.shape[2:])
        path = over_time(self.motion_modules[3], path)
        return path, states

    def decode(self, path3: Tensor, layer2_rn: Tensor, level1: Tensor, out_hw: Tuple[int, int]) -> Tensor:
        """Per-frame part: the first level's reassembly, the last two fusion blocks and the output convolutions
        -> (N, 1, *out_hw), >= 0."""
        s = self.scratch
        layer1_rn = s.layer1_rn(self.resize_layers[0](self.projects[0](level1)))
        path = s.refinenet2(path3, layer2_rn, size=layer1_rn.shape[2:])
        path = s.refinenet1(path, layer1_rn)
        out = F.interpolate(s.output_conv1(path), size=out_hw, mode="bilinear", align_corners=True)
        with float32_region(out.device):  # upstream keeps the last convolutions out of fp16 autocast
            out = s.output_conv2(out.float())
        return F.relu(out)


# --- network ---------------------------------------------------------------------------------------------------


class VideoDepthAnythingNet(nn.Module):
    """(B, T, 3, H, W) ImageNet-normalised clips, H and W multiples of 14 -> (B, T, H, W) depth >= 0.

    Relative checkpoints give affine-invariant disparity, metric ones metres; the network is the same.

    Args:
        cfg: architecture.
        frame_chunk: frames per pass through the backbone and the reassembly; results do not depend on it, peak
            memory does. None: as many as keep a pass near 10,000 tokens (4 frames of 518x924, a whole window
            of small frames).
        decode_chunk: frames per pass through the last fusion blocks and output convolutions, which run at the
            full input resolution (a 518x924 frame has 32 channels of 1.9 MB there). None: as many as keep a
            pass under 500,000 pixels (one frame of 518x924; small frames go together, which is several times
            faster than one by one).
    """

    float32_submodules = ("head",)  # as upstream, the head runs in float32 whatever the precision policy

    def __init__(
        self, cfg: VideoDepthAnythingConfig, frame_chunk: Optional[int] = None, decode_chunk: Optional[int] = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.frame_chunk = frame_chunk
        self.decode_chunk = decode_chunk
        self.pretrained = DinoVisionTransformer(cfg.encoder)
        self.head = TemporalDPTHead(cfg.head, cfg.num_frames, cfg.temporal_heads)

    @property
    def patch_size(self) -> int:
        return self.cfg.encoder.patch_size

    def freeze_input_size(self, height: int, width: int) -> None:
        """Fix the frame size for static-shape exports (the temporal positions are buffers already): the
        backbone's resized position embedding becomes a buffer; other sizes raise
        :class:`~anydepth.errors.ShapeError` until :meth:`unfreeze_input_size`. Call it after loading weights."""
        self.pretrained.freeze_input_size(height, width)

    def unfreeze_input_size(self) -> None:
        """Take any frame size again."""
        self.pretrained.unfreeze_input_size()

    def _grid(self, H: int, W: int) -> Tuple[int, int]:
        p = self.patch_size
        return int(H) // p, int(W) // p

    def encode(self, frames: Tensor, out: Optional[FrameLevels] = None) -> FrameLevels:
        """Per-frame features of (N, 3, H, W) frames, computed ``frame_chunk`` frames at a time. With ``out``
        (levels of N frames, e.g. rows of a window's buffer), each chunk is written into it and ``out`` returned,
        instead of a new concatenation."""
        grid_h, grid_w = self._grid(*frames.shape[-2:])
        chunks = []
        step = _chunk(self.frame_chunk, _ENCODE_TOKENS, grid_h * grid_w, minimum=4)
        for i in range(0, frames.shape[0], step):
            features = self.pretrained.get_intermediate_layers(frames[i : i + step], self.cfg.layers)
            with float32_region(frames.device):
                features = [(tokens.float(), cls.float()) for tokens, cls in features]
                levels = self.head.reassemble(features, grid_h, grid_w)
            if out is None:
                chunks.append(levels)
            else:
                for into, level in zip(out, levels):
                    into[i : i + level.shape[0]].copy_(level)
        return FrameLevels.cat(chunks) if out is None else out

    def decode(
        self,
        levels: FrameLevels,
        num_frames: int,
        image_hw: Tuple[int, int],
        cached: Optional[List[Tensor]] = None,
        keep_states: bool = False,
        count: Optional[int] = None,
    ) -> Tuple[Tensor, TemporalStates]:
        """Temporal and per-frame decoding of N = B * num_frames frames -> ((N, H, W) depth, temporal states;
        the states only with ``keep_states``). With ``count``, the per-frame part runs for the first ``count``
        frames only, and the depth is (count, H, W): the temporal part still sees all N."""
        with float32_region(levels.level1.device):
            path3, states = self.head.temporal(levels, num_frames, cached, keep_states)
            grid_h, grid_w = self._grid(*image_hw)
            out_hw = (grid_h * self.patch_size, grid_w * self.patch_size)
            depths = []
            step = _chunk(self.decode_chunk, _DECODE_PIXELS, out_hw[0] * out_hw[1])
            end = path3.shape[0] if count is None else min(count, path3.shape[0])
            for i in range(0, end, step):
                sl = slice(i, min(i + step, end))
                depths.append(self.head.decode(path3[sl], levels.layer2_rn[sl], levels.level1[sl], out_hw))
            depth = torch.cat(depths, dim=0)
            if tuple(depth.shape[-2:]) != tuple(image_hw):
                depth = F.relu(F.interpolate(depth, size=tuple(image_hw), mode="bilinear", align_corners=True))
        return depth[:, 0], states

    def forward(self, x: Tensor) -> Tensor:
        B, T, _, H, W = x.shape
        depth, _ = self.decode(self.encode(x.flatten(0, 1)), T, (H, W))
        return depth.reshape(B, T, H, W)

    def forward_stream(self, frame: Tensor, cached: Optional[List[Tensor]] = None) -> Tuple[Tensor, TemporalStates]:
        """One frame of a stream.

        Args:
            frame: (B, 3, H, W) the newest frame.
            cached: the temporal states of earlier frames, each concatenated over time (see
                :class:`StreamingCache`); None for the first frame.

        Returns:
            ((B, H, W) depth, this frame's temporal states, each (B * h_i * w_i, 1, C_i)).
        """
        return self.decode(self.encode(frame), 1, tuple(frame.shape[-2:]), cached, keep_states=True)


class StreamingCache:
    """Upstream's choice of past frames that a streamed frame attends to.

    A window of ``window`` slots as in the offline model: the first frame, one older frame that moves forward
    one frame per step once the stream is ``gap`` frames long (at most ``gap`` frames back), and the newest
    ``window - 3`` frames; the new frame itself is the last slot. Before enough frames exist, copies of the first
    frame fill the slots. At most ``gap + 1`` frames of states are held.
    """

    def __init__(self, window: int = 32, overlap: int = 10, crossfade: int = 8) -> None:
        self.window = int(window)
        # offline windows share `overlap` frames and cross-fade `crossfade` of them; the older slot mimics the
        # keyframe that the offline model carries from the previous window
        self.gap = (window - overlap) * 2 - 1 - (overlap - crossfade)
        self._entries: List[TemporalStates] = []
        self.frames_seen = 0

    def context(self) -> Optional[List[Tensor]]:
        """The cached states for the next frame (each ``(N, window - 1, C)``), or None before the first frame."""
        if not self._entries:
            return None
        chosen = self._entries[:2] + self._entries[-(self.window - 3) :]
        return [torch.cat([entry[i] for entry in chosen], dim=1) for i in range(len(chosen[0]))]

    def push(self, states: TemporalStates) -> None:
        """Record the states of the frame just processed."""
        states = [s.detach() for s in states]
        if not self._entries:
            self._entries = [states] * self.window
        else:
            self._entries.append(states)
            if self.frames_seen + self.window > self.gap + 1:
                del self._entries[1]
        self.frames_seen += 1
