"""``anydepth batch INPUT OUTPUT``: depth for every image and video of a folder, glob, list or bucket, resumable,
on this machine or on a Ray cluster (docs/batch.md)."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

from pathlib import Path
from typing import Optional

import typer

from anydepth.cli.common import DeviceOpt, PrecisionOpt, QuietOpt, RevisionOpt, WeightsOpt, guarded, state


def batch_cmd(
    ctx: typer.Context,
    input_spec: str = typer.Argument(
        ..., metavar="INPUT", help="A folder, a glob, a .txt list, a file, or an fsspec URI (s3://, gs://, ...)."
    ),
    output: Path = typer.Argument(..., metavar="OUTPUT", help="Folder of the results, manifest and failures."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Preset name (dav2-*, da3-*, vda-* for videos); default: from --weights."
    ),
    weights: Optional[str] = WeightsOpt,
    revision: Optional[str] = RevisionOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    engine: str = typer.Option("local", "--engine", help="local (this machine) or ray (Ray Data)."),
    address: Optional[str] = typer.Option(
        None, "--address", help="[ray] The cluster to join (ray://host:10001, auto); default: a local one."
    ),
    formats: str = typer.Option(
        "png16", "--format", help="Per-item files, comma-separated: png16, npz; none: manifest rows only."
    ),
    manifest: str = typer.Option("jsonl", "--manifest", help="Manifest format: jsonl or parquet."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Processing size (default: the preset's)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=1, help="Images per forward pass (default: from the model's measured memory)."
    ),
    replica_memory: float = typer.Option(4.0, "--replica-memory", help="GiB one model replica may use."),
    workers: int = typer.Option(2, "--workers", min=1, help="[local] Groups of images in flight."),
    replicas: Optional[int] = typer.Option(
        None, "--replicas", min=1, help="[ray] Model replicas (default: as many as the cluster's CPUs or GPUs hold)."
    ),
    cpus_per_replica: float = typer.Option(1.0, "--cpus-per-replica", help="[ray] CPUs of each replica."),
    gpus_per_replica: float = typer.Option(0.0, "--gpus-per-replica", help="[ray] GPUs of each replica."),
    segment_frames: int = typer.Option(
        256, "--segment-frames", min=0, help="Frames per video segment spread over workers (0: no split)."
    ),
    segment_overlap: int = typer.Option(16, "--segment-overlap", min=0, help="Frames segments share to be aligned."),
    quiet: bool = QuietOpt,
) -> None:
    """Depth for every image and video under INPUT, written to OUTPUT with a manifest; items already in the manifest
    are skipped, failures go to OUTPUT/failures.jsonl and never stop the job."""

    def body() -> None:
        from anydepth.jobs.batch import BatchOptions, batch_job
        from anydepth.jobs.options import ModelSpec, parse_raw

        spec = ModelSpec.pick(model, weights, "dav2-small", revision=revision)
        chosen = () if formats.strip().lower() == "none" else parse_raw(formats)
        options = BatchOptions(
            formats=chosen, manifest=manifest, input_size=input_size, batch_size=batch_size,
            replica_memory=int(replica_memory * 2**30), workers=workers, replicas=replicas,
            cpus_per_replica=cpus_per_replica, gpus_per_replica=gpus_per_replica, segment_frames=segment_frames,
            segment_overlap=segment_overlap, engine=engine, address=address,
        )  # fmt: skip
        report = batch_job(input_spec, output, spec, state(ctx).runtime(device, precision), options, not quiet)
        typer.echo(
            f"{report.done} done, {report.skipped} already done, {report.failed} failed "
            f"({report.seconds:.1f} s, {report.engine}); manifest in {output}",
            err=True,
        )
        if report.failed:
            typer.echo(f"failures and their reasons: {output / 'failures.jsonl'}", err=True)

    guarded(ctx, body)


def register(app: typer.Typer) -> None:
    """Adds ``batch`` to the command line."""
    app.command("batch")(batch_cmd)
