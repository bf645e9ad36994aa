"""DA3-like Gaussians with known geometry: one per pixel of depth maps, made by the real Gaussian adapter with its
offsets off, small axes and high opacity, so that renders from the input cameras give the depth back."""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch

from anydepth.models.da3.gaussian_head import GaussianAdapter, GaussianAdapterConfig, Gaussians
from anydepth.prediction import Prediction


def wave_depth(views: int = 2, h: int = 24, w: int = 32, amplitude: float = 0.3) -> np.ndarray:
    """(views, h, w) smooth depth 2.5 +- ``amplitude`` units away."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    waves = [2.5 + amplitude * np.sin(3 * xx + i) * np.cos(2 * yy) for i in range(views)]
    return np.stack(waves).astype(np.float32)


def side_by_side_cameras(views: int = 2, h: int = 24, w: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """(views, 3, 4) world-to-camera, the first at the origin, the others 0.2 to the right; (views, 3, 3) K."""
    ext = np.tile(np.eye(4, dtype=np.float32)[:3], (views, 1, 1))
    ext[:, 0, 3] = -0.2 * np.arange(views)
    K = np.tile(np.array([[0.9 * w, 0, w / 2], [0, 0.9 * w, h / 2], [0, 0, 1]], np.float32), (views, 1, 1))
    return ext, K


def pixel_gaussians(
    depth: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray, footprint: float = 0.5, opacity: float = 0.95,
    sh_degree: int = 2, seed: int = 0,
) -> Gaussians:  # fmt: skip
    """Gaussians of the adapter for depth maps and cameras: no offsets, axes ``footprint`` pixels wide, opacities
    ``opacity``, smooth colours with some noise (and random view-dependent bands)."""
    cfg = GaussianAdapterConfig(sh_degree=sh_degree)
    S, H, W = depth.shape
    raw = torch.zeros(1, S, H, W, cfg.raw_dim)
    # the adapter's axis: (1e-5 + 30 sigmoid(r)) * depth * 0.1 * (1/fx + 1/fy) ~ 30 sigmoid(r) * 0.2 pixel footprints
    target = footprint / 0.2 / 30.0
    raw[..., 2:5] = math.log(target / (1 - target))
    raw[..., 5:9] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    g = torch.Generator().manual_seed(seed)
    colours = 0.3 * torch.randn(1, S, H, W, 3, cfg.sh_coefficients, generator=g)
    # smooth base colours (red across, green down, blue on the diagonals), so that a lossy video of them stays close
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    base = torch.stack([xx, yy, xx * yy], -1).expand(S, H, W, 3)
    colours[..., 0] = 1.5 * base + 0.05 * colours[..., 0]
    raw[..., 9 : 9 + 3 * cfg.sh_coefficients] = colours.reshape(1, S, H, W, -1)
    return GaussianAdapter(cfg)(
        torch.from_numpy(extrinsics)[None], torch.from_numpy(intrinsics)[None], torch.from_numpy(depth)[None],
        torch.full((1, S, H, W), opacity), raw,
    )  # fmt: skip


def splat_prediction(views: int = 2, h: int = 24, w: int = 32) -> Prediction:
    """A DA3-style prediction (depth, cameras, processed images) with :func:`pixel_gaussians` in ``aux``."""
    depth = wave_depth(views, h, w)
    ext, K = side_by_side_cameras(views, h, w)
    images = np.zeros((views, h, w, 3), np.uint8)
    aux = {"gaussians": pixel_gaussians(depth, ext, K), "gaussians_hw": (h, w)}
    return Prediction(depth=depth, depth_kind="depth", extrinsics=ext, intrinsics=K, processed_images=images, aux=aux)


def ray_cosines(intrinsics: np.ndarray, h: int, w: int) -> np.ndarray:
    """(h, w) cosine between each pixel's ray and the optical axis: the adapter puts Gaussians at ``depth`` along
    the unit ray, so their camera z is ``depth * cosine``."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    x = (xx - intrinsics[0, 2]) / intrinsics[0, 0]
    y = (yy - intrinsics[1, 2]) / intrinsics[1, 1]
    return 1.0 / np.sqrt(x * x + y * y + 1.0)
