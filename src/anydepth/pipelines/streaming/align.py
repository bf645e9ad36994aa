"""Aligning two inferences of the same frames: the robust, confidence-weighted Sim(3) between their world frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

from anydepth.errors import InputError, OptionError
from anydepth.geometry.sim3 import ALIGN_METHODS, Sim3, robust_sim3, weighted_median_ratio
from anydepth.pipelines.streaming.predictors import ChunkPrediction

CONF_THRESHOLD_RATIO = 0.1
"""Pixels count when both confidences exceed this fraction of the lower of the two median confidences (upstream)."""


@dataclass(frozen=True)
class AlignOptions:
    """How chunks are aligned (upstream's ``align_method`` and ``IRLS`` settings, plus a point budget).

    Attributes:
        method: "sim3", "se3" or "scale+se3" (:data:`~anydepth.geometry.sim3.ALIGN_METHODS`).
        delta: Huber threshold of the IRLS, in the first chunk's units (upstream: 0.1).
        max_iters: IRLS iterations (upstream: 5).
        tol: IRLS convergence tolerance (upstream: 1e-9).
        max_points: at most this many point pairs per alignment, drawn evenly over the shared views with a fixed
            seed (upstream uses every pixel: 60 views at 504x378 are 11 million pairs, several GiB in float64).
        seed: seed of that draw.
    """

    method: str = "sim3"
    delta: float = 0.1
    max_iters: int = 5
    tol: float = 1e-9
    max_points: int = 200_000
    seed: int = 0

    def check(self) -> None:
        if self.method not in ALIGN_METHODS:
            raise OptionError("align_method", self.method, f"choose one of {', '.join(ALIGN_METHODS)}")
        if not self.delta > 0:
            raise OptionError("irls_delta", self.delta, "must be positive")
        if self.max_iters < 0:
            raise OptionError("irls_max_iters", self.max_iters, "must not be negative")
        if self.max_points < 3:
            raise OptionError("align_max_points", self.max_points, "use at least 3 points")


@dataclass(frozen=True)
class Alignment:
    """A fitted transform between two inferences of the same frames.

    Attributes:
        matrix: (4, 4) float64 ``[[s R, t], [0, 1]]`` taking the source's world coordinates to the target's.
        points: point pairs used.
        residual: confidence-weighted mean distance after the fit, in the target's units.
        iterations: IRLS re-weightings done.
    """

    matrix: np.ndarray
    points: int
    residual: float
    iterations: int

    @property
    def scale(self) -> float:
        return float(np.cbrt(np.linalg.det(self.matrix[:3, :3])))


def _view_points(pred: ChunkPrediction, view: int, pixels: np.ndarray) -> np.ndarray:
    """World points of the given flat pixel indices of one view, in float64 (only those pixels are unprojected:
    the same as :func:`~anydepth.geometry.cameras.unproject_depth` at them, at a fraction of the cost)."""
    W = pred.depth.shape[2]
    v, u = np.divmod(pixels, W)
    rays = (
        np.stack((u, v, np.ones_like(u)), axis=1).astype(np.float64)
        @ np.linalg.inv(np.asarray(pred.intrinsics[view], np.float64)).T
    )
    camera = rays * pred.depth[view].reshape(-1)[pixels].astype(np.float64)[:, None]
    w2c = np.asarray(pred.extrinsics[view, :3, :4], np.float64)
    return (camera - w2c[:, 3]) @ w2c[:, :3]  # R^T (x - t), row by row


def _pairs(
    target: ChunkPrediction, source: ChunkPrediction, options: AlignOptions
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Target points, source points, weights, and the two depths of the pixels both inferences are sure of."""
    threshold = CONF_THRESHOLD_RATIO * min(float(np.median(target.conf)), float(np.median(source.conf)))
    rng = np.random.default_rng(options.seed)
    per_view = int(np.ceil(options.max_points / len(target)))
    out = ([], [], [], [], [])
    for v in range(len(target)):
        dt, ds = target.depth[v].reshape(-1), source.depth[v].reshape(-1)
        ct, cs = target.conf[v].reshape(-1), source.conf[v].reshape(-1)
        keep = (ct > threshold) & (cs > threshold) & (dt > 0) & (ds > 0) & np.isfinite(dt) & np.isfinite(ds)
        pixels = np.flatnonzero(keep)
        if pixels.size > per_view:
            pixels = np.sort(rng.choice(pixels, per_view, replace=False))
        if pixels.size == 0:
            continue
        out[0].append(_view_points(target, v, pixels))
        out[1].append(_view_points(source, v, pixels))
        out[2].append(np.sqrt(np.maximum(ct[pixels], 0.0) * np.maximum(cs[pixels], 0.0)).astype(np.float64))
        out[3].append(dt[pixels])
        out[4].append(ds[pixels])
    if not out[0]:
        raise InputError("no pixel of the shared frames is confident in both inferences; cannot align the chunks")
    return tuple(np.concatenate(a) for a in out)  # type: ignore[return-value]


def align_views(target: ChunkPrediction, source: ChunkPrediction, options: AlignOptions) -> Alignment:
    """The Sim(3) (or SE(3), or scale+SE(3)) taking ``source``'s world frame onto ``target``'s, from the same frames
    inferred in both, as upstream's chunk alignment: world points of the pixels both are confident about, weighted
    by the geometric mean of the two confidences, fitted robustly (:func:`~anydepth.geometry.sim3.robust_sim3`).

    Args:
        target, source: predictions of the same frames, in the same order and at the same size.
        options: the model and its IRLS settings.
    """
    if target.depth.shape != source.depth.shape:
        raise InputError(f"cannot align views of shapes {target.depth.shape} and {source.depth.shape}")
    pts_t, pts_s, weights, depth_t, depth_s = _pairs(target, source, options)
    scale = None
    if options.method == "scale+se3":
        scale = weighted_median_ratio(torch.from_numpy(depth_t), torch.from_numpy(depth_s), torch.from_numpy(weights))
    if float(weights.sum()) <= 0:
        weights = np.ones_like(weights)
    fit = robust_sim3(
        torch.from_numpy(pts_s), torch.from_numpy(pts_t), torch.from_numpy(weights), method=options.method,
        delta=options.delta, max_iters=options.max_iters, tol=options.tol, scale=scale,
    )  # fmt: skip
    return Alignment(fit.sim3.matrix().numpy(), len(pts_t), fit.residual, fit.iterations)


def sim3_matrix(sim3: Sim3) -> np.ndarray:
    """(4, 4) float64 matrix of a batch-less :class:`~anydepth.geometry.sim3.Sim3`."""
    return sim3.matrix().double().numpy()


def transform_prediction(pred: ChunkPrediction, matrix: np.ndarray) -> ChunkPrediction:
    """``pred`` moved into another frame by the similarity ``matrix`` (4, 4): cameras move, depth scales by s.

    Unprojecting the result's depth with its cameras gives exactly ``matrix`` applied to ``pred``'s points.
    """
    from anydepth.geometry.sim3 import apply_sim3_to_extrinsics

    sim3 = Sim3.from_matrix(torch.from_numpy(np.asarray(matrix, np.float64)))
    extrinsics = apply_sim3_to_extrinsics(sim3, torch.from_numpy(np.asarray(pred.extrinsics, np.float64)))
    return ChunkPrediction(
        depth=(pred.depth * float(sim3.scale)).astype(np.float32),
        conf=pred.conf,
        extrinsics=extrinsics.numpy().astype(np.float32),
        intrinsics=pred.intrinsics,
        images=pred.images,
        descriptors=pred.descriptors,
    )
