"""What one chunk's inference gives the streaming pipeline, and the DA3 model wrapped to give it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from anydepth.errors import ShapeError


@dataclass
class ChunkPrediction:
    """One chunk's views, in the chunk's own world frame and scale.

    Attributes:
        depth: (S, H, W) float32 z-depth.
        conf: (S, H, W) float32 confidence (higher is better; weights of the alignment).
        extrinsics: (S, 3, 4) float32 world-to-camera, OpenCV.
        intrinsics: (S, 3, 3) float32 pixel intrinsics at the maps' size.
        images: optional (S, H, W, 3) uint8 colours of the maps' pixels (for the point cloud).
        descriptors: optional (S, D) float32 place descriptors (for loop detection).
    """

    depth: np.ndarray
    conf: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    images: Optional[np.ndarray] = None
    descriptors: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.depth.shape[0])

    def check(self, views: int) -> None:
        """Raise ShapeError unless every array has ``views`` views and the shapes agree."""
        S = views
        H, W = self.depth.shape[1:] if self.depth.ndim == 3 else (None, None)
        problems = []
        if self.depth.shape != (S, H, W):
            problems.append(f"depth {self.depth.shape}")
        if self.conf.shape != self.depth.shape:
            problems.append(f"conf {self.conf.shape}")
        if self.extrinsics.shape[0] != S or self.extrinsics.shape[1:] not in ((3, 4), (4, 4)):
            problems.append(f"extrinsics {self.extrinsics.shape}")
        if self.intrinsics.shape != (S, 3, 3):
            problems.append(f"intrinsics {self.intrinsics.shape}")
        if self.images is not None and self.images.shape != (S, H, W, 3):
            problems.append(f"images {self.images.shape}")
        if self.descriptors is not None and (self.descriptors.ndim != 2 or self.descriptors.shape[0] != S):
            problems.append(f"descriptors {self.descriptors.shape}")
        if problems:
            raise ShapeError(f"chunk prediction for {S} views has wrong shapes: {', '.join(problems)}")

    def take(self, start: int, end: int) -> ChunkPrediction:
        """Views ``[start, end)`` (positions inside the chunk)."""

        def cut(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
            return None if a is None else a[start:end]

        return ChunkPrediction(
            self.depth[start:end], self.conf[start:end], self.extrinsics[start:end, :3, :4],
            self.intrinsics[start:end], cut(self.images), cut(self.descriptors),
        )  # fmt: skip

    def arrays(self) -> Dict[str, np.ndarray]:
        """The arrays by name, for an npz (absent ones left out)."""
        names = ("depth", "conf", "extrinsics", "intrinsics", "images", "descriptors")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @classmethod
    def from_arrays(cls, arrays: Any) -> ChunkPrediction:
        return cls(**{n: np.asarray(arrays[n]) for n in arrays if n in cls.__dataclass_fields__})


class ChunkPredictor(Protocol):
    """Any per-chunk inference: the DA3 model (:class:`DA3ChunkPredictor`), or, in tests and benchmarks, ground
    truth with noise.

    Called with the chunk's frames (as the frame source gives them), their frame numbers in the sequence, and known
    cameras ``(extrinsics (S, 4, 4), intrinsics (S, 3, 3))`` of those frames or None; returns a
    :class:`ChunkPrediction` of the same views, in any world frame and scale of its own.
    """

    def __call__(
        self, frames: List[Any], indices: Sequence[int], cameras: Optional[Tuple[np.ndarray, np.ndarray]]
    ) -> ChunkPrediction: ...


class DA3ChunkPredictor:
    """A loaded DA3 any-view model (:class:`~anydepth.pipelines.multiview.MultiViewModel`) as a chunk predictor.

    Each chunk is one multi-view inference, conditioned on the known cameras when there are some (and then reported
    in their frame and units). Confidences are DA3's minus 1 (its activation is ``1 + exp``), as upstream's
    streaming does, so that its threshold "a tenth of the median" removes the least sure pixels. Place descriptors
    come from the network's own backbone: the normed tokens of block ``descriptor_layer`` averaged over each view's
    patches (no separate place-recognition network or checkpoint).

    Args:
        model: the loaded DA3 model (it must predict cameras: not da3mono / da3metric).
        process_res, process_res_method, ref_view_strategy: as for ``MultiViewModel.infer``.
        descriptor_layer: backbone block of the descriptors (None: the last of the blocks the head reads).
        descriptors: compute descriptors at all (only loop closure needs them).
    """

    def __init__(
        self,
        model: Any,
        process_res: int = 504,
        process_res_method: str = "upper_bound_resize",
        ref_view_strategy: str = "saddle_balanced",
        descriptor_layer: Optional[int] = None,
        descriptors: bool = True,
    ) -> None:
        self.model = model
        self.process_res = process_res
        self.process_res_method = process_res_method
        self.ref_view_strategy = ref_view_strategy
        if descriptors and descriptor_layer is None:
            from anydepth.models.da3.network import da3_config

            descriptor_layer = int(da3_config(model.preset.arch).backbone.out_layers[-1])
        self.descriptor_layer = descriptor_layer if descriptors else None

    def __call__(
        self, frames: List[Any], indices: Sequence[int], cameras: Optional[Tuple[np.ndarray, np.ndarray]]
    ) -> ChunkPrediction:
        extrinsics, intrinsics = cameras if cameras is not None else (None, None)
        layers = [] if self.descriptor_layer is None else [self.descriptor_layer]
        pred = self.model.infer(
            frames,
            extrinsics=extrinsics,
            intrinsics=intrinsics,
            process_res=self.process_res,
            process_res_method=self.process_res_method,
            ref_view_strategy=self.ref_view_strategy,
            export_feat_layers=layers,
        )
        descriptors = None
        if layers:
            tokens = np.asarray(pred.aux[f"feat_layer_{layers[0]}"], dtype=np.float32)  # (S, h, w, D)
            descriptors = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]).mean(axis=1)
        conf = pred.conf if pred.conf is not None else np.ones_like(pred.depth)
        return ChunkPrediction(
            depth=np.asarray(pred.depth, np.float32),
            conf=np.asarray(conf, np.float32) - 1.0,
            extrinsics=np.asarray(pred.extrinsics, np.float32)[:, :3, :4],
            intrinsics=np.asarray(pred.intrinsics, np.float32),
            images=pred.processed_images,
            descriptors=descriptors,
        )
