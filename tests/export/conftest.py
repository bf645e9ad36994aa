"""Shared fixtures of the export tests: a small DA3 network with a Gaussian head."""

from __future__ import annotations

import pytest
import torch

from anydepth.models.da3.gaussian_head import GaussianAdapterConfig, GaussianDPTConfig
from anydepth.models.da3.network import DA3_CONFIGS, DA3NetConfig, DepthAnything3Net
from anydepth.pipelines.multiview import MultiViewModel
from anydepth.presets import get_preset
from tests.helpers.random_weights import randomize_


@pytest.fixture(scope="module")
def gs_model():
    """da3-small with a GS head sized for its width: the giant's architecture at a testable size."""
    small = DA3_CONFIGS["da3-small"]
    cfg = DA3NetConfig(
        backbone=small.backbone,
        head=small.head,
        camera_decoder=small.camera_decoder,
        camera_encoder=small.camera_encoder,
        gaussian_head=GaussianDPTConfig(dim_in=768, features=32, out_channels=(24, 48, 96, 96)),
        gaussian_adapter=GaussianAdapterConfig(),
    )
    net = randomize_(DepthAnything3Net(cfg), seed=3).eval()
    return MultiViewModel(net, get_preset("da3-giant"), torch.device("cpu"), "fp32")
