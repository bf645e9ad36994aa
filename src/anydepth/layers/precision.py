"""Precision regions inside a network: float32 where autocast must not apply, bf16 where the policy allows it."""

from __future__ import annotations

import contextlib
import os
from typing import Any, ContextManager, Iterator, Optional

import torch


def float32_region(device: torch.device) -> ContextManager:
    """Disable autocast on ``device`` inside the block (a no-op where autocast does not apply)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def active_autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The dtype autocast casts to on ``device`` at this point, or None where autocast is off."""
    kind = device.type
    if kind not in ("cpu", "cuda") or torch.jit.is_tracing() or torch.jit.is_scripting():
        return None
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    if kind == "cpu":  # torch 1.13 .. 2.3
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


# torch >= 2.1 (torch 1.x cannot compile); looked up once, as the fast paths ask on every call
_IS_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", None)


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing this code. The hand-fused CPU paths (the linear layers' cached bf16
    weights and oneDNN kernels, the fused convolutions) and the UV-embedding cache step aside then: the compiler
    fuses the plain ops itself, and it could not lower ``mkldnn._linear_pointwise`` under bf16 autocast (torch
    2.13)."""
    return _IS_COMPILING is not None and bool(_IS_COMPILING())


# The switch for the hand-written CPU fast paths (see fast_paths_enabled); ANYDEPTH_FAST_PATHS=0 starts it off.
_fast_paths_on = os.environ.get("ANYDEPTH_FAST_PATHS", "1").strip() != "0"


def fast_paths_enabled() -> bool:
    """Whether the hand-written CPU fast paths may run.

    They are: the linear layers' cached bf16 weights with bias and GELU inside oneDNN's matmul
    (``layers.linear``), the DPT heads' convolutions with ReLU or the residual addition as oneDNN post-ops
    (``layers.dpt_blocks``), and the patch embedding as one matmul under mixed precision (``models.dinov2``). Each
    has a plain twin that runs instead when this is False: ``F.linear`` then ``F.gelu`` under autocast, the
    convolution then ``relu`` or ``+``, the strided convolution. Off while ``torch.compile`` traces, after
    :func:`set_fast_paths` (False), and from the start where the environment sets ``ANYDEPTH_FAST_PATHS=0``.
    """
    return _fast_paths_on and not compiling()


def set_fast_paths(enabled: bool) -> None:
    """Switch the hand-written CPU fast paths on or off for the whole process (see :func:`fast_paths_enabled`)."""
    global _fast_paths_on
    _fast_paths_on = bool(enabled)


@contextlib.contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """Inside the block, the hand-written CPU fast paths are on or off; the previous setting comes back after."""
    before = _fast_paths_on
    set_fast_paths(enabled)
    try:
        yield
    finally:
        set_fast_paths(before)


def onednn_op(name: str) -> Any:
    """``torch.ops.mkldnn.<name>`` (oneDNN kernels with fused post-ops, those torch.compile uses on CPUs), or None
    where the build lacks it (torch 1.x, builds without oneDNN)."""
    try:
        return getattr(torch.ops.mkldnn, name)
    except (AttributeError, RuntimeError):
        return None


def reassembly_precision(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager:
    """Autocast to ``dtype`` for the reassembly convolutions of a DPT head (projections, resampling,
    ``layer*_rn``); float32 when None.

    The "auto" policy runs two parts of a DA3 head in bf16: this reassembly, and the main map from the last fusion
    block's projection to the output branch's 3x3 conv (upsampling, ``output_conv1``, resize to the image, UV
    embedding). The fusion blocks, the 1x1 convs that give the logits and the ray branch stay float32; the patch
    embedding does too (``models.dinov2.PatchEmbed``). Mean relative depth error against float32 on random
    DA3-small weights, 4 views of 640x480 at 504 px (tests/test_precision_da3.py, benchmarks/RESULTS.md):

    - this policy: 0.36-0.83% over eight weight seeds;
    - with the fusion in bf16 as well: 0.54-1.06% over four of them, over the 1% limit;
    - the previous policy (bf16 patch embedding, float32 from the fusion on): 0.26-1.00% over the eight.

    Depth Anything V2 keeps its whole head in float32 (see its forward). On this 2-core AMX CPU the bf16
    reassembly takes 55 ms instead of 128 ms in DA3-small's head (4 views at 504), and the bf16 main map about
    60 ms less than float32 (a 6.8% shorter forward, paired runs).
    """
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
