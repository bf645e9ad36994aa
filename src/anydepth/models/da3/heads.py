"""Depth Anything 3 dense heads: DualDPT (depth + rays) and the depth + sky DPT, in the official key layout."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.errors import ShapeError
from anydepth.layers.dpt_blocks import (
    FeatureFusionBlock,
    OutputBranch,
    make_projections,
    make_resize_layers,
    token_map,
)
from anydepth.layers.precision import (
    PrecisionPolicy,
    compiling,
    fast_paths_enabled,
    float32_region,
    reassembly_precision,
)

# Tied weights in the official checkpoints
# ----------------------------------------
# Upstream DualDPT builds ONE LayerNorm and places that same module at index 2 of each of the four
# ``scratch.output_conv2_aux.{level}`` Sequentials, so ``head.scratch.output_conv2_aux.{0,1,2,3}.2.{weight,bias}``
# are one tensor under four names. safetensors' ``save_model`` (which the hub mixin uses) keeps only the
# alphabetically first name of shared storage, so the hub files store level 0 and lack
#   model.head.scratch.output_conv2_aux.{1,2,3}.2.weight / .bias
# (``model.da3.head...`` in DA3NESTED). No other DA3 head, and no other DA3 module, shares a tensor.
# Our DualDPT shares the module the same way; :func:`expand_shared_head_keys` restores the dropped names.

# Views per head call: upstream's default chunk size, which bounds the full-resolution activations
DEFAULT_CHUNK_SIZE = 8
_AUX_LEVELS = 4  # the aux (ray) branch has per-level output convs for all four levels; only the last is used
_HEAD_FEATURES_2 = 32  # width of the last 3x3 conv of every output branch
_POS_EMBED_RATIO = 0.1
# CUDA's upsampling kernels index with int32: upstream splits the batch above this many output elements
_MAX_RESIZE_ELEMENTS = 1_610_612_736
_SHARED_AUX_NORM = re.compile(r"^(?P<prefix>.*scratch\.output_conv2_aux\.)(?P<level>\d+)\.2\.(?P<leaf>weight|bias)$")
_AUX_LEVEL_CONV = re.compile(r"^(?P<prefix>.*scratch\.output_conv2_aux\.)(?P<level>\d+)\.0\.weight$")


@dataclass(frozen=True)
class DualDPTConfig:
    """Architecture of the DualDPT head of the any-view DA3 models.

    Attributes:
        dim_in: token width fed to the head (twice the ViT width: local and global features are concatenated).
        features: width of the fusion path.
        out_channels: widths of the four reassembled levels.
        patch_size: ViT patch size.
        pos_embed: add the UV sine embedding to the reassembled levels and before the output convs.
    """

    dim_in: int
    features: int
    out_channels: Tuple[int, int, int, int]
    patch_size: int = 14
    pos_embed: bool = True


@dataclass(frozen=True)
class DPTSkyConfig:
    """Architecture of the depth + sky DPT head of DA3MONO-LARGE and DA3METRIC-LARGE.

    Attributes:
        dim_in: token width (the ViT width; these models do not concatenate local features).
        features: width of the fusion path.
        out_channels: widths of the four reassembled levels.
        patch_size: ViT patch size.
        pos_embed: add the UV sine embedding (off in the official configs).
    """

    dim_in: int
    features: int
    out_channels: Tuple[int, int, int, int]
    patch_size: int = 14
    pos_embed: bool = False


# Heads of the official configs (configs/da3-*.yaml), by backbone
DUALDPT_CONFIGS: Dict[str, DualDPTConfig] = {
    "vits": DualDPTConfig(dim_in=768, features=64, out_channels=(48, 96, 192, 384)),
    "vitb": DualDPTConfig(dim_in=1536, features=128, out_channels=(96, 192, 384, 768)),
    "vitl": DualDPTConfig(dim_in=2048, features=256, out_channels=(256, 512, 1024, 1024)),
    "vitg": DualDPTConfig(dim_in=3072, features=256, out_channels=(256, 512, 1024, 1024)),
}
# da3mono-large and da3metric-large share this head (ViT-L)
DPT_SKY_CONFIG_VITL = DPTSkyConfig(dim_in=1024, features=256, out_channels=(256, 512, 1024, 1024))


@dataclass
class HeadOutput:
    """Dense predictions of a DA3 head for B samples of S views; fields a head does not predict are None.

    Attributes:
        depth: (B, S, H, W) float32, positive (exp of the logit). Relative for the any-view models; for
            DA3METRIC, metres = focal * depth / 300.
        depth_conf: (B, S, H, W) float32 >= 1 (DualDPT only).
        ray: (B, S, h, w, 6) float32 per-pixel ray direction (first 3) and origin (last 3), at 8x the patch
            grid (DualDPT only).
        ray_conf: (B, S, h, w) float32 >= 1 (DualDPT only).
        sky: (B, S, H, W) float32 >= 0, sky score (DPTSkyHead only).
    """

    depth: Tensor
    depth_conf: Optional[Tensor] = None
    ray: Optional[Tensor] = None
    ray_conf: Optional[Tensor] = None
    sky: Optional[Tensor] = None


def uv_position_embedding(
    height: int, width: int, channels: int, aspect_ratio: float, device: Optional[torch.device] = None
) -> Tensor:
    """Sine-cosine embedding of a UV grid spanning the image diagonal, as the DA3 heads add to feature maps.

    The grid covers ``[-sx, sx] x [-sy, sy]`` with ``(sx, sy) = (aspect, 1) / sqrt(aspect^2 + 1)`` shrunk by half a
    cell; each axis gets ``channels / 2`` channels: sines then cosines of the coordinate times ``100^(-k / n)``.

    Args:
        height, width: size of the feature map.
        channels: channels of the feature map (a multiple of 4).
        aspect_ratio: width / height of the IMAGE (not of the feature map).
        device: where to build it.

    Returns:
        (channels, height, width) float32, already scaled by 0.1.
    """
    if channels % 4:
        raise ValueError(f"the UV embedding needs a multiple of 4 channels, got {channels}")
    diagonal = math.sqrt(aspect_ratio**2 + 1.0)
    span_x = aspect_ratio / diagonal * (width - 1) / width
    span_y = 1.0 / diagonal * (height - 1) / height
    u = torch.linspace(-span_x, span_x, width, dtype=torch.float32, device=device)
    v = torch.linspace(-span_y, span_y, height, dtype=torch.float32, device=device)
    per_axis = channels // 2
    exponents = torch.arange(per_axis // 2, dtype=torch.float32, device=device) / (per_axis / 2.0)
    frequencies = 1.0 / 100.0**exponents  # (channels / 4,)
    u_angles, v_angles = u[:, None] * frequencies, v[:, None] * frequencies
    u_embed = torch.cat([u_angles.sin(), u_angles.cos()], dim=-1)  # (W, channels / 2)
    v_embed = torch.cat([v_angles.sin(), v_angles.cos()], dim=-1)  # (H, channels / 2)
    embed = torch.cat(
        [u_embed[None].expand(height, -1, -1), v_embed[:, None].expand(-1, width, -1)], dim=-1
    )  # (H, W, channels)
    return embed.permute(2, 0, 1) * _POS_EMBED_RATIO


@functools.lru_cache(maxsize=8)
def _cached_uv_embedding(
    height: int, width: int, channels: int, aspect_ratio: float, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """:func:`uv_position_embedding` per map size and dtype, built once (a video or folder repeats the sizes)."""
    return uv_position_embedding(height, width, channels, aspect_ratio, device).to(dtype)


def resize_bilinear(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinear resize with ``align_corners=True``, in batch slices where one call would pass the int32 limit.

    Args:
        x: (N, C, h, w).
        size: output (H, W).

    Returns:
        (N, C, H, W).
    """
    size = (int(size[0]), int(size[1]))
    total = size[0] * size[1] * x.shape[0] * x.shape[1]
    if total <= _MAX_RESIZE_ELEMENTS:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    parts = torch.chunk(x, total // _MAX_RESIZE_ELEMENTS + 1, dim=0)
    return torch.cat([F.interpolate(p, size=size, mode="bilinear", align_corners=True) for p in parts], dim=0)


def expand_shared_head_keys(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Restore the DualDPT keys that checkpoints store once because upstream ties them.

    Every ``<prefix>scratch.output_conv2_aux.{level}.2.{weight,bias}`` (the LayerNorm shared by the four aux
    levels) that is missing is filled with the one stored under another level of the same prefix; levels are
    those that have ``<prefix>scratch.output_conv2_aux.{level}.0.weight``. Works for any prefix
    (``head.``, ``model.head.``, ``model.da3.head.``); other keys pass through unchanged.

    Args:
        state_dict: as read from a DA3 ``model.safetensors`` (or any subset).

    Returns:
        A new dict (the input is not modified) whose aliases share the stored tensor.
    """
    levels: Dict[str, List[str]] = {}
    for key in state_dict:
        match = _AUX_LEVEL_CONV.match(key)
        if match:
            levels.setdefault(match["prefix"], []).append(match["level"])
    stored: Dict[Tuple[str, str], Tensor] = {}
    for key, value in state_dict.items():
        match = _SHARED_AUX_NORM.match(key)
        if match:
            stored.setdefault((match["prefix"], match["leaf"]), value)
    expanded = dict(state_dict)
    for (prefix, leaf), value in stored.items():
        for level in levels.get(prefix, []):
            expanded.setdefault(f"{prefix}{level}.2.{leaf}", value)
    return expanded


class _Permute(nn.Module):
    """``Tensor.permute`` as a module, so that the channel LayerNorm sits at the official Sequential index."""

    def __init__(self, dims: Tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)


class _Scratch(nn.Module):
    """Holder that reproduces the official ``scratch.*`` key names: level convs, main fusion chain, first conv."""

    def __init__(self, out_channels: Sequence[int], features: int) -> None:
        super().__init__()
        for i, c in enumerate(out_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False))
        _add_fusion_chain(self, features)
        self.output_conv1 = _conv3x3(features, features // 2)


def _add_fusion_chain(scratch: nn.Module, features: int, suffix: str = "") -> None:
    """Register ``refinenet{1-4}{suffix}``; the deepest one has no skip input and stores no ``resConfUnit1``."""
    for i in range(1, 5):
        setattr(scratch, f"refinenet{i}{suffix}", FeatureFusionBlock(features, has_skip=i != 4))


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def output_branch(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 -> ReLU -> conv1x1 (keys ``.0`` and ``.2``), the last layers of every DA3 output but the rays."""
    return OutputBranch(in_channels, _HEAD_FEATURES_2, out_channels)


def map_view_chunks(
    fn: Callable[..., Tuple[Tensor, ...]], inputs: Sequence[Tensor], chunk_size: Optional[int]
) -> Tuple[Tensor, ...]:
    """Apply ``fn`` to slices of at most ``chunk_size`` along dim 0 of every input; concatenate its outputs.

    Args:
        fn: maps the sliced inputs to a tuple of tensors with the same leading size.
        inputs: tensors with a common leading (view) dimension.
        chunk_size: views per call; None (or at least the number of views) runs all at once.
    """
    n = inputs[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return fn(*inputs)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    parts = [fn(*(x[i : i + chunk_size] for x in inputs)) for i in range(0, n, chunk_size)]
    return tuple(torch.cat(chunks, dim=0) for chunks in zip(*parts))


def _check_features(
    features: Sequence[Tuple[Tensor, Tensor]], dim_in: int, height: int, width: int, patch_size: int, start: int
) -> List[Tensor]:
    if len(features) != 4:
        raise ShapeError(f"DA3 heads take 4 (tokens, camera_token) levels, got {len(features)}")
    tokens = [level[0] for level in features]
    grid = (height // patch_size) * (width // patch_size)
    expected = (*tokens[0].shape[:2], start + grid, dim_in)
    for i, t in enumerate(tokens):
        if t.dim() != 4 or tuple(t.shape) != tuple(expected):
            raise ShapeError(
                f"head level {i}: tokens of shape {tuple(t.shape)}, expected (B, S, N, C) = {tuple(expected)} "
                f"for a {height}x{width} image"
            )
    return tokens


def _reshape_views(outputs: Sequence[Tensor], batch_views: Tuple[int, int]) -> List[Tensor]:
    return [x.reshape(*batch_views, *x.shape[1:]) for x in outputs]


class DPTTrunk(nn.Module):
    """Token reassembly and top-down fusion shared by the DA3 heads.

    Keys: [norm], projects.{0-3}, resize_layers.{0,1,3}, scratch.layer{1-4}_rn, scratch.refinenet{1-4},
    scratch.output_conv1. Subclasses add their output branches to ``scratch`` and implement ``_forward_views``
    on one chunk of views.
    """

    def __init__(
        self,
        dim_in: int,
        features: int,
        out_channels: Sequence[int],
        patch_size: int,
        pos_embed: bool,
        token_norm: bool,
    ) -> None:
        super().__init__()
        self.dim_in = dim_in
        self.patch_size = patch_size
        self.pos_embed = pos_embed
        # DualDPT normalises the concatenated tokens again; the other heads take them as the backbone left them
        self.norm = nn.LayerNorm(dim_in) if token_norm else nn.Identity()
        self.projects = make_projections(dim_in, out_channels)
        self.resize_layers = make_resize_layers(out_channels)
        self.scratch = _Scratch(out_channels, features)
        self.frozen_size: Optional[Tuple[int, int]] = None  # (height, width) while frozen
        self._frozen_uv: Dict[Tuple[int, int, int], str] = {}  # (channels, h, w) -> buffer name
        # set by PrecisionPolicy.apply (set_precision)
        self.reassembly_dtype: Optional[torch.dtype] = None
        self.fast_paths = True

    def set_precision(self, policy: PrecisionPolicy) -> None:
        """The precision of the reassembly and the main map (:attr:`PrecisionPolicy.head_dtype`: bf16 under the
        bf16 policy, float32 otherwise), and whether the UV-embedding cache may serve."""
        self.reassembly_dtype = policy.head_dtype
        self.fast_paths = policy.fast_paths

    def freeze_input_size(self, height: int, width: int) -> None:
        """Fix the image size to ``height`` x ``width`` for static-shape exports.

        The UV embeddings of every map the head adds one to (built from ``linspace``, ``sin`` and ``cos`` of the
        map size) become non-persistent buffers, so a traced graph holds them as constants. Other sizes then raise
        :class:`~anydepth.errors.ShapeError` until :meth:`unfreeze_input_size`.
        """
        p = self.patch_size
        if height <= 0 or width <= 0 or height % p or width % p:
            raise ShapeError(f"freeze_input_size({height}, {width}): both sides must be positive multiples of {p}")
        self.unfreeze_input_size()
        if self.pos_embed:
            device = self.projects[0].weight.device
            for channels, h, w in self._uv_map_shapes(height // p, width // p):
                if (channels, h, w) not in self._frozen_uv:
                    name = f"uv_embed_{len(self._frozen_uv)}"
                    self.register_buffer(name, uv_position_embedding(h, w, channels, width / height, device), False)
                    self._frozen_uv[(channels, h, w)] = name
        self.frozen_size = (int(height), int(width))

    def unfreeze_input_size(self) -> None:
        """Take any image size again."""
        for name in self._frozen_uv.values():
            self._buffers.pop(name, None)
        self._frozen_uv = {}
        self.frozen_size = None

    def _uv_map_shapes(self, grid_h: int, grid_w: int) -> List[Tuple[int, int, int]]:
        """(channels, height, width) of every map that gets a UV embedding, for a patch grid: the four projected
        token maps and the main map at the image size (heads with more such maps add theirs)."""
        p = self.patch_size
        shapes = [(int(conv.out_channels), grid_h, grid_w) for conv in self.projects]
        return [*shapes, (int(self.scratch.output_conv1.out_channels), grid_h * p, grid_w * p)]

    def _add_pos_embed(self, x: Tensor, aspect_ratio: float) -> Tensor:
        """``x`` (a temporary of the caller, so it is updated in place) plus the UV embedding (cached, or frozen
        by :meth:`freeze_input_size`), in the precision of ``x`` (float32, or bf16 for the mixed-precision main
        map)."""
        if not self.pos_embed:
            return x
        table = self._uv_table(x, aspect_ratio)
        if x.requires_grad:
            return x + table
        return x.add_(table)

    def _uv_table(self, x: Tensor, aspect_ratio: float) -> Tensor:
        """The (C, H, W) UV embedding for the map ``x``, in its dtype: frozen, cached, or built."""
        if self.frozen_size is not None:
            name = self._frozen_uv.get((int(x.shape[1]), int(x.shape[2]), int(x.shape[3])))
            if name is None:
                raise ShapeError(f"no UV embedding was frozen for a {tuple(x.shape[1:])} map; freeze_input_size again")
            table = getattr(self, name)
            return table if table.dtype == x.dtype else table.to(x.dtype)
        args = (x.shape[-2], x.shape[-1], x.shape[1], float(aspect_ratio), x.device)
        # torch.compile traces the function itself (and warns about the cache)
        cached = self.fast_paths and fast_paths_enabled() and not compiling()
        return _cached_uv_embedding(*args, x.dtype) if cached else uv_position_embedding(*args).to(x.dtype)

    def _output(self, branch: OutputBranch, x: Tensor, aspect_ratio: float) -> Tensor:
        """``branch`` on ``x`` plus the UV embedding: the addition goes into the branch's first convolution
        (:meth:`OutputBranch.forward_plus`) rather than over the image-sized map."""
        if not self.pos_embed:
            return branch(x)
        return branch.forward_plus(x, self._uv_table(x, aspect_ratio))

    def _reassemble(
        self, tokens: Sequence[Tensor], grid_h: int, grid_w: int, aspect_ratio: float, low: Optional[torch.dtype]
    ) -> List[Tensor]:
        """Four (n, N, C) patch-token tensors -> level maps at 4x, 2x, 1x and 1/2x the patch grid.

        Under a mixed-precision reassembly (``low``, inside :func:`reassembly_precision`) the normed tokens are
        cast before the layout copy of :func:`token_map` rather than by the projections' autocast after it: the
        same values, half the bytes moved.
        """
        levels = []
        for i, x in enumerate(tokens):
            x = self.norm(x)
            if low is not None:
                x = x.to(low)
            x = token_map(x, grid_h, grid_w)
            x = self._add_pos_embed(self.projects[i](x), aspect_ratio)
            levels.append(self.resize_layers[i](x))
        return levels

    def _level_maps(
        self, tokens: Sequence[Tensor], height: int, width: int, low: Optional[torch.dtype] = None
    ) -> List[Tensor]:
        """Reassembled levels through ``scratch.layer{1-4}_rn``: all ``features`` wide, at 4x .. 1/2x the grid.

        The reassembly runs in ``low`` where given (None: float32). Returned in the head's weight dtype, which the
        fusion runs in, whatever precision the reassembly ran in.
        """
        p = self.patch_size
        with reassembly_precision(tokens[0].device, low):
            levels = self._reassemble(tokens, height // p, width // p, width / height, low)
            dtype = self.scratch.output_conv1.weight.dtype
            return [getattr(self.scratch, f"layer{i}_rn")(x).to(dtype) for i, x in enumerate(levels, start=1)]

    def _fuse(self, maps: Sequence[Tensor], suffix: str = "", out_dtype: Optional[torch.dtype] = None) -> Tensor:
        """Top-down fusion through ``scratch.refinenet{4..1}{suffix}``; output at 8x the patch grid (in
        ``out_dtype`` from the last block's projection on, where given)."""
        l1, l2, l3, l4 = maps

        def block(i: int) -> FeatureFusionBlock:
            return getattr(self.scratch, f"refinenet{i}{suffix}")

        path = block(4)(l4, size=l3.shape[2:])
        path = block(3)(path, l3, size=l2.shape[2:])
        path = block(2)(path, l2, size=l1.shape[2:])
        return block(1)(path, l1, out_dtype=out_dtype)

    def _main_map(self, maps: Sequence[Tensor], height: int, width: int, low: Optional[torch.dtype] = None) -> Tensor:
        """Main fusion -> ``output_conv1`` -> bilinear to the image size, in the head's weight dtype or ``low``.

        Upstream applies ``output_conv1`` before this upsampling (at 8x the grid), not after as V2 does. With
        ``low``, everything after the projection of the last fusion block runs in that precision: its
        upsampling, ``output_conv1`` and the resize to the image size (see :func:`reassembly_precision`).
        """
        p = self.patch_size
        fused = self._fuse(maps, out_dtype=low)
        with reassembly_precision(fused.device, low):
            fused = self.scratch.output_conv1(fused)
        return resize_bilinear(fused, ((height // p) * p, (width // p) * p))

    def _forward_views(
        self, tokens: List[Tensor], height: int, width: int, *per_view: Tensor, **options: Any
    ) -> Tuple[Tensor, ...]:
        raise NotImplementedError

    def _run(
        self,
        features: Sequence[Tuple[Tensor, Tensor]],
        height: int,
        width: int,
        patch_start_idx: int,
        chunk_size: Optional[int],
        per_view: Sequence[Tensor] = (),
        **options: Any,
    ) -> Tuple[Tuple[int, int], Tuple[Tensor, ...]]:
        """Checks the inputs, flattens views, runs ``_forward_views`` in float32 on chunks of views.

        ``options`` go to ``_forward_views`` as keywords.

        Returns:
            ((B, S), outputs with a leading B * S dimension).
        """
        if self.frozen_size is not None and (int(height), int(width)) != self.frozen_size:
            raise ShapeError(
                f"this head is frozen to {self.frozen_size[0]}x{self.frozen_size[1]} images (freeze_input_size), "
                f"not {height}x{width}; call unfreeze_input_size() to run other sizes"
            )
        tokens = _check_features(features, self.dim_in, height, width, self.patch_size, patch_start_idx)
        B, S = tokens[0].shape[:2]
        # the head's weights say its precision (float32 in every official setup); inputs may come from autocast
        dtype = self.projects[0].weight.dtype
        with float32_region(tokens[0].device):
            flat = [t.flatten(0, 1)[:, patch_start_idx:].to(dtype) for t in tokens]
            flat += [x.flatten(0, 1).to(dtype) for x in per_view]

            def run(*chunk: Tensor) -> Tuple[Tensor, ...]:
                return self._forward_views(list(chunk[:4]), height, width, *chunk[4:], **options)

            outputs = map_view_chunks(run, flat, chunk_size)
        return (B, S), outputs


class DualDPTHead(DPTTrunk):
    """DualDPT of the any-view DA3 models: depth + confidence at image size, rays + confidence at 8x the grid.

    Keys: norm, projects.{0-3}, resize_layers.{0,1,3}, scratch.layer{1-4}_rn, scratch.refinenet{1-4}[_aux],
    scratch.output_conv1, scratch.output_conv2.{0,2}, scratch.output_conv1_aux.{0-3}.{0-4},
    scratch.output_conv2_aux.{0-3}.{0,2,5} (``.2`` is one LayerNorm shared by the four levels).

    Upstream runs the ray branch's output convs on all four fusion levels and returns only the last; this head
    runs only the last, but keeps every level's weights so that checkpoints load strictly.
    """

    def __init__(self, cfg: DualDPTConfig) -> None:
        super().__init__(cfg.dim_in, cfg.features, cfg.out_channels, cfg.patch_size, cfg.pos_embed, token_norm=True)
        self.cfg = cfg
        f, f2, s = cfg.features, _HEAD_FEATURES_2, self.scratch
        s.output_conv2 = output_branch(f // 2, 2)  # depth, confidence
        _add_fusion_chain(s, f, suffix="_aux")
        s.output_conv1_aux = nn.ModuleList(
            nn.Sequential(
                _conv3x3(f, f // 2), _conv3x3(f // 2, f), _conv3x3(f, f // 2), _conv3x3(f // 2, f), _conv3x3(f, f // 2)
            )
            for _ in range(_AUX_LEVELS)
        )
        shared_norm = nn.LayerNorm(f2)  # one module under four names, as upstream (see the note at the top)
        s.output_conv2_aux = nn.ModuleList(
            nn.Sequential(
                _conv3x3(f // 2, f2),
                _Permute((0, 2, 3, 1)),
                shared_norm,
                _Permute((0, 3, 1, 2)),
                nn.ReLU(),
                nn.Conv2d(f2, 7, kernel_size=1),
            )
            for _ in range(_AUX_LEVELS)
        )

    def _uv_map_shapes(self, grid_h: int, grid_w: int) -> List[Tuple[int, int, int]]:
        # and the ray branch's map at the fusion resolution, 8x the patch grid
        aux = (int(self.scratch.output_conv1_aux[-1][-1].out_channels), 8 * grid_h, 8 * grid_w)
        return [*super()._uv_map_shapes(grid_h, grid_w), aux]

    def forward(
        self,
        features: Sequence[Tuple[Tensor, Tensor]],
        height: int,
        width: int,
        patch_start_idx: int = 0,
        chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
        rays: bool = True,
    ) -> HeadOutput:
        """Depth and rays from the backbone's four output levels, in float32 even under autocast.

        Under the bf16 precision policy (:meth:`set_precision`) the reassembly, and the depth branch from the last
        fusion block's projection up to its last convolution, run in bf16 (see :func:`reassembly_precision`);
        the fusion, the convolution that gives the logits and the ray branch stay float32.

        Args:
            features: four ``(tokens (B, S, N, C), camera_token (B, S, C))`` pairs; the camera tokens are unused.
            height, width: image size; the patch grid is ``(height // 14, width // 14)``.
            patch_start_idx: tokens before this index are not patches (0 for the DA3 backbone's outputs).
            chunk_size: views per pass through the head (memory bound); None runs all B * S views at once.
            rays: also run the ray branch (about half the head's work); only the ray-pose solve reads it.

        Returns:
            HeadOutput with depth, depth_conf (B, S, 14*gh, 14*gw) and, with ``rays``, ray (B, S, 8*gh, 8*gw, 6)
            and ray_conf.
        """
        batch_views, outputs = self._run(features, height, width, patch_start_idx, chunk_size, rays=rays)
        if not rays:
            depth, depth_conf = _reshape_views(outputs, batch_views)
            return HeadOutput(depth=depth, depth_conf=depth_conf)
        depth, depth_conf, ray, ray_conf = _reshape_views(outputs, batch_views)
        return HeadOutput(depth=depth, depth_conf=depth_conf, ray=ray, ray_conf=ray_conf)

    def _forward_views(
        self,
        tokens: List[Tensor],
        height: int,
        width: int,
        *per_view: Tensor,
        rays: bool = True,
    ) -> Tuple[Tensor, ...]:
        s, aspect, low = self.scratch, width / height, self.reassembly_dtype
        maps = self._level_maps(tokens, height, width, low)
        logits = self._output(s.output_conv2, self._main_map(maps, height, width, low), aspect)  # float32 either way
        depth, depth_conf = logits[:, 0].exp(), logits[:, 1].exp() + 1.0
        if not rays:
            return depth, depth_conf

        # the ray branch stays at the fusion resolution (8x the grid); only its last level is an output
        aux = s.output_conv1_aux[-1](self._fuse(maps, suffix="_aux"))
        aux = s.output_conv2_aux[-1](self._add_pos_embed(aux, aspect)).permute(0, 2, 3, 1)
        ray, ray_conf = aux[..., :-1], aux[..., -1].exp() + 1.0
        return depth, depth_conf, ray, ray_conf


class DPTSkyHead(DPTTrunk):
    """Depth + sky DPT of DA3MONO-LARGE / DA3METRIC-LARGE: two output branches on one fused map.

    Keys: projects.{0-3}, resize_layers.{0,1,3}, scratch.layer{1-4}_rn, scratch.refinenet{1-4},
    scratch.output_conv1, scratch.output_conv2.{0,2}, scratch.sky_output_conv2.{0,2}.
    """

    def __init__(self, cfg: DPTSkyConfig) -> None:
        super().__init__(cfg.dim_in, cfg.features, cfg.out_channels, cfg.patch_size, cfg.pos_embed, token_norm=False)
        self.cfg = cfg
        self.scratch.output_conv2 = output_branch(cfg.features // 2, 1)
        self.scratch.sky_output_conv2 = output_branch(cfg.features // 2, 1)

    def forward(
        self,
        features: Sequence[Tuple[Tensor, Tensor]],
        height: int,
        width: int,
        patch_start_idx: int = 0,
        chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
    ) -> HeadOutput:
        """Depth and sky score, in float32 even under autocast.

        Under the bf16 precision policy (:meth:`set_precision`) the reassembly, and the output branches up to
        their last convolutions, run in bf16; the fusion and the convolutions that give the logits stay float32.

        Args:
            features: four ``(tokens (B, S, N, C), class_token)`` pairs; the second element is unused.
            height, width: image size; the patch grid is ``(height // 14, width // 14)``.
            patch_start_idx: tokens before this index are not patches.
            chunk_size: views per pass through the head; None runs all B * S views at once.

        Returns:
            HeadOutput with depth = exp(logit) and sky = relu(logit), both (B, S, 14*gh, 14*gw).
        """
        batch_views, outputs = self._run(features, height, width, patch_start_idx, chunk_size)
        depth, sky = _reshape_views(outputs, batch_views)
        return HeadOutput(depth=depth, sky=sky)

    def _forward_views(
        self,
        tokens: List[Tensor],
        height: int,
        width: int,
        *per_view: Tensor,
    ) -> Tuple[Tensor, ...]:
        low = self.reassembly_dtype
        maps = self._level_maps(tokens, height, width, low)
        fused = self._add_pos_embed(self._main_map(maps, height, width, low), width / height)
        s = self.scratch
        return s.output_conv2(fused)[:, 0].exp(), F.relu(s.sky_output_conv2(fused)[:, 0])
