"""Regions of a network that must run in float32 even when the caller enabled autocast."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def float32_region(device: torch.device) -> ContextManager:
    """Disable autocast on ``device`` inside the block (a no-op where autocast does not apply)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
