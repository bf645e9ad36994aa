"""Synthetic inputs: photos (arrays or files), a short video written with OpenCV, a small scene's views and cameras."""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np
from PIL import Image


def photo_array(h=100, w=130, seed=0) -> np.ndarray:
    """An (h, w, 3) uint8 RGB picture: colour ramps, a diagonal pattern and noise."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 64 * 4], -1) + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_photo(path, h=48, w=64, seed=0):
    """Save an (h, w) picture (ramps and noise) at ``path`` in the format its suffix names; returns ``path``."""
    rng = np.random.RandomState(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w)[None, :]
    img[..., 1] = np.linspace(0, 255, h)[:, None]
    img[..., 2] = rng.randint(0, 255, (h, w))
    Image.fromarray(img).save(path)
    return path


def write_video(path, frames=12, h=48, w=64, fps=10):
    """An mp4v video of a white disc moving over a ramp, written with OpenCV (not our writer); returns ``path``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for t in range(frames):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 1] = np.linspace(0, 255, w)[None, :]
        cv2.circle(img, (5 + 4 * t, h // 2), 8, (255, 255, 255), -1)
        writer.write(img)
    writer.release()
    return path


def scene_views(n=3, h=60, w=80):
    """``n`` (h, w, 3) uint8 views of one synthetic scene, each shifted in colour, with fixed noise."""
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:h, 0:w]
    return [
        np.clip(np.stack([xx * 3 + 10 * i, yy * 4, (xx + yy) * 2], -1) + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(
            np.uint8
        )
        for i in range(n)
    ]


def scene_cameras(n=3, h=60, w=80) -> Tuple[np.ndarray, np.ndarray]:
    """Cameras for :func:`scene_views`: (n, 4, 4) world-to-camera extrinsics turning about y, (n, 3, 3) intrinsics."""
    ext = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    for i in range(n):
        angle = 0.1 * i
        ext[i, :3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
        ext[i, :3, 3] = [0.5 * i, 0.1 * i, 0.2]
    K = np.tile(np.array([[70.0, 0, w / 2], [0, 70.0, h / 2], [0, 0, 1]], np.float32), (n, 1, 1))
    return ext, K
