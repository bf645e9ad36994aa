"""``DepthAnythingV2`` with the upstream constructor, official ``.pth`` state dicts and ``infer_image``."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anydepth.errors import InputError, ShapeError
from anydepth.models.depth_anything_v2 import DepthAnythingV2Config, DepthAnythingV2Net
from anydepth.pipelines.preprocess import lower_bound_size, normalize_resize
from anydepth.pipelines.runtime import PRECISIONS, precision_policy, resolve_precision, tune_allocator
from anydepth.presets import IMAGENET_MEAN, IMAGENET_STD


class DepthAnythingV2(DepthAnythingV2Net):
    """Drop-in for ``depth_anything_v2.dpt.DepthAnythingV2`` (and its metric variant via ``max_depth``).

    Args:
        encoder: "vits", "vitb", "vitl" or "vitg".
        features, out_channels: DPT widths, as in the upstream model configs.
        use_bn: must be False (no official checkpoint uses batch norm in the head).
        use_clstoken: concatenate the class token before the head projections.
        max_depth: None for the relative model; metres (20 indoor, 80 outdoor) for the metric model.
        precision: "fp32" (default; reproduces upstream), "bf16", "fp16" or "auto".

    Example:
        >>> model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384])  # doctest: +SKIP
        >>> model.load_state_dict(torch.load("depth_anything_v2_vits.pth", map_location="cpu"))  # doctest: +SKIP
        >>> depth = model.eval().infer_image(cv2.imread("photo.jpg"))  # doctest: +SKIP
    """

    def __init__(
        self,
        encoder: str = "vitl",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        use_bn: bool = False,
        use_clstoken: bool = False,
        max_depth: Optional[float] = None,
        precision: str = "fp32",
    ) -> None:
        if use_bn:
            raise InputError("use_bn=True is not supported: no official Depth Anything V2 checkpoint uses it")
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        cfg = DepthAnythingV2Config.from_encoder(
            encoder,
            features=features,
            out_channels=tuple(out_channels),
            max_depth=max_depth,
            use_clstoken=use_clstoken,
        )
        super().__init__(cfg)
        self.encoder = encoder
        self.max_depth = max_depth
        self.precision = precision
        tune_allocator("keep")  # an entry point for repeated inference at one size

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def image2tensor(self, raw_image: np.ndarray, input_size: int = 518) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(H, W, 3) BGR uint8 -> ((1, 3, h, w) normalised tensor on the model's device, (H, W))."""
        if not isinstance(raw_image, np.ndarray) or raw_image.ndim != 3 or raw_image.shape[2] != 3:
            shape = getattr(raw_image, "shape", None)
            raise ShapeError(f"infer_image expects an (H, W, 3) BGR array as cv2.imread returns, got {shape}")
        h, w = raw_image.shape[:2]
        rgb = cv2.cvtColor(raw_image, cv2.COLOR_BGR2RGB)  # a new array: the caller's image is never touched
        size = lower_bound_size(h, w, int(input_size))
        image = torch.from_numpy(normalize_resize(rgb, size, IMAGENET_MEAN, IMAGENET_STD))[None]
        return image.to(self._device()), (h, w)

    @torch.no_grad()
    def infer_image(self, raw_image: np.ndarray, input_size: int = 518) -> np.ndarray:
        """Depth of one BGR uint8 image at its own resolution: (H, W) float32 disparity, or metres if metric."""
        image, (h, w) = self.image2tensor(raw_image, input_size)
        device = image.device
        policy = precision_policy(resolve_precision(self.precision, device))
        policy.apply(self)
        with policy.autocast(device):
            depth = self.forward(image)
        depth = F.interpolate(depth[:, None].float(), (h, w), mode="bilinear", align_corners=True)[0, 0]
        return depth.cpu().numpy()
