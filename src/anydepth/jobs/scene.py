"""Scene jobs (DA3 models): all inputs are views of one scene; depth and cameras exported in upstream's layout."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from anydepth.errors import InputError, OptionError
from anydepth.jobs.loader import load
from anydepth.jobs.options import ModelSpec, RuntimeOptions, SceneOptions
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)


def clean_export_dir(folder: Path) -> None:
    """Empty an export folder before new results go in (``auto_cleanup``); refuses folders that hold more.

    The filesystem root, the home folder, the working folder and any folder above it are never removed.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        return
    if not folder.is_dir():
        raise OptionError("export_dir", folder, "is a file, not a folder")
    resolved = folder.resolve()
    cwd = Path.cwd().resolve()
    if (
        resolved == Path(resolved.anchor)
        or resolved == Path.home().resolve()
        or cwd == resolved
        or (resolved in cwd.parents)
    ):
        raise OptionError("auto_cleanup", None, f"refuses to empty {folder}: pick a dedicated export folder")
    for child in resolved.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def filter_extensions(paths: Sequence[Path], extensions: Optional[str]) -> List[Path]:
    """The paths whose suffix is one of the comma-separated ``extensions`` ("png,jpg"); all when None."""
    if not extensions:
        return list(paths)
    wanted = {"." + e.strip().lower().lstrip(".") for e in extensions.split(",") if e.strip()}
    kept = [p for p in paths if Path(p).suffix.lower() in wanted]
    if not kept:
        raise InputError(f"no input has one of the extensions {extensions}")
    return kept


def collect_views(spec: str, fps: float = 1.0, max_frames: Optional[int] = None) -> List[Any]:
    """The views named by ``spec``: an image, a folder / glob / .txt list of images, or a video sampled at ``fps``.

    Returns paths for images (so COLMAP exports can name them) and RGB arrays for video frames (all held in
    memory: they are the views of one forward pass).
    """
    from anydepth.io.inputs import expand_inputs, is_video_path

    path = Path(spec)
    if path.is_file() and is_video_path(path):
        from anydepth.io.video import VideoReader

        if not fps > 0:
            raise OptionError("fps", fps, "must be positive")
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
    scene: SceneOptions,
    cameras: Optional[Dict[str, Any]] = None,
    reduce_on_decode: bool = False,
) -> Prediction:
    """Check the export formats, run the model on the views of one scene, export; returns the prediction.

    Args:
        model: a loaded DA3 :class:`~anydepth.pipelines.multiview.MultiViewModel`.
        views: image paths or RGB arrays.
        scene: processing and export options.
        cameras: known cameras for pose conditioning: ``extrinsics``, ``intrinsics``, ``align_to_input_ext_scale``.
        reduce_on_decode: decode JPEG views at a reduced scale just above the processing size (the servers do;
            pixels differ slightly from upstream's, see :meth:`~anydepth.pipelines.multiview.MultiViewModel.infer`).
    """
    from anydepth.export.formats import export, parse_export_format

    cameras = cameras or {}
    infer_options = {**cameras, **scene.infer_options(), "reduce_on_decode": reduce_on_decode}
    formats = parse_export_format(
        scene.export_format,
        depth_kind=model.preset.depth_kind,
        has_cameras=model.predicts_cameras or cameras.get("extrinsics") is not None,
        num_views=len(views),
        has_features=bool(infer_options["export_feat_layers"]),
        has_gaussians=model.predicts_gaussians,
    )
    if "gs_ply" in formats or "gs_video" in formats:
        infer_options["infer_gs"] = True
    prediction = model.infer(views, **infer_options)
    glb_options = scene.export_options()
    options: Dict[str, Dict[str, Any]] = {}
    if "glb" in formats:
        options["glb"] = {k: v for k, v in glb_options.items() if k != "feat_vis_fps"}
    if "feat_vis" in formats:
        options["feat_vis"] = {"fps": glb_options["feat_vis_fps"]}
    if "colmap" in formats:
        options["colmap"] = {"conf_thresh_percentile": glb_options["conf_thresh_percentile"]}
        if all(isinstance(v, (str, Path)) for v in views):
            options["colmap"]["image_paths"] = [str(v) for v in views]
    if "gs_video" in formats:
        options["gs_video"] = scene.gs_video_options()
    if scene.auto_cleanup:
        clean_export_dir(scene.export_dir)
    export(prediction, scene.export_dir, "-".join(formats), **options)
    return prediction


# how the log names each kind of map (Prediction.depth_kind)
_KIND_WORDS = {"depth": "depth (up to scale)", "metric": "metric depth (m)", "disparity": "disparity"}


def describe(prediction: Prediction) -> str:
    """One line about a scene prediction, for the log: "3 view(s) at 504x378, depth (up to scale) 0.09..31.3"."""
    depth = prediction.depth
    finite = depth[np.isfinite(depth)]
    span = f"{float(finite.min()):.3g}..{float(finite.max()):.3g}" if finite.size else "no finite values"
    kind = _KIND_WORDS.get(prediction.depth_kind, prediction.depth_kind)
    return f"{len(prediction)} view(s) at {depth.shape[2]}x{depth.shape[1]}, {kind} {span}"


def scene_job(
    spec: ModelSpec,
    runtime: RuntimeOptions,
    scene: SceneOptions,
    views_of: Callable[[], List[Any]],
    cameras_of: Optional[Callable[[int], Dict[str, Any]]] = None,
    loader: Callable[[ModelSpec, RuntimeOptions], Any] = load,
) -> Prediction:
    """A whole scene job: check the options, gather the views, load the model, infer, export.

    Views and cameras are gathered, and weights loaded, only once every option has been checked.

    Args:
        spec, runtime: the model and how it runs.
        scene: processing and export options.
        views_of: gives the views (paths or RGB arrays).
        cameras_of: known cameras for the number of views (see :func:`run_scene`), for pose conditioning.
        loader: builds the model (the service and the app pass their warm-model cache).
    """
    from anydepth.export.formats import parse_export_format
    from anydepth.presets import get_preset

    if spec.task != "scene":
        raise InputError(f"{spec.name} is not a scene model; scene jobs run DA3 models (da3-*)")
    scene.check()
    parse_export_format(scene.export_format, has_features=bool(scene.feat_layers()))  # fails before any work
    scene.check_against(get_preset(spec.name))  # from the architecture: before the weights load
    views = views_of()
    cameras = cameras_of(len(views)) if cameras_of else None
    return run_scene(loader(spec, runtime), views, scene, cameras)
