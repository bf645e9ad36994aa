"""Multi-view (DA3) jobs of the command line: all inputs are views of one scene, exported in upstream's layout."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from anydepth.errors import InputError
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)


def collect_views(spec: str, fps: float = 1.0, max_frames: Optional[int] = None) -> List[Any]:
    """The views named by ``spec``: an image, a folder / glob / .txt list of images, or a video sampled at ``fps``.

    Returns paths for images (so COLMAP exports can name them) and RGB arrays for video frames.
    """
    from anydepth.io.inputs import expand_inputs, is_video_path

    path = Path(spec)
    if path.is_file() and is_video_path(path):
        from anydepth.io.video import VideoReader

        if fps <= 0:
            raise InputError(f"--fps {fps} must be positive")
        with VideoReader(path, fps=fps, max_frames=max_frames) as reader:
            frames = list(reader)
        if not frames:
            raise InputError(f"{spec}: the video has no frames to process")
        return frames
    paths = expand_inputs(spec)
    return paths[:max_frames] if max_frames else paths


def run_scene(
    model: Any,
    views: List[Any],
    export_dir: Path,
    export_format: str,
    infer_options: Dict[str, Any],
    glb_options: Dict[str, Any],
) -> Prediction:
    """Check the export formats, run the model on the views of one scene, export; returns the prediction."""
    from anydepth.export.formats import export, parse_export_format

    formats = parse_export_format(
        export_format,
        depth_kind=model.preset.depth_kind,
        has_cameras=model.predicts_cameras or infer_options.get("extrinsics") is not None,
        num_views=len(views),
        has_features=bool(infer_options.get("export_feat_layers")),
    )
    prediction = model.infer(views, **infer_options)
    options: Dict[str, Dict[str, Any]] = {}
    if "glb" in formats:
        options["glb"] = {k: v for k, v in glb_options.items() if k != "feat_vis_fps"}
    if "feat_vis" in formats:
        options["feat_vis"] = {"fps": glb_options["feat_vis_fps"]}
    if "colmap" in formats:
        options["colmap"] = {"conf_thresh_percentile": glb_options["conf_thresh_percentile"]}
        if all(isinstance(v, (str, Path)) for v in views):
            options["colmap"]["image_paths"] = [str(v) for v in views]
    export(prediction, export_dir, "-".join(formats), **options)
    return prediction


def describe(prediction: Prediction) -> str:
    """One line about a scene prediction, for the log."""
    depth = prediction.depth
    finite = depth[np.isfinite(depth)]
    return (
        f"{len(prediction)} view(s) at {depth.shape[2]}x{depth.shape[1]}, depth {prediction.depth_kind} "
        f"{float(finite.min()):.3g}..{float(finite.max()):.3g}"
    )
