"""Export format strings ("mini_npz-glb"): parsing and validation before inference, and the dispatcher."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from anydepth.errors import InputError
from anydepth.export.colmap import export_colmap
from anydepth.export.depth_vis import export_depth_vis
from anydepth.export.feat_vis import check_feat_vis_input, export_feat_vis, feature_layers
from anydepth.export.glb import export_glb
from anydepth.export.gs_ply import check_gs_ply_options, export_gs_ply
from anydepth.export.gs_video import check_gs_video_options, check_render_cameras, export_gs_video
from anydepth.export.npz import export_mini_npz, export_npz
from anydepth.export.ply import export_ply
from anydepth.export.raw_depth import export_exr, export_png16
from anydepth.io.atomic import PathLike
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)

EXPORTERS: Dict[str, Callable[..., Any]] = {
    "mini_npz": export_mini_npz,
    "npz": export_npz,
    "glb": export_glb,
    "ply": export_ply,
    "colmap": export_colmap,
    "depth_vis": export_depth_vis,
    "feat_vis": export_feat_vis,
    "exr": export_exr,
    "png16": export_png16,
    "gs_ply": export_gs_ply,
    "gs_video": export_gs_video,
}
"""Format name -> ``exporter(prediction, export_dir, **options)``; each returns the path(s) it wrote."""

POINT_FORMATS = ("glb", "ply", "colmap")
"""Formats that lift depth to 3D points: they need depth, not relative disparity."""

GAUSSIAN_FORMATS = ("gs_ply", "gs_video")
"""Formats made from 3D Gaussians (``infer_gs=True`` on a model with a Gaussian head)."""

IMAGE_FORMATS = ("npz", "depth_vis", "feat_vis")
"""Formats that need ``prediction.processed_images``."""

OPTION_ALIASES: Dict[str, Tuple[str, str]] = {"feat_vis_fps": ("feat_vis", "fps")}
"""Upstream's flat option names -> (format, that exporter's option)."""


def _valid_names() -> str:
    return ", ".join(sorted(EXPORTERS))


def parse_export_format(
    export_format: str,
    depth_kind: Optional[str] = None,
    has_cameras: Optional[bool] = None,
    num_views: Optional[int] = None,
    has_features: Optional[bool] = None,
    has_gaussians: Optional[bool] = None,
) -> Tuple[str, ...]:
    """Split and check a format string such as ``"mini_npz-glb"``; call it before inference.

    What the model will predict is optional: give it to also reject combinations the model cannot serve
    (point exports of relative disparity; COLMAP of several views without poses; feature visualisation
    without features).

    Args:
        export_format: names joined by ``-``, e.g. ``"npz"``, ``"mini_npz-glb-colmap"``.
        depth_kind: the model's ``depth_kind`` ("depth", "disparity", "metric"), if known.
        has_cameras: whether the model predicts (or is given) camera poses, if known.
        num_views: how many views will be exported, if known.
        has_features: whether backbone features will be returned (``export_feat_layers`` given), if known.
        has_gaussians: whether 3D Gaussians will be predicted (``infer_gs=True``), if known.

    Returns:
        The format names, in the given order.

    Raises:
        InputError: one line naming the bad part and listing the valid names.
    """
    if not isinstance(export_format, str) or not export_format.strip():
        raise InputError(f"empty export format {export_format!r}; use names joined by '-' from: {_valid_names()}")
    names = tuple(part.strip().lower() for part in export_format.split("-"))
    for name in names:
        if not name:
            raise InputError(
                f"empty part in export format {export_format!r}; join names from {_valid_names()} with '-'"
            )
        if name not in EXPORTERS:
            raise InputError(f"unknown export format {name!r} in {export_format!r}; choose from: {_valid_names()}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"export format {repeated[0]!r} appears more than once in {export_format!r}")
    if depth_kind == "disparity":
        points = [name for name in names if name in POINT_FORMATS]
        if points:
            raise InputError(
                f"export format {points[0]!r} needs depth, but the model predicts relative disparity; "
                f"use a metric or DA3 model, or drop it from {export_format!r}"
            )
    if "colmap" in names and has_cameras is False and (num_views is None or num_views > 1):
        raise InputError("export format 'colmap' needs camera poses for several views; this model predicts none")
    if "feat_vis" in names and has_features is False:
        raise InputError("export format 'feat_vis' needs backbone features; pass export_feat_layers=[...] (e.g. [11])")
    gaussian = [name for name in names if name in GAUSSIAN_FORMATS]
    if gaussian and has_gaussians is False:
        raise InputError(
            f"export format {gaussian[0]!r} needs 3D Gaussians: use DA3-GIANT or DA3NESTED-GIANT-LARGE with "
            "infer_gs=True"
        )
    return names


def check_export_options(names: Tuple[str, ...], options: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Route ``options`` to the exporters of ``names`` and check the values that can be checked without a
    prediction (gs_video's trajectory, render cameras and presets; gs_ply's pruning); call it before inference.

    Returns:
        Format name -> that exporter's options.

    Raises:
        InputError: one line naming the option.
    """
    routed = _options_per_format(names, options)
    if "gs_video" in routed:
        video = routed["gs_video"]
        gs_video_defaults = inspect.signature(export_gs_video).parameters
        values = {k: video.get(k, gs_video_defaults[k].default) for k in (
            "trj_mode", "show", "vis_depth", "video_quality", "fps", "renderer", "color_mode")}  # fmt: skip
        check_gs_video_options(**values)
        check_render_cameras(video.get("extrinsics"), video.get("intrinsics"), video.get("out_image_hw"))
    if "gs_ply" in routed:
        ply = routed["gs_ply"]
        check_gs_ply_options(**{k: ply[k] for k in (
            "gs_views_interval", "prune_by_depth_percent", "min_opacity", "max_size_percent") if k in ply})  # fmt: skip
    return routed


def _parameters(function: Callable[..., Any]) -> List[str]:
    return list(inspect.signature(function).parameters)[2:]  # after (prediction, export_dir)


def _options_per_format(names: Tuple[str, ...], options: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Route options: ``glb={...}`` goes to that exporter (as upstream's ``export_kwargs``), a plain keyword to
    every selected exporter that takes it; a keyword no selected exporter takes is an error."""
    options = dict(options)
    for alias, (name, key) in OPTION_ALIASES.items():
        if alias in options and name in names:
            value = options.pop(alias)
            options[name] = {key: value, **(options.get(name) or {})}  # an explicit nested value wins
    nested = {name: options[name] for name in EXPORTERS if isinstance(options.get(name), dict)}
    flat = {key: value for key, value in options.items() if key not in nested}
    accepted = {name: _parameters(EXPORTERS[name]) for name in names}
    for key in flat:
        if not any(key in params for params in accepted.values()):
            raise InputError(f"export option {key!r} is not used by {'-'.join(names)!r}")
    routed = {}
    for name in names:
        own = dict(nested.get(name, {}))
        for key in own:
            if key not in accepted[name]:
                raise InputError(f"export option {key!r} is not an option of {name!r}: {', '.join(accepted[name])}")
        routed[name] = {**{k: v for k, v in flat.items() if k in accepted[name]}, **own}
    return routed


def export(
    prediction: Prediction, export_dir: PathLike, export_format: str = "mini_npz", **options: Any
) -> Dict[str, List[Path]]:
    """Write ``prediction`` in every format of ``export_format`` under ``export_dir``, in upstream's layout.

    Everything is checked before the first file is written: format names, option names, and what the
    prediction must hold (``npz``, ``depth_vis`` and ``feat_vis`` need processed images; point formats need
    depth; ``feat_vis`` needs ``aux["feat_layer_<i>"]`` features). Each file is written atomically.

    Args:
        prediction: the prediction to export; never modified.
        export_dir: the export folder; created if missing.
        export_format: names joined by ``-`` (see :func:`parse_export_format`).
        **options: plain keywords (``num_max_points=...``, ``conf_thresh_percentile=...``, ``show_cameras=...``)
            go to every selected exporter that takes them; ``glb={...}``, ``colmap={...}`` go to one exporter;
            ``feat_vis_fps=...`` is upstream's name of ``feat_vis={"fps": ...}``.

    Returns:
        Format name -> the paths written.
    """
    names = parse_export_format(
        export_format,
        depth_kind=prediction.depth_kind,
        has_cameras=prediction.extrinsics is not None,
        num_views=len(prediction),
        has_features=bool(feature_layers(prediction)),
        has_gaussians="gaussians" in prediction.aux,
    )
    routed = check_export_options(names, options)
    if "npz" in names and prediction.processed_images is None:
        raise InputError("npz export needs prediction.processed_images; use mini_npz for depth and cameras only")
    missing_images = [name for name in names if name in IMAGE_FORMATS and prediction.processed_images is None]
    if missing_images:
        raise InputError(f"{missing_images[0]} export needs prediction.processed_images")
    if "feat_vis" in names:
        check_feat_vis_input(prediction)
    written: Dict[str, List[Path]] = {}
    for name in names:
        result = EXPORTERS[name](prediction, export_dir, **routed[name])
        written[name] = list(result) if isinstance(result, (list, tuple)) else [result]
        logger.info("exported %s to %s", name, export_dir)
    return written
