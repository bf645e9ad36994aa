"""The `gs_ply` export: DA3's world-space 3D Gaussians in the PLY layout 3DGS viewers read (`gs_ply/0000.ply`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from anydepth.errors import InputError, require
from anydepth.io.atomic import PathLike, atomic_open
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)

GS_PLY_PATH = Path("gs_ply") / "0000.ply"
BORDER_FRACTION = 8 / 256
"""Share of the rows and columns at each image border whose Gaussians are dropped (they are the least reliable)."""


def gaussian_property_names(num_rest: int = 0) -> Tuple[str, ...]:
    """Vertex properties in file order: position, (zero) normal, SH colour, opacity logit, log scales, quaternion."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(num_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return tuple(names)


def check_gs_input(prediction: Prediction, export_format: str = "gs_ply") -> None:
    """Refuse a prediction without Gaussians, naming the way to get them."""
    if "gaussians" not in prediction.aux:
        raise InputError(
            f"{export_format} export needs Gaussians: run a DA3-GIANT or DA3NESTED-GIANT-LARGE model with infer_gs=True"
        )


def check_gs_ply_options(
    gs_views_interval: Optional[int] = 1,
    prune_by_depth_percent: Optional[float] = 0.9,
    min_opacity: Optional[float] = None,
    max_size_percent: Optional[float] = None,
) -> None:
    """Refuse pruning options that select nothing sensible, before inference (one line each)."""
    if gs_views_interval is not None and int(gs_views_interval) < 1:
        raise InputError(f"gs_views_interval must be at least 1, not {gs_views_interval}")
    if prune_by_depth_percent is not None and not 0.0 < float(prune_by_depth_percent) <= 1.0:
        raise InputError(f"prune_by_depth_percent must be in (0, 1], not {prune_by_depth_percent}")
    if min_opacity is not None and not 0.0 <= float(min_opacity) < 1.0:
        raise InputError(f"min_opacity must be in [0, 1), not {min_opacity}")
    if max_size_percent is not None and not 0.0 < float(max_size_percent) <= 1.0:
        raise InputError(f"max_size_percent must be in (0, 1], not {max_size_percent}")


def _keep_mask(depth: torch.Tensor, prune_border: bool, prune_by_depth_percent: Optional[float]) -> torch.Tensor:
    """(S, H, W) pixels whose Gaussians are written: away from the borders and not among the farthest."""
    S, H, W = depth.shape
    keep = torch.ones((S, H, W), dtype=torch.bool)
    if prune_border:
        trim_h, trim_w = int(BORDER_FRACTION * H), int(BORDER_FRACTION * W)
        # upstream slices [trim:-trim], which keeps nothing when trim is 0 (images under 32 px); we keep all
        keep[:, :trim_h] = False
        keep[:, H - trim_h :] = False
        keep[:, :, :trim_w] = False
        keep[:, :, W - trim_w :] = False
    if prune_by_depth_percent is not None and prune_by_depth_percent < 1:
        limits = torch.quantile(depth.reshape(S, -1).float(), prune_by_depth_percent, dim=1)
        keep &= depth <= limits[:, None, None]
    return keep


def export_gs_ply(
    prediction: Prediction,
    export_dir: PathLike,
    gs_views_interval: Optional[int] = 1,
    prune_by_depth_percent: Optional[float] = 0.9,
    prune_border: bool = True,
    sh_dc_only: bool = True,
    min_opacity: Optional[float] = None,
    max_size_percent: Optional[float] = None,
) -> Path:
    """Write ``<export_dir>/gs_ply/0000.ply`` from ``prediction.aux["gaussians"]`` (``infer_gs=True``).

    The selection is upstream's: Gaussians of every ``gs_views_interval``-th view, without the 8/256 border of
    each image and without pixels beyond the ``prune_by_depth_percent`` depth quantile of their view. Opacities
    are stored as logits and scales as logarithms, as 3DGS viewers expect; quaternions as the network gives them.

    Args:
        prediction: a DA3 prediction with Gaussians (and depth, used for the depth cut).
        export_dir: the export folder; created if missing.
        gs_views_interval: keep every n-th view's Gaussians; None picks about 12 views.
        prune_by_depth_percent: depth quantile per view beyond which Gaussians are dropped; None or 1 keeps all.
        prune_border: drop the Gaussians at the image borders.
        sh_dc_only: write only the constant spherical-harmonic band (upstream's default; smaller files).
        min_opacity: also drop Gaussians less opaque than this (faint ones add file size, not much to the view).
        max_size_percent: also drop Gaussians whose largest axis is beyond this quantile of the selected ones'
            (0.99 drops the largest 1%: the smeared splats at depth edges that viewers show as streaks).

    Returns:
        The path written.
    """
    plyfile = require("plyfile", "export")
    check_gs_input(prediction, "gs_ply")
    gaussians = prediction.aux["gaussians"]
    if gaussians.means.shape[0] != 1:
        raise InputError("gs_ply exports one scene at a time (batch size 1)")
    S = len(prediction)
    H, W = prediction.aux.get("gaussians_hw", prediction.depth.shape[1:])
    if gaussians.means.shape[1] != S * H * W:
        raise InputError(f"{gaussians.means.shape[1]} Gaussians do not match {S} views of {H}x{W}")
    depth = torch.from_numpy(np.ascontiguousarray(prediction.depth, dtype=np.float32))
    if depth.shape[1:] != (H, W):  # maps returned at the input size: the cut only needs each view's depth order
        depth = torch.nn.functional.interpolate(depth[:, None], size=(H, W), mode="nearest")[:, 0]
    if gs_views_interval is None:
        gs_views_interval = max(S // 12, 1)
    check_gs_ply_options(gs_views_interval, prune_by_depth_percent, min_opacity, max_size_percent)
    keep = _keep_mask(depth, prune_border, prune_by_depth_percent)
    # a Gaussian with a non-positive scale or a non-finite centre has no valid PLY form (its log scale is NaN)
    valid = (gaussians.scales[0] > 0).all(-1) & torch.isfinite(gaussians.means[0]).all(-1)
    dropped = int((keep.reshape(-1) & ~valid.cpu()).sum())
    if dropped:
        logger.warning("gs_ply: dropped %d Gaussians with non-positive scales or non-finite centres", dropped)
    keep = keep.reshape(-1) & valid.cpu()
    if min_opacity is not None:
        keep &= gaussians.opacities[0].detach().float().cpu() >= min_opacity
    if max_size_percent is not None and max_size_percent < 1 and bool(keep.any()):
        size = gaussians.scales[0].detach().float().cpu().amax(-1)
        keep &= size <= float(np.quantile(size[keep].numpy(), max_size_percent))  # torch's stops at 16M values
    keep = keep.reshape(S, H * W)[::gs_views_interval].reshape(-1)

    def select(values: torch.Tensor) -> np.ndarray:
        per_view = values[0].detach().float().cpu().reshape(S, H * W, *values.shape[2:])
        return per_view[::gs_views_interval].reshape(-1, *values.shape[2:])[keep].numpy()

    harmonics = select(gaussians.harmonics)  # (n, 3, d_sh)
    rest = harmonics[..., 1:].reshape(len(harmonics), -1)
    num_rest = 0 if sh_dc_only else rest.shape[1]
    opacity = select(gaussians.opacities).astype(np.float64)
    opacity = np.clip(opacity, 1e-7, 1.0 - 1e-7)
    opacity = np.log(opacity / (1.0 - opacity))  # logit, as 3DGS stores it
    columns = [
        select(gaussians.means),
        np.zeros((len(harmonics), 3), np.float32),
        harmonics[..., 0],
        rest[:, :num_rest],
        opacity[:, None],
        np.log(select(gaussians.scales)),
        select(gaussians.rotations),
    ]
    table = np.concatenate([np.asarray(c, np.float32) for c in columns], axis=1)
    names = gaussian_property_names(num_rest)
    vertices = np.empty(len(table), dtype=[(name, "<f4") for name in names])
    for index, name in enumerate(names):
        vertices[name] = table[:, index]
    data = plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
    path = Path(export_dir) / GS_PLY_PATH
    with atomic_open(path, "wb") as handle:
        data.write(handle)
    logger.info("wrote %s: %d Gaussians", path, len(vertices))
    return path
