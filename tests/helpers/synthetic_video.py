"""A rendered synthetic video with exact depth and cameras, and a stand-in video depth network, for the metrics.

The scene is a back wall, a floor and a sphere seen by a camera that slides sideways, moves forward and turns
slightly. Every frame is ray-cast analytically, so depth is exact. The frames encode inverse depth as grey
levels, which lets :class:`AffineDisparityNet` play a video depth network whose output is the true disparity up
to an unknown scale and shift per window (what Video Depth Anything's windows have to be stitched against),
with optional per-frame flicker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DISPARITY_SCALE = 1.2  # grey level 255 is depth 1.2 / 1 = 1.2 m; the scene lies farther than that


@dataclass
class SyntheticVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8, grey = 255 * DISPARITY_SCALE / depth
    depth: np.ndarray  # (T, H, W) float64 z-depth, metres
    extrinsics: np.ndarray  # (T, 3, 4) world-to-camera, OpenCV
    intrinsics: np.ndarray  # (3, 3)


def _yaw(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def render_video(num_frames: int = 80, height: int = 42, width: int = 56) -> SyntheticVideo:
    """Render the scene; world axes: x right, y down, z forward (OpenCV)."""
    f = 0.9 * width
    K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays_cam = np.stack([(u + 0.5 - K[0, 2]) / f, (v + 0.5 - K[1, 2]) / f, np.ones_like(u)], axis=-1)
    wall_z, floor_y = 6.0, 1.2
    centre, radius = np.array([0.3, 0.4, 3.5]), 0.8
    frames, depths, extrinsics = [], [], []
    for t in range(num_frames):
        s = t / max(num_frames - 1, 1)
        R_c2w = _yaw(0.15 * math.sin(2 * math.pi * s))
        origin = np.array([-0.8 + 1.6 * s, 0.0, 0.6 * s])
        rays = rays_cam @ R_c2w.T  # world directions, with z-component scaled so that cam-z = 1
        hits = np.full((height, width), np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            for distance in ((wall_z - origin[2]) / rays[..., 2], (floor_y - origin[1]) / rays[..., 1]):
                hits = np.where((distance > 0) & (distance < hits), distance, hits)
            oc = origin - centre
            b = np.einsum("hwc,c->hw", rays, oc)
            a = np.einsum("hwc,hwc->hw", rays, rays)
            disc = b * b - a * (oc @ oc - radius**2)
            sphere = (-b - np.sqrt(disc)) / a
            hits = np.where((disc > 0) & (sphere > 0) & (sphere < hits), sphere, hits)
        depth = hits  # ray parameter along a direction whose camera z is 1: that is the z-depth
        grey = np.clip(np.round(255.0 * DISPARITY_SCALE / depth), 0, 255).astype(np.uint8)
        frames.append(np.repeat(grey[..., None], 3, axis=2))
        depths.append(depth)
        R_w2c = R_c2w.T
        extrinsics.append(np.concatenate([R_w2c, (-R_w2c @ origin)[:, None]], axis=1))
    return SyntheticVideo(np.stack(frames), np.stack(depths), np.stack(extrinsics), K)


class AffineDisparityNet(nn.Module):
    """Stand-in for a video depth network on :func:`render_video` frames: (B, T, 3, H, W) -> (B, T, H, W).

    Every call (one window) returns ``a * disparity + b`` with its own random ``a`` and ``b``, and each frame
    has a flicker of relative size ``flicker`` on top (its own gain and offset).
    """

    def __init__(self, seed: int = 0, flicker: float = 0.0) -> None:
        super().__init__()
        self.rng = np.random.RandomState(seed)
        self.flicker = flicker
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x[:, :, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # = DISPARITY_SCALE / depth
        a, b = self.rng.uniform(0.3, 3.0), self.rng.uniform(0.0, 1.0)
        T = x.shape[1]
        gain = torch.from_numpy(1.0 + self.flicker * self.rng.standard_normal(T)).float()[None, :, None, None]
        offset = torch.from_numpy(self.flicker * self.rng.standard_normal(T)).float()[None, :, None, None]
        # the flicker perturbs the disparity itself, before the window's scale and shift
        return a * (grey * gain + offset * grey.mean()) + b


def per_window_depth(video, net) -> np.ndarray:
    """Each frame from the first window that infers it, with no scale/shift between windows and no cross-fade."""
    from anydepth.pipelines.preprocess import normalize_resize
    from anydepth.pipelines.video_depth import STRIDE, WINDOW, _windows

    prepared = (torch.from_numpy(normalize_resize(f, f.shape[:2], IMAGENET_MEAN, IMAGENET_STD)) for f in video.frames)
    out = []
    for index, window in enumerate(_windows(prepared)):
        depth = net(window.frames[None])[0].numpy()
        out += list(depth if index == 0 else depth[WINDOW - STRIDE :])
    return np.stack(out[: len(video.frames)])
