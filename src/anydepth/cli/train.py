"""``anydepth train``: fine-tune a preset on a folder of images with depth, or on the synthetic generator, and
write the weights in its official layout (a thin adapter over :func:`anydepth.jobs.train.train_job`)."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from anydepth.cli.common import guarded, state
from anydepth.jobs.train import TrainOptions

_DEFAULTS = {f.name: f.default for f in fields(TrainOptions) if f.name not in ("model", "data", "out")}


def train_cmd(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="Preset to fine-tune (`anydepth models`)."),
    data: str = typer.Option(
        ..., "--data", help="A folder (ground-truth layout, or images with depth beside them) or 'synthetic'."
    ),
    out: Path = typer.Option(..., "--out", help="The run's folder: checkpoints/, weights/, train.json."),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", help="Starting weights (file, folder or hub repo id); default: the preset's."
    ),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="Start from random weights (no download)."),
    val_data: Optional[str] = typer.Option(
        None, "--val-data", help="Held-out folder (or 'synthetic'); default: held-out synthetic scenes for synthetic."
    ),
    steps: int = typer.Option(_DEFAULTS["steps"], "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(_DEFAULTS["batch_size"], "--batch-size", help="Samples per forward pass."),
    lr: float = typer.Option(_DEFAULTS["lr"], "--lr", help="Decoder learning rate."),
    encoder_lr_mult: float = typer.Option(
        _DEFAULTS["encoder_lr_mult"], "--encoder-lr-mult", help="Encoder learning rate over --lr (V2: 0.1)."
    ),
    freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Train the decoder only."),
    accum: int = typer.Option(_DEFAULTS["accum"], "--accum", help="Batches per optimizer step."),
    precision: str = typer.Option(_DEFAULTS["precision"], "--precision", help="auto, fp32, bf16 or fp16 (CUDA)."),
    device: str = typer.Option(_DEFAULTS["device"], "--device", help="auto, cpu, cuda or cuda:N."),
    eval_every: int = typer.Option(
        _DEFAULTS["eval_every"], "--eval-every", help="Held-out evaluation every N steps (0: start and end only)."
    ),
    eval_items: int = typer.Option(_DEFAULTS["eval_items"], "--eval-items", help="Held-out samples per evaluation."),
    save_every: int = typer.Option(_DEFAULTS["save_every"], "--save-every", help="Checkpoint every N steps."),
    seed: int = typer.Option(_DEFAULTS["seed"], "--seed", help="Seed of the RNGs and of the samples."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.pt."),
    size: Optional[str] = typer.Option(
        None, "--size", help="Crop WIDTHxHEIGHT, multiples of 14 (default: the preset's size, square)."
    ),
    frames: Optional[int] = typer.Option(None, "--frames", help="Views (DA3) or clip frames (video) per sample."),
    warmup_steps: int = typer.Option(_DEFAULTS["warmup_steps"], "--warmup-steps", help="Linear warm-up steps."),
    schedule: str = typer.Option(_DEFAULTS["schedule"], "--schedule", help="poly, cosine or constant."),
    weight_decay: float = typer.Option(_DEFAULTS["weight_decay"], "--weight-decay", help="AdamW weight decay."),
    grad_clip: Optional[float] = typer.Option(_DEFAULTS["grad_clip"], "--grad-clip", help="Largest gradient norm."),
    depth_scale: float = typer.Option(
        _DEFAULTS["depth_scale"], "--depth-scale", help="16-bit PNG depth values per metre (1000: millimetres)."
    ),
    max_depth: Optional[float] = typer.Option(None, "--max-depth", help="Ignore depth at or beyond this."),
    synthetic_kind: str = typer.Option(
        _DEFAULTS["synthetic_kind"], "--synthetic-kind", help="[synthetic] indoor, outdoor, mixed or video."
    ),
    synthetic_scenes: int = typer.Option(
        _DEFAULTS["synthetic_scenes"], "--synthetic-scenes", help="[synthetic] Number of training scenes."
    ),
    synthetic_views: int = typer.Option(
        _DEFAULTS["synthetic_views"], "--synthetic-views", help="[synthetic] Views (or frames) rendered per scene."
    ),
    ssi_alignment: str = typer.Option(
        _DEFAULTS["ssi_alignment"],
        "--ssi-alignment",
        help="[V2 relative] lstsq (MiDaS's fit) or median (Depth Anything V1's normalisation, keeps the sign).",
    ),
    workers: int = typer.Option(
        _DEFAULTS["workers"], "--workers", help="Processes preparing batches ahead of the training (0: none)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fine-tune a model (V2 relative or metric, DA3, Video Depth Anything) and write its weights in the official
    layout, which every command then loads with --model MODEL --weights OUT/weights/<file or folder>."""

    def body() -> None:
        from anydepth.jobs.train import train_job

        options = TrainOptions(
            model=model, data=data, out=out, weights=weights, from_scratch=from_scratch, val_data=val_data,
            steps=steps, batch_size=batch_size, lr=lr, encoder_lr_mult=encoder_lr_mult,
            freeze_encoder=freeze_encoder, accum=accum, precision=precision, device=device,
            threads=state(ctx).threads, eval_every=eval_every, eval_items=eval_items, save_every=save_every,
            seed=seed, resume=resume, size=size, frames=frames, warmup_steps=warmup_steps, schedule=schedule,
            weight_decay=weight_decay, grad_clip=grad_clip, depth_scale=depth_scale, max_depth=max_depth,
            synthetic_kind=synthetic_kind, synthetic_scenes=synthetic_scenes,
            synthetic_views=synthetic_views, ssi_alignment=ssi_alignment, workers=workers, progress=not quiet,
        )  # fmt: skip
        report = train_job(options)
        evaluations = report.summary["evaluations"]
        if evaluations:
            first, last = evaluations[0], evaluations[-1]
            typer.echo(
                f"held-out AbsRel {first['abs_rel']:.4f} -> {last['abs_rel']:.4f}, "
                f"delta1 {first['delta1']:.4f} -> {last['delta1']:.4f}",
                err=True,
            )
        typer.echo(f"weights: {report.weights} (use --model {model} --weights {report.weights})", err=True)

    guarded(ctx, body)


def register(app: typer.Typer) -> None:
    """Adds ``train`` to the command line."""
    app.command("train")(train_cmd)
