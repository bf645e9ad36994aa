"""``nn.Linear`` with a CPU bf16 fast path: weights cast once, bias and GELU applied inside oneDNN's matmul."""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.layers.precision import PrecisionPolicy, fast_paths_enabled, onednn_op

# oneDNN's linear with bias and a post-op
_FUSED = onednn_op("_linear_pointwise")


@functools.cache
def fused_bf16_linear_supported() -> bool:
    """Whether oneDNN's fused linear runs bf16 on this CPU: it needs AVX512 (BW, VL, DQ) or AVX-NE-CONVERT, and
    raises elsewhere (an AVX2-only CPU asked for bf16). Tried once on a tiny input, which also catches a oneDNN
    that cannot build the kernel (``ONEDNN_MAX_CPU_ISA`` below the CPU's ISA)."""
    if _FUSED is None:
        return False
    check = onednn_op("_is_mkldnn_bf16_supported")
    if check is not None and not check():
        return False
    try:
        x = torch.ones(2, 8, dtype=torch.bfloat16)
        _FUSED(x, torch.ones(4, 8, dtype=torch.bfloat16), torch.zeros(4, dtype=torch.bfloat16), "gelu", [], "none")
    except RuntimeError:
        return False
    return True


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) that can apply GELU, with a CPU bf16 fast path.

    Under a bf16 :class:`~anydepth.layers.precision.PrecisionPolicy` (run inside its autocast), on the CPU,
    without grad and outside tracing:

    - the weight and bias are cast to bf16 once and kept while the parameters are unchanged (same storage and
      version counter), instead of on every call as autocast does (a sizeable share of a small backbone's time
      on a CPU). The bf16 copy holds half the memory of the float32 weights besides them;
    - bias and GELU run inside oneDNN's matmul (``torch.ops.mkldnn._linear_pointwise``, exact erf GELU on the
      float32 accumulator) instead of a broadcast copy of the bias and a separate pass over the output.

    The result equals autocast's ``F.linear`` up to bf16 rounding of the output (the GELU is applied before it).
    Where the CPU lacks oneDNN's bf16 kernels (:func:`fused_bf16_linear_supported`) the cached weights go through
    ``F.linear``. Elsewhere (float32 or fp16 policies, CUDA, grad, tracing, ``torch.compile``, the fast paths
    off in the policy or the process) this is ``F.linear`` followed by ``F.gelu``.
    """

    _bf16: Optional[Tuple[Tuple[Any, ...], Tensor, Optional[Tensor]]] = None
    # set by PrecisionPolicy.apply: the policy's compute dtype and whether its fast paths may run
    compute_dtype: Optional[torch.dtype] = None
    fast_paths: bool = True

    def set_precision(self, policy: PrecisionPolicy) -> None:
        self.compute_dtype = policy.compute_dtype
        self.fast_paths = policy.fast_paths

    def bf16_copy_bytes(self) -> int:
        """Bytes of the bf16 copy of the weight and bias that this layer holds, or will hold from its first call
        under its present policy (a float32 CPU weight, a bf16 policy, the fast paths on); 0 otherwise.

        Memory budgets count it with the parameters (:func:`anydepth.web.models.model_bytes`): it is half the
        float32 weights again, for as long as the model stays loaded.
        """
        if self._bf16 is not None:
            return sum(t.numel() * t.element_size() for t in self._bf16[1:] if t is not None)
        will_cache = (
            self.compute_dtype == torch.bfloat16
            and self.fast_paths
            and self.weight.device.type == "cpu"
            and self.weight.dtype == torch.float32
            and fast_paths_enabled()
        )
        if not will_cache:
            return 0
        return 2 * (self.weight.numel() + (0 if self.bias is None else self.bias.numel()))

    def forward(self, x: Tensor, activation: str = "none") -> Tensor:  # type: ignore[override]
        operands = self._bf16_operands(x)
        if operands is None:
            out = F.linear(x, self.weight, self.bias)
            return F.gelu(out) if activation == "gelu" else out
        weight, bias = operands
        x = x.to(torch.bfloat16)
        if fused_bf16_linear_supported():
            return _FUSED(x, weight, bias, activation, [], "none")
        out = F.linear(x, weight, bias)
        return F.gelu(out) if activation == "gelu" else out

    def _bf16_operands(self, x: Tensor) -> Optional[Tuple[Tensor, Optional[Tensor]]]:
        if (
            self.compute_dtype != torch.bfloat16
            or not self.fast_paths
            or x.device.type != "cpu"
            or self.weight.dtype != torch.float32
            or torch.is_grad_enabled()  # the cached copies are detached
            or torch.jit.is_tracing()  # they would enter the graph as constants
            or torch.jit.is_scripting()
            or not fast_paths_enabled()
        ):
            return None
        stamp: Tuple[Any, ...] = (self.weight.data_ptr(), self.weight._version)
        if self.bias is not None:
            stamp += (self.bias.data_ptr(), self.bias._version)
        if self._bf16 is None or self._bf16[0] != stamp:
            bias = None if self.bias is None else self.bias.detach().to(torch.bfloat16)
            self._bf16 = (stamp, self.weight.detach().to(torch.bfloat16), bias)
        return self._bf16[1], self._bf16[2]
