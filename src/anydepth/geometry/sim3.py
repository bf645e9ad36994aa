"""Similarity transforms: Umeyama fit (weighted, RANSAC, robust IRLS), composition, DA3 extrinsics normalisation and
alignment to input poses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from anydepth.errors import ShapeError
from anydepth.geometry._checks import check_tensor
from anydepth.geometry.cameras import affine_inverse, as_homogeneous

RANSAC_MIN_VIEWS = 10
"""Upstream's DA3 api switches the pose alignment to RANSAC from this many views."""


@dataclass(frozen=True)
class Sim3:
    """A similarity ``x -> scale * rotation @ x + translation``.

    Attributes:
        scale: (...) positive scale.
        rotation: (..., 3, 3) rotation matrix.
        translation: (..., 3) translation.
    """

    scale: Tensor
    rotation: Tensor
    translation: Tensor

    def apply(self, points: Tensor) -> Tensor:
        """Transform points: (..., N, 3) -> (..., N, 3)."""
        check_tensor(points, "points", (3,), min_ndim=2)
        rotated = points @ self.rotation.transpose(-1, -2).to(points.dtype)
        return self.scale.to(points.dtype)[..., None, None] * rotated + self.translation.to(points.dtype)[..., None, :]

    def inverse(self) -> Sim3:
        """The inverse similarity."""
        rotation_t = self.rotation.transpose(-1, -2)
        translation = -(rotation_t @ self.translation[..., None])[..., 0] / self.scale[..., None]
        return Sim3(1.0 / self.scale, rotation_t, translation)

    def matrix(self) -> Tensor:
        """(..., 4, 4) homogeneous matrix ``[[s R, t], [0, 1]]``."""
        top = torch.cat((self.scale[..., None, None] * self.rotation, self.translation[..., None]), dim=-1)
        bottom = torch.zeros_like(top[..., :1, :])
        bottom[..., 0, 3] = 1.0
        return torch.cat((top, bottom), dim=-2)

    def compose(self, other: Sim3) -> Sim3:
        """``self ∘ other``: first ``other``, then ``self`` (the matrix product ``self.matrix() @ other.matrix()``).

        Example:
            >>> a = Sim3(torch.tensor(2.0), torch.eye(3), torch.tensor([1.0, 0.0, 0.0]))
            >>> a.compose(a.inverse()).matrix().allclose(torch.eye(4))
            True
        """
        rotation = self.rotation @ other.rotation
        translation = self.scale[..., None] * (self.rotation @ other.translation[..., None])[..., 0] + self.translation
        return Sim3(self.scale * other.scale, rotation, translation)

    @staticmethod
    def identity(dtype: torch.dtype = torch.float64) -> Sim3:
        """The identity similarity (batch shape ``()``)."""
        return Sim3(torch.ones((), dtype=dtype), torch.eye(3, dtype=dtype), torch.zeros(3, dtype=dtype))

    @staticmethod
    def from_matrix(matrix: Tensor) -> Sim3:
        """From a (..., 4, 4) (or (..., 3, 4)) matrix ``[[s R, t], [0, 1]]`` with s > 0; the inverse of
        :meth:`matrix`. The scale is the cube root of the determinant of the linear part."""
        check_tensor(matrix, "matrix", ((3, 4), 4))
        linear = matrix[..., :3, :3]
        scale = torch.linalg.det(linear).clamp_min(torch.finfo(matrix.dtype).tiny) ** (1.0 / 3.0)
        return Sim3(scale, linear / scale[..., None, None], matrix[..., :3, 3])


def umeyama(source: Tensor, target: Tensor, weights: Optional[Tensor] = None, with_scale: bool = True) -> Sim3:
    """Least-squares similarity with ``target ≈ scale * R @ source + t`` (Umeyama 1991).

    Computed in float64 and returned in ``source``'s dtype. Degenerate sets do not raise: for collinear points the
    rotation about their line is arbitrary (the fit is still optimal), and for a single point (or all points
    equal) the scale is 1 and the rotation the identity. Upstream (through evo) raises on collinear points, so
    it fails for two views.

    Args:
        source: (..., N, 3) points.
        target: (..., N, 3) corresponding points.
        weights: optional (..., N) non-negative weights (not all zero).
        with_scale: fit the scale; otherwise it is 1 (a rigid fit).

    Returns:
        a :class:`Sim3` with batch shape ``(...)``.

    Example:
        >>> src = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> fit = umeyama(src, 2.0 * src + 1.0)
        >>> round(float(fit.scale), 6), fit.translation.tolist()
        (2.0, [1.0, 1.0, 1.0])
    """
    check_tensor(source, "source", (None, 3))
    check_tensor(target, "target", (None, 3))
    if source.shape != target.shape:
        raise ShapeError(
            f"source and target must have the same shape, got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    if source.shape[-2] == 0:
        raise ShapeError("umeyama needs at least one point")
    x, y = source.double(), target.double()
    if weights is None:
        w = torch.full(x.shape[:-1], 1.0 / x.shape[-2], dtype=torch.float64, device=x.device)
    else:
        check_tensor(weights, "weights", (x.shape[-2],))
        if weights.shape != x.shape[:-1]:
            raise ShapeError(f"weights must have shape {tuple(x.shape[:-1])}, got {tuple(weights.shape)}")
        w = weights.double().clamp_min(0.0)
        total = w.sum(dim=-1, keepdim=True)
        if bool((total <= 0).any()):
            raise ShapeError("weights must not be all zero")
        w = w / total
    mean_x = (w[..., None] * x).sum(dim=-2)
    mean_y = (w[..., None] * y).sum(dim=-2)
    xc, yc = x - mean_x[..., None, :], y - mean_y[..., None, :]
    var_x = (w * (xc * xc).sum(dim=-1)).sum(dim=-1)  # (...)
    cov = (w[..., None] * yc).transpose(-1, -2) @ xc  # (..., 3, 3): sum_i w_i y_i x_i^T
    U, D, Vh = torch.linalg.svd(cov)
    sign = torch.ones_like(D)
    sign[..., 2] = torch.where(torch.det(U) * torch.det(Vh) < 0, -1.0, 1.0)
    rotation = U @ (sign[..., None] * Vh)
    degenerate = var_x <= torch.finfo(torch.float64).eps * (1.0 + mean_x.norm(dim=-1) ** 2)
    one = torch.ones_like(var_x)
    # a single point (or all points equal) has no spread: keep scale 1 rather than divide by zero
    scale = (
        torch.where(degenerate, one, (D * sign).sum(dim=-1) / torch.where(degenerate, one, var_x))
        if with_scale
        else one
    )
    eye = torch.eye(3, dtype=torch.float64, device=x.device).expand_as(rotation)
    rotation = torch.where(degenerate[..., None, None], eye, rotation)
    translation = mean_y - scale[..., None] * (rotation @ mean_x[..., None])[..., 0]
    dtype = source.dtype
    return Sim3(scale.to(dtype), rotation.to(dtype), translation.to(dtype))


def ransac_umeyama(
    source: Tensor,
    target: Tensor,
    num_iterations: int = 10,
    sample_size: Optional[int] = None,
    inlier_threshold: Optional[float] = None,
    seed: Optional[int] = 42,
) -> Tuple[Sim3, Tensor]:
    """Umeyama similarity ``target ≈ s R source + t`` made robust to outliers by RANSAC, as upstream DA3 does.

    Upstream's procedure (``utils/pose_align.py``), reproduced step by step: fit all points; unless given, the
    inlier threshold is the median over the aligned source points of the distance to the *nearest* target point;
    then ``num_iterations`` times fit a random subset of ``sample_size`` points (default ``max(3, (N + 1) // 2)``)
    drawn with ``numpy.random.default_rng(seed).choice(N, sample_size, replace=False)`` (the same generator and
    calls, so the same subsets as upstream), count points whose aligned distance to their own target is within
    the threshold and keep the model with the most inliers (ties: the lower mean inlier error). Finally refit on
    the best inliers if there are at least 3. Subsets whose covariance has rank < 2 are skipped, as upstream's
    evo raises on them and upstream skips those iterations.

    Args:
        source: (N, 3) points.
        target: (N, 3) corresponding points.
        num_iterations: RANSAC iterations (upstream: 10).
        sample_size: points per subset; clamped to ``[3, N]``.
        inlier_threshold: distance threshold; default as described above.
        seed: seed of ``numpy.random.default_rng`` (upstream's api passes 42).

    Returns:
        ``(sim3, inliers)``: the fit (batch shape ``()``) and (N,) bool inliers of the chosen model (all True when
        no iteration produced a model).
    """
    check_tensor(source, "source", (None, 3))
    check_tensor(target, "target", (None, 3))
    if source.ndim != 2 or source.shape != target.shape:
        raise ShapeError(f"source and target must both be (N, 3), got {tuple(source.shape)} and {tuple(target.shape)}")
    n = source.shape[0]
    if n < 3:
        raise ShapeError(f"RANSAC needs at least 3 points, got {n}")
    x, y = source.double(), target.double()
    sample_size = max(3, (n + 1) // 2) if sample_size is None else max(3, min(int(sample_size), n))
    best = umeyama(x, y)
    if inlier_threshold is None:
        aligned = best.apply(x)
        nearest = torch.cdist(aligned, y).min(dim=1).values
        inlier_threshold = float(np.median(nearest.cpu().numpy()))  # numpy's median averages the middle two
    rng = np.random.default_rng(seed)
    best_count, best_error = -1, float("inf")
    best_inliers: Optional[Tensor] = None
    for _ in range(num_iterations):
        sample = torch.from_numpy(rng.choice(np.arange(n), size=sample_size, replace=False)).to(x.device)
        if _covariance_rank(x[sample], y[sample]) < 2:
            continue
        model = umeyama(x[sample], y[sample])
        errors = (model.apply(x) - y).norm(dim=-1)
        inliers = errors <= inlier_threshold
        count = int(inliers.sum())
        error = float(errors[inliers].mean()) if count > 0 else float("inf")
        if count > best_count or (count == best_count and error < best_error):
            best, best_count, best_error, best_inliers = model, count, error, inliers
    if best_inliers is not None and int(best_inliers.sum()) >= 3:
        best = umeyama(x[best_inliers], y[best_inliers])
    if best_inliers is None:
        best_inliers = torch.ones(n, dtype=torch.bool, device=x.device)
    dtype = source.dtype
    return Sim3(best.scale.to(dtype), best.rotation.to(dtype), best.translation.to(dtype)), best_inliers


ALIGN_METHODS = ("sim3", "se3", "scale+se3")
"""Chunk alignment models, named as DA3-Streaming's ``align_method``: a similarity, a rigid motion, or a rigid
motion after a scale fixed beforehand (from depth ratios, :func:`weighted_median_ratio`)."""


@dataclass(frozen=True)
class RobustFit:
    """Result of :func:`robust_sim3`.

    Attributes:
        sim3: the fitted transform (batch shape ``()``), ``target ≈ s R source + t``.
        weights: (N,) the final combined weights (confidence x Huber), summing to 1.
        iterations: IRLS re-weightings done after the initial fit.
        residual: weighted mean distance after the fit (confidence weights only), in the target's units.
    """

    sim3: Sim3
    weights: Tensor
    iterations: int
    residual: float


def robust_sim3(
    source: Tensor,
    target: Tensor,
    weights: Optional[Tensor] = None,
    method: str = "sim3",
    delta: float = 0.1,
    max_iters: int = 5,
    tol: float = 1e-9,
    scale: Optional[float] = None,
) -> RobustFit:
    """Confidence-weighted similarity (or rigid motion) made robust by iteratively re-weighted least squares.

    DA3-Streaming's alignment of one chunk onto the next: fit with the confidence weights, then up to
    ``max_iters`` times re-weight each point by ``confidence x huber(residual)`` (Huber weight 1 within ``delta``,
    ``delta / r`` beyond) and refit, stopping once the parameters stop moving (scale and translation change under
    ``tol`` and rotation under 0.1 degree) or the Huber cost changes by less than ``tol`` relatively. Unlike
    upstream, each fit is the weighted Umeyama optimum (upstream takes the scale as a ratio of RMS spreads, which is
    biased when the point sets are noisy), and ``scale+se3`` keeps the given scale throughout (upstream refits a
    scale inside the loop and then overwrites it). Deterministic: no sampling.

    Args:
        source: (N, 3) points to move.
        target: (N, 3) corresponding points.
        weights: (N,) non-negative confidence weights; None: uniform.
        method: "sim3" (scale, rotation, translation), "se3" (rotation, translation) or "scale+se3" (``scale``
            given, then rotation and translation).
        delta: Huber threshold, in the target's units (upstream: 0.1).
        max_iters: IRLS iterations (upstream: 5).
        tol: convergence tolerance (upstream: 1e-9).
        scale: the fixed scale of "scale+se3".

    Returns:
        a :class:`RobustFit`, computed in float64.

    Example:
        >>> src = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> dst = 3.0 * src + torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        >>> dst[0] += 100.0  # one gross outlier
        >>> round(float(robust_sim3(src, dst, delta=0.05, max_iters=20).sim3.scale), 2)  # plain Umeyama: 3.17
        3.0
    """
    if method not in ALIGN_METHODS:
        raise ShapeError(f"unknown alignment method {method!r}; choose one of {', '.join(ALIGN_METHODS)}")
    if method == "scale+se3" and (scale is None or not scale > 0):
        raise ShapeError("method 'scale+se3' needs a positive scale")
    check_tensor(source, "source", (None, 3))
    check_tensor(target, "target", (None, 3))
    if source.ndim != 2 or source.shape != target.shape:
        raise ShapeError(f"source and target must both be (N, 3), got {tuple(source.shape)} and {tuple(target.shape)}")
    x, y = source.double(), target.double()
    if weights is None:
        confidence = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    else:
        check_tensor(weights, "weights", (x.shape[0],), min_ndim=1)
        confidence = weights.double().clamp_min(0.0)
    if float(confidence.sum()) <= 0:
        raise ShapeError("weights must not be all zero")
    confidence = confidence / confidence.sum()
    fixed = float(scale) if method == "scale+se3" else 1.0
    x_scaled = x * fixed

    def fit(w: Tensor) -> Sim3:
        return umeyama(x_scaled, y, w, with_scale=method == "sim3")

    def huber_cost(r: Tensor) -> float:
        return float((confidence * torch.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))).sum())

    current = fit(confidence)
    combined = confidence
    previous_cost = float("inf")
    iterations = 0
    for _ in range(max_iters):
        residual = (current.apply(x_scaled) - y).norm(dim=-1)
        huber = torch.where(residual > delta, delta / residual.clamp_min(1e-300), torch.ones_like(residual))
        combined = confidence * huber
        combined = combined / combined.sum().clamp_min(1e-300)
        candidate = fit(combined)
        iterations += 1
        cost = huber_cost(residual)
        moved = float((candidate.scale - current.scale).abs() + (candidate.translation - current.translation).norm())
        cos = ((candidate.rotation @ current.rotation.transpose(-1, -2)).diagonal().sum() - 1.0) / 2.0
        angle = float(torch.arccos(cos.clamp(-1.0, 1.0)))
        current = candidate
        if (moved < tol and angle < math.radians(0.1)) or abs(previous_cost - cost) < tol * previous_cost:
            break
        previous_cost = cost
    if method == "scale+se3":  # fold the fixed scale back in: y ≈ R (s x) + t
        current = Sim3(current.scale * fixed, current.rotation, current.translation)
    residual = float((confidence * (current.apply(x) - y).norm(dim=-1)).sum())
    return RobustFit(current, combined, iterations, residual)


def weighted_median_ratio(numerator: Tensor, denominator: Tensor, weights: Optional[Tensor] = None) -> float:
    """The weighted median of ``numerator / denominator`` over entries where both are positive and finite.

    The scale of "scale+se3" alignment: depth of the same pixels seen by two chunks, weighted by their
    confidences. A median ignores the pixels where one chunk's depth is wrong, which a least-squares scale does not.

    Args:
        numerator, denominator: (...) depths of the same pixels.
        weights: (...) non-negative weights; None: uniform.

    Returns:
        the ratio; 1.0 where no entry is usable.

    Example:
        >>> weighted_median_ratio(torch.tensor([2.0, 4.0, 6.0, 100.0]), torch.tensor([1.0, 2.0, 3.0, 1.0]))
        2.0
    """
    a, b = numerator.double().reshape(-1), denominator.double().reshape(-1)
    w = torch.ones_like(a) if weights is None else weights.double().reshape(-1).clamp_min(0.0)
    usable = torch.isfinite(a) & torch.isfinite(b) & (a > 0) & (b > 0) & (w > 0)
    if not bool(usable.any()):
        return 1.0
    ratio, w = a[usable] / b[usable], w[usable]
    order = torch.argsort(ratio)
    cumulative = torch.cumsum(w[order], dim=0)
    index = int(torch.searchsorted(cumulative, 0.5 * cumulative[-1]))
    return float(ratio[order][min(index, ratio.numel() - 1)])


def apply_sim3_to_extrinsics(sim3: Sim3, extrinsics: Tensor) -> Tensor:
    """Move world-to-camera extrinsics into the frame that ``sim3`` maps their world into.

    Camera ``i`` with pose (camera-to-world) ``[R_i | c_i]`` becomes ``[R R_i | s R c_i + t]``; the result is
    again world-to-camera, a rigid transform (the scale goes into the camera centres only).

    Args:
        sim3: batch shape ``()`` or broadcastable with the extrinsics' leading dimensions except the view axis.
        extrinsics: (..., S, 3|4, 4) world-to-camera.

    Returns:
        (..., S, 3, 4) world-to-camera in the new frame.
    """
    check_tensor(extrinsics, "extrinsics", ((3, 4), 4), min_ndim=3)
    pose = affine_inverse(extrinsics[..., :3, :4])  # (..., S, 3, 4) camera-to-world
    R = sim3.rotation.to(pose.dtype)[..., None, :, :]
    s = sim3.scale.to(pose.dtype)[..., None, None]
    t = sim3.translation.to(pose.dtype)[..., None, :]
    rotation = R @ pose[..., :3, :3]
    centre = s * (R @ pose[..., :3, 3:])[..., 0] + t
    return affine_inverse(torch.cat((rotation, centre[..., None]), dim=-1))


def normalize_extrinsics(extrinsics: Tensor) -> Tuple[Tensor, Tensor]:
    """Normalise input extrinsics as DA3 does before pose conditioning.

    View 0 becomes the identity (every extrinsic is right-multiplied by view 0's inverse), and translations are
    divided by the median distance of the camera centres from view 0's, clamped at >= 0.1. As upstream, the
    median is torch's lower median and includes view 0's own zero distance, so with two views it is 0 and the
    clamp applies: translations are multiplied by 10. Computed in the input's dtype (upstream: float32).

    Args:
        extrinsics: (..., S, 3|4, 4) world-to-camera, rigid.

    Returns:
        ``(normalized, scale)``: (..., S, 4, 4) normalised world-to-camera, and (...) the divisor used.

    Example:
        >>> ext = torch.eye(4).repeat(3, 1, 1)
        >>> ext[1, 0, 3], ext[2, 0, 3] = 2.0, 4.0
        >>> normalized, scale = normalize_extrinsics(ext)
        >>> float(scale), normalized[2, 0, 3].item()
        (2.0, 2.0)
    """
    check_tensor(extrinsics, "extrinsics", ((3, 4), 4), min_ndim=3)
    ext = as_homogeneous(extrinsics)
    normalized = ext @ affine_inverse(ext[..., :1, :, :])
    centres = affine_inverse(normalized)[..., :3, 3]
    scale = centres.norm(dim=-1).median(dim=-1).values.clamp(min=0.1)
    translation = normalized[..., :3, 3] / scale[..., None, None]
    normalized = torch.cat(
        (torch.cat((normalized[..., :3, :3], translation[..., None]), dim=-1), normalized[..., 3:, :]), dim=-2
    )
    return normalized, scale


@dataclass(frozen=True)
class PoseAlignment:
    """Result of :func:`align_to_input_extrinsics`.

    Attributes:
        extrinsics: (S, 3, 4) world-to-camera extrinsics to report.
        depth: depth consistent with ``extrinsics`` (same shape as the depth given), or None if none was given.
        sim3: the fitted similarity from the *input* camera centres to the *predicted* ones.
        inliers: (S,) bool views that the fit used (all True without RANSAC).
    """

    extrinsics: Tensor
    depth: Optional[Tensor]
    sim3: Sim3
    inliers: Tensor


def align_to_input_extrinsics(
    predicted_extrinsics: Tensor,
    input_extrinsics: Tensor,
    depth: Optional[Tensor] = None,
    align_to_input_ext_scale: bool = True,
    ransac: Optional[bool] = None,
    seed: Optional[int] = 42,
) -> PoseAlignment:
    """Relate DA3's predicted cameras to the cameras the user gave, as upstream's api does after inference.

    A similarity is fitted from the input camera centres to the predicted ones (upstream passes them in this
    order: predicted ≈ s R input + t), with RANSAC from :data:`RANSAC_MIN_VIEWS` views. Then:

    - ``align_to_input_ext_scale=True``: the input extrinsics are returned and depth is divided by ``s``, so
      depth is in the input's units and frame;
    - ``False``: the input extrinsics moved into the prediction's frame and scale are returned, depth unchanged.

    Both outputs are self-consistent (unprojected depth and cameras agree). Unlike upstream, two views work (the
    scale is well defined; evo raises) and the ``False`` case returns (S, 3, 4) rather than (S, 4, 4).

    Args:
        predicted_extrinsics: (S, 3|4, 4) world-to-camera predicted by the network.
        input_extrinsics: (S, 3|4, 4) world-to-camera given by the user (before :func:`normalize_extrinsics`).
        depth: optional (S, ...) predicted depth.
        align_to_input_ext_scale: see above.
        ransac: force RANSAC on or off; default: on from :data:`RANSAC_MIN_VIEWS` views (never below 3 views).
        seed: RANSAC seed (upstream: 42).

    Returns:
        a :class:`PoseAlignment`.
    """
    check_tensor(predicted_extrinsics, "predicted_extrinsics", ((3, 4), 4), min_ndim=3)
    check_tensor(input_extrinsics, "input_extrinsics", ((3, 4), 4), min_ndim=3)
    if predicted_extrinsics.ndim != 3 or input_extrinsics.ndim != 3:
        raise ShapeError("predicted_extrinsics and input_extrinsics must be (S, 3|4, 4)")
    num_views = predicted_extrinsics.shape[0]
    if input_extrinsics.shape[0] != num_views:
        raise ShapeError(f"{num_views} predicted extrinsics but {input_extrinsics.shape[0]} input extrinsics")
    if depth is not None and (depth.ndim < 1 or depth.shape[0] != num_views):
        raise ShapeError(f"depth must have {num_views} views first, got shape {tuple(depth.shape)}")
    predicted_centres = affine_inverse(predicted_extrinsics[..., :3, :4].double())[..., :3, 3]
    input_centres = affine_inverse(input_extrinsics[..., :3, :4].double())[..., :3, 3]
    use_ransac = num_views >= RANSAC_MIN_VIEWS if ransac is None else ransac
    if use_ransac and num_views >= 3:
        sim3, inliers = ransac_umeyama(input_centres, predicted_centres, seed=seed)
    else:
        sim3 = umeyama(input_centres, predicted_centres)
        inliers = torch.ones(num_views, dtype=torch.bool, device=sim3.scale.device)
    dtype = input_extrinsics.dtype
    if align_to_input_ext_scale:
        extrinsics = input_extrinsics[..., :3, :4].clone()
        if depth is not None:
            depth = depth / sim3.scale.to(depth.dtype)
    else:
        extrinsics = apply_sim3_to_extrinsics(sim3, input_extrinsics.double()).to(dtype)
    return PoseAlignment(extrinsics=extrinsics, depth=depth, sim3=sim3, inliers=inliers)


def _covariance_rank(source: Tensor, target: Tensor) -> int:
    # evo's test: singular values of the cross-covariance above float64 eps
    xc = source - source.mean(dim=0)
    yc = target - target.mean(dim=0)
    singular = torch.linalg.svdvals(yc.transpose(0, 1) @ xc / source.shape[0])
    return int((singular > torch.finfo(torch.float64).eps).sum())
