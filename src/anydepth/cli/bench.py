"""``anydepth bench``: evaluation. ``score`` scores saved predictions against ground truth."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

from pathlib import Path
from typing import Optional

import typer

from anydepth.cli.common import guarded

bench_app = typer.Typer(help="Evaluate predictions against ground truth (metrics: docs in anydepth.bench).")


@bench_app.command("score")
def score_cmd(
    ctx: typer.Context,
    pred: Path = typer.Option(..., "--pred", help="results.npz of a mini_npz / npz export, or its export folder."),
    gt: Path = typer.Option(..., "--gt", help="Ground-truth folder: depth/<stem>.npy and cameras.npz."),
    modes: Optional[str] = typer.Option(
        None,
        "--modes",
        help="depth, pose, video, trajectory, comma-separated (default: depth, and pose where the "
        "prediction has cameras).",
    ),
    alignment: str = typer.Option(
        "median", "--alignment", help="Depth alignment: none (metric), median, scale or scale_shift_disparity."
    ),
    min_depth: float = typer.Option(1e-3, "--min-depth", help="Ground truth at or below this is not scored."),
    max_depth: float = typer.Option(float("inf"), "--max-depth", help="Ground truth at or above this is not scored."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result (per view) here."),
    fscore_threshold: float = typer.Option(
        0.05, "--fscore-threshold", help="[recon-*] F-score distance in the ground truth's units."
    ),
    disparity: bool = typer.Option(
        False, "--pred-is-disparity", help="The prediction is relative disparity (V2, Video Depth Anything)."
    ),
) -> None:
    """Score one scene's saved prediction against its ground truth and print the summary."""

    def body() -> None:
        from anydepth.bench.score import summary_rows
        from anydepth.jobs.bench import score_job

        chosen = [m.strip() for m in modes.split(",") if m.strip()] if modes else None
        result = score_job(pred, gt, chosen, alignment, min_depth, max_depth, json_out, disparity, fscore_threshold)
        rows = summary_rows(result)
        width = max(len(r[1]) for r in rows) if rows else 0
        for mode, metric, value in rows:
            typer.echo(f"{mode:5}  {metric:{width}}  {value}")

    guarded(ctx, body)


def register(app: typer.Typer) -> None:
    """Adds ``bench`` to the command line."""
    app.add_typer(bench_app, name="bench")
