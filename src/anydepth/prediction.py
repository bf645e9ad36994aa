"""The one result type of every model: depth plus whatever else the model predicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

DEPTH_KINDS = ("depth", "disparity", "metric")
# a pixel is sky where the sky head's score reaches this (upstream DA3's Prediction.sky = sky >= 0.5)
SKY_THRESHOLD = 0.5


@dataclass
class Prediction:
    """Outputs for N images (independent samples, or views of one scene).

    Attributes:
        depth: (N, H, W) float32. Its meaning is ``depth_kind``: "disparity" is affine-invariant inverse depth
            (larger is nearer, no unit), "depth" is z-depth up to scale, "metric" is z-depth in metres.
        depth_kind: one of "depth", "disparity", "metric".
        conf: (N, H, W) float32 confidence, where the model predicts one.
        extrinsics: (N, 3, 4) float32 world-to-camera, OpenCV convention, where predicted.
        intrinsics: (N, 3, 3) float32 pixel intrinsics for the returned resolution, where predicted.
        sky: (N, H, W) bool sky mask, where predicted: ``sky_score >= SKY_THRESHOLD``, as upstream DA3's
            ``Prediction.sky`` (so ``depth[pred.sky]`` selects the sky).
        processed_images: (N, h, w, 3) uint8 RGB images at the network's processing resolution.
        aux: further named outputs (intermediate features, ...).
        sky_score: (N, H, W) float32 output of the sky head (DA3 mono and metric models), where predicted.
        scale_factor: the scale the nested DA3 model applied to reach metres (upstream's ``scale_factor``), else
            None.

    A float ``sky`` given without ``sky_score`` is taken as the score: ``sky`` becomes its mask. ``is_metric``
    and ``gaussians`` read as on upstream DA3's Prediction.
    """

    depth: np.ndarray
    depth_kind: str
    conf: Optional[np.ndarray] = None
    extrinsics: Optional[np.ndarray] = None
    intrinsics: Optional[np.ndarray] = None
    sky: Optional[np.ndarray] = None
    processed_images: Optional[np.ndarray] = None
    aux: Dict[str, Any] = field(default_factory=dict)
    sky_score: Optional[np.ndarray] = None
    scale_factor: Optional[float] = None

    def __post_init__(self) -> None:
        if self.depth_kind not in DEPTH_KINDS:
            raise ValueError(f"depth_kind must be one of {DEPTH_KINDS}, not {self.depth_kind!r}")
        if self.sky is not None and np.asarray(self.sky).dtype != bool:  # a score given as the sky
            if self.sky_score is None:
                self.sky_score = np.asarray(self.sky, dtype=np.float32)
            self.sky = None
        if self.sky is None and self.sky_score is not None:
            self.sky = np.asarray(self.sky_score) >= SKY_THRESHOLD
        if self.depth.ndim != 3:
            raise ValueError(f"depth must be (N, H, W), got shape {self.depth.shape}")

    @property
    def is_metric(self) -> int:
        """1 where ``depth`` is in metres, else 0 (upstream DA3's ``Prediction.is_metric``)."""
        return int(self.depth_kind == "metric")

    @property
    def gaussians(self) -> Any:
        """The 3D Gaussians of a DA3 model with a Gaussian head run with ``infer_gs`` (``aux["gaussians"]``),
        else None."""
        return self.aux.get("gaussians")

    def __len__(self) -> int:
        return int(self.depth.shape[0])

    def __getitem__(self, index: int) -> Prediction:
        """The prediction of one image, with N = 1."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        sl = slice(index, index + 1) if index >= 0 else slice(len(self) + index, len(self) + index + 1)

        def take(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
            return None if a is None else a[sl]

        return Prediction(
            depth=self.depth[sl],
            depth_kind=self.depth_kind,
            conf=take(self.conf),
            extrinsics=take(self.extrinsics),
            intrinsics=take(self.intrinsics),
            sky=take(self.sky),
            processed_images=take(self.processed_images),
            aux=dict(self.aux),
            sky_score=take(self.sky_score),
            scale_factor=self.scale_factor,
        )
