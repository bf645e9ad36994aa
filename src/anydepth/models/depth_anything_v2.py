"""Depth Anything V2: DINOv2 encoder + DPT head, keys ``pretrained.*`` and ``depth_head.*`` as in the official .pth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from torch import Tensor, nn

from anydepth.layers.precision import float32_region
from anydepth.models.dinov2 import ENCODERS, DinoV2Config, DinoVisionTransformer
from anydepth.models.dpt import DPTHead, DPTHeadConfig

# DINOv2 blocks that feed the four DPT levels
INTERMEDIATE_LAYERS = {"vits": (2, 5, 8, 11), "vitb": (2, 5, 8, 11), "vitl": (4, 11, 17, 23), "vitg": (9, 19, 29, 39)}
# DPT widths of the official checkpoints: (features, out_channels)
HEAD_WIDTHS = {
    "vits": (64, (48, 96, 192, 384)),
    "vitb": (128, (96, 192, 384, 768)),
    "vitl": (256, (256, 512, 1024, 1024)),
    "vitg": (384, (1536, 1536, 1536, 1536)),
}


@dataclass(frozen=True)
class DepthAnythingV2Config:
    """Architecture of a Depth Anything V2 network.

    Attributes:
        encoder: DINOv2 backbone configuration.
        head: DPT head configuration.
        layers: backbone blocks fed to the head.
    """

    encoder: DinoV2Config
    head: DPTHeadConfig
    layers: Tuple[int, int, int, int] = field(default=(2, 5, 8, 11))

    @classmethod
    def from_encoder(
        cls,
        encoder: str = "vitl",
        features: Optional[int] = None,
        out_channels: Optional[Tuple[int, int, int, int]] = None,
        max_depth: Optional[float] = None,
        use_clstoken: bool = False,
    ) -> DepthAnythingV2Config:
        """Configuration of an official encoder size ("vits", "vitb", "vitl", "vitg")."""
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; expected one of {sorted(ENCODERS)}")
        default_features, default_channels = HEAD_WIDTHS[encoder]
        enc = ENCODERS[encoder]
        head = DPTHeadConfig(
            in_channels=enc.embed_dim,
            features=int(features if features is not None else default_features),
            out_channels=tuple(int(c) for c in (out_channels if out_channels is not None else default_channels)),
            use_clstoken=use_clstoken,
            max_depth=None if max_depth is None else float(max_depth),
        )
        return cls(encoder=enc, head=head, layers=INTERMEDIATE_LAYERS[encoder])


NANO = DepthAnythingV2Config(
    encoder=DinoV2Config(embed_dim=192, depth=6, num_heads=3, img_size=182),
    head=DPTHeadConfig(in_channels=192, features=32, out_channels=(24, 48, 96, 192)),
    layers=(1, 2, 4, 5),
)
"""The built-in model's network (``anydepth-nano``, 3.5 M parameters): ViT-Tiny's width (192, 3 heads) over six
blocks, and a DPT head of half ViT-S's widths. Sized to train from scratch on a CPU core (its card and
benchmarks/RESULTS.md give the run's figures); the position grid is 13x13
(182 px) rather than DINOv2's 37x37 because the network is trained and run at small sizes, where the larger table
would be a fifth of the weights for nothing. Every block is a DINOv2 block and the head a DPT head: the official V2
key layout, loaded and exported as every V2 network is."""


class DepthAnythingV2Net(nn.Module):
    """(B, 3, H, W) ImageNet-normalised images, H and W multiples of 14 -> (B, H, W) disparity or metres.

    Precision: a mixed :class:`~anydepth.layers.precision.PrecisionPolicy` applies to the backbone; the head runs
    in float32 whatever the policy.
    """

    float32_submodules = ("depth_head",)  # PrecisionPolicy.apply gives it the policy's float32 form

    def __init__(self, cfg: DepthAnythingV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.pretrained = DinoVisionTransformer(cfg.encoder)
        self.depth_head = DPTHead(cfg.head)

    @property
    def patch_size(self) -> int:
        return self.cfg.encoder.patch_size

    @property
    def is_metric(self) -> bool:
        return self.cfg.head.max_depth is not None

    def freeze_input_size(self, height: int, width: int) -> None:
        """Fix the input size for static-shape exports: the backbone's resized position embedding becomes a
        buffer, so a traced graph holds no bicubic resize; other sizes raise
        :class:`~anydepth.errors.ShapeError` until :meth:`unfreeze_input_size` (see
        :class:`~anydepth.models.dinov2.FreezablePositionGrid`). Call it after loading weights."""
        self.pretrained.freeze_input_size(height, width)

    def unfreeze_input_size(self) -> None:
        """Take any input size again."""
        self.pretrained.unfreeze_input_size()

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        grid_h, grid_w = int(x.shape[-2]) // p, int(x.shape[-1]) // p
        features = self.pretrained.get_intermediate_layers(x, self.cfg.layers)
        # the head stays in float32 under autocast: on random weights (whose ReLU output is zero on most pixels) a
        # bf16 reassembly or a bf16 fusion each moved depth past the 1% the "auto" precision allows, the bf16
        # backbone alone well within it (benchmarks/RESULTS.md, "Depth Anything V2 head precision")
        with float32_region(x.device):
            features = [(tokens.float(), cls.float()) for tokens, cls in features]
            return self.depth_head(features, grid_h, grid_w, p).squeeze(1)
