"""``nn.Linear`` with a CPU bf16 fast path: weights cast once, bias and GELU applied inside oneDNN's matmul."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.layers.precision import active_autocast_dtype, compiling, onednn_op

# oneDNN's linear with bias and a post-op
_FUSED = onednn_op("_linear_pointwise")


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) that can apply GELU, with a CPU bf16 fast path.

    Under CPU bf16 autocast, without grad and outside tracing:

    - the weight and bias are cast to bf16 once and kept while the parameters are unchanged (same storage and
      version counter), instead of on every call as autocast does (for DA3-small about 45 ms per call of 4
      views on a 2-core CPU). The bf16 copy holds half the memory of the float32 weights besides them;
    - bias and GELU run inside oneDNN's matmul (``torch.ops.mkldnn._linear_pointwise``, exact erf GELU on the
      float32 accumulator) instead of a broadcast copy of the bias and a separate pass over the output.

    The result equals autocast's ``F.linear`` up to bf16 rounding of the output (the GELU is applied before it).
    Elsewhere (float32, CUDA, fp16, grad, tracing, ``torch.compile``) this is ``F.linear`` followed by ``F.gelu``.
    """

    _bf16: Optional[Tuple[Tuple[Any, ...], Tensor, Optional[Tensor]]] = None

    def forward(self, x: Tensor, activation: str = "none") -> Tensor:  # type: ignore[override]
        operands = self._bf16_operands(x)
        if operands is None:
            out = F.linear(x, self.weight, self.bias)
            return F.gelu(out) if activation == "gelu" else out
        weight, bias = operands
        x = x.to(torch.bfloat16)
        if _FUSED is not None:
            return _FUSED(x, weight, bias, activation, [], "none")
        out = F.linear(x, weight, bias)
        return F.gelu(out) if activation == "gelu" else out

    def _bf16_operands(self, x: Tensor) -> Optional[Tuple[Tensor, Optional[Tensor]]]:
        if (  # no autocast dtype under tracing or scripting
            x.device.type != "cpu"
            or self.weight.dtype != torch.float32
            or torch.is_grad_enabled()
            or active_autocast_dtype(x.device) != torch.bfloat16
            or compiling()
        ):
            return None
        stamp: Tuple[Any, ...] = (self.weight.data_ptr(), self.weight._version)
        if self.bias is not None:
            stamp += (self.bias.data_ptr(), self.bias._version)
        if self._bf16 is None or self._bf16[0] != stamp:
            bias = None if self.bias is None else self.bias.detach().to(torch.bfloat16)
            self._bf16 = (stamp, self.weight.detach().to(torch.bfloat16), bias)
        return self._bf16[1], self._bf16[2]
