"""The precision policy of a network (compute dtype, float32 regions, fast paths) and the regions inside it.

A :class:`PrecisionPolicy` is applied to a network once, before it runs (:meth:`PrecisionPolicy.apply`): every
module whose arithmetic depends on the policy takes its settings then, through its ``set_precision(policy)``
method, and a forward never decides by the ambient autocast state or by a dtype threaded through its arguments.
The pipeline then runs the network inside :meth:`PrecisionPolicy.autocast`. Each hand-written fast path has a
plain twin: the policy's ``fast_paths=False`` forces the twins in one network, :func:`set_fast_paths` (or
``ANYDEPTH_FAST_PATHS=0``) in the whole process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, ContextManager, Iterator, Optional

import torch
from torch import nn

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def float32_region(device: torch.device) -> ContextManager:
    """Disable autocast on ``device`` inside the block (a no-op where autocast does not apply)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def active_autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The dtype autocast casts to on ``device`` at this point, or None where autocast is off (for tests and
    diagnostics: the networks take their precision from a :class:`PrecisionPolicy`, not from this)."""
    kind = device.type
    if kind not in ("cpu", "cuda") or torch.jit.is_tracing() or torch.jit.is_scripting():
        return None
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    if kind == "cpu":  # torch 1.13 .. 2.3
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


@dataclasses.dataclass(frozen=True)
class PrecisionPolicy:
    """How a network runs: the dtype of its mixed regions, the regions that stay float32, and its fast paths.

    The default is float32 end to end with the fast paths allowed, which is also how a network runs that no
    policy was applied to.

    Attributes:
        compute_dtype: the autocast dtype of the mixed regions (the ViT backbones: attention and MLPs); None for
            float32 everywhere. The heads of Depth Anything V2 and Video Depth Anything, the DA3 camera and
            Gaussian modules stay float32 whatever this says (the networks' ``float32_submodules``).
        float32_patch_embed: under mixed precision the patch embedding still runs in its weights' precision
            (float32): rounded to bf16 they shift DA3's depth scale (``models.dinov2.PatchEmbed``).
        mixed_head: under bf16, the DA3 heads run their reassembly and the main map up to the last conv before
            the logits in bf16 (:func:`reassembly_precision`); their fusion, logits and ray branch stay float32.
            fp16 keeps the heads float32 whatever this says.
        fast_paths: the hand-written fast paths may run. Each has a plain twin that runs instead when this is
            False (see :func:`fast_paths_enabled`, which also turns them off, for the whole process).
    """

    compute_dtype: Optional[torch.dtype] = None
    float32_patch_embed: bool = True
    mixed_head: bool = True
    fast_paths: bool = True

    def __post_init__(self) -> None:
        if self.compute_dtype not in _DTYPES.values():
            raise ValueError(f"compute_dtype must be None, torch.bfloat16 or torch.float16, not {self.compute_dtype}")

    @classmethod
    def for_precision(cls, precision: str, **overrides: Any) -> PrecisionPolicy:
        """The policy of a concrete precision: "fp32", "bf16" or "fp16" (pipelines resolve "auto" first).

        >>> PrecisionPolicy.for_precision("bf16").compute_dtype
        torch.bfloat16
        """
        if precision not in _DTYPES:
            raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(_DTYPES)}")
        return cls(compute_dtype=_DTYPES[precision], **overrides)

    @classmethod
    def reference(cls) -> PrecisionPolicy:
        """Float32 with every fast path replaced by its plain twin (tests, exports, debugging)."""
        return cls(fast_paths=False)

    @property
    def mixed(self) -> bool:
        """Whether the mixed regions run in a lower precision than float32."""
        return self.compute_dtype is not None

    @property
    def head_dtype(self) -> Optional[torch.dtype]:
        """The precision of the DA3 heads' reassembly and main map (None: float32)."""
        return torch.bfloat16 if self.compute_dtype == torch.bfloat16 and self.mixed_head else None

    def float32(self) -> PrecisionPolicy:
        """This policy for a region that stays float32 (the fast-path setting carries over)."""
        return dataclasses.replace(self, compute_dtype=None)

    def autocast(self, device: torch.device) -> ContextManager:
        """Autocast to ``compute_dtype`` on ``device``; a no-op for float32 and on devices without autocast.

        A configured network enters it in its mixed regions by itself; pipelines also wrap the whole call in
        it, so that autocast's cache of cast weights spans the call rather than each region.
        """
        return precision_region(device, self.compute_dtype)

    def apply(self, network: nn.Module) -> nn.Module:
        """Configure ``network`` for this policy, once; returns it.

        Every module below ``network`` that defines ``set_precision(policy)`` gets this policy, or
        :meth:`float32` inside the submodules a module lists in ``float32_submodules``. The configuration stays
        until another policy is applied: the network's mixed regions then run in ``compute_dtype`` whether or
        not the caller wraps it in :meth:`autocast`. Applying the policy the network already has does nothing,
        so pipelines that share a network re-apply theirs before each call.
        """
        if getattr(network, "precision_policy", None) == self:
            return network
        _configure(network, self)
        network.precision_policy = self
        return network


def _configure(module: nn.Module, policy: PrecisionPolicy) -> None:
    set_precision = getattr(module, "set_precision", None)
    if callable(set_precision):
        set_precision(policy)
    float32_children = getattr(module, "float32_submodules", ())
    for name, child in module.named_children():
        _configure(child, policy.float32() if name in float32_children else policy)


# torch >= 2.1 (torch 1.x cannot compile); looked up once, as the fast paths ask on every call
_IS_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", None)


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing this code. The hand-fused CPU paths (the linear layers' cached bf16
    weights and oneDNN kernels, the fused convolutions) and the UV-embedding cache step aside then: the compiler
    fuses the plain ops itself, and it could not lower ``mkldnn._linear_pointwise`` under bf16 autocast (torch
    2.13)."""
    return _IS_COMPILING is not None and bool(_IS_COMPILING())


# The process-wide switch of the fast paths (see fast_paths_enabled); ANYDEPTH_FAST_PATHS=0 starts it off.
_fast_paths_on = os.environ.get("ANYDEPTH_FAST_PATHS", "1").strip() != "0"


def fast_paths_enabled(compilable: bool = False) -> bool:
    """Whether the fast paths may run in this process (a module also needs its policy's ``fast_paths``).

    They are, each with the plain twin that runs instead:

    - the linear layers' cached bf16 weights with bias and GELU inside oneDNN's matmul (``layers.linear``);
      twin: ``F.linear`` then ``F.gelu`` under autocast;
    - the DPT blocks' convolutions with ReLU or the residual addition as oneDNN post-ops (``layers.dpt_blocks``);
      twin: the convolution, then ``relu`` or ``+``;
    - the patch embedding as one matmul over unfolded patches in its float32 region (``models.dinov2``); twin:
      the strided convolution;
    - ``scaled_dot_product_attention`` (``layers.attention``); twin: the explicit softmax attention;
    - under mixed precision, the residual ``x + gamma * branch`` in one ``addcmul`` (``models.dinov2.Block``) and
      the cross-view RoPE as rotations of the camera tokens only (``models.da3.backbone``); twins: the product
      and the sum, the full RoPE tables;
    - the caches of the resized position embedding and of the DA3 heads' UV embeddings; twin: computing them.

    Off after :func:`set_fast_paths` (False) and from the start where the environment sets
    ``ANYDEPTH_FAST_PATHS=0``. The hand-fused oneDNN kernels are off while ``torch.compile`` traces too; paths
    made of plain torch ops that the compiler handles itself (``compilable``) stay on then.
    """
    return _fast_paths_on and (compilable or not compiling())


def set_fast_paths(enabled: bool) -> None:
    """Switch the fast paths on or off for the whole process (see :func:`fast_paths_enabled`)."""
    global _fast_paths_on
    _fast_paths_on = bool(enabled)


@contextlib.contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """Inside the block, the fast paths are on or off; the previous setting comes back after."""
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


def precision_region(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager:
    """Autocast to ``dtype`` on ``device`` inside the block; a no-op for None, float32, and devices without
    autocast. The mixed regions of a network (its ViT backbone) enter the compute dtype their precision policy
    set, so a configured network gives the policy's numbers however it is called."""
    if dtype is None or dtype == torch.float32 or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def reassembly_precision(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager:
    """Autocast to ``dtype`` for the reassembly convolutions of a DPT head (projections, resampling,
    ``layer*_rn``); float32 when None.

    The bf16 policy runs two parts of a DA3 head in bf16 (:attr:`PrecisionPolicy.mixed_head`): this reassembly,
    and the main map from the last fusion block's projection to the output branch's 3x3 conv (upsampling,
    ``output_conv1``, resize to the image, UV embedding). The fusion blocks, the 1x1 convs that give the logits
    and the ray branch stay float32; the patch embedding does too (``models.dinov2.PatchEmbed``). That split
    keeps the mean relative depth error against float32 within the 1% the "auto" precision allows, where a bf16
    fusion as well went over it; bf16 pays where the head's arithmetic is, in the reassembly and the main map.
    The measurements are in benchmarks/RESULTS.md ("DA3 head precision"). Depth Anything V2 keeps its whole
    head in float32 (see its forward).
    """
    return precision_region(device, dtype)
