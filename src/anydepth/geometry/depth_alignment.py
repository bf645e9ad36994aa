"""Metric scale of DA3 depth: focal-length scaling, sky masks, confidence-gated least-squares scale, sky filling."""

from __future__ import annotations

import logging
from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from anydepth.errors import ShapeError
from anydepth.geometry._checks import check_tensor

logger = logging.getLogger(__name__)

METRIC_FOCAL = 300.0  # DA3METRIC predicts depth for a focal length of 300 px: metres = output * focal / 300
SKY_THRESHOLD = 0.3  # sky probability below which a pixel is not sky
SKY_DEPTH_CAP = 200.0  # the nested model fills sky with min(q99 of non-sky depth, this)
QUANTILE_SAMPLES = 100_000


def apply_metric_scaling(depth: Tensor, intrinsics: Tensor, scale_factor: float = METRIC_FOCAL) -> Tensor:
    """Metric depth from DA3METRIC's output: ``depth * (fx + fy) / 2 / scale_factor``.

    Args:
        depth: (..., H, W) network output.
        intrinsics: (..., 3, 3) pixel intrinsics of the same images (leading dimensions equal ``depth``'s).
        scale_factor: the focal length, in pixels, the network's output is normalised to (300).

    Returns:
        (..., H, W) depth in metres.

    Example:
        >>> K = torch.tensor([[600.0, 0.0, 0.0], [0.0, 300.0, 0.0], [0.0, 0.0, 1.0]])
        >>> apply_metric_scaling(torch.ones(1, 2), K)
        tensor([[1.5000, 1.5000]])
    """
    check_tensor(depth, "depth", (None, None))
    check_tensor(intrinsics, "intrinsics", (3, 3))
    if intrinsics.shape[:-2] != depth.shape[:-2]:
        raise ShapeError(
            f"intrinsics must have shape {(*depth.shape[:-2], 3, 3)} for depth {tuple(depth.shape)}, "
            f"got {tuple(intrinsics.shape)}"
        )
    focal = (intrinsics[..., 0, 0] + intrinsics[..., 1, 1]) / 2
    return depth * (focal[..., None, None] / scale_factor)


def non_sky_mask(sky: Tensor, threshold: float = SKY_THRESHOLD) -> Tensor:
    """True where a pixel is not sky: ``sky < threshold`` (upstream calls this ``compute_sky_mask``).

    Args:
        sky: (...) sky probabilities.

    Returns:
        (...) bool.
    """
    check_tensor(sky, "sky")
    return sky < threshold


def alignment_mask(
    depth_conf: Tensor,
    non_sky: Tensor,
    depth: Tensor,
    metric_depth: Tensor,
    median_conf: Tensor,
    min_depth: float = 1e-3,
    min_metric_depth: float = 1e-2,
) -> Tensor:
    """Pixels trusted for the depth-to-metric scale: confident, not sky, both depths positive.

    ``(depth_conf >= median_conf) & non_sky & (metric_depth > min_metric_depth) & (depth > min_depth)``.

    Args:
        depth_conf, depth, metric_depth: (...) same shape; ``non_sky``: (...) bool.
        median_conf: () threshold on the confidence (the median over non-sky pixels in DA3).

    Returns:
        (...) bool.
    """
    for name, value in (("depth", depth), ("metric_depth", metric_depth), ("non_sky", non_sky)):
        if value.shape != depth_conf.shape:
            raise ShapeError(
                f"{name} must have the shape of depth_conf {tuple(depth_conf.shape)}, got {tuple(value.shape)}"
            )
    return (depth_conf >= median_conf) & non_sky & (metric_depth > min_metric_depth) & (depth > min_depth)


def least_squares_scale(target: Tensor, source: Tensor, eps: float = 1e-12) -> Tensor:
    """The scale ``s`` minimising ``|target - s * source|^2``: ``<target, source> / max(<source, source>, eps)``.

    Args:
        target, source: tensors of the same shape (all elements are used).

    Returns:
        () scale.

    Example:
        >>> least_squares_scale(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 2.0]))
        tensor(2.)
    """
    check_tensor(target, "target")
    check_tensor(source, "source")
    if target.shape != source.shape:
        raise ShapeError(f"target {tuple(target.shape)} and source {tuple(source.shape)} must have the same shape")
    a, b = target.reshape(-1), source.reshape(-1)
    return torch.dot(a, b) / torch.dot(b, b).clamp_min(eps)


def sample_for_quantile(values: Tensor, max_samples: int = QUANTILE_SAMPLES, seed: int = 0) -> Tensor:
    """At most ``max_samples`` of the elements, drawn without replacement; all of them when there are fewer.

    Upstream draws from torch's global generator; this uses a private CPU generator seeded with ``seed``, so the
    sample repeats and the global generator is untouched. :func:`quantile` needs no sampling.

    Args:
        values: (...) any shape.

    Returns:
        ``values`` itself when ``values.numel() <= max_samples``, else (max_samples,) elements.
    """
    check_tensor(values, "values", floating=False)
    if values.numel() <= max_samples:
        return values
    generator = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(values.numel(), generator=generator)[:max_samples].to(values.device)
    return values.reshape(-1)[index]


def quantile(values: Tensor, q: float) -> Tensor:
    """Exact ``q``-quantile of all elements with linear interpolation, as ``torch.quantile`` (default method).

    Unlike ``torch.quantile`` it takes any number of elements (that one stops at 2**24), so upstream's random
    subsampling before a quantile is not needed; on tensors of at most 100,000 elements both give the same value.

    Args:
        values: (...) non-empty.
        q: in ``[0, 1]``.

    Returns:
        () quantile.

    Example:
        >>> quantile(torch.tensor([4.0, 1.0, 3.0, 2.0]), 0.5)
        tensor(2.5000)
    """
    check_tensor(values, "values")
    if values.numel() == 0:
        raise ShapeError("quantile of an empty tensor")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    flat = values.reshape(-1)
    rank = q * (flat.numel() - 1)
    below = int(rank)
    low = torch.kthvalue(flat, below + 1).values
    if below + 1 >= flat.numel() or rank == below:
        return low
    high = torch.kthvalue(flat, below + 2).values
    return torch.lerp(low, high, torch.tensor(rank - below, dtype=flat.dtype, device=flat.device))


def fill_sky(
    depth: Tensor,
    non_sky: Tensor,
    sky_depth: Union[Tensor, float],
    depth_conf: Optional[Tensor] = None,
    sky_conf: float = 1.0,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Copies of ``depth`` (and ``depth_conf``) with sky pixels set to ``sky_depth`` (and ``sky_conf``).

    Args:
        depth: (...) depth.
        non_sky: (...) bool, False on sky.
        sky_depth: () or float, the depth given to sky.
        depth_conf: optional (...) confidence.
        sky_conf: confidence given to sky.

    Returns:
        ``(depth, depth_conf)``; ``depth_conf`` is None when not given. The inputs are not modified.
    """
    if non_sky.shape != depth.shape:
        raise ShapeError(f"non_sky must have the shape of depth {tuple(depth.shape)}, got {tuple(non_sky.shape)}")
    sky = ~non_sky
    depth = torch.where(sky, torch.as_tensor(sky_depth, dtype=depth.dtype, device=depth.device), depth)
    if depth_conf is not None:
        depth_conf = torch.where(
            sky, torch.as_tensor(sky_conf, dtype=depth_conf.dtype, device=depth_conf.device), depth_conf
        )
    return depth, depth_conf


class MetricAlignment(NamedTuple):
    """Result of :func:`align_to_metric`: depth in metres, with the pose translations and the scale used."""

    depth: Tensor  # (B, S, H, W)
    depth_conf: Tensor  # (B, S, H, W)
    extrinsics: Tensor  # (B, S, 3|4, 4)
    scale: Tensor  # (B,)


def align_to_metric(
    depth: Tensor,
    depth_conf: Tensor,
    extrinsics: Tensor,
    intrinsics: Tensor,
    metric_depth: Tensor,
    metric_sky: Tensor,
    sky_threshold: float = SKY_THRESHOLD,
    sky_depth_cap: float = SKY_DEPTH_CAP,
    min_pixels: int = 10,
) -> MetricAlignment:
    """DA3NESTED's metric step: scale the any-view branch's depth and poses to the metric branch, fill the sky.

    Per sample ``b`` (upstream fits one scale over the whole batch; with ``B = 1`` the two agree):

    1. ``metric = apply_metric_scaling(metric_depth, intrinsics)`` with the any-view branch's intrinsics.
    2. Non-sky pixels: ``metric_sky < sky_threshold``.
    3. Pixels with confidence at least the median non-sky confidence, not sky, both depths positive
       (:func:`alignment_mask`) give ``s = least_squares_scale(metric, depth)``.
    4. ``depth *= s``; the extrinsics' translations ``*= s``.
    5. Sky pixels get depth ``min(q99 of non-sky depth, sky_depth_cap)`` and confidence 1.

    Quantiles are exact (:func:`quantile`); upstream subsamples 100,000 pixels at random first, so the two agree
    exactly up to that many pixels and within sampling noise beyond. Where a sample has at most ``min_pixels``
    non-sky pixels (upstream stops with an assertion), or no pixel passes the mask, its depth is left unscaled
    (scale 1, logged) and the sky is not filled.

    Args:
        depth: (B, S, H, W) any-view depth.
        depth_conf: (B, S, H, W) its confidence.
        extrinsics: (B, S, 3|4, 4) world-to-camera poses of the any-view branch.
        intrinsics: (B, S, 3, 3) its pixel intrinsics.
        metric_depth: (B, S, H, W) raw DA3METRIC output for the same images.
        metric_sky: (B, S, H, W) the metric branch's sky probability.

    Returns:
        :class:`MetricAlignment` with new tensors; the inputs are not modified.
    """
    check_tensor(depth, "depth", (None, None), min_ndim=4)
    if depth.ndim != 4:
        raise ShapeError(f"depth must have shape (B, S, H, W), got {tuple(depth.shape)}")
    for name, value in (("depth_conf", depth_conf), ("metric_depth", metric_depth), ("metric_sky", metric_sky)):
        check_tensor(value, name)
        if value.shape != depth.shape:
            raise ShapeError(f"{name} must have the shape of depth {tuple(depth.shape)}, got {tuple(value.shape)}")
    check_tensor(extrinsics, "extrinsics", ((3, 4), 4))
    if extrinsics.shape[:-2] != depth.shape[:2]:
        raise ShapeError(
            f"extrinsics must have shape {tuple(depth.shape[:2])} + (3|4, 4), got {tuple(extrinsics.shape)}"
        )
    metric = apply_metric_scaling(metric_depth, intrinsics)
    non_sky = non_sky_mask(metric_sky, sky_threshold)
    depths, confs, scales = [], [], []
    for b in range(depth.shape[0]):
        d, c, m, ns = depth[b], depth_conf[b], metric[b], non_sky[b]
        scale = torch.ones((), dtype=d.dtype, device=d.device)
        if int(ns.sum()) <= min_pixels:
            logger.warning(
                "sample %d: %d non-sky pixels, too few for the metric scale; depth left unscaled", b, int(ns.sum())
            )
            depths.append(d)
            confs.append(c)
            scales.append(scale)
            continue
        mask = alignment_mask(c, ns, d, m, quantile(c[ns], 0.5))
        if bool(mask.any()):
            scale = least_squares_scale(m[mask], d[mask])
        else:
            logger.warning("sample %d: no pixel qualifies for the metric scale; depth left unscaled", b)
        d = d * scale
        sky_depth = torch.clamp(quantile(d[ns], 0.99), max=sky_depth_cap)
        d, c = fill_sky(d, ns, sky_depth, c)
        depths.append(d)
        confs.append(c)
        scales.append(scale)
    scale = torch.stack(scales)
    extrinsics = extrinsics.clone()
    extrinsics[..., :3, 3] = extrinsics[..., :3, 3] * scale[:, None, None].to(extrinsics.dtype)
    return MetricAlignment(torch.stack(depths), torch.stack(confs), extrinsics, scale)


def fill_sky_with_far_depth(
    depth: Tensor,
    sky: Tensor,
    threshold: float = SKY_THRESHOLD,
    q: float = 0.99,
    min_pixels: int = 10,
) -> Tensor:
    """DA3's post-processing of models with a sky head (mono, metric): sky gets the q99 of non-sky depth.

    Left unchanged when at most ``min_pixels`` pixels are sky or at most that many are not. Like upstream the
    quantile is taken over all of ``depth`` at once (exact here, see :func:`quantile`); call it per image for
    independent images.

    Args:
        depth: (...) depth.
        sky: (...) sky probability, same shape.

    Returns:
        (...) new depth tensor.
    """
    check_tensor(depth, "depth")
    check_tensor(sky, "sky")
    if sky.shape != depth.shape:
        raise ShapeError(f"sky must have the shape of depth {tuple(depth.shape)}, got {tuple(sky.shape)}")
    non_sky = non_sky_mask(sky, threshold)
    count = int(non_sky.sum())
    if count <= min_pixels or non_sky.numel() - count <= min_pixels:
        return depth
    return fill_sky(depth, non_sky, quantile(depth[non_sky], q))[0]
