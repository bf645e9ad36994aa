"""``anydepth`` command line: list models, and depth for an image, a set of images or a video."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from anydepth.cli import deploy as _deploy_cli
from anydepth.cli.typer_app import App
from anydepth.errors import AnyDepthError, InputError

app = App(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Depth, cameras and geometry from images and videos with the Depth Anything family.",
)

_state = {"debug": False, "threads": None, "compile": False}

# options shared by the depth commands (typer needs the defaults at definition time)
ModelOpt = typer.Option(
    None,
    "--model",
    "-m",
    help="Preset name (`anydepth models` lists them); default: the preset --weights names, else dav2-small.",
)
WeightsOpt = typer.Option(
    None, "--weights", "-w", "--model-dir", help="Local weights file or folder, or a hub repo id."
)
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
PrecisionOpt = typer.Option("auto", "--precision", help="fp32, bf16, fp16 or auto.")
InputSizeOpt = typer.Option(518, "--input-size", help="Shorter side the network sees (multiple of 14 after resize).")
OutdirOpt = typer.Option(Path("./vis_depth"), "--outdir", "-o", help="Output folder.")
PredOnlyOpt = typer.Option(False, "--pred-only", help="Write only the depth visualisation, not the input beside it.")
GrayOpt = typer.Option(False, "--grayscale", help="Grey depth visualisation instead of the Spectral colour map.")
RawOpt = typer.Option(None, "--raw", help="Raw depth outputs, comma-separated: png16, npy, npz, exr.")
NoVisOpt = typer.Option(False, "--no-vis", help="Skip the colourised visualisation (raw outputs only).")
BatchOpt = typer.Option(4, "--batch-size", min=1, help="Images per forward pass.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
RevisionOpt = typer.Option(None, "--revision", help="Hub branch, tag or commit of the weights.")
BackendOpt = typer.Option(
    "pytorch", "--backend", help="pytorch, or onnxruntime / openvino / torchscript for a model exported with "
    "`anydepth export`, given by --weights.",
)  # fmt: skip

# DepthCrafter's options of the video command
SvdWeightsOpt = typer.Option(
    None, "--svd-weights", help="[depthcrafter] Stable Video Diffusion repo id or folder (vae/, image_encoder/, "
    "scheduler/, feature_extractor/); --weights is then the DepthCrafter repo id or a folder holding unet/.",
)  # fmt: skip
DcAlignOpt = typer.Option(
    True, "--dc-align/--dc-no-align", help="[depthcrafter] Fit each window's scale and shift over the overlap "
    "frames before the cross-fade; --dc-no-align joins windows exactly as upstream.",
)  # fmt: skip
CpuOffloadOpt = typer.Option(
    None, "--cpu-offload", help="[depthcrafter] model or sequential: keep networks in CPU memory and move them "
    "to the GPU when they run (needs accelerate and CUDA); default: none.",
)  # fmt: skip

# options of the DA3 (multi-view) commands, with upstream `da3` names; image/images/video take them for da3-* models
ExportDirOpt = typer.Option(Path("workspace/gallery/scene"), "--export-dir", help="[DA3] Export folder.")
ExportFormatOpt = typer.Option(
    None,
    "--export-format",
    help="[DA3] Formats joined by '-': mini_npz, npz, glb, ply, colmap, depth_vis, feat_vis, exr, png16, "
    "gs_ply (default glb).",
)
ProcessResOpt = typer.Option(504, "--process-res", help="[DA3] Processing resolution.")
ProcessResMethodOpt = typer.Option(
    "upper_bound_resize",
    "--process-res-method",
    help="[DA3] upper_bound_resize, lower_bound_resize, upper_bound_crop or lower_bound_crop.",
)
RefViewOpt = typer.Option(
    "saddle_balanced", "--ref-view-strategy", help="[DA3] first, middle, saddle_balanced or saddle_sim_range."
)
# boolean options take upstream's --no- forms too (typer's default for its flags: da3 --no-use-ray-pose)
RayPoseOpt = typer.Option(False, "--use-ray-pose/--no-use-ray-pose", help="[DA3] Cameras from the ray maps.")
ConfOpt = typer.Option(40.0, "--conf-thresh-percentile", help="[GLB] Confidence cut (percentile).")
MaxPointsOpt = typer.Option(1_000_000, "--num-max-points", help="[GLB] Most points in the cloud.")
CamerasOpt = typer.Option(True, "--show-cameras/--no-show-cameras", help="[GLB] Camera frusta.")
FeatOpt = typer.Option(None, "--export-feat", help="[FEAT_VIS] Backbone blocks to visualise, e.g. 5,11.")
FeatFpsOpt = typer.Option(15.0, "--feat-vis-fps", help="[FEAT_VIS] Frame rate of the video.")
InputResOpt = typer.Option(
    False, "--export-at-input-res", help="[DA3] Maps and exports at the input images' size (resize methods only)."
)
UseBackendOpt = typer.Option(
    False, "--use-backend/--no-use-backend", help="[DA3] Run the job on `anydepth backend` (--backend-url)."
)
BackendUrlOpt = typer.Option("http://127.0.0.1:8008", "--backend-url", help="[DA3] Server of --use-backend.")
CleanupOpt = typer.Option(
    False, "--auto-cleanup/--no-auto-cleanup", help="[DA3] Empty the export folder before writing."
)
MaxViewsOpt = typer.Option(None, "--max-frames", min=1, help="At most this many views / frames.")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _guarded(fn: Callable[[], None]) -> None:
    """Runs a command body: our errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        fn()
    except AnyDepthError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except typer.Exit:
        raise
    except Exception as exc:
        if _state["debug"]:
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")


def _pick_model(model: Optional[str], weights: Optional[str], default: str) -> str:
    """--model, else the preset that --weights names (hub id, official file name, DA3 config), else the default."""
    from anydepth.presets import guess_preset

    if model:
        return model
    return (guess_preset(weights) if weights else None) or default


def _is_da3(model: str) -> bool:
    from anydepth.presets import get_preset

    return get_preset(model).family == "da3"


def _load(
    model: str,
    weights: Optional[str],
    device: str,
    precision: str,
    revision: Optional[str],
    backend: str = "pytorch",
):
    from anydepth.api import load_model

    return load_model(
        model,
        weights=weights,
        device=device,
        precision=precision,
        revision=revision,
        num_threads=_state["threads"],
        compile=bool(_state["compile"]),
        backend=backend,
    )


def _options(
    model: str, outdir: Path, pred_only: bool, grayscale: bool, raw: Optional[str], no_vis: bool, video: bool = False
):
    """Checks the model name and the output options before any work starts."""
    from anydepth.cli.jobs import RAW_FORMATS, VIDEO_RAW_FORMATS, OutputOptions, parse_raw
    from anydepth.presets import get_preset

    if get_preset(model).family in ("vda", "depthcrafter"):
        raise InputError(f"{model} is a video model; run it with `anydepth video VIDEO --model {model}`")
    opts = OutputOptions(outdir=outdir, pred_only=pred_only, grayscale=grayscale, raw=parse_raw(raw), vis=not no_vis)
    opts.check(VIDEO_RAW_FORMATS if video else RAW_FORMATS)
    if not opts.vis and not opts.raw and not video:
        raise InputError("--no-vis leaves nothing to write; add --raw png16,npy,npz or exr")
    return opts


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads for the model (default: one per core)."
    ),
    compile_model: bool = typer.Option(
        False, "--compile", help="torch.compile the network (the first call of each input size compiles)."
    ),
) -> None:
    _state.update(debug=debug, threads=threads, compile=compile_model)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s")


@app.command("models")
def models_cmd(family: Optional[str] = typer.Option(None, help="Only this family, e.g. dav2.")) -> None:
    """List the model presets with their kind, size, licence and hub repo."""
    from anydepth.api import list_models

    table = [("name", "kind", "params", "repo", "license")]
    table += [(r.name, r.depth_kind, f"{r.params_m:.1f}M", r.repo_id or "-", r.license) for r in list_models(family)]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for name, kind, params, repo, license_ in table:
        # the licence last: some are sentences, and a last column may run on without breaking the others
        typer.echo(
            f"{name:{widths[0]}}  {kind:{widths[1]}}  {params:>{widths[2]}}  {repo:{widths[3]}}  {license_}".rstrip()
        )


def _run_images(
    paths, model, weights, device, precision, revision, input_size, opts, batch_size, quiet, backend, skip=False
) -> None:
    from anydepth.cli.jobs import run_images

    if input_size < 14:
        raise InputError(f"--input-size {input_size} is too small; use at least 14")
    loaded = _load(model, weights, device, precision, revision, backend)
    report = run_images(
        loaded,
        paths,
        opts,
        input_size=input_size,
        batch_size=batch_size,
        progress=not quiet,
        on_error=lambda msg: typer.echo(f"error: {msg}", err=True),
        skip_existing=skip,
    )
    if not quiet:
        skipped = f" ({report.skipped} already done)" if report.skipped else ""
        typer.echo(f"{report.done} image(s) written to {opts.outdir}{skipped}", err=True)
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


def _scene_on_backend(
    backend: str,
    url: str,
    spec: str,
    model: Optional[str],
    scene,
    quiet: bool,
    fps: float = 1.0,
    max_frames: Optional[int] = None,
    files: Optional[list] = None,
    is_colmap: bool = False,
) -> None:
    """A DA3 command with --use-backend: the job runs on `anydepth backend` at ``url``."""
    from anydepth.cli.service import run_on_backend

    if backend != "pytorch":
        raise InputError("--use-backend runs the job on the service with its own models; drop --backend")
    run_on_backend(url, spec, model, scene, fps, max_frames, is_colmap, quiet, files=files)


def _run_scene(
    command: str,
    views_of: Callable[[], list],
    model: str,
    weights: Optional[str],
    device: str,
    precision: str,
    revision: Optional[str],
    scene,
    quiet: bool,
    cameras_of: Optional[Callable[[int], dict]] = None,
    backend: str = "pytorch",
) -> None:
    """A DA3 command: check the options, gather the views, load the model, infer, export."""
    from anydepth.cli.scene import describe, run_scene
    from anydepth.export.formats import parse_export_format

    if not _is_da3(model):
        raise InputError(f"{command} runs DA3 models (da3-*); {model} is not one. Use `anydepth images` for it")
    parse_export_format(scene.export_format, has_features=bool(scene.feat_layers()))  # fails before any work
    views = views_of()
    cameras = cameras_of(len(views)) if cameras_of else None
    loaded = _load(model, weights, device, precision, revision, backend)
    prediction = run_scene(loaded, views, scene, cameras)
    if not quiet:
        typer.echo(f"{describe(prediction)}; exported {scene.export_format} to {scene.export_dir}", err=True)


@app.command("image")
def image_cmd(
    path: Path = typer.Argument(..., help="Image file."),
    model: Optional[str] = ModelOpt,
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    input_size: int = InputSizeOpt,
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
        from anydepth.cli.scene import SceneOptions
        from anydepth.io.images import read_image

        name = _pick_model(model, weights, "dav2-small")
        if _is_da3(name):
            _v2_only(name, **{"--raw": raw is not None, "--no-vis": no_vis, "--pred-only": pred_only})
            scene = SceneOptions.from_options(options)
            read_image(path)  # fail on a bad input before loading any weights
            if use_backend:
                _scene_on_backend(backend, backend_url, str(path), model, scene, quiet)
                return
            _run_scene(
                "image", lambda: [path], name, weights, device, precision, revision, scene, quiet, backend=backend
            )
            return
        _da3_only(name, export_format, use_backend)
        opts = _options(name, outdir, pred_only, grayscale, raw, no_vis)
        read_image(path)
        _run_images([path], name, weights, device, precision, revision, input_size, opts, 1, quiet, backend)

    _guarded(body)


@app.command("images")
def images_cmd(
    inputs: str = typer.Argument(..., help="A folder, a glob pattern ('photos/*.jpg') or a .txt list of paths."),
    model: Optional[str] = ModelOpt,
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    input_size: int = InputSizeOpt,
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
        from anydepth.cli.scene import SceneOptions, filter_extensions
        from anydepth.io.inputs import expand_inputs

        name = _pick_model(model, weights, "dav2-small")

        def paths() -> list:
            found = filter_extensions(expand_inputs(inputs), image_extensions)
            return found[:max_frames] if max_frames else found

        if _is_da3(name):
            _v2_only(name, **{"--raw": raw is not None, "--no-vis": no_vis, "--pred-only": pred_only})
            scene = SceneOptions.from_options(options)
            if use_backend:
                _scene_on_backend(backend, backend_url, inputs, model, scene, quiet, files=paths())
                return
            _run_scene("images", paths, name, weights, device, precision, revision, scene, quiet, backend=backend)
            return
        _da3_only(name, export_format, use_backend)
        opts = _options(name, outdir, pred_only, grayscale, raw, no_vis)
        _run_images(
            paths(), name, weights, device, precision, revision, input_size, opts, batch_size, quiet, backend,
            skip_existing,
        )  # fmt: skip

    _guarded(body)


@app.command("video")
def video_cmd(
    path: Path = typer.Argument(..., help="Video file."),
    model: Optional[str] = ModelOpt,
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    input_size: int = InputSizeOpt,
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
        from anydepth.cli.jobs import run_video
        from anydepth.cli.scene import SceneOptions, collect_views
        from anydepth.io.inputs import is_image_path
        from anydepth.io.video import VideoReader
        from anydepth.presets import get_preset

        if fps is not None and fps <= 0:
            raise InputError(f"--fps {fps} must be positive")
        if is_image_path(path):
            raise InputError(f"{path} is an image, not a video; use `anydepth image {path}`")
        name = _pick_model(model, weights, "dav2-small")
        if _is_da3(name):
            _v2_only(name, **{"--raw": raw is not None, "--pred-only": pred_only, "--stride": stride != 1})
            scene = SceneOptions.from_options(options)
            with VideoReader(path):  # fail on an unreadable video before loading any weights
                pass
            if use_backend:
                _scene_on_backend(backend, backend_url, str(path), model, scene, quiet, fps or 1.0, max_frames)
                return
            views = lambda: collect_views(str(path), fps=1.0 if fps is None else fps, max_frames=max_frames)  # noqa: E731
            _run_scene("video", views, name, weights, device, precision, revision, scene, quiet, backend=backend)
            return
        _da3_only(name, export_format, use_backend)
        if get_preset(name).family == "depthcrafter":
            from anydepth.cli.depthcrafter_job import run_depthcrafter_command

            if backend != "pytorch":
                raise InputError(f"--backend {backend}: DepthCrafter runs with the pytorch backend only")
            lines = run_depthcrafter_command(
                path, weights, svd_weights, device, precision, revision, outdir, grayscale, raw, fps, stride,
                max_frames, cpu_offload, quiet=quiet, num_threads=_state["threads"], compile=bool(_state["compile"]),
                steps=dc_steps, guidance=dc_guidance, window=dc_window, overlap=dc_overlap, max_res=dc_max_res,
                seed=seed, align=dc_align, decode_chunk_size=dc_decode_chunk,
            )  # fmt: skip
            for line in lines:
                typer.echo(line, err=True)
            return
        if svd_weights is not None or cpu_offload is not None:
            raise InputError("--svd-weights and --cpu-offload are DepthCrafter options; add --model depthcrafter")
        if get_preset(name).family == "vda":
            from anydepth.cli.video_depth_job import run_vda_command

            args = (weights, device, precision, revision, input_size, outdir, grayscale, raw, fps, stride, max_frames)
            lines = run_vda_command(
                path, name, *args, quiet=quiet, mode=vda_mode, align=vda_align, backend=backend,
                num_threads=_state["threads"], compile=bool(_state["compile"]),
            )  # fmt: skip
            for line in lines:
                typer.echo(line, err=True)
            return
        opts = _options(name, outdir, pred_only, grayscale, raw, False, video=True)
        with VideoReader(path):  # fail on an unreadable video before loading any weights
            pass
        loaded = _load(name, weights, device, precision, revision, backend)
        out = run_video(
            loaded,
            path,
            opts,
            input_size=input_size,
            fps=fps,
            stride=stride,
            max_frames=max_frames,
            batch_size=batch_size,
            progress=not quiet,
        )
        if not quiet:
            typer.echo(f"wrote {out}", err=True)

    _guarded(body)


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
        from anydepth.cli.scene import SceneOptions, collect_views
        from anydepth.io.colmap import is_colmap_dataset, missing_model_message, read_colmap_views

        command = ctx.info_name or "auto"
        name = _pick_model(model, weights, "da3-small")
        scene = SceneOptions.from_options(options)
        if use_backend:
            colmap = is_colmap_dataset(path, sparse_subdir)
            _scene_on_backend(backend, backend_url, path, model, scene, quiet, fps, max_frames, is_colmap=colmap)
            return
        colmap = is_colmap_dataset(path, sparse_subdir)
        if command == "colmap" and not colmap:
            raise InputError(missing_model_message(path, sparse_subdir))
        if not colmap:
            views = lambda: collect_views(path, fps=fps, max_frames=max_frames)  # noqa: E731
            _run_scene(command, views, name, weights, device, precision, revision, scene, quiet, backend=backend)
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

        _run_scene(command, views, name, weights, device, precision, revision, scene, quiet, cameras, backend)

    _guarded(body)


app.command(
    "colmap",
    help="Depth of a COLMAP dataset (images/ + sparse/) with a DA3 model, conditioned on its cameras and "
    "reported in its frame; options as for `auto`.",
)(auto_cmd)

from anydepth.cli import gallery as _gallery  # noqa: E402  (the web commands live in their own modules)
from anydepth.cli import service as _service  # noqa: E402
from anydepth.cli import webapp as _webapp  # noqa: E402

_service.register(app)
_gallery.register(app)
_webapp.register(app)


_deploy_cli.register(app)  # anydepth export


def main(argv: Optional[list] = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="anydepth")
    except SystemExit as exc:
        if exc.code not in (0, None):
            sys.exit(exc.code)
