"""Model families: one record per family says how its networks are built, loaded, run and exported.

Adding a family is one row in :data:`FAMILIES`: a builder (preset -> untrained ``nn.Module``), a checkpoint
converter (official key layout -> ours), the pipeline class that runs it, and, where it can be exported, the
static-shape wrapper and the runtime of its artefacts. The pipeline, deployment and loader entries are named as
``"module:attribute"`` and imported on first use: the deployment package imports this module (to build and load
networks), and importing it stays cheap.

Everything above this module asks a family what it does (:attr:`Family.task`) instead of comparing its name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from anydepth.checkpoints import (
    complete_vda_state_dict,
    convert_da3_state_dict,
    convert_hf_to_v2,
    detect_v2_layout,
    load_strict,
    read_state_dict,
    skip_random_init,
)
from anydepth.errors import InputError, UnknownModelError
from anydepth.presets import Preset, get_preset

StateDict = Dict[str, Tensor]

TASKS = ("image", "scene", "video")
"""What a family's model does with its inputs: "image" (depth of each image on its own), "scene" (images are views
of one scene: depth and cameras), "video" (temporally consistent depth of a whole video)."""


def resolve(ref: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the name presets carry in :attr:`~anydepth.presets.Preset.family`.
        task: one of :data:`TASKS`.
        title: how listings and messages name the family.
        build: preset -> the network with untrained weights; None where the model is several networks loaded
            together (``loader`` then builds it).
        convert: (state dict as read, preset, network) -> the state dict in our key layout.
        pipeline: the pipeline class, ``Class(net, preset, device, precision)``, that runs a loaded network.
        loader: a function that loads the whole model itself, for families without a single network; it takes
            :func:`anydepth.load_model`'s keywords.
        static_export: the deployment wrapper, ``fn(net, preset, request) -> StaticExport``; None: not exportable.
        exported_runtime: ``fn(net_runner, manifest, preset, device, backend)`` -> the pipeline that runs an
            exported artefact.
        single_view_archs: for "scene" families, the architectures that take one view only (monocular heads).
    """

    name: str
    task: str
    title: str
    build: Optional[Callable[[Preset], nn.Module]]
    convert: Callable[[StateDict, Preset, nn.Module], StateDict]
    pipeline: str
    loader: Optional[str] = None
    static_export: Optional[str] = None
    exported_runtime: Optional[str] = None
    single_view_archs: tuple = ()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"family {self.name}: task {self.task!r} is not one of {TASKS}")

    @property
    def exportable(self) -> bool:
        return self.static_export is not None

    def takes_views(self, preset: Preset) -> bool:
        """Whether the preset's network takes several views of one scene at once."""
        return self.task == "scene" and preset.arch not in self.single_view_archs


def _build_v2(preset: Preset) -> nn.Module:
    from anydepth.models.depth_anything_v2 import DepthAnythingV2Net

    return DepthAnythingV2Net(preset.config())


def _build_da3(preset: Preset) -> nn.Module:
    from anydepth.models.da3.network import build_da3_network

    return build_da3_network(preset.arch)


def _build_vda(preset: Preset) -> nn.Module:
    from anydepth.models.video_depth_anything import VideoDepthAnythingConfig, VideoDepthAnythingNet

    return VideoDepthAnythingNet(VideoDepthAnythingConfig.from_encoder(preset.encoder))


def _convert_v2(sd: StateDict, preset: Preset, net: nn.Module) -> StateDict:
    """The official ``.pth`` loads as it is; the transformers ``-hf`` layout goes through its key table."""
    if detect_v2_layout(sd) != "hf":
        return sd
    config = preset.config()
    return convert_hf_to_v2(sd, depth=config.encoder.depth, swiglu=config.encoder.ffn == "swiglu")


def _convert_da3(sd: StateDict, preset: Preset, net: nn.Module) -> StateDict:
    return convert_da3_state_dict(sd)


def _convert_vda(sd: StateDict, preset: Preset, net: nn.Module) -> StateDict:
    return complete_vda_state_dict(sd, net)


def _not_one_network(sd: StateDict, preset: Preset, net: nn.Module) -> StateDict:
    raise InputError(f"{preset.name} is several networks in diffusers folders; load it with anydepth.load_model")


FAMILIES: Dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="dav2",
            task="image",
            title="Depth Anything V2",
            build=_build_v2,
            convert=_convert_v2,
            pipeline="anydepth.pipelines.mono:MonoDepthModel",
            static_export="anydepth.deploy.export:wrap_v2",
            exported_runtime="anydepth.deploy.backends:exported_v2_model",
        ),
        Family(
            name="da3",
            task="scene",
            title="Depth Anything 3",
            build=_build_da3,
            convert=_convert_da3,
            pipeline="anydepth.pipelines.multiview:MultiViewModel",
            static_export="anydepth.deploy.export:wrap_da3",
            exported_runtime="anydepth.deploy.backends:exported_da3_model",
            single_view_archs=("da3mono-large", "da3metric-large"),
        ),
        Family(
            name="vda",
            task="video",
            title="Video Depth Anything",
            build=_build_vda,
            convert=_convert_vda,
            pipeline="anydepth.pipelines.video_depth:VideoDepthModel",
            static_export="anydepth.deploy.export:wrap_vda",
            exported_runtime="anydepth.deploy.backends:exported_vda_model",
        ),
        Family(
            name="depthcrafter",
            task="video",
            title="DepthCrafter",
            build=None,
            convert=_not_one_network,
            pipeline="anydepth.pipelines.depthcrafter.pipeline:DepthCrafterModel",
            loader="anydepth.pipelines.depthcrafter.loading:load_depthcrafter",
        ),
    )
}


def family_of(preset: Union[str, Preset]) -> Family:
    """The family of a preset (or of a preset name, or of a family name)."""
    if isinstance(preset, str):
        if preset in FAMILIES:
            return FAMILIES[preset]
        preset = get_preset(preset)
    try:
        return FAMILIES[preset.family]
    except KeyError:
        raise UnknownModelError(f"{preset.name}: no model family {preset.family!r}") from None


def build_network(preset: Union[str, Preset], init: bool = True) -> nn.Module:
    """The preset's network with untrained weights (for tests, exports and custom loading).

    ``init=False`` leaves the weights uninitialised (see :func:`~anydepth.checkpoints.skip_random_init`): for a
    network that a strict load of a checkpoint fills next, as :func:`load_network` does.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    family = family_of(preset)
    if family.build is None:
        raise ValueError(f"{preset.name} is several networks ({family.title}); load it with anydepth.load_model")
    if init:
        return family.build(preset)
    with skip_random_init():
        return family.build(preset)


def load_network_weights(net: nn.Module, preset: Preset, path: Path) -> nn.Module:
    """Read ``path``, convert its key layout to ours and load it strictly into ``net``."""
    state: Mapping[str, Tensor] = family_of(preset).convert(read_state_dict(path), preset, net)
    return load_strict(net, state, source=str(path), assign=True)


def load_network(
    name: str,
    weights: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device] = "auto",
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    local_files_only: bool = False,
) -> nn.Module:
    """The preset's bare network (``nn.Module``, eval mode) with its weights, without pre- or post-processing.

    Arguments as for :func:`anydepth.load_model`. DA3 weights are the hub folder's ``model.safetensors`` (a folder
    holding it works too).
    """
    from anydepth.hub import resolve_weights
    from anydepth.pipelines.runtime import resolve_device

    preset = get_preset(name)
    dev = resolve_device(device)
    path = resolve_weights(preset, weights, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    net = load_network_weights(build_network(preset, init=False), preset, path)
    return net.to(dev).eval()
