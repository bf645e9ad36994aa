"""Training samples drawn from a frame source (:mod:`anydepth.train.sources`): crops and resizes to multiples of
14, flips with their cameras, groups of views, clips of frames; and the batches they stack into.

Sample ``key`` is drawn by ``numpy.random.default_rng((seed, key))``, so a sample depends only on the seed and its
key, never on what was drawn before: a training run that resumes at step ``k`` draws exactly the samples an
uninterrupted run draws there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch import Tensor

from anydepth.errors import InputError
from anydepth.train.sources import PATCH, FrameSource, RawFrame


@dataclass
class TrainingSample:
    """One sample: V frames (one image, the views of a scene, or a clip) at one size.

    Attributes:
        images: (V, 3, h, w) float32 normalised as the family's preprocessing does (``(rgb - mean) / std``).
        depth: (V, h, w) float32 z-depth, 0 where not valid.
        valid: (V, h, w) bool.
        extrinsics: (V, 3, 4) world-to-camera, or None.
        intrinsics: (V, 3, 3) of the (h, w) images, or None.
        names: the frames it was made of.
    """

    images: Tensor
    depth: Tensor
    valid: Tensor
    extrinsics: Optional[Tensor] = None
    intrinsics: Optional[Tensor] = None
    names: List[str] = field(default_factory=list)


@dataclass
class Batch:
    """B samples stacked: ``images (B, V, 3, h, w)``, ``depth`` and ``valid (B, V, h, w)``, cameras
    ``(B, V, 3, 4)`` / ``(B, V, 3, 3)`` when every sample has them."""

    images: Tensor
    depth: Tensor
    valid: Tensor
    extrinsics: Optional[Tensor] = None
    intrinsics: Optional[Tensor] = None

    def to(self, device: torch.device) -> Batch:
        def move(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(*(move(t) for t in (self.images, self.depth, self.valid, self.extrinsics, self.intrinsics)))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def collate(samples: Sequence[TrainingSample]) -> Batch:
    """Stack samples of one size into a :class:`Batch` (cameras only where every sample has them)."""
    cams = all(s.extrinsics is not None and s.intrinsics is not None for s in samples)
    return Batch(
        images=torch.stack([s.images for s in samples]),
        depth=torch.stack([s.depth for s in samples]),
        valid=torch.stack([s.valid for s in samples]),
        extrinsics=torch.stack([s.extrinsics for s in samples]) if cams else None,  # type: ignore[misc]
        intrinsics=torch.stack([s.intrinsics for s in samples]) if cams else None,  # type: ignore[misc]
    )


def parse_size(value: Union[str, int, Sequence[int]]) -> Tuple[int, int]:
    """``"WxH"``, one int (square) or ``(h, w)`` -> ``(h, w)``, both multiples of 14.

    >>> parse_size("126x98"), parse_size(56)
    ((98, 126), (56, 56))
    """
    if isinstance(value, str):
        try:
            parts = [int(v) for v in value.lower().split("x")]
        except ValueError:
            raise InputError(f"size {value!r}: write WIDTHxHEIGHT, e.g. 126x98") from None
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2:
            raise InputError(f"size {value!r}: write WIDTHxHEIGHT, e.g. 126x98")
        h, w = parts[1], parts[0]
    elif isinstance(value, int):
        h = w = value
    else:
        h, w = (int(v) for v in value)
    if h <= 0 or w <= 0 or h % PATCH or w % PATCH:
        raise InputError(f"size {w}x{h}: both sides must be positive multiples of {PATCH} (the patch size)")
    return h, w


class TrainingDataset(torch.utils.data.Dataset):
    """Seeded samples of ``frames`` frames from a source, cropped to ``size``.

    Training samples (``train=True``) pick a random sequence and frames (a clip of consecutive frames with
    ``clip``, else a random group of views), resize by a random factor so that the crop fits (at least the size
    that covers it, up to ``max_zoom`` times more), take a random crop and flip half of them horizontally. All
    frames of a sample share the resize, the crop and the flip, and the cameras follow: the intrinsics are scaled
    and shifted; a flip mirrors the camera's x axis, which for the extrinsics is ``[R | t] -> [F R F | F t]``
    with ``F = diag(-1, 1, 1)`` (the mirrored scene seen by a proper rotation, so the views stay consistent).

    Evaluation samples (``train=False``) are fixed: item ``i`` is the i-th frame (or the i-th sequence's first
    frames), resized to cover ``size`` and centre-cropped, not flipped.

    Args:
        source: where the frames come from.
        size: ``(h, w)`` of the samples, multiples of 14.
        mean, std: the family's normalisation (its preset's ``mean`` and ``std``).
        frames: frames per sample (1: single images).
        clip: consecutive frames (video) rather than a random set of views (multi-view).
        train: random (seeded) augmentation, or the fixed evaluation crops.
        seed: seed of the draws.
        max_zoom: the largest extra resize factor of training samples.
        flip: flip training samples horizontally with probability 1/2.
    """

    def __init__(self, source: FrameSource, size: Tuple[int, int], mean: Sequence[float], std: Sequence[float],
                 frames: int = 1, clip: bool = False, train: bool = True, seed: int = 0, max_zoom: float = 1.5,
                 flip: bool = True) -> None:  # fmt: skip
        self.source, self.size = source, parse_size(size)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.frames, self.clip, self.train, self.seed = int(frames), bool(clip), bool(train), int(seed)
        self.max_zoom, self.flip = float(max_zoom), bool(flip)
        if self.frames < 1:
            raise InputError(f"frames per sample {frames}: must be at least 1")
        if max_zoom < 1.0:
            raise InputError(f"max_zoom {max_zoom}: must be at least 1")
        lengths = source.sequence_lengths()
        self.sequences = [i for i, n in enumerate(lengths) if n >= self.frames]
        if not self.sequences:
            raise InputError(f"{source.describe()}: no sequence has {self.frames} frames for a sample")
        if self.frames == 1:
            self.items = [(i, j) for i, n in enumerate(lengths) for j in range(n)]
        else:
            self.items = [(i, 0) for i in self.sequences]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int) -> TrainingSample:
        return self.sample(key)

    def _pick(self, rng: np.random.Generator, key: int) -> Tuple[int, List[int]]:
        lengths = self.source.sequence_lengths()
        if not self.train:
            sequence, first = self.items[key % len(self.items)]
            return sequence, list(range(first, first + self.frames))
        if self.frames == 1:
            sequence, frame = self.items[int(rng.integers(len(self.items)))]
            return sequence, [frame]
        sequence = self.sequences[int(rng.integers(len(self.sequences)))]
        n = lengths[sequence]
        if self.clip:
            start = int(rng.integers(n - self.frames + 1))
            return sequence, list(range(start, start + self.frames))
        return sequence, [int(j) for j in rng.choice(n, self.frames, replace=False)]

    def sample(self, key: int) -> TrainingSample:
        """Sample ``key``: a function of (seed, key) only."""
        rng = np.random.default_rng((self.seed, int(key)))
        sequence, frame_ids = self._pick(rng, key)
        raw = [self.source.load(sequence, j) for j in frame_ids]
        H0, W0 = raw[0].image.shape[:2]
        if any(f.image.shape[:2] != (H0, W0) for f in raw):
            raise InputError(f"the frames of one sample differ in size: {', '.join(f.name for f in raw)}")
        h, w = self.size
        cover = max(h / H0, w / W0)
        zoom = cover * (float(rng.uniform(1.0, self.max_zoom)) if self.train else 1.0)
        new_h, new_w = max(h, round(H0 * zoom)), max(w, round(W0 * zoom))
        if self.train:
            y0, x0 = int(rng.integers(new_h - h + 1)), int(rng.integers(new_w - w + 1))
            flipped = self.flip and bool(rng.random() < 0.5)
        else:
            y0, x0, flipped = (new_h - h) // 2, (new_w - w) // 2, False
        images, depths, valids, extrinsics, intrinsics = [], [], [], [], []
        for f in raw:
            image, depth, valid, ext, K = self._resize_crop(f, new_h, new_w, y0, x0, h, w, flipped)
            images.append((image - self.mean) / self.std)
            depths.append(depth)
            valids.append(valid)
            extrinsics.append(ext)
            intrinsics.append(K)
        cams = all(e is not None for e in extrinsics) and all(k is not None for k in intrinsics)
        return TrainingSample(
            images=torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()),
            depth=torch.from_numpy(np.stack(depths)),
            valid=torch.from_numpy(np.stack(valids)),
            extrinsics=torch.from_numpy(np.stack(extrinsics)).float() if cams else None,
            intrinsics=torch.from_numpy(np.stack(intrinsics)).float() if cams else None,
            names=[f.name for f in raw],
        )

    @staticmethod
    def _resize_crop(f: RawFrame, new_h: int, new_w: int, y0: int, x0: int, h: int, w: int, flipped: bool):
        H0, W0 = f.image.shape[:2]
        shrink = new_h < H0
        image = cv2.resize(f.image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        # nearest neighbour for depth and validity: an interpolated depth across an edge is a point nowhere
        depth = cv2.resize(f.depth, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        valid = cv2.resize(f.valid.astype(np.uint8), (new_w, new_h), interpolation=cv2.INTER_NEAREST) > 0
        crop = (slice(y0, y0 + h), slice(x0, x0 + w))
        image, depth, valid = image[crop], depth[crop], valid[crop]
        K = ext = None
        if f.intrinsics is not None:
            K = np.asarray(f.intrinsics, np.float64).copy()
            K[0] *= new_w / W0  # pixel centres at +1/2: a resize scales the continuous coordinates
            K[1] *= new_h / H0
            K[0, 2] -= x0
            K[1, 2] -= y0
        if f.extrinsics is not None:
            ext = np.asarray(f.extrinsics, np.float64)[:3, :4].copy()
        if flipped:
            image, depth, valid = image[:, ::-1], depth[:, ::-1], valid[:, ::-1]
            if K is not None:
                K[0, 2] = w - K[0, 2]
            if ext is not None:
                F = np.diag([-1.0, 1.0, 1.0])
                ext = np.concatenate([F @ ext[:, :3] @ F, F @ ext[:, 3:]], axis=1)
        return (np.ascontiguousarray(image, np.float32), np.ascontiguousarray(depth, np.float32),
                np.ascontiguousarray(valid), ext, K)  # fmt: skip

    def batch(self, keys: Sequence[int]) -> Batch:
        """The samples of ``keys`` stacked into one :class:`Batch`."""
        return collate([self.sample(k) for k in keys])
