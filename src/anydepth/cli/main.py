"""``anydepth`` command line: list models, and depth for an image, a set of images or a video."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from anydepth.cli import deploy as _deploy_cli
from anydepth.errors import AnyDepthError, InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Depth, cameras and geometry from images and videos with the Depth Anything family.",
)

_state = {"debug": False}

# options shared by the depth commands (typer needs the defaults at definition time)
ModelOpt = typer.Option("dav2-small", "--model", "-m", help="Preset name; `anydepth models` lists them.")
WeightsOpt = typer.Option(None, "--weights", "-w", help="Local weights file or folder, or a hub repo id.")
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


def _load(model: str, weights: Optional[str], device: str, precision: str, revision: Optional[str], backend="pytorch"):
    from anydepth.api import load_model

    return load_model(model, weights=weights, device=device, precision=precision, revision=revision, backend=backend)


def _options(
    model: str, outdir: Path, pred_only: bool, grayscale: bool, raw: Optional[str], no_vis: bool, video: bool = False
):
    """Checks the model name and the output options before any work starts."""
    from anydepth.cli.jobs import RAW_FORMATS, VIDEO_RAW_FORMATS, OutputOptions, parse_raw
    from anydepth.presets import get_preset

    if get_preset(model).family == "da3":
        raise InputError(f"{model} is a multi-view DA3 model; run it with `anydepth auto PATH --model {model}`")
    opts = OutputOptions(outdir=outdir, pred_only=pred_only, grayscale=grayscale, raw=parse_raw(raw), vis=not no_vis)
    get_preset(model)
    opts.check(VIDEO_RAW_FORMATS if video else RAW_FORMATS)
    if not opts.vis and not opts.raw and not video:
        raise InputError("--no-vis leaves nothing to write; add --raw png16,npy,npz or exr")
    return opts


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s")


@app.command("models")
def models_cmd(family: Optional[str] = typer.Option(None, help="Only this family, e.g. dav2.")) -> None:
    """List the model presets with their kind, size, licence and hub repo."""
    from anydepth.api import list_models

    rows = list_models(family)
    typer.echo(f"{'name':32} {'kind':10} {'params':>8}  {'license':14} repo")
    for r in rows:
        typer.echo(f"{r.name:32} {r.depth_kind:10} {r.params_m:7.1f}M  {r.license:14} {r.repo_id or '-'}")


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


@app.command("image")
def image_cmd(
    path: Path = typer.Argument(..., help="Image file."),
    model: str = ModelOpt,
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    input_size: int = InputSizeOpt,
    outdir: Path = OutdirOpt,
    pred_only: bool = PredOnlyOpt,
    grayscale: bool = GrayOpt,
    raw: Optional[str] = RawOpt,
    no_vis: bool = NoVisOpt,
    quiet: bool = QuietOpt,
    revision: Optional[str] = RevisionOpt,
    backend: str = BackendOpt,
) -> None:
    """Depth of one image."""

    def body() -> None:
        from anydepth.io.images import read_image

        opts = _options(model, outdir, pred_only, grayscale, raw, no_vis)
        read_image(path)  # fail on a bad input before loading any weights
        _run_images([path], model, weights, device, precision, revision, input_size, opts, 1, quiet, backend)

    _guarded(body)


@app.command("images")
def images_cmd(
    inputs: str = typer.Argument(..., help="A folder, a glob pattern ('photos/*.jpg') or a .txt list of paths."),
    model: str = ModelOpt,
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
    quiet: bool = QuietOpt,
    revision: Optional[str] = RevisionOpt,
    backend: str = BackendOpt,
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip images whose outputs all exist."),
) -> None:
    """Depth of many images: a folder, a glob pattern or a text file listing paths (one per line)."""

    def body() -> None:
        from anydepth.io.inputs import expand_inputs

        opts = _options(model, outdir, pred_only, grayscale, raw, no_vis)
        paths = expand_inputs(inputs)
        _run_images(
            paths, model, weights, device, precision, revision, input_size, opts, batch_size, quiet, backend,
            skip_existing,
        )  # fmt: skip

    _guarded(body)


@app.command("video")
def video_cmd(
    path: Path = typer.Argument(..., help="Video file."),
    model: str = ModelOpt,
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    input_size: int = InputSizeOpt,
    outdir: Path = OutdirOpt,
    pred_only: bool = PredOnlyOpt,
    grayscale: bool = GrayOpt,
    raw: Optional[str] = typer.Option(None, "--raw", help="Raw depth outputs, comma-separated: npy, png16, exr."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Sample the video at this frame rate."),
    stride: int = typer.Option(1, "--stride", min=1, help="Keep every k-th frame."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop after this many frames."),
    batch_size: int = BatchOpt,
    quiet: bool = QuietOpt,
    revision: Optional[str] = RevisionOpt,
    backend: str = BackendOpt,
) -> None:
    """Per-frame depth of a video, streamed frame by frame (memory does not grow with the video's length)."""

    def body() -> None:
        from anydepth.cli.jobs import run_video
        from anydepth.io.video import VideoReader

        opts = _options(model, outdir, pred_only, grayscale, raw, False, video=True)
        from anydepth.io.inputs import is_image_path

        if fps is not None and fps <= 0:
            raise InputError(f"--fps {fps} must be positive")
        if is_image_path(path):
            raise InputError(f"{path} is an image, not a video; use `anydepth image {path}`")
        with VideoReader(path):  # fail on an unreadable video before loading any weights
            pass
        loaded = _load(model, weights, device, precision, revision, backend)
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
        ..., help="An image, a folder / glob / .txt list of images, a video, or a COLMAP dataset (images/, sparse/0/)."
    ),
    model: str = typer.Option("da3-small", "--model", "-m", help="DA3 preset; `anydepth models --family da3`."),
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    export_dir: Path = typer.Option(Path("workspace/gallery/scene"), "--export-dir", help="Export folder."),
    export_format: str = typer.Option(
        "glb", "--export-format", help="Formats joined by '-': mini_npz, npz, glb, ply, colmap."
    ),
    process_res: int = typer.Option(504, "--process-res", help="Processing resolution."),
    process_res_method: str = typer.Option(
        "upper_bound_resize",
        "--process-res-method",
        help="upper_bound_resize, lower_bound_resize, upper_bound_crop or lower_bound_crop.",
    ),
    ref_view_strategy: str = typer.Option(
        "saddle_balanced", "--ref-view-strategy", help="first, middle, saddle_balanced or saddle_sim_range."
    ),
    use_ray_pose: bool = typer.Option(False, "--use-ray-pose", help="Cameras from the ray maps."),
    conf_thresh_percentile: float = typer.Option(40.0, "--conf-thresh-percentile", help="[GLB] Confidence cut."),
    num_max_points: int = typer.Option(1_000_000, "--num-max-points", help="[GLB] Most points in the cloud."),
    show_cameras: bool = typer.Option(True, "--show-cameras/--no-show-cameras", help="[GLB] Camera frusta."),
    export_feat: Optional[str] = typer.Option(None, "--export-feat", help="Backbone blocks for feat_vis, e.g. 5,11."),
    feat_vis_fps: float = typer.Option(15.0, "--feat-vis-fps", help="[FEAT_VIS] Frame rate of the video."),
    fps: float = typer.Option(1.0, "--fps", help="[Video] Frames per second to sample."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="At most this many views."),
    input_res: bool = typer.Option(
        False, "--export-at-input-res", help="Maps and exports at the input images' size (resize methods only)."
    ),
    sparse_subdir: str = typer.Option("sparse/0", "--sparse-subdir", help="[COLMAP] Folder of the model."),
    images_subdir: str = typer.Option("images", "--images-subdir", help="[COLMAP] Folder of the images."),
    align_to_input_ext_scale: bool = typer.Option(
        True,
        "--align-to-input-ext-scale/--no-align-to-input-ext-scale",
        help="[COLMAP] Report the dataset's cameras and scale depth to them (else: move them into the prediction).",
    ),
    quiet: bool = QuietOpt,
    revision: Optional[str] = RevisionOpt,
    backend: str = BackendOpt,
) -> None:
    """Depth and cameras of one scene with a DA3 model: every input is a view of the same scene.

    A COLMAP dataset's cameras condition the model (pose conditioning) and the outputs are reported in its frame.
    """

    def body() -> None:
        from anydepth.cli.scene import collect_views, describe, run_scene
        from anydepth.export.formats import parse_export_format
        from anydepth.io.colmap import is_colmap_dataset, read_colmap_views
        from anydepth.presets import get_preset

        command = ctx.info_name or "auto"
        if get_preset(model).family != "da3":
            raise InputError(f"{command} runs DA3 models (da3-*); {model} is not one. Use `anydepth images` for it")
        colmap = is_colmap_dataset(path, sparse_subdir)
        if command == "colmap" and not colmap:
            raise InputError(f"{path}: no COLMAP model at {sparse_subdir}/ (cameras.bin); pass --sparse-subdir")
        try:
            feat_layers = [int(v) for v in export_feat.split(",") if v.strip()] if export_feat else []
        except ValueError:
            raise InputError(f"--export-feat {export_feat!r}: give block indices separated by commas") from None
        parse_export_format(export_format, has_features=bool(feat_layers))  # a bad format fails before any work
        cameras = {}
        if colmap:
            dataset = read_colmap_views(path, sparse_subdir, images_subdir)
            views = list(dataset.image_paths)[:max_frames] if max_frames else list(dataset.image_paths)
            cameras = {
                "extrinsics": dataset.extrinsics[: len(views)],
                "intrinsics": dataset.intrinsics[: len(views)],
                "align_to_input_ext_scale": align_to_input_ext_scale,
            }
        else:
            views = collect_views(path, fps=fps, max_frames=max_frames)
        loaded = _load(model, weights, device, precision, revision, backend)
        infer_options = {
            **cameras,
            "process_res": process_res,
            "process_res_method": process_res_method,
            "ref_view_strategy": ref_view_strategy,
            "use_ray_pose": use_ray_pose,
            "export_feat_layers": feat_layers,
            "output": "input" if input_res else "processed",
        }
        glb_options = {
            "conf_thresh_percentile": conf_thresh_percentile,
            "num_max_points": num_max_points,
            "show_cameras": show_cameras,
            "feat_vis_fps": feat_vis_fps,
        }
        prediction = run_scene(loaded, views, export_dir, export_format, infer_options, glb_options)
        if not quiet:
            typer.echo(f"{describe(prediction)}; exported {export_format} to {export_dir}", err=True)

    _guarded(body)


app.command(
    "colmap",
    help="Depth of a COLMAP dataset (images/ + sparse/0/) with a DA3 model, conditioned on its cameras and "
    "reported in its frame; options as for `auto`.",
)(auto_cmd)


_deploy_cli.register(app)  # anydepth export


def main(argv: Optional[list] = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="anydepth")
    except SystemExit as exc:
        if exc.code not in (0, None):
            sys.exit(exc.code)
