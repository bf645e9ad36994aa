"""Trained weights written in the family's official checkpoint layout, so every loader takes them as it takes the
official files (``anydepth.load_model(preset, weights=path)``, ``--weights`` on every command, exports).

- Depth Anything V2 and Video Depth Anything: a ``.pth`` state dict; our key layout is the official one.
- Depth Anything 3: a hub-style folder, ``config.json`` (``{"model_name": <upstream config>}``) and
  ``model.safetensors`` whose keys carry the ``model.`` prefix of upstream's API wrapper and hold the DualDPT
  head's shared LayerNorm once: the inverse of :func:`anydepth.checkpoints.convert_da3_state_dict`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Dict, Union

import torch
from torch import Tensor, nn

from anydepth.errors import InputError
from anydepth.io.atomic import atomic_path
from anydepth.presets import Preset

StateDict = Dict[str, Tensor]
# the aliases of the one LayerNorm the DualDPT head shares between its aux levels (see models/da3/heads.py)
_SHARED_AUX_NORM = re.compile(r"^(?P<prefix>.*scratch\.output_conv2_aux\.)(?P<level>\d+)\.2\.(?P<leaf>weight|bias)$")


def _plain_state(net: nn.Module) -> StateDict:
    """The network's state dict on the CPU, detached and contiguous (safetensors refuses strided views)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}


def official_da3_state_dict(state: StateDict) -> StateDict:
    """Our DA3 network's state dict in the hub file's layout: ``model.`` before every key, and each shared aux
    LayerNorm kept under its lowest level only (what safetensors' ``save_model`` keeps of tied tensors).

    The inverse of :func:`anydepth.checkpoints.convert_da3_state_dict`::

        convert_da3_state_dict(official_da3_state_dict(sd)) == sd   (same keys, same values)
    """
    lowest: Dict[tuple, int] = {}
    for key in state:
        match = _SHARED_AUX_NORM.match(key)
        if match:
            group = (match["prefix"], match["leaf"])
            lowest[group] = min(lowest.get(group, int(match["level"])), int(match["level"]))
    out: StateDict = {}
    for key, value in state.items():
        match = _SHARED_AUX_NORM.match(key)
        if match and int(match["level"]) != lowest[(match["prefix"], match["leaf"])]:
            continue  # an alias of the stored level: the loader recreates it
        out["model." + key] = value.clone()  # no storage shared with the network or between keys
    return out


def _save_pth(net: nn.Module, preset: Preset, out: Path) -> Path:
    name = preset.weights.filename if preset.weights is not None else f"{preset.name}.pth"
    path = out / name
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":  # the built-in model's file: the same keys in the format its name says
            from safetensors.torch import save_file

            save_file(_plain_state(net), str(tmp), metadata={"format": "pt"})
        else:
            torch.save(_plain_state(net), str(tmp))
    return path


def _save_da3(net: nn.Module, preset: Preset, out: Path) -> Path:
    from safetensors.torch import save_file

    if preset.arch is None:
        raise InputError(f"{preset.name}: a DA3 preset without an upstream configuration name")
    folder = out / preset.name
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(official_da3_state_dict(_plain_state(net)), str(tmp), metadata={"format": "pt"})
    with atomic_path(folder / "config.json") as tmp:
        Path(tmp).write_text(json.dumps({"model_name": preset.arch}, indent=1))
    return folder


WRITERS: Dict[str, Callable[[nn.Module, Preset, Path], Path]] = {"dav2": _save_pth, "vda": _save_pth, "da3": _save_da3}
"""Family name -> the writer of its official layout."""


def save_official_weights(net: nn.Module, preset: Preset, out: Union[str, Path]) -> Path:
    """Write ``net``'s weights under ``out`` in ``preset``'s official layout; returns what ``--weights`` takes.

    Returns:
        V2 / Video Depth Anything: ``<out>/<official file name>`` (``depth_anything_v2_vits.pth``), so the file
        also names its preset; DA3: the folder ``<out>/<preset>/`` with ``config.json`` and ``model.safetensors``.
        Each file is written to a temporary name and renamed, never left half-written.
    """
    try:
        writer = WRITERS[preset.family]
    except KeyError:
        raise InputError(f"{preset.name}: no writer of the {preset.family} checkpoint layout") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return writer(net, preset, out)
