"""Multi-view (DA3) jobs of the command line: all inputs are views of one scene, exported in upstream's layout."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from anydepth.errors import InputError
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)


@dataclass
class SceneOptions:
    """What a DA3 command does with one scene: processing, export formats and their options (upstream's names)."""

    export_dir: Path
    export_format: str = "glb"
    process_res: int = 504
    process_res_method: str = "upper_bound_resize"
    ref_view_strategy: str = "saddle_balanced"
    use_ray_pose: bool = False
    conf_thresh_percentile: float = 40.0
    num_max_points: int = 1_000_000
    show_cameras: bool = True
    export_feat: Optional[str] = None
    feat_vis_fps: float = 15.0
    export_at_input_res: bool = False
    auto_cleanup: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SceneOptions:
        """The scene options among a command's parameters, which carry the same names (``--export-format``
        defaults to glb: the commands leave it None to tell whether it was given)."""
        names = {f.name for f in fields(cls)}
        missing = names - set(options)
        if missing:
            raise TypeError(f"scene options missing: {', '.join(sorted(missing))}")
        values = {name: options[name] for name in names}
        values["export_format"] = values["export_format"] or "glb"
        return cls(**values)

    def feat_layers(self) -> List[int]:
        try:
            return [int(v) for v in self.export_feat.split(",") if v.strip()] if self.export_feat else []
        except ValueError:
            raise InputError(f"--export-feat {self.export_feat!r}: give block indices separated by commas") from None

    def infer_options(self) -> Dict[str, Any]:
        return {
            "process_res": self.process_res,
            "process_res_method": self.process_res_method,
            "ref_view_strategy": self.ref_view_strategy,
            "use_ray_pose": self.use_ray_pose,
            "export_feat_layers": self.feat_layers(),
            "output": "input" if self.export_at_input_res else "processed",
        }

    def export_options(self) -> Dict[str, Any]:
        return {
            "conf_thresh_percentile": self.conf_thresh_percentile,
            "num_max_points": self.num_max_points,
            "show_cameras": self.show_cameras,
            "feat_vis_fps": self.feat_vis_fps,
        }


def clean_export_dir(folder: Path) -> None:
    """Empty an export folder before new results go in (``--auto-cleanup``); refuses folders that hold more.

    The filesystem root, the home folder, the working folder and any folder above it are never removed.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(f"--export-dir {folder} is a file, not a folder")
    resolved = folder.resolve()
    cwd = Path.cwd().resolve()
    if (
        resolved == Path(resolved.anchor)
        or resolved == Path.home().resolve()
        or cwd == resolved
        or (resolved in cwd.parents)
    ):
        raise InputError(f"--auto-cleanup refuses to empty {folder}: pick a dedicated --export-dir")
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
    model: Any, views: List[Any], scene: SceneOptions, cameras: Optional[Dict[str, Any]] = None
) -> Prediction:
    """Check the export formats, run the model on the views of one scene, export; returns the prediction.

    Args:
        model: a loaded DA3 :class:`~anydepth.pipelines.multiview.MultiViewModel`.
        views: image paths or RGB arrays.
        scene: processing and export options.
        cameras: known cameras for pose conditioning: ``extrinsics``, ``intrinsics``, ``align_to_input_ext_scale``.
    """
    from anydepth.export.formats import export, parse_export_format

    cameras = cameras or {}
    infer_options = {**cameras, **scene.infer_options()}
    formats = parse_export_format(
        scene.export_format,
        depth_kind=model.preset.depth_kind,
        has_cameras=model.predicts_cameras or cameras.get("extrinsics") is not None,
        num_views=len(views),
        has_features=bool(infer_options["export_feat_layers"]),
        has_gaussians=model.predicts_gaussians,
    )
    if "gs_ply" in formats:
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
