"""DINOv2 vision transformer (ViT-S/B/L/G, patch 14) in the official key layout, returning intermediate layers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.errors import ShapeError
from anydepth.layers.attention import Attention
from anydepth.layers.layer_scale import LayerScale
from anydepth.layers.mlp import Mlp, SwiGLUFFN, swiglu_hidden_features
from anydepth.layers.precision import PrecisionPolicy, fast_paths_enabled, float32_region, precision_region
from anydepth.layers.rope import Rope


@dataclass(frozen=True)
class DinoV2Config:
    """Architecture of a DINOv2 backbone.

    Attributes:
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        ffn: "mlp" (GELU) or "swiglu" (giant).
        mlp_ratio: hidden width over token width.
        patch_size: pixels per patch side.
        img_size: training resolution that sizes the stored position embedding (518 -> 37x37 grid + cls).
        interpolate_offset: added to the target grid before the bicubic resize of position embeddings
            (DINOv2's work-around; exact reproduction needs it).
        norm_eps: LayerNorm epsilon.
    """

    embed_dim: int
    depth: int
    num_heads: int
    ffn: str = "mlp"
    mlp_ratio: float = 4.0
    patch_size: int = 14
    img_size: int = 518
    interpolate_offset: float = 0.1
    norm_eps: float = 1e-6

    @property
    def pos_grid(self) -> int:
        return self.img_size // self.patch_size


VITS = DinoV2Config(embed_dim=384, depth=12, num_heads=6)
VITB = DinoV2Config(embed_dim=768, depth=12, num_heads=12)
VITL = DinoV2Config(embed_dim=1024, depth=24, num_heads=16)
VITG = DinoV2Config(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu")
ENCODERS = {"vits": VITS, "vitb": VITB, "vitl": VITL, "vitg": VITG}


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection, key ``proj``: (B, 3, H, W) -> (B, H/p * W/p, D).

    Under a mixed :class:`~anydepth.layers.precision.PrecisionPolicy` with ``float32_patch_embed`` (the default)
    the projection still runs in its weights' precision (float32), and so do its tokens: with its weights rounded
    to bf16 (as autocast does), DA3's depth moved markedly further from float32, mostly as one shift of scale
    (tests/test_precision_da3.py; figures in benchmarks/RESULTS.md). It is the first layer and a small share of
    the network's arithmetic.
    """

    # set by PrecisionPolicy.apply: whether the projection runs in a float32 region, and its fast path may run
    keep_float32: bool = False
    fast_paths: bool = True

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def set_precision(self, policy: PrecisionPolicy) -> None:
        self.keep_float32 = policy.mixed and policy.float32_patch_embed
        self.fast_paths = policy.fast_paths

    def forward(self, x: Tensor) -> Tensor:
        if not self.keep_float32:
            return self.proj(x).flatten(2).transpose(1, 2)
        with float32_region(x.device):
            x = x.to(self.proj.weight.dtype)
            p = self.proj.kernel_size[0]
            if (
                self.fast_paths
                and x.device.type == "cpu"
                and not torch.is_grad_enabled()
                and fast_paths_enabled()
                and x.shape[-2] % p == 0
                and x.shape[-1] % p == 0
                and not self.proj._forward_hooks
                and not self.proj._forward_pre_hooks
            ):
                return self._patch_matmul(x)
            return self.proj(x).flatten(2).transpose(1, 2)

    def _patch_matmul(self, x: Tensor) -> Tensor:
        """The patch projection as one matmul over the unfolded patches (CPU inference in the float32 region).

        oneDNN's strided 14x14 convolution on 3 channels is slow on the CPU (benchmarks/RESULTS.md). Each patch is
        laid out as a row of ``3 * 14 * 14`` values and projected: the same products, summed in another order
        (float32 rounding apart, the convolution's values).
        """
        B, C, H, W = x.shape
        p = self.proj.kernel_size[0]
        gh, gw = H // p, W // p
        patches = x.reshape(B, C, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * p * p)
        return F.linear(patches, self.proj.weight.reshape(self.proj.out_channels, -1), self.proj.bias)


class Block(nn.Module):
    """Pre-norm transformer block with layer scale: keys norm1, attn, ls1, norm2, mlp, ls2.

    Args:
        cfg: backbone architecture (width, heads, FFN kind, norm epsilon).
        qk_norm: LayerNorm queries and keys per head (Depth Anything 3's later blocks; adds ``attn.q_norm`` and
            ``attn.k_norm`` keys).
    """

    fused_residual = False  # set by PrecisionPolicy.apply (set_precision)

    def __init__(self, cfg: DinoV2Config, qk_norm: bool = False) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        if cfg.ffn == "swiglu":
            self.mlp: nn.Module = SwiGLUFFN(dim, swiglu_hidden_features(dim, cfg.mlp_ratio))
        elif cfg.ffn == "mlp":
            self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        else:
            raise ValueError(f"unknown ffn {cfg.ffn!r}; expected 'mlp' or 'swiglu'")
        self.ls2 = LayerScale(dim)

    def set_precision(self, policy: PrecisionPolicy) -> None:
        # mixed precision: x + gamma * branch in one pass over the tokens rather than a product and a sum
        self.fused_residual = policy.mixed and policy.fast_paths

    def forward(self, x: Tensor, rope: Optional[Rope] = None) -> Tensor:  # x: (B, N, D)
        if self.fused_residual and fast_paths_enabled(compilable=True):
            x = torch.addcmul(x, self.attn(self.norm1(x), rope=rope), self.ls1.gamma)
            return torch.addcmul(x, self.mlp(self.norm2(x)), self.ls2.gamma)
        # the reference's two roundings, bit for bit
        x = x + self.ls1(self.attn(self.norm1(x), rope=rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


def resize_pos_embed(pos_embed: Tensor, grid_h: int, grid_w: int, offset: float = 0.1) -> Tensor:
    """Resize a square DINOv2 position embedding (class slot first) to a patch grid, as DINOv2 does.

    The stored grid is returned as is only when the target grid equals it; otherwise the patch part is resized
    bicubically (float32, no antialiasing) with scale factors ``(grid + offset) / stored_grid``, which is not the
    same as resizing to a size.

    Args:
        pos_embed: (1, 1 + n * n, D) stored embedding.
        grid_h, grid_w: target patch grid.
        offset: DINOv2's work-around added to the target grid (0.1 in DINOv2, Depth Anything V2 and 3).

    Returns:
        (1, 1 + grid_h * grid_w, D) in the dtype of ``pos_embed``.
    """
    # plain ints: under tracing the grid is a constant of the static shape, not a tensor
    grid_h, grid_w = int(grid_h), int(grid_w)
    n = math.isqrt(pos_embed.shape[1] - 1)
    if grid_h == n and grid_w == n:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    D = pos_embed.shape[-1]
    patch_pos = F.interpolate(
        patch_pos.reshape(1, n, n, D).permute(0, 3, 1, 2),
        scale_factor=((grid_h + offset) / n, (grid_w + offset) / n),
        mode="bicubic",
        align_corners=False,
    )
    if patch_pos.shape[-2:] != (grid_h, grid_w):
        raise RuntimeError(f"position embedding resized to {tuple(patch_pos.shape[-2:])}, not {(grid_h, grid_w)}")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, D)
    return torch.cat((cls_pos, patch_pos), dim=1).to(pos_embed.dtype)


class PosEmbedCache:
    """Resized position embeddings by patch grid, reused while the stored embedding is unchanged.

    An entry is valid for the same storage and version counter of ``pos_embed`` (``load_state_dict`` and other
    in-place writes bump the version; ``.to(...)`` makes new storage). With grad enabled, under tracing, and with
    the fast paths off (``enabled=False`` or the process switch) it always recomputes (nothing cached from
    inference mode enters a graph). The bicubic resize is a noticeable share of a small ViT's call on a CPU
    (benchmarks/RESULTS.md), and the same every call for one image size.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._entries: Dict[Tuple[int, int, float], Tuple[Tuple[Any, ...], Tensor]] = {}

    def __call__(self, pos_embed: Tensor, grid_h: int, grid_w: int, offset: float, enabled: bool = True) -> Tensor:
        if (
            not enabled
            or torch.is_grad_enabled()
            or torch.jit.is_tracing()
            or torch.jit.is_scripting()
            or not fast_paths_enabled(compilable=True)
        ):
            return resize_pos_embed(pos_embed, grid_h, grid_w, offset)
        key = (int(grid_h), int(grid_w), float(offset))
        stamp = (pos_embed.data_ptr(), pos_embed._version, pos_embed.device, pos_embed.dtype, tuple(pos_embed.shape))
        hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = resize_pos_embed(pos_embed, grid_h, grid_w, offset)
        if value is pos_embed:  # the stored grid: nothing to keep
            return value
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (stamp, value)
        return value


class FreezablePositionGrid:
    """The position embedding of a patch grid for a ViT with a square stored embedding (``pos_embed``): resized
    per call (and cached), or frozen for one input size.

    Freezing is the static-shape hook of exports: :meth:`freeze_input_size` computes the bicubically resized
    embedding once and keeps it as the non-persistent buffer ``frozen_pos_embed`` (checkpoints are unchanged), so a
    traced graph reads a constant instead of resizing. It is for inference: call it after the weights are loaded
    (it copies them), and :meth:`unfreeze_input_size` to take any size again. A frozen module refuses other sizes
    with a :class:`~anydepth.errors.ShapeError`.

    Users set ``pos_embed``, ``patch_size``, ``interpolate_offset`` and ``_pos_cache`` (a :class:`PosEmbedCache`).
    """

    pos_embed: nn.Parameter
    patch_size: int
    interpolate_offset: float
    _pos_cache: PosEmbedCache
    frozen_grid: Optional[Tuple[int, int]] = None  # (grid_h, grid_w) while frozen
    fast_paths = True  # the precision policy's: whether the resize cache may serve

    def set_precision(self, policy: PrecisionPolicy) -> None:
        self.fast_paths = policy.fast_paths

    def freeze_input_size(self, height: int, width: int) -> None:
        """Fix the input size to ``height`` x ``width`` pixels (multiples of the patch size)."""
        p = self.patch_size
        if height <= 0 or width <= 0 or height % p or width % p:
            raise ShapeError(f"freeze_input_size({height}, {width}): both sides must be positive multiples of {p}")
        grid = (int(height) // p, int(width) // p)
        with torch.no_grad():
            table = resize_pos_embed(self.pos_embed, *grid, self.interpolate_offset).detach().clone()
        self.register_buffer("frozen_pos_embed", table, persistent=False)  # type: ignore[attr-defined]
        self.frozen_grid = grid

    def unfreeze_input_size(self) -> None:
        """Take any input size again (the position embedding is resized per call)."""
        self._buffers.pop("frozen_pos_embed", None)  # type: ignore[attr-defined]
        self.frozen_grid = None

    def interpolate_pos_encoding(self, grid_h: int, grid_w: int) -> Tensor:
        """Position embedding (1, 1 + grid_h * grid_w, D) for a patch grid (see :func:`resize_pos_embed`)."""
        if self.frozen_grid is not None:
            if (int(grid_h), int(grid_w)) != self.frozen_grid:
                p = self.patch_size
                frozen_h, frozen_w = self.frozen_grid
                raise ShapeError(
                    f"this network is frozen to {frozen_h * p}x{frozen_w * p} inputs (freeze_input_size), not "
                    f"{int(grid_h) * p}x{int(grid_w) * p}; call unfreeze_input_size() to run other sizes"
                )
            return self.frozen_pos_embed  # type: ignore[attr-defined,no-any-return]
        return self._pos_cache(self.pos_embed, grid_h, grid_w, self.interpolate_offset, self.fast_paths)


class DinoVisionTransformer(FreezablePositionGrid, nn.Module):
    """DINOv2 backbone. Keys: cls_token, pos_embed, mask_token, patch_embed.proj, blocks.{i}, norm.

    :meth:`freeze_input_size` fixes the input size for static-shape exports (see :class:`FreezablePositionGrid`).
    """

    def __init__(self, cfg: DinoV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.interpolate_offset = cfg.interpolate_offset
        self.patch_embed = PatchEmbed(cfg.patch_size, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pos_grid**2 + 1, D))
        # unused at inference, but stored in every official checkpoint
        self.mask_token = nn.Parameter(torch.zeros(1, D))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self._pos_cache = PosEmbedCache()

    compute_dtype: Optional[torch.dtype] = None  # of the blocks: set by PrecisionPolicy.apply (set_precision)

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def set_precision(self, policy: PrecisionPolicy) -> None:
        super().set_precision(policy)  # the position-embedding cache
        self.compute_dtype = policy.compute_dtype

    def prepare_tokens(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 1 + N, D) with the class token first and position embeddings added."""
        B, _, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(B, -1, -1).to(tokens.dtype), tokens), dim=1)
        return tokens + self.interpolate_pos_encoding(H // p, W // p).to(tokens.dtype)

    def get_intermediate_layers(self, x: Tensor, layers: Sequence[int]) -> List[Tuple[Tensor, Tensor]]:
        """Normed outputs of the given blocks.

        Args:
            x: (B, 3, H, W) normalised image, H and W multiples of the patch size.
            layers: block indices to return, ascending.

        Returns:
            one ``(patch_tokens (B, N, D), class_token (B, D))`` pair per requested block.
        """
        wanted = sorted(set(int(i) for i in layers))
        if not wanted or wanted[-1] >= len(self.blocks) or wanted[0] < 0:
            raise ValueError(f"layers {list(layers)} out of range for {len(self.blocks)} blocks")
        with precision_region(x.device, self.compute_dtype):  # the mixed region of the precision policy
            tokens = self.prepare_tokens(x)
            taken = {}
            for i, block in enumerate(self.blocks[: wanted[-1] + 1]):
                tokens = block(tokens)
                if i in wanted:
                    taken[i] = self.norm(tokens)
        return [(taken[i][:, 1:], taken[i][:, 0]) for i in layers]
