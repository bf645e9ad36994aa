"""Deterministic random weights in any checkpoint layout, the same on every machine and torch/numpy version.

Used by the tests and by the scripts that run upstream code to make parity fixtures: both sides fill the same
key names from the same per-key seed, so no checkpoint file has to be stored. Depends on numpy and torch only,
so it also runs in the side environment that holds the upstream packages.
"""

from __future__ import annotations

import math
import zlib
from typing import Dict, Mapping, Sequence

import numpy as np
import torch


def _values(name: str, shape: Sequence[int], seed: int) -> np.ndarray:
    # legacy RandomState streams are frozen across numpy versions (numpy 1.x upstream side, 2.x ours)
    rng = np.random.RandomState((zlib.crc32(name.encode()) ^ seed) & 0x7FFFFFFF)
    shape = tuple(int(s) for s in shape)
    leaf = name.rsplit(".", 1)[-1]
    n = int(np.prod(shape)) if shape else 1
    if leaf in ("gamma", "lambda1"):  # layer scale: small, as after training
        return rng.uniform(0.05, 0.3, size=shape)
    if len(shape) == 1 and ("norm" in name or "layernorm" in name) and leaf == "weight":
        return 1.0 + 0.1 * rng.standard_normal(shape)
    if leaf == "bias":
        if shape == (1,):  # scalar output of a ReLU head: keep it alive
            return np.full(shape, 0.5)
        if "fc_fov" in name:  # ReLU'd field of view in radians: keep it near a real camera's, not clamped at 0
            return np.full(shape, 1.0)
        return 0.05 * rng.standard_normal(shape)
    if leaf in ("pos_embed", "position_embeddings"):
        return 0.5 * rng.standard_normal(shape)
    if leaf in ("cls_token", "mask_token", "camera_token", "register_tokens"):
        return 0.1 * rng.standard_normal(shape)
    if len(shape) >= 2:
        fan_in = n // shape[0]
        return rng.standard_normal(shape) / math.sqrt(max(fan_in, 1))
    return 0.05 * rng.standard_normal(shape)


def random_state_dict(shapes: Mapping[str, Sequence[int]], seed: int = 0) -> Dict[str, torch.Tensor]:
    """Float32 tensors for the given key names and shapes; each value depends only on (name, shape, seed)."""
    return {k: torch.from_numpy(_values(k, v, seed).astype(np.float32)) for k, v in shapes.items()}


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill a module's parameters and float buffers in place with :func:`random_state_dict` values."""
    sd = module.state_dict()
    new = random_state_dict({k: tuple(v.shape) for k, v in sd.items() if v.is_floating_point()}, seed)
    module.load_state_dict({**sd, **new}, strict=True)
    return module


@torch.no_grad()
def fill_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Like :func:`randomize_`, one tensor at a time: peak memory stays at the module's own size."""
    for name, tensor in module.state_dict(keep_vars=True).items():
        if tensor.is_floating_point():
            tensor.data.copy_(torch.from_numpy(_values(name, tuple(tensor.shape), seed).astype(np.float32)))
    return module


def shapes_of(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, list]:
    """``{key: shape}`` of a state dict, shapes as lists (JSON-ready), in state-dict order."""
    return {k: [int(s) for s in v.shape] for k, v in state_dict.items()}


def write_key_lists(path, tree: Mapping) -> None:
    """Write nested ``{group: ... {key: shape}}`` maps as JSON with one key per line (readable fixture diffs)."""
    import json
    from pathlib import Path

    def render(node, indent: int) -> str:
        if not isinstance(node, Mapping):
            return json.dumps(node)
        if not node:
            return "{}"
        pad = " " * (indent + 1)
        items = ",\n".join(f"{pad}{json.dumps(k)}: {render(v, indent + 1)}" for k, v in node.items())
        return "{\n" + items + "\n" + " " * indent + "}"

    path = Path(path)
    path.write_text(render(tree, 0) + "\n")
    assert json.loads(path.read_text()) == json.loads(json.dumps(tree))
