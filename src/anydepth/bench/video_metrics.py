"""Video depth metrics: one scale and shift per sequence in disparity space, AbsRel, delta1 and TAE.

The protocol is the one DepthCrafter and Video Depth Anything evaluate with: the predicted disparity of a whole
sequence is mapped onto the ground truth's disparity by one least-squares scale and shift (so flicker between
frames is not forgiven), clipped, inverted to depth and clipped to the dataset's depth range; AbsRel and delta1
are computed per frame and averaged over the sequence. TAE (temporal alignment error, Video Depth Anything)
reprojects each frame's aligned depth into the next frame with the ground-truth cameras and measures AbsRel
against the next frame's depth, in both directions, averaged over the frame pairs and multiplied by 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from anydepth.errors import InputError, ShapeError

MIN_DEPTH = 1e-3


def _valid_mask(gt_depth: np.ndarray, max_depth: float, mask: Optional[np.ndarray]) -> np.ndarray:
    valid = (gt_depth > MIN_DEPTH) & (gt_depth < max_depth) & np.isfinite(gt_depth)
    return valid if mask is None else valid & mask.astype(bool)


def align_disparity_to_depth(
    pred_disparity: np.ndarray,
    gt_depth: np.ndarray,
    max_depth: float = 80.0,
    mask: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Depth from a relative disparity prediction, by one least-squares scale and shift for the whole sequence.

    Args:
        pred_disparity: (T, H, W) predicted disparity (affine-invariant).
        gt_depth: (T, H, W) ground-truth depth; pixels outside (1e-3, max_depth) are ignored.
        max_depth: upper end of the evaluated depth range.
        mask: optional (T, H, W) bool of pixels to use.

    Returns:
        (T, H, W) float64 depth, clipped to [1e-3, max_depth].

    Example:
        >>> gt = np.array([[[1.0, 2.0], [4.0, 5.0]]])
        >>> np.allclose(align_disparity_to_depth(3.0 / gt + 1.0, gt), gt)
        True
    """
    pred_disparity = np.asarray(pred_disparity, np.float64)
    gt_depth = np.asarray(gt_depth, np.float64)
    if pred_disparity.shape != gt_depth.shape or pred_disparity.ndim != 3:
        raise ShapeError(f"prediction {pred_disparity.shape} and ground truth {gt_depth.shape} must both be (T, H, W)")
    valid = _valid_mask(gt_depth, max_depth, mask)
    if not valid.any():
        raise ShapeError("no ground-truth pixel lies in the evaluated depth range")
    pred = np.clip(pred_disparity, MIN_DEPTH, None)
    A = np.stack([pred[valid], np.ones(int(valid.sum()))], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(A, 1.0 / gt_depth[valid], rcond=None)
    disparity = np.clip(scale * pred + shift, MIN_DEPTH, None)
    return np.clip(1.0 / disparity, MIN_DEPTH, max_depth)


def abs_rel(pred_depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray) -> float:
    """Mean over frames of mean(|pred - gt| / gt) over each frame's valid pixels (frames without any skipped)."""
    scores = [np.mean(np.abs(p[v] - g[v]) / g[v]) for p, g, v in zip(pred_depth, gt_depth, valid) if v.any()]
    return float(np.mean(scores))


def delta1(pred_depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray, threshold: float = 1.25) -> float:
    """Mean over frames of the share of valid pixels with max(pred / gt, gt / pred) < 1.25."""
    scores = []
    for p, g, v in zip(pred_depth, gt_depth, valid):
        if v.any():
            ratio = np.maximum(p[v] / g[v], g[v] / p[v])
            scores.append(np.mean(ratio < threshold))
    return float(np.mean(scores))


def _as_4x4(extrinsics: np.ndarray) -> np.ndarray:
    E = np.asarray(extrinsics, np.float64)
    if E.ndim != 3 or E.shape[1:] not in ((3, 4), (4, 4)):
        raise ShapeError(f"extrinsics must be (T, 3, 4) or (T, 4, 4), got {E.shape}")
    if E.shape[1] == 3:
        E = np.concatenate([E, np.broadcast_to([[[0.0, 0.0, 0.0, 1.0]]], (len(E), 1, 4))], axis=1)
    return E


def _reprojection_abs_rel(depth_a: np.ndarray, depth_b: np.ndarray, a_to_b: np.ndarray, K: np.ndarray,
                          mask_b: np.ndarray) -> Optional[float]:  # fmt: skip
    """AbsRel between frame b's depth and frame a's depth moved into b (nearest pixel, nearest surface wins)."""
    H, W = depth_a.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    z = depth_a
    points = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1).reshape(-1, 3)
    moved = points @ a_to_b[:3, :3].T + a_to_b[:3, 3]
    zb = moved[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ub = np.round(moved[:, 0] * fx / zb + cx)
        vb = np.round(moved[:, 1] * fy / zb + cy)
    inside = (zb > 0) & (ub >= 0) & (ub < W) & (vb >= 0) & (vb < H)
    if not inside.any():
        return None
    flat = vb[inside].astype(np.int64) * W + ub[inside].astype(np.int64)
    projected = np.full(H * W, np.inf)
    np.minimum.at(projected, flat, zb[inside])  # where several points land on one pixel, the nearest is seen
    projected = projected.reshape(H, W)
    valid = np.isfinite(projected) & (depth_b > 0) & mask_b
    if not valid.any():
        return None
    return float(np.mean(np.abs(depth_b[valid] - projected[valid]) / depth_b[valid]))


def temporal_alignment_error(
    depth: np.ndarray,
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    mask: Optional[np.ndarray] = None,
) -> float:
    """TAE of a depth video with known cameras (lower is more consistent).

    For each pair of consecutive frames, frame k's depth is unprojected, moved into frame k+1 with the
    ground-truth cameras, projected to the nearest pixel and compared with frame k+1's depth by AbsRel; and the
    same from k+1 to k. The result is the mean over both directions and all pairs, times 100. Where several points
    land on one pixel the nearest is kept (upstream keeps an arbitrary one).

    Args:
        depth: (T, H, W) depth (already aligned to the ground truth's scale; see :func:`evaluate_video_depth`).
        extrinsics: (T, 3, 4) or (T, 4, 4) world-to-camera, OpenCV.
        intrinsics: (3, 3) or (T, 3, 3) pixels.
        mask: optional (T, H, W) bool of pixels of the target frame to score.

    Returns:
        TAE x 100.
    """
    depth = np.asarray(depth, np.float64)
    if depth.ndim != 3 or len(depth) < 2:
        raise ShapeError(f"depth must be (T, H, W) with T >= 2, got {depth.shape}")
    E = _as_4x4(extrinsics)
    K = np.asarray(intrinsics, np.float64)
    K = np.broadcast_to(K, (len(depth), 3, 3)) if K.ndim == 2 else K
    if len(E) != len(depth) or len(K) != len(depth):
        raise ShapeError(f"{len(depth)} depth maps but {len(E)} extrinsics and {len(K)} intrinsics")
    masks = np.ones(depth.shape, bool) if mask is None else np.asarray(mask, bool)
    errors = []
    for k in range(len(depth) - 1):
        k_to_next = E[k + 1] @ np.linalg.inv(E[k])
        for a, b, a_to_b in ((k, k + 1, k_to_next), (k + 1, k, np.linalg.inv(k_to_next))):
            err = _reprojection_abs_rel(depth[a], depth[b], a_to_b, K[a], masks[b])
            errors.append(0.0 if err is None else err)  # upstream counts a pair without overlap as 0
    return 100.0 * float(np.mean(errors))


@dataclass(frozen=True)
class VideoDepthScores:
    """Scores of one sequence: AbsRel and delta1 after per-sequence alignment, and TAE x 100 if cameras were
    given."""

    abs_rel: float
    delta1: float
    tae: Optional[float] = None


def evaluate_video_depth(
    pred: np.ndarray,
    gt_depth: np.ndarray,
    extrinsics: Optional[np.ndarray] = None,
    intrinsics: Optional[np.ndarray] = None,
    max_depth: float = 80.0,
    mask: Optional[np.ndarray] = None,
    pred_kind: str = "disparity",
) -> VideoDepthScores:
    """AbsRel, delta1 (and TAE with cameras) of a predicted depth video against ground truth.

    Args:
        pred: (T, H, W) prediction; "disparity" (relative: aligned by one scale and shift per sequence in
            disparity space) or "metric" (metres, used as they are, clipped to the range).
        gt_depth: (T, H, W) ground-truth depth; pixels outside (1e-3, max_depth) are ignored.
        extrinsics, intrinsics: ground-truth cameras for TAE (see :func:`temporal_alignment_error`).
        max_depth: upper end of the evaluated depth range.
        mask: optional (T, H, W) bool of pixels to use.
        pred_kind: "disparity" or "metric".
    """
    gt_depth = np.asarray(gt_depth, np.float64)
    if pred_kind == "disparity":
        depth = align_disparity_to_depth(pred, gt_depth, max_depth, mask)
    elif pred_kind == "metric":
        depth = np.clip(np.asarray(pred, np.float64), MIN_DEPTH, max_depth)
    else:
        raise InputError(f"pred_kind must be 'disparity' or 'metric', not {pred_kind!r}")
    valid = _valid_mask(gt_depth, max_depth, mask)
    tae = None
    if extrinsics is not None and intrinsics is not None:
        tae = temporal_alignment_error(depth, extrinsics, intrinsics, mask)
    return VideoDepthScores(abs_rel(depth, gt_depth, valid), delta1(depth, gt_depth, valid), tae)
