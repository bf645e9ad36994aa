"""What every command of the command line shares: its state (a typer context object), error handling, and the
options of the depth commands. Scene defaults come from :class:`~anydepth.jobs.options.SceneOptions`."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import typer

from anydepth.errors import AnyDepthError, OptionError
from anydepth.jobs.options import RuntimeOptions, SceneOptions

_SCENE = SceneOptions.defaults()


@dataclass
class CliState:
    """The root options (``anydepth --debug --threads N --compile ...``), given to every command as ``ctx.obj``."""

    debug: bool = False
    threads: Optional[int] = None
    compile: bool = False

    def runtime(
        self, device: str = "auto", precision: str = "auto", backend: str = "pytorch", cpu_offload: Optional[str] = None
    ) -> RuntimeOptions:
        """The runtime options of a command: its own, with the root's threads and compile."""
        return RuntimeOptions(
            device=device, precision=precision, threads=self.threads, compile=self.compile, backend=backend,
            cpu_offload=cpu_offload,
        )  # fmt: skip


def state(ctx: typer.Context) -> CliState:
    """The command's :class:`CliState` (a default one where a command runs without the root, as in tests)."""
    obj = ctx.find_object(CliState)
    return obj if obj is not None else CliState()


# the flags of job options whose command-line name is not the field's (OptionError names fields)
_FLAGS: Dict[str, str] = {"mode": "--vda-mode", "align": "--vda-align", "vis": "--no-vis"}


def flag(option: str) -> str:
    """The command-line flag of a job option: ``export_feat`` -> ``--export-feat``."""
    return _FLAGS.get(option, "--" + option.replace("_", "-"))


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


ALLOW_OPEN_HELP = "Serve without --token on a --host other machines reach (refused otherwise): anyone there may {what}."


def refuse_open_server(host: str, token: Optional[str], allow_open: bool, what: str) -> None:
    """A server bound where other machines reach it needs a token, unless ``--allow-open`` says it is meant open.

    Raises:
        OptionError: on ``--host``, naming ``--token`` and ``--allow-open``.
    """
    from anydepth.web.security import is_loopback

    if not token and not allow_open and not is_loopback(host):
        raise OptionError(
            "host", host, f"other machines reach it, and anyone there could {what}: add --token, or --allow-open"
        )


def guarded(ctx: typer.Context, fn: Callable[[], None]) -> None:
    """Runs a command body: our errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        fn()
    except OptionError as exc:
        fail(exc.worded(flag(exc.option)))
    except AnyDepthError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except typer.Exit:
        raise
    except Exception as exc:
        if state(ctx).debug:
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")


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
InputSizeOpt = typer.Option(
    None,
    "--input-size",
    help="Shorter side the network sees (multiple of 14 after resize; default: the model's, 518 for the official "
    "models, 98 for anydepth-nano).",
)
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
ProcessResOpt = typer.Option(_SCENE["process_res"], "--process-res", help="[DA3] Processing resolution.")
ProcessResMethodOpt = typer.Option(
    _SCENE["process_res_method"],
    "--process-res-method",
    help="[DA3] upper_bound_resize, lower_bound_resize, upper_bound_crop or lower_bound_crop.",
)
RefViewOpt = typer.Option(
    _SCENE["ref_view_strategy"], "--ref-view-strategy", help="[DA3] first, middle, saddle_balanced or saddle_sim_range."
)
# boolean options take upstream's --no- forms too (typer's default for its flags: da3 --no-use-ray-pose)
RayPoseOpt = typer.Option(
    _SCENE["use_ray_pose"], "--use-ray-pose/--no-use-ray-pose", help="[DA3] Cameras from the ray maps."
)
ConfOpt = typer.Option(
    _SCENE["conf_thresh_percentile"], "--conf-thresh-percentile", help="[GLB] Confidence cut (percentile)."
)
MaxPointsOpt = typer.Option(_SCENE["num_max_points"], "--num-max-points", help="[GLB] Most points in the cloud.")
CamerasOpt = typer.Option(_SCENE["show_cameras"], "--show-cameras/--no-show-cameras", help="[GLB] Camera frusta.")
FeatOpt = typer.Option(None, "--export-feat", help="[FEAT_VIS] Backbone blocks to visualise, e.g. 5,11.")
FeatFpsOpt = typer.Option(_SCENE["feat_vis_fps"], "--feat-vis-fps", help="[FEAT_VIS] Frame rate of the video.")
InputResOpt = typer.Option(
    _SCENE["export_at_input_res"],
    "--export-at-input-res",
    help="[DA3] Maps and exports at the input images' size (resize methods only).",
)
GsTrajectoryOpt = typer.Option(
    _SCENE["gs_trajectory"],
    "--gs-trajectory",
    help="[GS_VIDEO] Camera path: original, smooth, interpolate, interpolate_smooth, wander, dolly_zoom, extend.",
)
GsShowOpt = typer.Option(
    _SCENE["gs_video_show"], "--gs-video-show", help="[GS_VIDEO] What the frames show: rgb, depth or both."
)
GsQualityOpt = typer.Option(
    _SCENE["gs_video_quality"], "--gs-video-quality", help="[GS_VIDEO] Encoding preset: low, medium or high."
)
UseBackendOpt = typer.Option(
    False, "--use-backend/--no-use-backend", help="[DA3] Run the job on `anydepth backend` (--backend-url)."
)
BackendUrlOpt = typer.Option("http://127.0.0.1:8008", "--backend-url", help="[DA3] Server of --use-backend.")
CleanupOpt = typer.Option(
    _SCENE["auto_cleanup"], "--auto-cleanup/--no-auto-cleanup", help="[DA3] Empty the export folder before writing."
)
MaxViewsOpt = typer.Option(None, "--max-frames", min=1, help="At most this many views / frames.")
