"""The typed options of every job: which model and how it runs, what a scene job does, what image and video jobs
write. The command line, the service and the web app build these and nothing else; their defaults live here only.

Checks raise :class:`~anydepth.errors.OptionError` naming the option's field (``export_feat``); each interface
words it its own way (``--export-feat`` on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from anydepth._lazy import lazy_names
from anydepth.errors import InputError, OptionError, require

if TYPE_CHECKING:
    from anydepth.presets import Preset

# The vocabularies of the choices, kept where the code that implements them lives (runtimes, processing, renderers).
# Those modules import torch, so this module reads them when an option is checked, not when it is imported: the
# command line builds its commands from these options without importing torch (`anydepth --help` stays quick).
_CHOICES = {
    "BACKENDS": "anydepth.deploy.backends",
    "GS_VIDEO_SHOWS": "anydepth.export.gs_video:SHOW",
    "TRAJECTORIES": "anydepth.export.gs_video",
    "VIDEO_QUALITY": "anydepth.export.gs_video",
    "REF_VIEW_STRATEGIES": "anydepth.models.da3.reference_view",
    "PROCESS_RES_METHODS": "anydepth.pipelines.da3_preprocess",
    "PRECISIONS": "anydepth.pipelines.runtime",
}
# `anydepth.jobs.options.PRECISIONS` and the other choices above, read on first use
__getattr__, __dir__ = lazy_names(globals(), _CHOICES)


IMAGE_RAW_FORMATS = ("png16", "npy", "npz", "exr")
"""Raw depth files per image (besides the visualisation)."""
FRAME_RAW_FORMATS = ("png16", "npy", "exr")
"""Raw depth outputs of per-frame video depth (V2 models on a video)."""
VIDEO_RAW_FORMATS = ("npz", "npy", "exr", "png16")
"""Raw depth outputs of the video models (Video Depth Anything, DepthCrafter)."""
CPU_OFFLOADS = ("model", "sequential")


def parse_raw(value: Optional[str]) -> Tuple[str, ...]:
    """Raw format list: "png16,npy" (or "png16-npy") -> ("png16", "npy"), without repeats."""
    if not value:
        return ()
    return tuple(dict.fromkeys(v.strip().lower() for v in value.replace("-", ",").split(",") if v.strip()))


@dataclass(frozen=True)
class ModelSpec:
    """Which model: a preset and, optionally, its weights.

    Attributes:
        name: preset name (``anydepth models`` lists them).
        weights: local weights file or folder, or a hub repo id; None: the preset's own weights.
        revision: hub branch, tag or commit of the weights.
        svd_weights: DepthCrafter only: Stable Video Diffusion's repo id or folder.
    """

    name: str
    weights: Optional[str] = None
    revision: Optional[str] = None
    svd_weights: Optional[str] = None

    @classmethod
    def pick(cls, model: Optional[str], weights: Optional[str], default: str, **more: Any) -> ModelSpec:
        """``model``, else the preset ``weights`` names (a hub id, an official file name, a DA3 config), else
        ``default``; the name is checked against the presets table."""
        from anydepth.presets import get_preset, guess_preset

        name = model or (guess_preset(weights) if weights else None) or default
        get_preset(name)
        return cls(name=name, weights=weights, **more)

    @property
    def task(self) -> str:
        """What the model does: "image", "scene" or "video" (see :data:`anydepth.families.TASKS`)."""
        from anydepth.families import family_of

        return family_of(self.name).task


@dataclass(frozen=True)
class RuntimeOptions:
    """How a model runs, whatever the job.

    Attributes:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        precision: "auto", "fp32", "bf16" or "fp16".
        threads: CPU threads for the model (None: one per core).
        compile: run the network through ``torch.compile``.
        backend: "pytorch", or a runtime of an exported artefact ("onnxruntime", "openvino", "torchscript").
        cpu_offload: DepthCrafter only: "model" or "sequential" CPU offloading, or None.
    """

    device: str = "auto"
    precision: str = "auto"
    threads: Optional[int] = None
    compile: bool = False
    backend: str = "pytorch"
    cpu_offload: Optional[str] = None

    def check(self) -> None:
        from anydepth.deploy.backends import BACKENDS
        from anydepth.pipelines.runtime import PRECISIONS

        if self.precision not in PRECISIONS:
            raise OptionError("precision", self.precision, f"unknown precision; choose one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise OptionError("backend", self.backend, f"unknown backend; choose one of {', '.join(BACKENDS)}")
        if self.threads is not None and self.threads < 1:
            raise OptionError("threads", self.threads, "use at least one thread")
        if self.cpu_offload is not None and self.cpu_offload not in CPU_OFFLOADS:
            raise OptionError("cpu_offload", self.cpu_offload, f"choose one of {', '.join(CPU_OFFLOADS)}")


def check_da3_processing(process_res: int, process_res_method: str, ref_view_strategy: str) -> None:
    """The DA3 processing options every scene-like job takes (the scene and stream jobs): one line each."""
    from anydepth.models.da3.reference_view import REF_VIEW_STRATEGIES
    from anydepth.pipelines.da3_preprocess import PROCESS_RES_METHODS

    if int(process_res) < 14:
        raise OptionError("process_res", process_res, "use at least 14 (the patch size)")
    if process_res_method not in PROCESS_RES_METHODS:
        raise OptionError("process_res_method", process_res_method, f"choose one of {', '.join(PROCESS_RES_METHODS)}")
    if ref_view_strategy not in REF_VIEW_STRATEGIES:
        raise OptionError("ref_view_strategy", ref_view_strategy, f"choose one of {', '.join(REF_VIEW_STRATEGIES)}")


@dataclass
class SceneOptions:
    """What a scene job (views of one scene, DA3 models) does: processing, export formats and their options, with
    upstream's names and defaults.

    Attributes:
        export_dir: the export folder.
        export_format: formats joined by "-" (``mini_npz-glb``).
        process_res, process_res_method: the processing size and how images are brought to it.
        ref_view_strategy: how the reference view is picked (3 views or more).
        use_ray_pose: cameras from the ray maps instead of the camera head.
        conf_thresh_percentile, num_max_points, show_cameras: the point cloud of glb (and colmap) exports.
        export_feat: backbone blocks whose features feat_vis shows ("5,11").
        feat_vis_fps: frame rate of the feat_vis videos.
        export_at_input_res: maps and exports at the input images' size.
        auto_cleanup: empty the export folder before writing.
        gs_trajectory: the gs_video camera path ("extend", "smooth", "wander", ...; see
            :data:`anydepth.geometry.camera_paths.TRAJECTORIES`).
        gs_video_show: what the gs_video frames show: "rgb", "depth" or "both" side by side.
        gs_video_quality: the gs_video encoding preset: "low", "medium" or "high".
        render_exts, render_ixts, render_hw: gs_video cameras instead of the predicted ones ((N, 3|4, 4)
            world-to-camera, (N, 3, 3) pixel intrinsics, (height, width)); Python callers only
            (:attr:`PYTHON_ONLY`).
    """

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
    gs_trajectory: str = "extend"
    gs_video_show: str = "both"
    gs_video_quality: str = "high"
    render_exts: Optional[Any] = None
    render_ixts: Optional[Any] = None
    render_hw: Optional[Tuple[int, int]] = None

    SERVER_OWNED = ("export_dir", "auto_cleanup")
    """Fields a server decides itself; a job request does not carry them."""
    PYTHON_ONLY = ("render_exts", "render_ixts", "render_hw")
    """Fields given as arrays from Python: no command-line flag or request field carries them."""

    @classmethod
    def field_names(cls) -> List[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        """Every field's default (export_dir has none)."""
        return {f.name: f.default for f in fields(cls) if f.name != "export_dir"}

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **overrides: Any) -> SceneOptions:
        """The scene options among a larger set of named options (a command's parameters, a request's fields);
        ``overrides`` win. A None ``export_format`` means the default: commands leave it None to tell whether it
        was given. Checked before it is returned."""
        names = set(cls.field_names())
        values = {name: options[name] for name in names if name in options}
        values.update(overrides)
        missing = names - set(values) - set(cls.defaults())
        if missing:
            raise TypeError(f"scene options missing: {', '.join(sorted(missing))}")
        if values.get("export_format") is None:
            values.pop("export_format", None)
        scene = cls(**values)
        scene.check()
        return scene

    def request_fields(self) -> Dict[str, Any]:
        """The fields a client sends to a server (all but :attr:`SERVER_OWNED` and :attr:`PYTHON_ONLY`)."""
        skip = (*self.SERVER_OWNED, *self.PYTHON_ONLY)
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def check(self) -> None:
        """Refuse values no model takes, before any work (the export formats are checked against the model)."""
        if not self.export_format:
            raise OptionError("export_format", repr(self.export_format), "name at least one format")
        check_da3_processing(self.process_res, self.process_res_method, self.ref_view_strategy)
        if not 0.0 <= float(self.conf_thresh_percentile) <= 100.0:
            raise OptionError("conf_thresh_percentile", self.conf_thresh_percentile, "give a percentile, 0 to 100")
        if int(self.num_max_points) < 1:
            raise OptionError("num_max_points", self.num_max_points, "keep at least one point")
        if not float(self.feat_vis_fps) > 0:
            raise OptionError("feat_vis_fps", self.feat_vis_fps, "must be positive")
        self.feat_layers()
        self.check_gs_video()

    def check_gs_video(self) -> None:
        """The gs_video choices: a known trajectory, what to show, a quality preset, render cameras of the right
        shapes."""
        from anydepth.export.gs_video import SHOW as GS_VIDEO_SHOWS
        from anydepth.export.gs_video import TRAJECTORIES, VIDEO_QUALITY, check_render_cameras

        choices = (
            ("gs_trajectory", self.gs_trajectory, TRAJECTORIES), ("gs_video_show", self.gs_video_show, GS_VIDEO_SHOWS),
            ("gs_video_quality", self.gs_video_quality, tuple(VIDEO_QUALITY)),
        )  # fmt: skip
        for name, value, allowed in choices:
            if value not in allowed:
                raise OptionError(name, repr(value), f"choose one of {', '.join(allowed)}")
        cameras = (
            ("render_exts", {"extrinsics": self.render_exts}), ("render_ixts", {"intrinsics": self.render_ixts}),
            ("render_hw", {"hw": self.render_hw}),
            ("render_ixts", {"extrinsics": self.render_exts, "intrinsics": self.render_ixts}),  # counts that agree
        )  # fmt: skip
        for name, given in cameras:
            try:
                check_render_cameras(**given)
            except InputError as exc:
                raise OptionError(name, None, str(exc)) from None

    def check_against(self, preset: Preset) -> None:
        """Refuse what the preset's network cannot give, known from its architecture before any weights load: gs_ply
        and gs_video without a Gaussian head, feature blocks that its backbone does not have."""
        if preset.arch is None:  # not a DA3 model: scene jobs refuse it themselves
            return
        from anydepth.models.da3.network import da3_config

        config = da3_config(preset.arch)
        formats = [name.strip().lower() for name in self.export_format.split("-")]
        gaussian = [name for name in formats if name in ("gs_ply", "gs_video")]
        if gaussian and config.gaussian_head is None:
            raise OptionError(
                "export_format",
                repr(self.export_format),
                f"{gaussian[0]} needs a Gaussian head, which {preset.name} has not (da3-giant and "
                "da3nested-giant-large do)",
            )
        blocks = config.backbone.encoder.depth
        outside = [i for i in self.feat_layers() if not 0 <= i < blocks]
        if outside:
            raise OptionError(
                "export_feat", repr(self.export_feat), f"{preset.name} has backbone blocks 0 to {blocks - 1}"
            )

    def feat_layers(self) -> List[int]:
        try:
            return [int(v) for v in self.export_feat.split(",") if v.strip()] if self.export_feat else []
        except ValueError:
            raise OptionError("export_feat", repr(self.export_feat), "give block indices separated by commas") from None

    def infer_options(self) -> Dict[str, Any]:
        """Keywords of :meth:`~anydepth.pipelines.multiview.MultiViewModel.infer`."""
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

    def gs_video_options(self) -> Dict[str, Any]:
        """Keywords of :func:`~anydepth.export.gs_video.export_gs_video`."""
        cameras = {"extrinsics": self.render_exts, "intrinsics": self.render_ixts, "out_image_hw": self.render_hw}
        return {
            "trj_mode": self.gs_trajectory,
            "show": self.gs_video_show,
            "video_quality": self.gs_video_quality,
            **{k: v for k, v in cameras.items() if v is not None},
        }


@dataclass
class ImageOutputs:
    """What an image job writes for each input (Depth Anything V2's look and names).

    Attributes:
        outdir: output folder.
        pred_only: write only the colourised depth, not the input beside it.
        grayscale: grey instead of the Spectral colour map.
        raw: raw depth files besides the visualisation (:data:`IMAGE_RAW_FORMATS`).
        vis: write the colourised visualisation at all.
    """

    outdir: Path
    pred_only: bool = False
    grayscale: bool = False
    raw: Sequence[str] = field(default_factory=tuple)
    vis: bool = True

    def check(self, allowed: Sequence[str] = IMAGE_RAW_FORMATS, need_output: bool = True) -> None:
        bad = [r for r in self.raw if r not in allowed]
        if bad:
            raise OptionError("raw", ",".join(bad), f"unknown raw format; choose from {', '.join(allowed)}")
        if "exr" in self.raw:
            require("OpenEXR", "export")
        if need_output and not self.vis and not self.raw:
            raise OptionError("vis", None, f"leaves nothing to write; add a raw format ({', '.join(allowed)})")


@dataclass
class VideoOutputs:
    """What a video model's job writes (see :mod:`anydepth.jobs.video` for the files).

    Attributes:
        outdir: output folder.
        raw: raw depth outputs (:data:`VIDEO_RAW_FORMATS`).
        grayscale: grey instead of the inferno colour map.
        vis: write the depth video.
    """

    outdir: Path
    raw: Sequence[str] = field(default_factory=tuple)
    grayscale: bool = False
    vis: bool = True

    def check(self) -> None:
        ImageOutputs(self.outdir, raw=self.raw, vis=self.vis).check(VIDEO_RAW_FORMATS)


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a video a job reads.

    Attributes:
        fps: sample at this frame rate (None: every frame).
        stride: keep every k-th frame.
        max_frames: at most this many frames.
    """

    fps: Optional[float] = None
    stride: int = 1
    max_frames: Optional[int] = None

    def check(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise OptionError("fps", self.fps, "must be positive")
        if self.stride < 1:
            raise OptionError("stride", self.stride, "keep at least every frame (1)")
        if self.max_frames is not None and self.max_frames < 1:
            raise OptionError("max_frames", self.max_frames, "take at least one frame")


def check_input_size(input_size: Optional[int]) -> None:
    """None is the model's own processing size (518 for the official models, 98 for the built-in one)."""
    if input_size is not None and input_size < 14:
        raise OptionError("input_size", input_size, "is too small; use at least 14")


@dataclass
class StreamJobOptions:
    """What a stream job (long-video reconstruction) does, with DA3-Streaming's names and defaults where it has them
    (``chunk_size``, ``overlap``, ``loop``, ``align_method``, the IRLS and loop settings).

    Attributes:
        export_dir: the output folder.
        chunk_size, overlap: frames per chunk and frames shared by consecutive chunks (120, 60).
        align_method: "sim3", "se3" or "scale+se3" (upstream's ``align_method``; ``--align`` on the command line).
        loop: detect and close loops (needs pypose: ``pip install 'anydepth[stream]'``).
        loop_threshold, loop_top_k, loop_min_gap, loop_nms, loop_chunk_size: loop detection (0.85, 5, 10, 25, 20).
        irls_delta, irls_max_iters: the robust alignment (0.1, 5).
        align_max_points: point pairs per alignment at most.
        process_res, process_res_method, ref_view_strategy: the model's processing, as for scene jobs.
        fps, max_frames: video sampling and a cap on the frames.
        sparse_subdir, images_subdir: where a COLMAP dataset keeps its model and images.
        work_dir: the resumable work folder (default ``export_dir/_work``).
        keep_work: keep the work folder after a successful run.
        disk_budget: most GiB the work folder may hold (None: no limit).
        voxel_size: voxel edge of the fused cloud, in the output's units (None: 1% of the first chunk's median depth).
        cloud_conf_ratio: points whose confidence is below this fraction of their chunk's mean are left out (0.75).
        save_frames: write each frame's depth and confidence (``results_output/frame_<i>.npz``).
        glb, plot: also write ``pointcloud.glb`` and ``trajectory.png``.
    """

    export_dir: Path
    chunk_size: int = 120
    overlap: int = 60
    align_method: str = "sim3"
    loop: bool = True
    loop_threshold: float = 0.85
    loop_top_k: int = 5
    loop_min_gap: int = 10
    loop_nms: int = 25
    loop_chunk_size: int = 20
    irls_delta: float = 0.1
    irls_max_iters: int = 5
    align_max_points: int = 200_000
    process_res: int = 504
    process_res_method: str = "upper_bound_resize"
    ref_view_strategy: str = "saddle_balanced"
    fps: Optional[float] = None
    max_frames: Optional[int] = None
    sparse_subdir: str = ""
    images_subdir: str = "images"
    work_dir: Optional[Path] = None
    keep_work: bool = False
    disk_budget: Optional[float] = None
    voxel_size: Optional[float] = None
    cloud_conf_ratio: float = 0.75
    save_frames: bool = True
    glb: bool = True
    plot: bool = True

    def check(self) -> None:
        """Refuse values no run takes, before any input is read."""
        self.pipeline_options().check()
        if self.fps is not None and not self.fps > 0:
            raise OptionError("fps", self.fps, "must be positive")
        if self.max_frames is not None and self.max_frames < 1:
            raise OptionError("max_frames", self.max_frames, "take at least one frame")
        if self.disk_budget is not None and not self.disk_budget > 0:
            raise OptionError("disk_budget", self.disk_budget, "give GiB, more than 0")
        if self.voxel_size is not None and not self.voxel_size > 0:
            raise OptionError("voxel_size", self.voxel_size, "must be positive")
        check_da3_processing(self.process_res, self.process_res_method, self.ref_view_strategy)

    def pipeline_options(self) -> Any:
        """The :class:`~anydepth.pipelines.streaming.StreamOptions` these options give."""
        from anydepth.pipelines.streaming import AlignOptions, LoopOptions, StreamOptions

        return StreamOptions(
            chunk_size=int(self.chunk_size),
            overlap=int(self.overlap),
            align=AlignOptions(
                self.align_method, self.irls_delta, int(self.irls_max_iters), max_points=self.align_max_points
            ),
            loop=self.loop,
            loops=LoopOptions(
                self.loop_threshold,
                int(self.loop_top_k),
                int(self.loop_min_gap),
                int(self.loop_nms),
                int(self.loop_chunk_size),
            ),
        )

    @property
    def work_folder(self) -> Path:
        return Path(self.work_dir) if self.work_dir is not None else Path(self.export_dir) / "_work"
