"""``anydepth stream INPUT``: long-video reconstruction with a DA3 model (chunks, Sim(3) chaining, loop closure);
options named after DA3-Streaming's config where it has one."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

from pathlib import Path
from typing import Optional

import typer

from anydepth.cli.common import DeviceOpt, PrecisionOpt, QuietOpt, RevisionOpt, WeightsOpt, guarded, state
from anydepth.jobs.options import StreamJobOptions

_D = {name: value.default for name, value in StreamJobOptions.__dataclass_fields__.items()}


def stream_cmd(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="A video, a folder (or glob, or .txt list) of frames, or a COLMAP dataset."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="DA3 any-view preset (default: the one --weights names, else da3-small)."
    ),
    weights: Optional[str] = WeightsOpt,
    revision: Optional[str] = RevisionOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    export_dir: Path = typer.Option(Path("workspace/stream"), "--export-dir", help="Output folder."),
    fps: Optional[float] = typer.Option(None, "--fps", help="[video] Sample frames at this rate (default: all)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="At most this many frames."),
    chunk_size: int = typer.Option(_D["chunk_size"], "--chunk-size", help="Frames per chunk (one inference)."),
    overlap: int = typer.Option(_D["overlap"], "--overlap", help="Frames shared by consecutive chunks."),
    align: str = typer.Option(
        _D["align_method"], "--align", "--align-method", help="Chunk alignment: sim3, se3 or scale+se3."
    ),
    loop: bool = typer.Option(_D["loop"], "--loop/--no-loop", help="Detect and close loops (needs pypose)."),
    loop_threshold: float = typer.Option(
        _D["loop_threshold"], "--loop-threshold", help="Descriptor similarity a loop must exceed."
    ),
    loop_chunk_size: int = typer.Option(
        _D["loop_chunk_size"], "--loop-chunk-size", help="Frames re-inferred around each end of a loop."
    ),
    irls_delta: float = typer.Option(_D["irls_delta"], "--irls-delta", help="Huber threshold of the alignment."),
    process_res: int = typer.Option(_D["process_res"], "--process-res", help="Processing resolution."),
    ref_view_strategy: str = typer.Option(
        _D["ref_view_strategy"], "--ref-view-strategy", help="first, middle, saddle_balanced or saddle_sim_range."
    ),
    sparse_subdir: str = typer.Option("", "--sparse-subdir", help="[COLMAP] The model's folder under sparse/."),
    images_subdir: str = typer.Option("images", "--images-subdir", help="[COLMAP] Folder of the images."),
    work_dir: Optional[Path] = typer.Option(
        None, "--work-dir", help="Resumable work folder (default: EXPORT_DIR/_work); rerun to resume."
    ),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep the work folder after success."),
    disk_budget: Optional[float] = typer.Option(None, "--disk-budget", help="Most GiB the work folder may hold."),
    voxel_size: Optional[float] = typer.Option(
        None, "--voxel-size", help="Voxel of the fused cloud (default: 1% of the first chunk's median depth)."
    ),
    save_frames: bool = typer.Option(
        True, "--save-frames/--no-save-frames", help="Write results_output/frame_<i>.npz (depth, conf, cameras)."
    ),
    glb: bool = typer.Option(True, "--glb/--no-glb", help="Also write pointcloud.glb."),
    quiet: bool = QuietOpt,
) -> None:
    """Reconstruct a long video: camera trajectory, per-frame depth and a fused point cloud, chunk by chunk in
    bounded memory (rerun the same command to resume an interrupted run)."""

    def body() -> None:
        from anydepth.jobs.options import ModelSpec
        from anydepth.jobs.stream import stream_job

        options = StreamJobOptions(
            export_dir=export_dir, chunk_size=chunk_size, overlap=overlap, align_method=align, loop=loop,
            loop_threshold=loop_threshold, loop_chunk_size=loop_chunk_size, irls_delta=irls_delta,
            process_res=process_res, ref_view_strategy=ref_view_strategy, fps=fps, max_frames=max_frames,
            sparse_subdir=sparse_subdir, images_subdir=images_subdir, work_dir=work_dir, keep_work=keep_work,
            disk_budget=disk_budget, voxel_size=voxel_size, save_frames=save_frames, glb=glb,
        )  # fmt: skip
        options.check()
        spec = ModelSpec.pick(model, weights, "da3-small", revision=revision)
        runtime = state(ctx).runtime(device, precision)
        summary = stream_job(spec, runtime, path, options, progress=not quiet)
        engine = f" (search: {summary.search_engine})" if summary.search_engine else ""
        typer.echo(
            f"{summary.frames} frames in {summary.chunks} chunk(s), {len(summary.loops)} loop(s) closed{engine}, "
            f"{summary.points} points; outputs in {export_dir}",
            err=True,
        )

    guarded(ctx, body)


def register(app: typer.Typer) -> None:
    """Adds ``stream`` to the command line."""
    app.command("stream")(stream_cmd)
