"""DPT fusion blocks (residual conv units and feature fusion), in the key layout of the official heads."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.layers.precision import PrecisionPolicy, fast_paths_enabled, float32_region, onednn_op

# oneDNN's convolution with a post-op
_FUSED_CONV = onednn_op("_convolution_pointwise")


def _fusable(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether ``conv`` on ``x`` can take the fused kernel: float32 on the CPU, no grad, tracing or
    ``torch.compile``, the fast paths on in the process (``layers.precision.fast_paths_enabled``), and no forward
    hooks on the module (the fused kernel does not call it, so hooks would not see it run).

    The fused kernels do not follow autocast: the blocks that call them run in float32 regions (the DPT heads'
    fusion and output branches), where autocast is off.
    """
    return (
        _FUSED_CONV is not None
        and not conv._forward_hooks
        and not conv._forward_pre_hooks
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and fast_paths_enabled()
    )


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
