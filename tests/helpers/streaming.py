"""Ground truth plus noise as per-chunk "predictions", for the streaming pipeline's tests and benchmark.

A synthetic scene (:mod:`anydepth.bench.synthetic`) is rendered along a trajectory with exact depth and cameras.
Each call of :class:`NoisyTruth` plays one chunk inference: it reports the frames' true depth and cameras in a world
frame of its own (a random Sim(3) "gauge" per call, as a network normalises each chunk differently), with
multiplicative depth noise, small pose noise, and optionally drift: the last ``drift_frames`` frames of every
inference turned by ``drift_deg`` about the vertical through its first camera. The next chunk is aligned onto
exactly those frames (a chunk's tail is the next one's overlap), so each alignment inherits the turn and the chained
trajectory drifts by ``drift_deg`` per chunk, which loop closure must take out; the frames a chunk owns (its head)
are not turned themselves.
Descriptors are the frames' images shrunk to 8x6, as an appearance-based place descriptor.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from anydepth.bench.synthetic import indoor_scene, intrinsics_for, render, walk
from anydepth.pipelines.streaming import ChunkPrediction


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def random_sim3(rng: np.random.Generator) -> np.ndarray:
    """A random similarity: scale in [0.5, 2], any rotation, translation within +-3."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    R = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    S = np.eye(4)
    S[:3, :3] = np.exp(rng.uniform(np.log(0.5), np.log(2.0))) * R
    S[:3, 3] = rng.uniform(-3, 3, 3)
    return S


def c2w_of(w2c: np.ndarray) -> np.ndarray:
    out = np.tile(np.eye(4), (len(w2c), 1, 1))
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    out[:, :3, :3] = np.transpose(R, (0, 2, 1))
    out[:, :3, 3] = -np.einsum("nji,nj->ni", R, t)
    return out


class SyntheticSequence:
    """A looped walk through a synthetic room, rendered on demand (and cached) at a small size."""

    def __init__(self, frames: int, width: int = 48, height: int = 36, seed: int = 0, loop: bool = True) -> None:
        self.scene = indoor_scene(seed)
        self.w2c = np.stack(walk(self.scene, frames, loop=loop, seed=seed)).astype(np.float64)  # (N, 3, 4)
        self.K = intrinsics_for(width, height)
        self.width, self.height = width, height
        self._render = lru_cache(maxsize=None if frames <= 400 else 0)(self._render_uncached)

    def __len__(self) -> int:
        return len(self.w2c)

    def _render_uncached(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        frame = render(self.scene, self.w2c[index], self.K, self.width, self.height)
        return frame.depth, frame.image

    def frame(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """(depth (H, W), image (H, W, 3)) of frame ``index``."""
        return self._render(int(index))


class NoisyTruth:
    """A chunk predictor from ground truth (see the module docstring); deterministic from ``seed``."""

    def __init__(
        self,
        sequence: SyntheticSequence,
        seed: int = 0,
        depth_noise: float = 0.01,
        rotation_noise_deg: float = 0.1,
        translation_noise: float = 0.005,
        drift_deg: float = 0.0,
        drift_frames: int = 10,
    ) -> None:
        self.sequence = sequence
        self.rng = np.random.default_rng(seed)
        self.depth_noise, self.drift_deg, self.drift_frames = depth_noise, drift_deg, drift_frames
        self.rotation_noise, self.translation_noise = np.radians(rotation_noise_deg), translation_noise
        self.calls: List[List[int]] = []

    def __call__(self, frames: List[Any], indices: Sequence[int], cameras: Optional[Any]) -> ChunkPrediction:
        self.calls.append(list(indices))
        seq = self.sequence
        depth = np.stack([seq.frame(i)[0] for i in indices]).astype(np.float64)
        images = np.stack([seq.frame(i)[1] for i in indices])
        c2w = c2w_of(seq.w2c[list(indices)])
        if self.drift_deg:
            pivot = c2w[0, :3, 3].copy()
            R = _rotation(np.array([0.0, 1.0, 0.0]), np.radians(self.drift_deg))
            for p in range(max(len(indices) - self.drift_frames, 0), len(indices)):
                c2w[p, :3, :3] = R @ c2w[p, :3, :3]
                c2w[p, :3, 3] = R @ (c2w[p, :3, 3] - pivot) + pivot
        for p in range(len(indices)):
            axis = self.rng.normal(size=3)
            c2w[p, :3, :3] = _rotation(axis, self.rng.normal() * self.rotation_noise) @ c2w[p, :3, :3]
            c2w[p, :3, 3] += self.rng.normal(size=3) * self.translation_noise
        gauge = random_sim3(self.rng)
        scale = np.cbrt(np.linalg.det(gauge[:3, :3]))
        moved = gauge @ c2w
        moved[:, :3, :3] /= scale
        w2c = np.linalg.inv(moved)[:, :3, :4]
        noisy = depth * scale * (1.0 + self.depth_noise * self.rng.normal(size=depth.shape))
        conf = np.where(depth > 0, 1.0 + self.rng.uniform(0, 1, depth.shape), 0.0)
        small = np.stack([cv2.resize(im, (8, 6), interpolation=cv2.INTER_AREA) for im in images])
        return ChunkPrediction(
            depth=noisy.astype(np.float32),
            conf=conf.astype(np.float32),
            extrinsics=w2c.astype(np.float32),
            intrinsics=np.repeat(seq.K[None], len(indices), 0).astype(np.float32),
            images=images,
            descriptors=small.reshape(len(indices), -1).astype(np.float32),
        )
