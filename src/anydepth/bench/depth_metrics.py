"""Depth metrics of single images and views: AbsRel, delta1 and the inlier ratio at 1.03, after an alignment.

A relative prediction is only defined up to a scale (DA3's depth) or up to a scale and shift of its disparity
(Depth Anything V2), so it is aligned to the ground truth first, per image, over the valid pixels:

- ``"none"``: as predicted (metric models);
- ``"median"``: ``pred * median(gt) / median(pred)``;
- ``"scale"``: the least-squares scale ``s = sum(pred * gt) / sum(pred^2)``;
- ``"scale_shift_disparity"``: the least-squares scale and shift of the predicted disparity onto ``1 / gt``, then
  inverted to depth (the disparity is clipped to ``1 / max_depth`` from below first; with no finite
  ``max_depth``, to one over the image's largest valid ground-truth depth, so that a pixel whose aligned disparity
  falls to zero or below scores as the far end of the range, not as a depth of 10^12).

Valid pixels have a finite ground truth in ``(min_depth, max_depth)`` and a finite prediction; a mask may remove
more. Then, over the valid pixels of one image:

- AbsRel ``= mean(|pred - gt| / gt)``;
- delta1 ``= mean(max(pred / gt, gt / pred) < 1.25)``; the inlier ratio ``= mean(max(...) < 1.03)``.

A set of images scores the mean of its per-image values (each image weighs the same).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np

from anydepth.errors import InputError, ShapeError

ALIGNMENTS = ("none", "median", "scale", "scale_shift_disparity")
DELTA1 = 1.25
INLIER = 1.03


@dataclass(frozen=True)
class DepthScores:
    """Scores of one image (or the mean over several): AbsRel, delta1, the inlier ratio at 1.03, the number of
    valid pixels, and the alignment's scale and shift (shift: in disparity; 0 for the other alignments)."""

    abs_rel: float
    delta1: float
    inlier_103: float
    valid_pixels: int
    scale: float = 1.0
    shift: float = 0.0

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def valid_mask(
    pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float, mask: Optional[np.ndarray] = None
) -> np.ndarray:
    """The pixels scored: ground truth finite and within ``(min_depth, max_depth)``, prediction finite."""
    valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred)
    return valid if mask is None else valid & np.asarray(mask, bool)


def align(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, mode: str, pred_is_disparity: bool = False,
    max_depth: float = np.inf,
) -> tuple[np.ndarray, float, float]:  # fmt: skip
    """``pred`` brought onto ``gt`` by ``mode`` (see the module docstring); returns (depth, scale, shift).

    ``pred_is_disparity`` says the prediction is (affine-invariant) disparity: only "scale_shift_disparity" takes
    it, the others need depth.

    Example:
        >>> gt = np.array([[1.0, 2.0], [4.0, 8.0]])
        >>> depth, scale, _ = align(3 * gt, gt, np.ones_like(gt, bool), "median")
        >>> bool(np.allclose(depth, gt)), round(scale, 6)
        (True, 0.333333)
    """
    if mode not in ALIGNMENTS:
        raise InputError(f"unknown alignment {mode!r}; choose one of {', '.join(ALIGNMENTS)}")
    pred = np.asarray(pred, np.float64)
    if pred_is_disparity and mode != "scale_shift_disparity":
        raise InputError(f"a disparity prediction needs the scale_shift_disparity alignment, not {mode!r}")
    p, g = pred[valid], np.asarray(gt, np.float64)[valid]
    if mode == "none":
        return pred, 1.0, 0.0
    if mode == "median":
        scale = float(np.median(g) / np.median(p))
        return pred * scale, scale, 0.0
    if mode == "scale":
        scale = float(np.dot(p, g) / np.dot(p, p))
        return pred * scale, scale, 0.0
    disparity = pred if pred_is_disparity else 1.0 / np.maximum(pred, 1e-12)
    d = disparity[valid]
    A = np.stack([d, np.ones_like(d)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(A, 1.0 / g, rcond=None)
    far = max_depth if np.isfinite(max_depth) else float(np.max(g))
    aligned = np.maximum(scale * disparity + shift, 1.0 / far)
    return 1.0 / aligned, float(scale), float(shift)


def score(pred_depth: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
    """AbsRel, delta1 and the inlier ratio at 1.03 of aligned depth over the valid pixels."""
    p, g = np.asarray(pred_depth, np.float64)[valid], np.asarray(gt, np.float64)[valid]
    ratio = np.maximum(p / g, g / np.maximum(p, 1e-12))
    return float(np.mean(np.abs(p - g) / g)), float(np.mean(ratio < DELTA1)), float(np.mean(ratio < INLIER))


def image_depth_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    alignment: str = "median",
    mask: Optional[np.ndarray] = None,
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
    pred_is_disparity: bool = False,
) -> DepthScores:
    """Scores of one (H, W) prediction against its ground truth (same size: resize the prediction first).

    Example:
        >>> gt = np.linspace(1.0, 5.0, 12).reshape(3, 4)
        >>> s = image_depth_scores(2.0 * gt, gt)
        >>> round(s.abs_rel, 12), s.delta1, s.valid_pixels
        (0.0, 1.0, 12)
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ShapeError(f"prediction {pred.shape} and ground truth {gt.shape} must both be (H, W) of one size")
    valid = valid_mask(pred, gt, min_depth, max_depth, mask)
    if not pred_is_disparity:
        valid &= pred > 0  # depth: a zero or negative value has no disparity and no ratio
    count = int(valid.sum())
    if count == 0:
        raise InputError("no valid pixel: the ground truth has no depth in the evaluated range where the "
                         "prediction is finite")  # fmt: skip
    depth, scale, shift = align(pred, gt, valid, alignment, pred_is_disparity, max_depth)
    abs_rel, d1, inlier = score(depth, gt, valid)
    return DepthScores(abs_rel, d1, inlier, count, scale, shift)


def mean_scores(scores: List[DepthScores]) -> DepthScores:
    """The mean of per-image scores (pixels summed; scale and shift: their means)."""
    if not scores:
        raise InputError("no image to average")
    return DepthScores(
        abs_rel=float(np.mean([s.abs_rel for s in scores])),
        delta1=float(np.mean([s.delta1 for s in scores])),
        inlier_103=float(np.mean([s.inlier_103 for s in scores])),
        valid_pixels=int(sum(s.valid_pixels for s in scores)),
        scale=float(np.mean([s.scale for s in scores])),
        shift=float(np.mean([s.shift for s in scores])),
    )
