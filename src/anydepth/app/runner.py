"""One run of the web app, without UI: uploads in, depth images, scene.glb and a zip of the exports out."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from anydepth.errors import InputError
from anydepth.jobs.images import output_paths, run_images, unique_stems
from anydepth.jobs.options import ImageOutputs, ModelSpec, RuntimeOptions, SceneOptions
from anydepth.jobs.scene import run_scene
from anydepth.web.models import ModelCache, ModelKey
from anydepth.web.security import ServiceError, sanitize_filename, upload_kind, validate_decodes

logger = logging.getLogger(__name__)

DA3_FORMATS = ("glb", "depth_vis", "ply", "mini_npz", "npz", "colmap", "exr", "png16")
"""Export formats the app offers for DA3 models; glb and depth_vis are always written (the app shows them)."""
V2_RAW_FORMATS = ("png16", "npy", "npz", "exr")
"""Raw outputs the app offers for V2 models, besides the side-by-side visualisation it shows."""


@dataclass
class AppSettings:
    """What a web app serves and how much it accepts.

    Args:
        model: the preset selected when the page opens.
        weights: local weights (file or folder) or hub id for ``model``; other presets use their own weights.
        device, precision, threads, compile: how the models run, as for the CLI.
        work_dir: per-run folders (``<run id>/inputs``, ``exports``, the zip); default: a temporary folder.
        max_files: most files in one run.
        max_upload_bytes: most bytes of one run's files together (also the per-file limit of the server).
        max_pixels: largest image or video frame (width x height).
        max_frames: most frames sampled from a video (each is a view of the scene).
        keep_runs: finished runs kept on disk; older ones are deleted.
        reduce_on_decode: decode JPEG views of DA3 models at a reduced scale just above the processing size
            (less memory and time on large photos; pixels differ by about a grey level from a full decode).
    """

    model: str = "da3-small"
    weights: Optional[str] = None
    device: str = "auto"
    precision: str = "auto"
    threads: Optional[int] = None
    compile: bool = False
    work_dir: Optional[Path] = None
    max_files: int = 32
    max_upload_bytes: int = 200 * 2**20
    max_pixels: int = 40 * 2**20
    max_frames: int = 64
    keep_runs: int = 20
    reduce_on_decode: bool = True

    def __post_init__(self) -> None:
        from anydepth.presets import get_preset

        get_preset(self.model)  # an unknown name fails before the server starts
        if self.work_dir is None:
            import tempfile

            self.work_dir = Path(tempfile.mkdtemp(prefix="anydepth-app-"))
        self.work_dir = Path(self.work_dir)

    def weights_for(self, model: str) -> Optional[str]:
        return self.weights if model == self.model else None

    def model_key(self, model: str) -> ModelKey:
        """The warm-cache key of ``model`` run as these settings say."""
        runtime = RuntimeOptions(
            device=self.device, precision=self.precision, threads=self.threads, compile=self.compile
        )
        return ModelKey(ModelSpec(model, self.weights_for(model)), runtime)


_SCENE = SceneOptions.defaults()


@dataclass
class RunOptions:
    """The choices of one run (the app's controls; scene defaults are :class:`SceneOptions`')."""

    model: str
    process_res: int = _SCENE["process_res"]
    export_formats: Sequence[str] = ("glb", "depth_vis")
    conf_thresh_percentile: float = _SCENE["conf_thresh_percentile"]
    show_cameras: bool = _SCENE["show_cameras"]
    num_max_points: int = _SCENE["num_max_points"]
    fps: float = 1.0


@dataclass
class RunResult:
    """What a run produced; paths are inside the run folder."""

    run_dir: Path
    depth_images: List[Path]
    glb: Optional[Path]
    zip: Path
    summary: str
    files: List[Path] = field(default_factory=list)


def model_choices(selected: str) -> List[str]:
    """Presets the app offers: DA3 and Depth Anything V2 ones with hub weights, and the selected one."""
    from anydepth.presets import PRESETS

    names = [n for n, p in PRESETS.items() if _offered(n) and p.weights is not None and p.weights.repo_id]
    return names if selected in names else [selected, *names]


def _offered(model: str) -> bool:
    """The app runs scene models (DA3) and image models (V2); video models need whole videos."""
    from anydepth.families import family_of

    return family_of(model).task in ("scene", "image")


_RUN_NAME = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")


def _new_run(settings: AppSettings) -> Path:
    """A fresh run folder; the oldest runs beyond ``keep_runs`` are removed."""
    root = Path(settings.work_dir)
    root.mkdir(parents=True, exist_ok=True)
    # only folders this app made (by their name): a --work-dir shared with other files keeps them
    runs = sorted(
        (p for p in root.iterdir() if _RUN_NAME.match(p.name) and p.is_dir() and not p.is_symlink()),
        key=lambda p: p.stat().st_mtime,
    )
    for old in runs[: max(0, len(runs) - settings.keep_runs + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    run_dir = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    (run_dir / "inputs").mkdir(parents=True)
    return run_dir


def _upload_path(upload: Any) -> Path:
    """The file of an upload: a path, or Gradio's file object (``.path``, or a temporary file's ``.name``)."""
    if isinstance(upload, (str, os.PathLike)):
        return Path(upload)
    return Path(getattr(upload, "path", None) or upload.name)


def save_uploads(files: Sequence[Any], folder: Path, settings: AppSettings) -> Tuple[List[Path], str]:
    """Copies uploaded files (paths, or Gradio's file objects) into ``folder`` under numbered, sanitised names.

    Returns:
        The copies and their kind, "images" or "video" (one video alone).

    Raises:
        InputError / ServiceError: no file, too many or too large, an unsupported or undecodable file, a video
            among other files.
    """
    paths = [_upload_path(f) for f in files or [] if f is not None]
    if not paths:
        raise InputError("upload one or more images, or one video")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{sanitize_filename(missing[0].name)}: the upload is gone; upload it again")
    if len(paths) > settings.max_files:
        raise ServiceError(413, f"{len(paths)} files; this app takes at most {settings.max_files} per run")
    total = sum(p.stat().st_size for p in paths)
    if total > settings.max_upload_bytes:
        raise ServiceError(
            413, f"{total / 2**20:.1f} MiB of uploads; the limit is {settings.max_upload_bytes / 2**20:.0f}"
        )
    saved, kinds = [], set()
    for index, path in enumerate(paths):
        shown = sanitize_filename(path.name)
        kind = upload_kind(shown, None)
        target = folder / f"{index:04d}_{shown}"
        shutil.copyfile(path, target)
        if target.stat().st_size == 0:
            raise InputError(f"{shown}: the file is empty")
        validate_decodes(target, kind, shown, settings.max_pixels)
        saved.append(target)
        kinds.add(kind)
    if "video" in kinds and len(saved) > 1:
        raise InputError("upload one video, or images; not both")
    return saved, "video" if "video" in kinds else "images"


def video_frames(video: Path, folder: Path, fps: float, max_frames: int) -> List[Path]:
    """Frames of ``video`` sampled at ``fps`` (at most ``max_frames``), saved as PNG views in ``folder``."""
    from anydepth.export.depth_maps import save_image
    from anydepth.io.video import VideoReader

    if fps <= 0:
        raise InputError(f"frames per second {fps} must be positive")
    paths = []
    with VideoReader(video, fps=fps, max_frames=max_frames) as reader:
        for index, frame in enumerate(reader):
            paths.append(Path(save_image(folder / f"frame_{index:04d}.png", frame)))
    if not paths:
        raise InputError(f"{video.name}: the video has no frames to process")
    return paths


def _zip(folder: Path, target: Path) -> Path:
    """``folder``'s files in a zip at ``target`` (written under a temporary name, then renamed)."""
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, path.relative_to(folder).as_posix())
    os.replace(partial, target)
    return target


def run_job(settings: AppSettings, cache: ModelCache, files: Sequence[Any], options: RunOptions) -> RunResult:
    """One run: uploads -> views -> model -> exports -> zip.

    Scene models (DA3) treat all views as one scene and export with :func:`~anydepth.jobs.scene.run_scene`
    (the chosen formats plus glb and depth_vis); image models (V2) give each image its own depth with
    :func:`~anydepth.jobs.images.run_images` (side-by-side visualisations plus the chosen raw formats).
    """
    from anydepth.families import family_of

    if not _offered(options.model):
        raise InputError(f"{options.model} is not offered here; pick a DA3 (da3-*) or Depth Anything V2 model")
    if not 14 <= int(options.process_res) <= 4096:
        raise InputError(f"processing resolution {options.process_res} must be between 14 and 4096")
    run_dir = _new_run(settings)
    saved, kind = save_uploads(files, run_dir / "inputs", settings)
    views = video_frames(saved[0], run_dir / "inputs", options.fps, settings.max_frames) if kind == "video" else saved
    model = cache.get(settings.model_key(options.model))
    exports = run_dir / "exports"
    started = time.perf_counter()
    if family_of(options.model).task == "scene":
        depth_images, glb = _run_da3(model, views, exports, options, settings.reduce_on_decode)
    else:
        depth_images, glb = _run_v2(model, views, exports, options)
    seconds = time.perf_counter() - started
    archive = _zip(exports, run_dir / f"anydepth-{run_dir.name}.zip")
    files_written = sorted(p for p in exports.rglob("*") if p.is_file())
    summary = (
        f"{options.model}: {len(views)} view(s) from {len(saved)} upload(s) in {seconds:.1f} s; "
        f"{len(files_written)} file(s) exported" + ("" if glb else " (3D view: DA3 models only)")
    )
    return RunResult(run_dir, depth_images, glb, archive, summary, files_written)


def _run_da3(
    model: Any, views: List[Path], exports: Path, options: RunOptions, reduce_on_decode: bool = True
) -> Tuple[List[Path], Optional[Path]]:
    from anydepth.export.depth_vis import DEPTH_VIS_DIR
    from anydepth.export.glb import GLB_PATH

    unknown = [f for f in options.export_formats if f not in DA3_FORMATS]
    if unknown:
        raise InputError(f"export format {', '.join(unknown)} is not offered; choose from {', '.join(DA3_FORMATS)}")
    formats = list(dict.fromkeys(["glb", "depth_vis", *options.export_formats]))
    scene = SceneOptions(
        export_dir=exports,
        export_format="-".join(formats),
        process_res=int(options.process_res),
        conf_thresh_percentile=float(options.conf_thresh_percentile),
        num_max_points=int(options.num_max_points),
        show_cameras=bool(options.show_cameras),
    )
    run_scene(model, [str(v) for v in views], scene, reduce_on_decode=reduce_on_decode)
    return sorted((exports / DEPTH_VIS_DIR).glob("*.jpg")), exports / GLB_PATH


def _run_v2(model: Any, views: List[Path], exports: Path, options: RunOptions) -> Tuple[List[Path], Optional[Path]]:
    raw = tuple(f for f in options.export_formats if f in V2_RAW_FORMATS)
    outputs = ImageOutputs(outdir=exports, raw=raw)
    report = run_images(model, views, outputs, input_size=int(options.process_res), progress=False)
    if report.failures:
        raise InputError(report.failures[0])
    return [output_paths(stem, outputs)[0] for stem in unique_stems(views)], None
