"""``anydepth`` command line: list models, and depth for an image, a set of images or a video.

Every command is a thin adapter: it turns its parameters into the typed options of :mod:`anydepth.jobs` and calls
a job. The root options travel in the typer context (:class:`~anydepth.cli.common.CliState`).
"""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import typer

from anydepth.cli import batch, bench, deploy, gallery, service, stream, train, webapp
from anydepth.cli.common import (
    BackendOpt,
    BackendUrlOpt,
    BatchOpt,
    CamerasOpt,
    CleanupOpt,
    CliState,
    ConfOpt,
    CpuOffloadOpt,
    DcAlignOpt,
    DeviceOpt,
    ExportDirOpt,
    ExportFormatOpt,
    FeatFpsOpt,
    FeatOpt,
    GrayOpt,
    GsQualityOpt,
    GsShowOpt,
    GsTrajectoryOpt,
    InputResOpt,
    InputSizeOpt,
    MaxPointsOpt,
    MaxViewsOpt,
    ModelOpt,
    NoVisOpt,
    OutdirOpt,
    PrecisionOpt,
    PredOnlyOpt,
    ProcessResMethodOpt,
    ProcessResOpt,
    QuietOpt,
    RawOpt,
    RayPoseOpt,
    RefViewOpt,
    RevisionOpt,
    SvdWeightsOpt,
    UseBackendOpt,
    WeightsOpt,
    guarded,
    state,
)
from anydepth.cli.typer_app import App
from anydepth.errors import InputError
from anydepth.jobs.options import ImageOutputs, ModelSpec, RuntimeOptions, SceneOptions, parse_raw

app = App(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Depth, cameras and geometry from images and videos with the Depth Anything family.",
)


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads for the model (default: one per core)."
    ),
    compile_model: bool = typer.Option(
        False, "--compile", help="torch.compile the network (the first call of each input size compiles)."
    ),
) -> None:
    ctx.obj = CliState(debug=debug, threads=threads, compile=compile_model)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s")


@app.command("models")
def models_cmd(family: Optional[str] = typer.Option(None, help="Only this family, e.g. dav2.")) -> None:
    """List the model presets with their kind, size, licence and hub repo."""
    from anydepth.presets import list_models

    table = [("name", "kind", "params", "repo", "license")]
    table += [
        (r.name, r.depth_kind, f"{r.params_m:.1f}M", r.repo_id or ("built-in" if r.bundled else "-"), r.license)
        for r in list_models(family)
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for name, kind, params, repo, license_ in table:
        # the licence last: some are sentences, and a last column may run on without breaking the others
        typer.echo(
            f"{name:{widths[0]}}  {kind:{widths[1]}}  {params:>{widths[2]}}  {repo:{widths[3]}}  {license_}".rstrip()
        )


def _image_outputs(
    spec: ModelSpec, outdir: Path, pred_only: bool, grayscale: bool, raw: Optional[str], no_vis: bool, video: bool
) -> ImageOutputs:
    """Checks the model and the output options of an image model before any work starts."""
    if spec.task == "video":
        raise InputError(f"{spec.name} is a video model; run it with `anydepth video VIDEO --model {spec.name}`")
    outputs = ImageOutputs(outdir=outdir, pred_only=pred_only, grayscale=grayscale, raw=parse_raw(raw), vis=not no_vis)
    if video:
        from anydepth.jobs.options import FRAME_RAW_FORMATS

        outputs.check(FRAME_RAW_FORMATS, need_output=False)
    else:
        outputs.check()
    return outputs


def _run_images(
    spec: ModelSpec, runtime: RuntimeOptions, paths: List[Path], input_size: Optional[int], outputs: ImageOutputs,
    batch_size: int, quiet: bool, skip_existing: bool = False,
) -> None:  # fmt: skip
    from anydepth.jobs.images import images_job

    report = images_job(
        spec, runtime, paths, outputs, input_size=input_size, batch_size=batch_size, progress=not quiet,
        on_error=lambda msg: typer.echo(f"error: {msg}", err=True), skip_existing=skip_existing,
    )  # fmt: skip
    if not quiet:
        skipped = f" ({report.skipped} already done)" if report.skipped else ""
        typer.echo(f"{report.done} image(s) written to {outputs.outdir}{skipped}", err=True)
    if report.failures:
        raise typer.Exit(1)


def _v2_only(model: str, **given: bool) -> None:
    """Refuses options of the V2 commands that a DA3 model does not take."""
    named = [name for name, was_given in given.items() if was_given]
    if named:
        raise InputError(
            f"{', '.join(named)} are for V2 models; {model} writes its results with --export-format "
            "(e.g. depth_vis-exr-png16) into --export-dir"
        )


def _da3_only(model: str, export_format: Optional[str], use_backend: bool = False) -> None:
    if export_format is not None:
        raise InputError(f"--export-format needs a DA3 model (da3-*); {model} writes --raw outputs into --outdir")
    if use_backend:
        raise InputError(
            f"--use-backend runs DA3 models on `anydepth backend`; {model} is not one: add --model with a DA3 preset"
        )


def _run_scene(
    command: str,
    spec: ModelSpec,
    runtime: RuntimeOptions,
    scene: SceneOptions,
    views_of: Callable[[], list],
    quiet: bool,
    cameras_of: Optional[Callable[[int], Dict[str, Any]]] = None,
) -> None:
    """A scene command: the job, then one line about the prediction."""
    from anydepth.jobs.scene import describe, scene_job

    if spec.task != "scene":
        raise InputError(f"{command} runs DA3 models (da3-*); {spec.name} is not one. Use `anydepth images` for it")
    prediction = scene_job(spec, runtime, scene, views_of, cameras_of)
    if not quiet:
        typer.echo(f"{describe(prediction)}; exported {scene.export_format} to {scene.export_dir}", err=True)


def _scene_on_backend(runtime: RuntimeOptions, url: str, spec: str, model: Optional[str], scene: SceneOptions,
                      quiet: bool, fps: float = 1.0, max_frames: Optional[int] = None, files: Optional[list] = None,
                      is_colmap: bool = False) -> None:  # fmt: skip
    """A DA3 command with --use-backend: the job runs on `anydepth backend` at ``url``."""
    if runtime.backend != "pytorch":
        raise InputError("--use-backend runs the job on the service with its own models; drop --backend")
    service.run_on_backend(url, spec, model, scene, fps, max_frames, is_colmap, quiet, files=files)


@app.command("image")
def image_cmd(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="Image file."),
    model: Optional[str] = ModelOpt,
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    input_size: Optional[int] = InputSizeOpt,
    outdir: Path = OutdirOpt,
    pred_only: bool = PredOnlyOpt,
    grayscale: bool = GrayOpt,
    raw: Optional[str] = RawOpt,
    no_vis: bool = NoVisOpt,
    export_dir: Path = ExportDirOpt,
    export_format: Optional[str] = ExportFormatOpt,
    process_res: int = ProcessResOpt,
    process_res_method: str = ProcessResMethodOpt,
    ref_view_strategy: str = RefViewOpt,
    use_ray_pose: bool = RayPoseOpt,
    conf_thresh_percentile: float = ConfOpt,
    num_max_points: int = MaxPointsOpt,
    show_cameras: bool = CamerasOpt,
    export_feat: Optional[str] = FeatOpt,
    feat_vis_fps: float = FeatFpsOpt,
    export_at_input_res: bool = InputResOpt,
    gs_trajectory: str = GsTrajectoryOpt,
    gs_video_show: str = GsShowOpt,
    gs_video_quality: str = GsQualityOpt,
    auto_cleanup: bool = CleanupOpt,
    quiet: bool = QuietOpt,
    revision: Optional[str] = RevisionOpt,
    backend: str = BackendOpt,
    use_backend: bool = UseBackendOpt,
    backend_url: str = BackendUrlOpt,
) -> None:
    """Depth of one image (V2 models: visualisation and --raw maps in --outdir; DA3 models: --export-format)."""

    options = dict(locals())  # the parameters, for SceneOptions.from_options

    def body() -> None:
        from anydepth.io.images import read_image

        spec = ModelSpec.pick(model, weights, "dav2-small", revision=revision)
        runtime = state(ctx).runtime(device, precision, backend)
        if spec.task == "scene":
            _v2_only(spec.name, **{"--raw": raw is not None, "--no-vis": no_vis, "--pred-only": pred_only})
            scene = SceneOptions.from_options(options)
            read_image(path)  # fail on a bad input before loading any weights
            if use_backend:
                _scene_on_backend(runtime, backend_url, str(path), model, scene, quiet)
                return
            _run_scene("image", spec, runtime, scene, lambda: [path], quiet)
            return
        _da3_only(spec.name, export_format, use_backend)
        outputs = _image_outputs(spec, outdir, pred_only, grayscale, raw, no_vis, video=False)
        read_image(path)
        _run_images(spec, runtime, [path], input_size, outputs, 1, quiet)

    guarded(ctx, body)


@app.command("images")
def images_cmd(
    ctx: typer.Context,
    inputs: str = typer.Argument(..., help="A folder, a glob pattern ('photos/*.jpg') or a .txt list of paths."),
    model: Optional[str] = ModelOpt,
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    input_size: Optional[int] = InputSizeOpt,
    outdir: Path = OutdirOpt,
    pred_only: bool = PredOnlyOpt,
    grayscale: bool = GrayOpt,
    raw: Optional[str] = RawOpt,
    no_vis: bool = NoVisOpt,
    batch_size: int = BatchOpt,
    image_extensions: Optional[str] = typer.Option(
        None, "--image-extensions", help="Only files with these comma-separated extensions, e.g. png,jpg."
    ),
    export_dir: Path = ExportDirOpt,
    export_format: Optional[str] = ExportFormatOpt,
    process_res: int = ProcessResOpt,
    process_res_method: str = ProcessResMethodOpt,
    ref_view_strategy: str = RefViewOpt,
    use_ray_pose: bool = RayPoseOpt,
    conf_thresh_percentile: float = ConfOpt,
    num_max_points: int = MaxPointsOpt,
    show_cameras: bool = CamerasOpt,
    export_feat: Optional[str] = FeatOpt,
    feat_vis_fps: float = FeatFpsOpt,
    export_at_input_res: bool = InputResOpt,
    gs_trajectory: str = GsTrajectoryOpt,
    gs_video_show: str = GsShowOpt,
    gs_video_quality: str = GsQualityOpt,
    auto_cleanup: bool = CleanupOpt,
    max_frames: Optional[int] = MaxViewsOpt,
    quiet: bool = QuietOpt,
    revision: Optional[str] = RevisionOpt,
    backend: str = BackendOpt,
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip images whose outputs all exist."),
    use_backend: bool = UseBackendOpt,
    backend_url: str = BackendUrlOpt,
) -> None:
    """Depth of many images: a folder, a glob pattern or a text file listing paths (one per line).

    V2 models treat each image on its own; a DA3 model treats them as views of one scene (depth and cameras).
    """

    options = dict(locals())  # the parameters, for SceneOptions.from_options

    def body() -> None:
        from anydepth.io.inputs import expand_inputs
        from anydepth.jobs.scene import filter_extensions

        spec = ModelSpec.pick(model, weights, "dav2-small", revision=revision)
        runtime = state(ctx).runtime(device, precision, backend)

        def paths() -> list:
            found = filter_extensions(expand_inputs(inputs), image_extensions)
            return found[:max_frames] if max_frames else found

        if spec.task == "scene":
            _v2_only(spec.name, **{"--raw": raw is not None, "--no-vis": no_vis, "--pred-only": pred_only})
            scene = SceneOptions.from_options(options)
            if use_backend:
                _scene_on_backend(runtime, backend_url, inputs, model, scene, quiet, files=paths())
                return
            _run_scene("images", spec, runtime, scene, paths, quiet)
            return
        _da3_only(spec.name, export_format, use_backend)
        outputs = _image_outputs(spec, outdir, pred_only, grayscale, raw, no_vis, video=False)
        _run_images(spec, runtime, paths(), input_size, outputs, batch_size, quiet, skip_existing)

    guarded(ctx, body)


@app.command("video")
def video_cmd(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="Video file."),
    model: Optional[str] = ModelOpt,
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    input_size: Optional[int] = InputSizeOpt,
    outdir: Path = OutdirOpt,
    pred_only: bool = PredOnlyOpt,
    grayscale: bool = GrayOpt,
    raw: Optional[str] = typer.Option(
        None, "--raw", help="Raw depth outputs, comma-separated: npy, png16, exr (vda-* models also npz)."
    ),
    fps: Optional[float] = typer.Option(
        None, "--fps", help="Sample the video at this frame rate (default: every frame; DA3 models: 1.0)."
    ),
    stride: int = typer.Option(1, "--stride", min=1, help="Keep every k-th frame."),
    max_frames: Optional[int] = MaxViewsOpt,
    batch_size: int = BatchOpt,
    export_dir: Path = ExportDirOpt,
    export_format: Optional[str] = ExportFormatOpt,
    process_res: int = ProcessResOpt,
    process_res_method: str = ProcessResMethodOpt,
    ref_view_strategy: str = RefViewOpt,
    use_ray_pose: bool = RayPoseOpt,
    conf_thresh_percentile: float = ConfOpt,
    num_max_points: int = MaxPointsOpt,
    show_cameras: bool = CamerasOpt,
    export_feat: Optional[str] = FeatOpt,
    feat_vis_fps: float = FeatFpsOpt,
    export_at_input_res: bool = InputResOpt,
    gs_trajectory: str = GsTrajectoryOpt,
    gs_video_show: str = GsShowOpt,
    gs_video_quality: str = GsQualityOpt,
    auto_cleanup: bool = CleanupOpt,
    quiet: bool = QuietOpt,
    revision: Optional[str] = RevisionOpt,
    vda_mode: str = typer.Option("windowed", "--vda-mode", help="[vda-*] windowed (best) or streaming (one frame)."),
    vda_align: str = typer.Option("overlap", "--vda-align", help="[vda-*] overlap, or keyframes as upstream."),
    backend: str = BackendOpt,
    svd_weights: Optional[str] = SvdWeightsOpt,
    dc_steps: int = typer.Option(5, "--dc-steps", help="[depthcrafter] Denoising steps."),
    dc_guidance: float = typer.Option(1.0, "--dc-guidance", help="[depthcrafter] Guidance scale (1.0: none)."),
    dc_window: int = typer.Option(110, "--dc-window", help="[depthcrafter] Frames denoised together."),
    dc_overlap: int = typer.Option(25, "--dc-overlap", help="[depthcrafter] Frames shared by consecutive windows."),
    dc_max_res: int = typer.Option(1024, "--dc-max-res", help="[depthcrafter] Longest processing side (x64)."),
    dc_align: bool = DcAlignOpt,
    dc_decode_chunk: int = typer.Option(8, "--dc-decode-chunk", help="[depthcrafter] Frames per VAE call."),
    seed: int = typer.Option(42, "--seed", help="[depthcrafter] Seed of the diffusion noise."),
    cpu_offload: Optional[str] = CpuOffloadOpt,
    use_backend: bool = UseBackendOpt,
    backend_url: str = BackendUrlOpt,
) -> None:
    """Depth of a video. V2 models: per frame, streamed (memory does not grow with the video's length).
    Video Depth Anything models (vda-*): temporally consistent depth, streamed in windows.
    DepthCrafter (depthcrafter): video diffusion in windows, frames read and written lazily.
    DA3 models: frames sampled at --fps are the views of one scene (depth and cameras)."""

    options = dict(locals())  # the parameters, for SceneOptions.from_options

    def body() -> None:
        from anydepth.io.inputs import is_image_path
        from anydepth.io.video import VideoReader
        from anydepth.jobs import video as jobs
        from anydepth.jobs.options import FrameSampling, VideoOutputs

        sampling = FrameSampling(fps=fps, stride=stride, max_frames=max_frames)
        sampling.check()
        if is_image_path(path):
            raise InputError(f"{path} is an image, not a video; use `anydepth image {path}`")
        spec = ModelSpec.pick(model, weights, "dav2-small", revision=revision, svd_weights=svd_weights)
        runtime = state(ctx).runtime(device, precision, backend, None if cpu_offload in (None, "none") else cpu_offload)
        if spec.task == "scene":
            _v2_only(spec.name, **{"--raw": raw is not None, "--pred-only": pred_only, "--stride": stride != 1})
            scene = SceneOptions.from_options(options)
            with VideoReader(path):  # fail on an unreadable video before loading any weights
                pass
            if use_backend:
                _scene_on_backend(runtime, backend_url, str(path), model, scene, quiet, fps or 1.0, max_frames)
                return
            from anydepth.jobs.scene import collect_views

            views = lambda: collect_views(str(path), fps=1.0 if fps is None else fps, max_frames=max_frames)  # noqa: E731
            _run_scene("video", spec, runtime, scene, views, quiet)
            return
        _da3_only(spec.name, export_format, use_backend)
        if spec.task == "video":
            outputs = VideoOutputs(outdir=outdir, raw=parse_raw(raw), grayscale=grayscale)
            written = _video_model(spec, runtime, path, outputs, sampling, options)
            if not quiet:
                typer.echo(f"wrote {len(written)} file(s) to {outdir}", err=True)
            return
        if svd_weights is not None or cpu_offload is not None:
            raise InputError("--svd-weights and --cpu-offload are DepthCrafter options; add --model depthcrafter")
        outputs = _image_outputs(spec, outdir, pred_only, grayscale, raw, False, video=True)
        out = jobs.frame_video_job(
            spec, runtime, path, outputs, sampling, input_size=input_size, batch_size=batch_size, progress=not quiet
        )
        if not quiet:
            typer.echo(f"wrote {out}", err=True)

    guarded(ctx, body)


def _video_model(spec: ModelSpec, runtime: RuntimeOptions, path: Path, outputs: Any, sampling: Any,
                 options: Dict[str, Any]) -> List[Path]:  # fmt: skip
    """``video`` with a video model: Video Depth Anything (--vda-*) or DepthCrafter (--dc-*)."""
    from anydepth.families import family_of
    from anydepth.jobs import video as jobs

    progress = not options["quiet"]
    if family_of(spec.name).loader is None:  # one network: Video Depth Anything
        if spec.svd_weights is not None or runtime.cpu_offload is not None:
            raise InputError("--svd-weights and --cpu-offload are DepthCrafter options; add --model depthcrafter")
        return jobs.video_depth_job(
            spec, runtime, path, outputs, sampling, options["input_size"], mode=options["vda_mode"],
            align=options["vda_align"], progress=progress,
        )  # fmt: skip
    from anydepth.pipelines.depthcrafter.pipeline import DepthCrafterOptions

    if runtime.backend != "pytorch":
        raise InputError(f"--backend {runtime.backend}: DepthCrafter runs with the pytorch backend only")
    settings = DepthCrafterOptions(
        steps=options["dc_steps"], guidance=options["dc_guidance"], window=options["dc_window"],
        overlap=options["dc_overlap"], max_res=options["dc_max_res"], seed=options["seed"], align=options["dc_align"],
        decode_chunk_size=options["dc_decode_chunk"],
    )  # fmt: skip
    try:
        settings.check()
    except InputError as exc:
        raise InputError(f"{exc} (--dc-* options)") from None
    return jobs.depthcrafter_job(spec, runtime, path, outputs, sampling, settings, progress=progress)


@app.command("auto")
def auto_cmd(
    ctx: typer.Context,
    path: str = typer.Argument(
        ..., help="An image, a folder / glob / .txt list of images, a video, or a COLMAP dataset (images/, sparse/)."
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="DA3 preset (`anydepth models --family da3`); default: from --weights, else da3-small.",
    ),
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    export_dir: Path = ExportDirOpt,
    export_format: Optional[str] = ExportFormatOpt,
    process_res: int = ProcessResOpt,
    process_res_method: str = ProcessResMethodOpt,
    ref_view_strategy: str = RefViewOpt,
    use_ray_pose: bool = RayPoseOpt,
    conf_thresh_percentile: float = ConfOpt,
    num_max_points: int = MaxPointsOpt,
    show_cameras: bool = CamerasOpt,
    export_feat: Optional[str] = FeatOpt,
    feat_vis_fps: float = FeatFpsOpt,
    fps: float = typer.Option(1.0, "--fps", help="[Video] Frames per second to sample."),
    max_frames: Optional[int] = MaxViewsOpt,
    export_at_input_res: bool = InputResOpt,
    gs_trajectory: str = GsTrajectoryOpt,
    gs_video_show: str = GsShowOpt,
    gs_video_quality: str = GsQualityOpt,
    auto_cleanup: bool = CleanupOpt,
    sparse_subdir: str = typer.Option(
        "",
        "--sparse-subdir",
        help="[COLMAP] The model's folder under sparse/ (0: sparse/0/); empty: sparse/, else sparse/0/.",
    ),
    images_subdir: str = typer.Option("images", "--images-subdir", help="[COLMAP] Folder of the images."),
    align_to_input_ext_scale: bool = typer.Option(
        True,
        "--align-to-input-ext-scale/--no-align-to-input-ext-scale",
        help="[COLMAP] Report the dataset's cameras and scale depth to them (else: move them into the prediction).",
    ),
    quiet: bool = QuietOpt,
    revision: Optional[str] = RevisionOpt,
    backend: str = BackendOpt,
    use_backend: bool = UseBackendOpt,
    backend_url: str = BackendUrlOpt,
) -> None:
    """Depth and cameras of one scene with a DA3 model: every input is a view of the same scene.

    A COLMAP dataset's cameras condition the model (pose conditioning) and the outputs are reported in its frame.
    """

    options = dict(locals())  # the parameters, for SceneOptions.from_options

    def body() -> None:
        from anydepth.io.colmap import is_colmap_dataset, missing_model_message, read_colmap_views
        from anydepth.jobs.scene import collect_views

        command = ctx.info_name or "auto"
        spec = ModelSpec.pick(model, weights, "da3-small", revision=revision)
        runtime = state(ctx).runtime(device, precision, backend)
        scene = SceneOptions.from_options(options)
        colmap = is_colmap_dataset(path, sparse_subdir)
        if use_backend:
            _scene_on_backend(runtime, backend_url, path, model, scene, quiet, fps, max_frames, is_colmap=colmap)
            return
        if command == "colmap" and not colmap:
            raise InputError(missing_model_message(path, sparse_subdir))
        if not colmap:
            views = lambda: collect_views(path, fps=fps, max_frames=max_frames)  # noqa: E731
            _run_scene(command, spec, runtime, scene, views, quiet)
            return
        dataset = {}

        def views() -> list:
            dataset["views"] = read_colmap_views(path, sparse_subdir, images_subdir)
            paths = list(dataset["views"].image_paths)
            return paths[:max_frames] if max_frames else paths

        def cameras(n: int) -> dict:
            return {
                "extrinsics": dataset["views"].extrinsics[:n],
                "intrinsics": dataset["views"].intrinsics[:n],
                "align_to_input_ext_scale": align_to_input_ext_scale,
            }

        _run_scene(command, spec, runtime, scene, views, quiet, cameras)

    guarded(ctx, body)


app.command(
    "colmap",
    help="Depth of a COLMAP dataset (images/ + sparse/) with a DA3 model, conditioned on its cameras and "
    "reported in its frame; options as for `auto`.",
)(auto_cmd)

service.register(app)  # backend
gallery.register(app)
webapp.register(app)  # app, gradio
deploy.register(app)  # export
bench.register(app)  # bench score
stream.register(app)  # stream
train.register(app)  # train
batch.register(app)  # batch


def main(argv: Optional[list] = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="anydepth")
    except SystemExit as exc:
        if exc.code not in (0, None):
            sys.exit(exc.code)
