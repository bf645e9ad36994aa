"""Tiny networks with the official structure and deterministic random weights: Depth Anything V2, DA3 and Video
Depth Anything; and a full-size DA3 preset with random weights written in the hub folder layout."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from anydepth.models.da3.backbone import DA3BackboneConfig
from anydepth.models.da3.camera import CameraDecoderConfig, CameraEncoderConfig
from anydepth.models.da3.heads import DPTSkyConfig, DualDPTConfig
from anydepth.models.da3.network import DA3NetConfig, DepthAnything3Net
from anydepth.models.depth_anything_v2 import DepthAnythingV2Config, DepthAnythingV2Net
from anydepth.models.dinov2 import DinoV2Config
from anydepth.models.dpt import DPTHeadConfig
from tests.helpers.random_weights import fill_, random_state_dict


def tiny_config(max_depth=None, ffn="mlp", depth=4) -> DepthAnythingV2Config:
    """A Depth Anything V2 network small enough for fast tests, with the official structure."""
    enc = DinoV2Config(embed_dim=32, depth=depth, num_heads=2, ffn=ffn, img_size=70)
    head = DPTHeadConfig(in_channels=32, features=16, out_channels=(8, 16, 32, 32), max_depth=max_depth)
    return DepthAnythingV2Config(encoder=enc, head=head, layers=(0, 1, 2, depth - 1))


def random_net(cfg: DepthAnythingV2Config, seed: int = 0) -> DepthAnythingV2Net:
    net = DepthAnythingV2Net(cfg)
    sd = random_state_dict({k: v.shape for k, v in net.state_dict().items()}, seed)
    net.load_state_dict(sd, strict=True)
    return net.eval()


def tiny_da3(anyview: bool, seed: int = 1) -> DepthAnything3Net:
    """A six-block DA3 network: any-view (dual DPT head and camera encoder/decoder) or mono with the sky head."""
    enc = DinoV2Config(embed_dim=32, depth=6, num_heads=2, img_size=70)
    if anyview:
        cfg = DA3NetConfig(
            backbone=DA3BackboneConfig(encoder=enc, out_layers=(2, 3, 4, 5), alt_start=2, qknorm_start=2, rope_start=2),
            head=DualDPTConfig(dim_in=64, features=16, out_channels=(8, 16, 32, 32)),
            camera_decoder=CameraDecoderConfig(dim_in=64),
            camera_encoder=CameraEncoderConfig(dim_out=32, trunk_depth=1, num_heads=2),
        )
    else:
        cfg = DA3NetConfig(
            backbone=DA3BackboneConfig(encoder=enc, out_layers=(2, 3, 4, 5), cat_token=False),
            head=DPTSkyConfig(dim_in=32, features=16, out_channels=(8, 16, 32, 32)),
        )
    return fill_(DepthAnything3Net(cfg), seed=seed).eval()


def tiny_vda(seed: int = 2):
    """A four-block Video Depth Anything network at 70 px."""
    from anydepth.models.video_depth_anything import VideoDepthAnythingConfig, VideoDepthAnythingNet

    enc = DinoV2Config(embed_dim=32, depth=4, num_heads=2, img_size=70)
    # 64 fusion channels: with 32 (one per GroupNorm group) this random network amplifies 1e-6 input changes 1e3x
    head = DPTHeadConfig(in_channels=32, features=64, out_channels=(32, 64, 64, 64))
    cfg = VideoDepthAnythingConfig(encoder=enc, head=head, layers=(0, 1, 2, 3), temporal_heads=2)
    return fill_(VideoDepthAnythingNet(cfg), seed).eval()


class _HubWrapper(torch.nn.Module):
    """Stands in for the upstream API object whose state the hub files hold (network under ``model``)."""

    def __init__(self, net):
        super().__init__()
        self.model = net


def save_da3_hub_folder(folder: Path, name: str = "da3-small", seed: int = 11) -> DepthAnything3Net:
    """A full-size DA3 preset with random weights written in the hub folder layout (``config.json`` and
    ``model.safetensors``) into ``folder``; returns the network."""
    from safetensors.torch import save_model

    from anydepth.models.da3.network import build_da3_network

    net = fill_(build_da3_network(name), seed=seed).eval()
    Path(folder, "config.json").write_text(json.dumps({"model_name": name}))
    save_model(_HubWrapper(net), str(Path(folder, "model.safetensors")))  # drops tied tensors, as the hub mixin does
    return net
