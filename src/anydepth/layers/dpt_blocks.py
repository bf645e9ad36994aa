"""DPT fusion blocks (residual conv units and feature fusion), in the key layout of the official heads."""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.layers.precision import PrecisionPolicy, fast_paths_enabled, float32_region, onednn_op

# oneDNN's convolution with a post-op
_FUSED_CONV = onednn_op("_convolution_pointwise")


def _fusable(conv: nn.Conv2d, x: Tensor, bf16_input: bool = False) -> bool:
    """Whether ``conv`` on ``x`` can take the fused kernel: float32 (or, with ``bf16_input``, bf16 where oneDNN
    has bf16 kernels) on the CPU, float32 weights, no grad, tracing or ``torch.compile``, the fast paths on in the
    process (``layers.precision.fast_paths_enabled``), and no forward hooks on the module (the fused kernel does not
    call it, so hooks would not see it run).

    The fused kernels do not follow autocast: the blocks that call them run in float32 regions (the DPT heads'
    fusion and output branches), where autocast is off.
    """
    dtype_ok = x.dtype == torch.float32 or (bf16_input and x.dtype == torch.bfloat16 and _bf16_conv_supported())
    return (
        _FUSED_CONV is not None
        and dtype_ok
        and not conv._forward_hooks
        and not conv._forward_pre_hooks
        and x.device.type == "cpu"
        and conv.weight.dtype == torch.float32
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and fast_paths_enabled()
    )


@functools.cache
def _bf16_conv_supported() -> bool:
    """Whether oneDNN's fused convolution runs bf16 here (it needs AVX512 or AVX-NE-CONVERT and raises on an AVX2
    CPU); tried once on a tiny input, which also catches ``ONEDNN_MAX_CPU_ISA`` held below the CPU."""
    if _FUSED_CONV is None:
        return False
    try:
        x = torch.ones(1, 2, 3, 3, dtype=torch.bfloat16)
        _FUSED_CONV(x, torch.ones(2, 2, 1, 1, dtype=torch.bfloat16), None, [0, 0], [1, 1], [1, 1], 1, "relu", [], "")
    except (RuntimeError, NotImplementedError):
        return False
    return True


def _conv_args(conv: nn.Conv2d) -> Tuple[Any, ...]:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def conv_relu(conv: nn.Conv2d, x: Tensor, fast_path: bool = True) -> Tensor:
    """``relu(conv(x))``; on float32 CPU inference in one oneDNN kernel (ReLU as a post-op: the same arithmetic,
    float32 rounding apart where oneDNN picks another kernel for the fused call). ``fast_path=False`` (a
    module's precision policy) runs the two operations."""
    if fast_path and _fusable(conv, x):
        return _FUSED_CONV(x, conv.weight, conv.bias, *_conv_args(conv), "relu", [], "")
    return conv(x).relu_()


def conv_add(conv: nn.Conv2d, x: Tensor, other: Tensor, fast_path: bool = True) -> Tensor:
    """``conv(x) + other``; on float32 CPU inference in one oneDNN kernel (a binary post-op: the same arithmetic,
    float32 rounding apart where oneDNN picks another kernel for the fused call). ``fast_path=False`` (a
    module's precision policy) runs the two operations."""
    if fast_path and _fusable(conv, x) and other.dtype == torch.float32 and other.device == x.device:
        return _FUSED_CONV.binary(x, other, conv.weight, conv.bias, *_conv_args(conv), "add", None, None, [], None)
    return _add_into(conv(x), other)


def token_map(tokens: Tensor, grid_h: int, grid_w: int) -> Tensor:
    """(n, grid_h * grid_w, C) patch tokens -> (n, C, grid_h, grid_w) map, channels-last in memory.

    Channels-last maps take oneDNN's direct convolution path and every later convolution keeps the layout. The
    strides must be the canonical ones: ``tokens.transpose(1, 2).reshape(...)`` at n = 1 has a batch stride of C,
    which ``is_contiguous(channels_last)`` accepts but oneDNN does not, so every convolution of a one-image head
    then ran in NCHW with a reorder before and after (a large share of the V2 head's time; benchmarks/RESULTS.md).
    """
    n, _, c = tokens.shape
    return tokens.reshape(n, grid_h, grid_w, c).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


class ResidualConvUnit(nn.Module):
    """ReLU -> conv3x3 -> ReLU -> conv3x3, plus the input. Keys ``conv1`` / ``conv2``."""

    fast_paths = True  # the precision policy's (set_precision)

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def set_precision(self, policy: PrecisionPolicy) -> None:
        self.fast_paths = policy.fast_paths

    def forward(self, x: Tensor) -> Tensor:
        # the inner ReLU and the residual addition run inside the convolutions where they can (conv_relu, conv_add)
        fast = self.fast_paths
        return conv_add(self.conv2, conv_relu(self.conv1, F.relu(x), fast), x, fast)


class FeatureFusionBlock(nn.Module):
    """Fuses a coarser path with a skip feature, projects with a 1x1 conv, and upsamples.

    Keys ``resConfUnit1`` (applied to the skip input), ``resConfUnit2`` and ``out_conv``. The deepest block of
    the Depth Anything V2 heads has no skip input but still stores ``resConfUnit1``; the Depth Anything 3 heads
    do not store it there (``has_skip=False``).
    """

    def __init__(self, features: int, align_corners: bool = True, has_skip: bool = True) -> None:
        super().__init__()
        self.align_corners = align_corners
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(
        self,
        x: Tensor,
        skip: Optional[Tensor] = None,
        size: Optional[Tuple[int, int]] = None,
        out_dtype: Optional[torch.dtype] = None,
    ) -> Tensor:
        """Fuse, project and upsample; ``out_dtype`` casts the projected map before the upsampling (which then
        runs in that precision, on a quarter of the pixels of its output)."""
        if skip is not None:
            x = _add_into(self.resConfUnit1(skip), x)
        # the 1x1 projection runs before the bilinear upsampling, on a quarter of the pixels: both are linear and
        # bilinear weights sum to one, so the order does not change the result (beyond float rounding)
        x = self.out_conv(self.resConfUnit2(x))
        if out_dtype is not None:
            x = x.to(out_dtype)
        if size is None:
            return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=self.align_corners)
        return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=self.align_corners)


def _add_into(fresh: Tensor, other: Tensor) -> Tensor:
    """``fresh + other`` written into ``fresh`` (a temporary of the caller) where that gives the same tensor.

    Under autocast the two may differ in dtype; out-of-place addition then promotes as the reference does.
    Addition commutes bit for bit, so the in-place form equals ``other + fresh``.
    """
    if fresh.dtype == other.dtype and fresh.shape == other.shape and not fresh.requires_grad:
        return fresh.add_(other)
    return fresh + other


def make_projections(in_channels: int, out_channels: Sequence[int]) -> nn.ModuleList:
    """1x1 convs from the ViT width to each of the four DPT levels (keys ``projects.{i}``)."""
    return nn.ModuleList(nn.Conv2d(in_channels, c, kernel_size=1) for c in out_channels)


def make_resize_layers(out_channels: Sequence[int]) -> nn.ModuleList:
    """Per-level resampling to strides 4, 8, 16 and 32 of the image (keys ``resize_layers.{i}``)."""
    c0, c1, _, c3 = out_channels
    return nn.ModuleList(
        [
            nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4),
            nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),
        ]
    )


class OutputBranch(nn.Sequential):
    """conv3x3 -> ReLU -> conv1x1 as ``nn.Sequential`` keys ``.0`` / ``.2``; the ReLU runs inside the first conv
    where it can (:func:`conv_relu`).

    An input in a lower precision than the weights (a bf16 map of a mixed-precision DA3 head) runs the 3x3 conv in
    that precision and the last 1x1 conv, whose outputs are the logits, in the weights' precision: bf16 logits
    would lose precision that matters, as depth is their exponential (benchmarks/RESULTS.md).
    """

    fast_paths = True  # the precision policy's (set_precision)

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, out_channels, kernel_size=1),
        )

    def set_precision(self, policy: PrecisionPolicy) -> None:
        self.fast_paths = policy.fast_paths

    def forward(self, x: Tensor) -> Tensor:
        dtype = self[2].weight.dtype
        if x.dtype == dtype or not (x.device.type in ("cpu", "cuda") and x.is_floating_point()):
            return self[2](conv_relu(self[0], x, self.fast_paths))
        with torch.autocast(device_type=x.device.type, dtype=x.dtype):
            hidden = self[0](x).relu_()
        with float32_region(x.device):
            return self[2](hidden.to(dtype))

    def forward_plus(self, x: Tensor, extra: Tensor) -> Tensor:
        """``self(x + extra)`` for a (C, H, W) map ``extra`` added to every image of ``x`` (a temporary of the
        caller: it may be updated in place), as the DA3 heads add their UV embedding.

        On CPU inference the addition goes into the first convolution instead of over the image-sized input:
        ``conv(x + extra) = conv(x) + conv(extra)`` (zero padding pads the sum as it pads each term), and
        ``conv(extra)`` without the bias is computed once per map and weights; the kernel adds it and applies
        the ReLU as post-ops, image by image. The 1x1 convolution that gives the outputs runs in float32 on
        row blocks of each image's hidden map, converted as it is read instead of as a whole. The same
        arithmetic as ``self(x + extra)`` up to rounding (bf16 rounds ``x + extra`` once less).
        """
        conv, last = self[0], self[2]
        fast = (
            self.fast_paths
            and x.dim() == 4
            and tuple(extra.shape) == tuple(x.shape[1:])
            and _fusable(conv, x, bf16_input=True)
            and last.weight.dtype == torch.float32
            and last.kernel_size == (1, 1)
            and last.groups == 1
            and not (self._forward_hooks or self._forward_pre_hooks or last._forward_hooks or last._forward_pre_hooks)
        )
        if not fast:
            return self(x + extra if x.requires_grad else x.add_(extra.to(x.dtype)))
        weight, bias = conv.weight, conv.bias
        if x.dtype != weight.dtype:
            weight = weight.to(x.dtype)
            bias = None if bias is None else bias.to(x.dtype)
        mapped = self._mapped(extra, x)
        n, _, height, width = x.shape
        out = torch.empty((n, height, width, last.out_channels), dtype=last.weight.dtype, device=x.device)
        for i in range(n):
            hidden = _FUSED_CONV.binary(
                x[i : i + 1], mapped, weight, bias, *_conv_args(conv), "add", None, "relu", [], ""
            )
            _pointwise_rows(last, hidden, out[i])
        return out.permute(0, 3, 1, 2)

    _plus_cache: Optional[Tuple[Tensor, Tuple[Any, ...], Tensor]] = None

    def _mapped(self, extra: Tensor, x: Tensor) -> Tensor:
        """``conv(extra)`` without the bias, as one image in the dtype and memory format of ``x``; kept while
        ``extra`` (held, so that its storage is not reused), the weights and the format are unchanged."""
        conv = self[0]
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        stamp = (conv.weight.data_ptr(), conv.weight._version, x.dtype, channels_last)
        cached = self._plus_cache
        if cached is None or cached[0] is not extra or cached[1] != stamp:
            with torch.no_grad(), float32_region(x.device):
                image = extra[None].to(conv.weight.dtype)
                mapped = F.conv2d(image, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
            layout = torch.channels_last if channels_last else torch.contiguous_format
            self._plus_cache = cached = (extra, stamp, mapped.to(x.dtype).contiguous(memory_format=layout))
        return cached[2]


# rows of a 1x1 convolution's input converted to float32 at a time: 16,384 x 32 channels fill 2 MiB (a core's L2)
_POINTWISE_ROWS = 16384


def _pointwise_rows(conv: nn.Conv2d, x: Tensor, out: Tensor) -> None:
    """A 1x1 ``conv`` (float32 weights) on one image ``x`` (1, C, H, W), written into ``out`` (H, W, C_out) in the
    weights' dtype, in row blocks: a bf16 ``x`` is converted block by block while in cache."""
    channels = x.shape[1]
    rows = x.permute(0, 2, 3, 1).reshape(-1, channels)  # a view for a channels-last map
    dst = out.view(-1, out.shape[-1])
    weight = conv.weight.view(conv.out_channels, channels).t()
    for start in range(0, rows.shape[0], _POINTWISE_ROWS):
        block = rows[start : start + _POINTWISE_ROWS].to(weight.dtype)
        if conv.bias is None:
            torch.mm(block, weight, out=dst[start : start + _POINTWISE_ROWS])
        else:
            torch.addmm(conv.bias, block, weight, out=dst[start : start + _POINTWISE_ROWS])
