"""The native entry points: list the presets, load a model with its weights (networks: :mod:`anydepth.families`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import torch

from anydepth.errors import InputError
from anydepth.families import build_network, family_of, load_network, load_network_weights, resolve
from anydepth.pipelines.mono import MonoDepthModel
from anydepth.pipelines.runtime import (
    compile_network,
    resolve_device,
    resolve_precision,
    set_cpu_threads,
    tune_allocator,
)
from anydepth.presets import ModelInfo, get_preset, list_models

if TYPE_CHECKING:
    from anydepth.pipelines.depthcrafter.pipeline import DepthCrafterModel
    from anydepth.pipelines.multiview import MultiViewModel
    from anydepth.pipelines.video_depth import VideoDepthModel

__all__ = ["ModelInfo", "build_network", "list_models", "load_model", "load_network", "load_network_weights"]

logger = logging.getLogger(__name__)


def load_model(
    name: str,
    weights: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device] = "auto",
    precision: str = "auto",
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    local_files_only: bool = False,
    num_threads: Optional[int] = None,
    compile: bool = False,
    backend: str = "pytorch",
    svd_weights: Optional[Union[str, Path]] = None,
    cpu_offload: Optional[str] = None,
) -> Union[MonoDepthModel, MultiViewModel, VideoDepthModel, DepthCrafterModel]:
    """A ready-to-run model: :class:`MonoDepthModel` for V2 presets, :class:`MultiViewModel` for DA3 ones,
    :class:`~anydepth.pipelines.video_depth.VideoDepthModel` for Video Depth Anything (``vda-*``),
    :class:`~anydepth.pipelines.depthcrafter.pipeline.DepthCrafterModel` for ``depthcrafter``.

    Args:
        name: preset name (see :func:`list_models`).
        weights: local weights file or folder, or a hub repo id; None downloads the preset's weights from the
            Hugging Face hub into its cache (once).
        device: "auto", "cpu", "cuda", "cuda:1", "mps".
        precision: "fp32", "bf16", "fp16" or "auto" (bf16 where the hardware runs it natively).
        revision: hub branch, tag or commit.
        cache_dir: hub cache folder.
        local_files_only: use the hub cache only, never the network.
        num_threads: CPU threads for torch's kernels (None: torch's default, one per core).
        compile: run the network through ``torch.compile`` (torch >= 2 and, on the CPU, a C++ compiler; the
            first call of each input size compiles; for DepthCrafter its UNet). Off by default.
        backend: "pytorch", or a runtime for an artefact of ``anydepth export`` given as ``weights``:
            "onnxruntime", "openvino" or "torchscript" (see :mod:`anydepth.deploy.backends`).
        svd_weights: DepthCrafter only: Stable Video Diffusion's repo id or local folder (``vae/``,
            ``image_encoder/``, ``scheduler/``, ``feature_extractor/``); ``weights`` is then the DepthCrafter
            repo id or a folder holding ``unet/``. Needs ``pip install anydepth[depthcrafter]``.
        cpu_offload: DepthCrafter only: "model" or "sequential" (diffusers' CPU offloading, needs accelerate and
            CUDA), or None.

    Example:
        >>> model = anydepth.load_model("dav2-small", weights="depth_anything_v2_vits.pth")  # doctest: +SKIP
        >>> pred = model.infer("photo.jpg")  # doctest: +SKIP
        >>> pred.depth.shape, pred.depth_kind  # doctest: +SKIP
        ((1, 480, 640), 'disparity')
    """
    from anydepth.hub import resolve_weights

    set_cpu_threads(num_threads)
    if backend != "pytorch":
        from anydepth.deploy.backends import load_exported_model

        return load_exported_model(name, weights, backend, device=device, precision=precision)
    preset = get_preset(name)
    family = family_of(preset)
    if family.loader is not None:  # several networks, loaded by the family's own loader
        return resolve(family.loader)(
            preset, weights, svd_weights, device, precision, revision, cache_dir, local_files_only, cpu_offload, compile
        )
    if svd_weights is not None or cpu_offload is not None:
        raise InputError(f"svd_weights and cpu_offload are DepthCrafter options; {name} takes neither")
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    path = resolve_weights(preset, weights, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    net = load_network_weights(build_network(preset, init=False), preset, path).to(dev).eval()
    if compile:
        net = compile_network(net, dev)
    logger.info("loaded %s from %s on %s (%s)", preset.name, path, dev, prec)
    if dev.type == "cpu" and family.task in ("image", "scene"):
        tune_allocator("keep")  # repeated inference at one size; the video jobs choose "release"
    return resolve(family.pipeline)(net, preset, dev, prec)
