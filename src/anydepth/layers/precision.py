"""Regions of a network that must run in float32 even when the caller enabled autocast."""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional

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
