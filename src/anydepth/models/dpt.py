"""DPT depth head of Depth Anything V2 (relative disparity, or metric depth through a sigmoid)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anydepth.layers.dpt_blocks import FeatureFusionBlock, OutputBranch, make_projections, make_resize_layers, token_map


@dataclass(frozen=True)
class DPTHeadConfig:
    """Architecture of the DPT head.

    Attributes:
        in_channels: ViT token width.
        features: width of the fusion path.
        out_channels: widths of the four reassembled levels.
        use_clstoken: concatenate the class token to each patch token before projection (no official checkpoint
            does, but the layout exists).
        max_depth: ``None`` for the relative head (ReLU output, disparity); metres for the metric head
            (sigmoid x max_depth).
    """

    in_channels: int
    features: int
    out_channels: Tuple[int, int, int, int]
    use_clstoken: bool = False
    max_depth: Optional[float] = None


class _Scratch(nn.Module):
    """Holder that reproduces the official ``scratch.*`` key names."""

    def __init__(self, out_channels: Sequence[int], features: int) -> None:
        super().__init__()
        for i, c in enumerate(out_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self, f"refinenet{i}", FeatureFusionBlock(features))
        self.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        # indices 0 and 2 carry the weights, as in nn.Sequential(conv, ReLU, conv, ReLU|Sigmoid)
        self.output_conv2 = OutputBranch(features // 2, 32, 1)


class DPTHead(nn.Module):
    """Reassembles four ViT layers into a dense map at 14x the patch grid.

    Keys: projects.{0-3}, resize_layers.{0,1,3}, [readout_projects.{i}.0], scratch.layer{1-4}_rn,
    scratch.refinenet{1-4}, scratch.output_conv1, scratch.output_conv2.{0,2}.
    """

    def __init__(self, cfg: DPTHeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.projects = make_projections(cfg.in_channels, cfg.out_channels)
        self.resize_layers = make_resize_layers(cfg.out_channels)
        if cfg.use_clstoken:
            self.readout_projects = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * cfg.in_channels, cfg.in_channels), nn.GELU()) for _ in range(4)
            )
        self.scratch = _Scratch(cfg.out_channels, cfg.features)

    def forward(self, features: List[Tuple[Tensor, Tensor]], grid_h: int, grid_w: int, patch_size: int = 14) -> Tensor:
        """Dense prediction.

        Args:
            features: four ``(patch_tokens (B, N, C), class_token (B, C))`` pairs, N = grid_h * grid_w.
            grid_h, grid_w: patch grid.

        Returns:
            (B, 1, grid_h * patch_size, grid_w * patch_size): disparity (>= 0), or metres for the metric head.
        """
        levels = []
        for i, (tokens, cls_token) in enumerate(features):
            if self.cfg.use_clstoken:
                readout = cls_token.unsqueeze(1).expand_as(tokens)
                tokens = self.readout_projects[i](torch.cat((tokens, readout), dim=-1))
            levels.append(self.resize_layers[i](self.projects[i](token_map(tokens, grid_h, grid_w))))

        s = self.scratch
        l1, l2, l3, l4 = s.layer1_rn(levels[0]), s.layer2_rn(levels[1]), s.layer3_rn(levels[2]), s.layer4_rn(levels[3])
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        out = s.output_conv1(path)
        out = F.interpolate(out, size=(grid_h * patch_size, grid_w * patch_size), mode="bilinear", align_corners=True)
        out = s.output_conv2(out)
        if self.cfg.max_depth is None:
            return F.relu(out)
        return torch.sigmoid(out) * self.cfg.max_depth
