"""Training losses of the Depth Anything family, each as its paper defines it, on masked (B, ..., H, W) maps.

Every loss takes a boolean ``mask`` of the pixels that have ground truth and averages over those pixels only. An
image (or a whole batch) without a single valid pixel contributes zero, and its gradient is zero and finite: the
closed-form solves below divide by a safe denominator where the system is singular, never by zero.

- :func:`ssi_loss` and :func:`gradient_matching_loss`: MiDaS's scale-and-shift-invariant loss and its multi-scale
  gradient matching term, on disparity (Depth Anything V1 / V2 relative models, Video Depth Anything per frame);
- :func:`silog_loss`: the scale-invariant log loss of Eigen et al. (V2 metric models, lambda 0.5);
- :func:`confidence_depth_loss`, :func:`ray_loss`, :func:`camera_rays`: DA3's depth-ray objective;
- :func:`temporal_gradient_matching_loss`: Video Depth Anything's temporal term (TGM).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from anydepth.errors import ShapeError

_SINGULAR = 1e-12  # a determinant (or pixel count) at or below this is a system without a solution


def _check_maps(pred: Tensor, target: Tensor, mask: Tensor) -> None:
    if pred.shape != target.shape or pred.shape != mask.shape or pred.dim() < 3:
        raise ShapeError(
            f"pred, target and mask must be (B, ..., H, W) of one shape, got {tuple(pred.shape)}, "
            f"{tuple(target.shape)} and {tuple(mask.shape)}"
        )


def _clean(target: Tensor, mask: Tensor) -> Tensor:
    """``target`` with zeros outside ``mask``: ground truth may hold NaN or inf there (no depth, or a disparity of
    zero depth), which would reach the gradients through ``0 * nan``."""
    return torch.where(mask, target, torch.zeros_like(target))


def _zero(like: Tensor) -> Tensor:
    """A zero that is still connected to ``like``'s graph (so ``backward`` works and gives zero gradients)."""
    return like.sum() * 0.0


def scale_and_shift(pred: Tensor, target: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-sample least-squares scale ``s`` and shift ``t`` minimising ``sum_mask (s * pred + t - target)^2``.

    The 2x2 normal equations are solved in closed form, as MiDaS's ``compute_scale_and_shift``; where they are
    singular, ``s = 0`` and ``t`` is the mean valid target (a constant prediction: the best fit there is), or 0
    without a valid pixel.

    Args:
        pred, target: (B, ...) maps; everything after the first dimension belongs to one sample.
        mask: (B, ...) bool, the pixels that count.

    Returns:
        ``(scale (B,), shift (B,))``, differentiable with respect to ``pred``.

    Example:
        >>> target = torch.tensor([[1.0, 2.0, 3.0]])
        >>> s, t = scale_and_shift(2 * target + 1, target, torch.ones(1, 3, dtype=torch.bool))
        >>> round(s.item(), 6), round(t.item(), 6)
        (0.5, -0.5)
    """
    m = mask.flatten(1).to(pred.dtype)
    p, d = _clean(pred, mask).flatten(1), _clean(target, mask).flatten(1).to(pred.dtype)
    a00, a01, a11 = (m * p * p).sum(1), (m * p).sum(1), m.sum(1)
    b0, b1 = (m * p * d).sum(1), (m * d).sum(1)
    det = a00 * a11 - a01 * a01
    solvable = det > _SINGULAR * a11.clamp(min=1.0) ** 2
    safe = torch.where(solvable, det, torch.ones_like(det))
    scale = torch.where(solvable, (a11 * b0 - a01 * b1) / safe, torch.zeros_like(det))
    # a constant prediction: the best fit is the target's mean (s = 0); no valid pixel: zero
    mean = b1 / a11.clamp(min=1.0)
    shift = torch.where(solvable, (a00 * b1 - a01 * b0) / safe, mean)
    return scale, shift


def _aligned(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``s * pred + t`` with the per-sample least-squares scale and shift of :func:`scale_and_shift`."""
    scale, shift = scale_and_shift(pred, target, mask)
    view = (-1,) + (1,) * (pred.dim() - 1)
    return pred * scale.view(view) + shift.view(view)


ALIGNMENTS = ("lstsq", "median")
"""How :func:`ssi_loss` and :func:`gradient_matching_loss` remove scale and shift: "lstsq" fits the prediction onto
the target (MiDaS's ``compute_scale_and_shift``); "median" normalises both (Depth Anything V1's affine-invariant
loss, :func:`median_normalised`)."""


def median_normalised(x: Tensor, mask: Tensor) -> Tensor:
    """Each sample's map minus its median, over its mean absolute deviation from it (valid pixels only).

    Depth Anything V1 (Yang et al. 2024, eqs. 1-2) removes scale and shift this way, from the prediction and the
    target alike: ``d_hat = (d - t(d)) / s(d)``, ``t(d) = median(d)``, ``s(d) = 1/|M| sum_M |d - t(d)|``. Unlike the
    least-squares fit, ``s(d) > 0`` keeps the sign: a prediction that is the target upside down is not a solution.
    A network trained from scratch needs that; with the least-squares fit one learnt outdoor scenes inverted (its
    every outdoor image fitted with a negative scale) and rooms upright. A sample without a valid pixel, or a
    constant one, is divided by a safe ``1e-6``.

    Example:
        >>> x = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
        >>> median_normalised(x, torch.tensor([[True, True, True, False]]))
        tensor([[-1.5000,  0.0000,  1.5000, 12.0000]])
    """
    flat, valid = x.flatten(1), mask.flatten(1)
    median = torch.where(valid, flat, torch.full_like(flat, float("nan"))).nanmedian(dim=1).values
    median = torch.where(torch.isnan(median), torch.zeros_like(median), median)
    deviation = torch.where(valid, (flat - median[:, None]).abs(), torch.zeros_like(flat))
    scale = (deviation.sum(1) / valid.sum(1).clamp(min=1)).clamp(min=1e-6)
    view = (-1,) + (1,) * (x.dim() - 1)
    return (x - median.view(view)) / scale.view(view)


def _residual(pred: Tensor, target: Tensor, mask: Tensor, alignment: str) -> Tensor:
    """The prediction minus the target once scale and shift are removed as ``alignment`` says."""
    if alignment == "median":
        return median_normalised(pred, mask) - median_normalised(target, mask)
    if alignment != "lstsq":
        raise ValueError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
    return _aligned(pred, target, mask) - target


def ssi_loss(pred: Tensor, target: Tensor, mask: Tensor, alignment: str = "lstsq") -> Tensor:
    """Scale-and-shift-invariant mean absolute error (MiDaS, Ranftl et al. 2020, without its trimming).

    Each image's prediction is aligned to its target by the least-squares scale and shift over its valid pixels
    (:func:`scale_and_shift`), then the absolute residuals are averaged over all valid pixels of the batch
    (MiDaS's batch-based reduction)::

        (s_i, t_i) = argmin_{s, t} sum_{p in M_i} (s * pred_i(p) + t - target_i(p))^2
        L_ssi = 1 / |M| * sum_i sum_{p in M_i} |s_i * pred_i(p) + t_i - target_i(p)|

    MiDaS writes the mean with a factor 1/2 (``1 / 2M``); it only rescales the loss, and is left out. Depth
    Anything V2 trains its relative models with this loss on disparity (inverse depth), as MiDaS does.

    Args:
        pred: (B, H, W) predicted disparity (or any map to be compared up to an affine map).
        target: (B, H, W) target disparity.
        mask: (B, H, W) bool valid pixels.
        alignment: "lstsq" (above) or "median": both maps normalised by :func:`median_normalised` (Depth
            Anything V1's form, which keeps the sign), then the same mean absolute residual.

    Returns:
        Scalar tensor. Invariant to ``pred -> a * pred + b`` for every ``a != 0`` and ``b`` ("median": ``a > 0``).

    Example:
        >>> target = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])
        >>> round(ssi_loss(3 * target - 2, target, torch.ones(1, 2, 2, dtype=torch.bool)).item(), 6)
        0.0
    """
    _check_maps(pred, target, mask)
    count = mask.sum()
    if int(count) == 0:
        return _zero(pred)
    target = _clean(target, mask)
    residual = _residual(pred, target, mask, alignment).abs()
    return torch.where(mask, residual, torch.zeros_like(residual)).sum() / count


def gradient_matching_loss(
    pred: Tensor, target: Tensor, mask: Tensor, scales: int = 4, alignment: str = "lstsq"
) -> Tensor:
    """MiDaS's multi-scale gradient matching term on the aligned prediction (Ranftl et al. 2020).

    With ``R = s * pred + t - target`` (per image, :func:`scale_and_shift`) and ``R^k`` the residual at scale
    ``k`` (every ``2^k``-th pixel in both directions)::

        L_gm = sum_{k < scales} 1 / |M^k| * sum_{p} (|d_x R^k(p)| + |d_y R^k(p)|)

    where a finite difference counts only where both of its pixels are valid, and ``|M^k|`` is the number of
    valid pixels at scale ``k``. The term asks for sharp, correctly placed discontinuities; Depth Anything V2
    weights it twice the SSI loss (:func:`relative_depth_loss`).

    Args:
        pred, target, mask: as for :func:`ssi_loss`.
        scales: number of scales (4 in MiDaS and Depth Anything).
        alignment: how ``R`` removes scale and shift, as for :func:`ssi_loss`.

    Returns:
        Scalar tensor, zero for ``pred = a * target + b``.
    """
    _check_maps(pred, target, mask)
    target = _clean(target, mask)
    residual = _residual(pred, target, mask, alignment)
    residual = torch.where(mask, residual, torch.zeros_like(residual))
    total = _zero(pred)
    for k in range(scales):
        step = 2**k
        r, m = residual[..., ::step, ::step], mask[..., ::step, ::step]
        count = m.sum()
        if int(count) == 0:
            continue
        mx = m[..., :, 1:] & m[..., :, :-1]
        my = m[..., 1:, :] & m[..., :-1, :]
        gx = (r[..., :, 1:] - r[..., :, :-1]).abs() * mx
        gy = (r[..., 1:, :] - r[..., :-1, :]).abs() * my
        total = total + (gx.sum() + gy.sum()) / count
    return total


def relative_depth_loss(
    pred: Tensor, target: Tensor, mask: Tensor, gradient_weight: float = 2.0, alignment: str = "lstsq"
) -> Tensor:
    """Depth Anything V2's loss of its relative models: ``L_ssi + gradient_weight * L_gm`` on disparity.

    The V2 paper keeps V1's two terms and sets their weights 1 : 2, which made depth edges sharper.

    Args:
        pred, target, mask: (B, H, W) predicted disparity, target disparity, valid pixels.
        gradient_weight: weight of :func:`gradient_matching_loss`.
        alignment: "lstsq" or "median" (see :func:`ssi_loss`).
    """
    loss = ssi_loss(pred, target, mask, alignment)
    if gradient_weight:
        loss = loss + gradient_weight * gradient_matching_loss(pred, target, mask, alignment=alignment)
    return loss


def silog_loss(pred: Tensor, target: Tensor, mask: Tensor, lam: float = 0.5, eps: float = 1e-6) -> Tensor:
    """Scale-invariant log loss (Eigen et al. 2014), as Depth Anything V2's metric models train with it.

    With ``g = log(target) - log(pred)`` over the valid pixels of the batch::

        L_silog = sqrt(mean(g^2) - lam * mean(g)^2)

    ``lam = 1`` gives the standard deviation of ``g``, which no global scale of ``pred`` changes; ``lam = 0`` is
    the RMSE in log space; V2-metric uses ``lam = 0.5`` (its ``SiLogLoss``), which keeps part of the scale
    error, so a metric model still learns its scale. The variance under the root is clamped at ``1e-12`` so that
    a perfect prediction has a finite gradient (the loss is then ``1e-6``, not exactly zero).

    Args:
        pred: (B, H, W) predicted depth (metres), positive where valid (clamped at ``eps``).
        target: (B, H, W) ground-truth depth.
        mask: (B, H, W) bool valid pixels (target > 0).
        lam: the variance weight lambda.
        eps: floor of ``pred`` and ``target`` before the logarithm.

    Example:
        >>> target = torch.tensor([[[1.0, 2.0], [4.0, 8.0]]])
        >>> mask = torch.ones(1, 2, 2, dtype=torch.bool)
        >>> round(silog_loss(3 * target, target, mask, lam=1.0).item(), 4)
        0.0
    """
    _check_maps(pred, target, mask)
    if int(mask.sum()) == 0:
        return _zero(pred)
    g = torch.log(target[mask].clamp(min=eps)) - torch.log(pred[mask].clamp(min=eps))
    variance = (g * g).mean() - lam * g.mean() ** 2
    return torch.sqrt(variance.clamp(min=1e-12))


def confidence_depth_loss(
    depth: Tensor, confidence: Tensor, target: Tensor, mask: Tensor, conf_weight: float = 1.0
) -> Tensor:
    """DA3's confidence-weighted depth loss (Depth Anything 3; VGGT's depth loss has the same form)::

        L_D = 1 / |M| * sum_{p in M} (c_p * |D_p - D*_p| - conf_weight * log c_p)

    The network predicts a confidence ``c >= 1`` per pixel (its ``depth_conf``). Where the error is large it can
    lower ``c`` and pay ``-log c`` for it: the confidence learns where depth is reliable (for a given error
    ``e`` the loss is smallest at ``c = conf_weight / e``).

    Args:
        depth: (B, S, H, W) predicted depth, in the scene's normalised units (see
            :func:`normalise_scene`).
        confidence: (B, S, H, W) predicted confidence (>= 1).
        target: (B, S, H, W) ground-truth depth in the same units.
        mask: (B, S, H, W) bool valid pixels.
        conf_weight: the weight of the log-confidence regulariser.
    """
    _check_maps(depth, target, mask)
    count = mask.sum()
    if int(count) == 0:
        return _zero(depth) + _zero(confidence)
    target = _clean(target, mask)
    per_pixel = confidence * (depth - target).abs() - conf_weight * torch.log(confidence)
    return torch.where(mask, per_pixel, torch.zeros_like(per_pixel)).sum() / count


def camera_rays(
    extrinsics: Tensor, intrinsics: Tensor, image_size: Tuple[int, int], ray_size: Tuple[int, int]
) -> Tensor:
    """The ray map DA3 predicts, built from known cameras: per cell the world direction, then the camera centre.

    A cell of the ``(h, w)`` ray grid sits at pixel ``(u, v) = ((j + 1/2) W / w, (i + 1/2) H / h)`` of the
    ``H x W`` image (the centres :func:`anydepth.geometry.ray_pose.ray_grid` uses). With world-to-camera ``[R | t]``
    and intrinsics ``K``::

        direction = R^T K^-1 (u, v, 1)^T     (camera z component 1: point = origin + depth * direction)
        origin    = -R^T t                   (the camera centre)

    so the point a z-depth ``D`` sees is ``origin + D * direction``, which is why DA3 calls depth and rays a
    complete description of the scene; :func:`anydepth.geometry.ray_pose.camera_from_rays` inverts this map.

    Args:
        extrinsics: (..., 3|4, 4) world-to-camera.
        intrinsics: (..., 3, 3) pixel intrinsics of the ``image_size`` image.
        image_size: ``(H, W)``.
        ray_size: ``(h, w)`` of the ray map (DA3's head: 8x the patch grid).

    Returns:
        (..., h, w, 6): direction (3), then origin (3).
    """
    if extrinsics.shape[-2:] not in ((3, 4), (4, 4)) or intrinsics.shape[-2:] != (3, 3):
        raise ShapeError(
            f"extrinsics must be (..., 3|4, 4) and intrinsics (..., 3, 3), got {tuple(extrinsics.shape)} and "
            f"{tuple(intrinsics.shape)}"
        )
    H, W = image_size
    h, w = ray_size
    dtype, device = extrinsics.dtype, extrinsics.device
    v = (torch.arange(h, dtype=dtype, device=device) + 0.5) * (H / h)
    u = (torch.arange(w, dtype=dtype, device=device) + 0.5) * (W / w)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    pixels = torch.stack((uu, vv, torch.ones_like(uu)), dim=-1)  # (h, w, 3)
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    to_world = R.transpose(-1, -2) @ torch.linalg.inv(intrinsics.to(dtype))  # (..., 3, 3)
    directions = torch.einsum("...ij,hwj->...hwi", to_world, pixels)
    origin = -(R.transpose(-1, -2) @ t[..., None])[..., 0]  # (..., 3)
    origins = origin[..., None, None, :].expand(*directions.shape)
    return torch.cat((directions, origins), dim=-1)


def normalise_scene(depth: Tensor, extrinsics: Tensor, intrinsics: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    """Ground truth of scenes in the frame DA3 predicts in: view 0's camera, and a common scale.

    DA3 normalises every ground-truth signal of a scene by one factor, the mean Euclidean norm of the valid
    points of its (view-0 frame) point map, so that depth, ray origins and camera translations share one unit.

    Args:
        depth: (B, S, H, W) z-depth; mask: (B, S, H, W) bool.
        extrinsics: (B, S, 3|4, 4) world-to-camera; intrinsics: (B, S, 3, 3).

    Returns:
        ``(depth / scale, extrinsics (B, S, 4, 4) relative to view 0 with translations / scale)``.
    """
    B, S, H, W = depth.shape
    dtype = depth.dtype
    ext = extrinsics.to(dtype)
    if ext.shape[-2] == 3:
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, device=ext.device).expand(B, S, 1, 4)
        ext = torch.cat((ext, bottom), dim=-2)
    relative = ext @ torch.linalg.inv(ext[:, :1])  # world = view 0's camera
    rays = camera_rays(relative, intrinsics.to(dtype), (H, W), (H, W))  # (B, S, H, W, 6)
    points = rays[..., 3:] + depth[..., None] * rays[..., :3]
    norms = torch.where(mask, points.norm(dim=-1), torch.zeros_like(depth))
    count = mask.flatten(1).sum(1)
    scale = (norms.flatten(1).sum(1) / count.clamp(min=1)).clamp(min=1e-6)
    scale = torch.where(count > 0, scale, torch.ones_like(scale))
    normalised = relative.clone()
    normalised[..., :3, 3] = relative[..., :3, 3] / scale[:, None, None]
    return depth / scale[:, None, None, None], normalised


def ray_loss(pred_rays: Tensor, target_rays: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """DA3's ray-map loss: the mean absolute error of the predicted ray map (directions and origins).

    Args:
        pred_rays: (B, S, h, w, 6) the head's ray output.
        target_rays: (B, S, h, w, 6) :func:`camera_rays` of the normalised ground-truth cameras.
        valid: optional (B, S) bool: scenes/views whose cameras are known.
    """
    if pred_rays.shape != target_rays.shape:
        raise ShapeError(f"ray maps of shapes {tuple(pred_rays.shape)} and {tuple(target_rays.shape)} differ")
    error = (pred_rays - target_rays).abs().mean(dim=(-3, -2, -1))  # (B, S)
    if valid is None:
        return error.mean()
    if int(valid.sum()) == 0:
        return _zero(pred_rays)
    return torch.where(valid, error, torch.zeros_like(error)).sum() / valid.sum()


def temporal_gradient_matching_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Video Depth Anything's temporal gradient matching loss (Chen et al. 2025).

    The prediction of each clip is first aligned to its target by one least-squares scale and shift over all of
    its frames (:func:`scale_and_shift` per clip, as the evaluation of video depth does), then the change between
    consecutive frames must match the ground truth's::

        L_tgm = 1 / |M| * sum_{i < T - 1} sum_{p in M_i} | |d_{i+1}(p) - d_i(p)| - |g_{i+1}(p) - g_i(p)| |

    where ``M_i`` holds the pixels valid in both frames ``i`` and ``i + 1``. Unlike an optical-flow warping
    loss it needs no flow: it compares depth changes at the same pixel, which the ground truth also has.

    Args:
        pred: (B, T, H, W) predicted disparity of B clips.
        target: (B, T, H, W) target disparity.
        mask: (B, T, H, W) bool valid pixels.

    Returns:
        Scalar tensor; zero for ``pred = a * target + b`` (one ``a`` and ``b`` per clip).
    """
    _check_maps(pred, target, mask)
    if pred.dim() != 4:
        raise ShapeError(f"clips must be (B, T, H, W), got {tuple(pred.shape)}")
    if pred.shape[1] < 2:
        return _zero(pred)
    target = _clean(target, mask)
    aligned = _aligned(pred, target, mask)
    both = mask[:, 1:] & mask[:, :-1]
    count = both.sum()
    if int(count) == 0:
        return _zero(pred)
    change = (aligned[:, 1:] - aligned[:, :-1]).abs()
    truth = (target[:, 1:] - target[:, :-1]).abs()
    difference = (change - truth).abs()
    return torch.where(both, difference, torch.zeros_like(difference)).sum() / count
