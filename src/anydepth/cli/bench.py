"""``anydepth bench``: evaluation. ``score`` scores saved predictions against ground truth, ``run`` runs a model
over a dataset of ground-truth scenes and scores it (resumable), ``make-synthetic`` writes synthetic scenes."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

from pathlib import Path
from typing import List, Optional

import typer

from anydepth.cli.common import DeviceOpt, PrecisionOpt, RevisionOpt, WeightsOpt, guarded, state

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
    min_depth: Optional[float] = typer.Option(
        None, "--min-depth", help="Ground truth at or below this is not scored (default: the dataset's, else 1e-3)."
    ),
    max_depth: Optional[float] = typer.Option(
        None, "--max-depth", help="Ground truth at or above this is not scored (default: the dataset's, else none)."
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result (per view) here."),
    fscore_threshold: Optional[float] = typer.Option(
        None,
        "--fscore-threshold",
        help="[recon-*] F-score distance in the ground truth's units (default: the dataset's, else 0.05).",
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


@bench_app.command("run")
def run_cmd(
    ctx: typer.Context,
    root: Path = typer.Option(
        ...,
        "--root",
        help="A folder of ground-truth scenes (each: images/, depth/, cameras.npz); with --dataset, "
        "the dataset as downloaded.",
    ),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", help="Convert --root with this reader first (`anydepth bench datasets` lists them)."
    ),
    scenes: Optional[str] = typer.Option(None, "--scenes", help="Only these scenes, comma-separated."),
    max_frames: Optional[int] = typer.Option(
        None, "--max-frames", help="[--dataset] Frames per scene (default: the reader's, as upstream)."
    ),
    model: str = typer.Option(
        "da3-small", "--model", "-m", help="Any preset: scene models see the views together, video models in order."
    ),
    weights: Optional[str] = WeightsOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    revision: Optional[str] = RevisionOpt,
    out: Path = typer.Option(Path("workspace/bench"), "--out", help="The run's folder: predictions, per-scene JSON."),
    modes: Optional[str] = typer.Option(
        None, "--modes", help="As for `bench score` (default: the dataset's, else depth, and pose with cameras)."
    ),
    alignment: str = typer.Option("median", "--alignment", help="Depth alignment, as for `bench score`."),
    max_depth: Optional[float] = typer.Option(
        None, "--max-depth", help="Ground truth at or above this is not scored (default: the dataset's, else none)."
    ),
    process_res: int = typer.Option(504, "--process-res", help="Processing resolution of the model."),
    fscore_threshold: Optional[float] = typer.Option(
        None, "--fscore-threshold", help="[recon-*] F-score distance (default: the dataset's, else 0.05)."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Processes scoring scenes while the model runs (scores do not depend on it)."
    ),
) -> None:
    """Run a model over every scene under --root, score each, and print the mean (scenes already scored in --out
    are not run again)."""

    def body() -> None:
        from anydepth.jobs.bench import run_job
        from anydepth.jobs.options import ModelSpec

        chosen = [m.strip() for m in modes.split(",") if m.strip()] if modes else None
        spec = ModelSpec.pick(model, weights, "da3-small", revision=revision)
        runtime = state(ctx).runtime(device, precision)

        def done(name: str, result: dict) -> None:
            typer.echo(f"scored {name}", err=True)

        only = [v.strip() for v in scenes.split(",") if v.strip()] if scenes else None
        summary = run_job(root, spec, runtime, out, chosen, alignment, process_res, fscore_threshold, on_scene=done,
                          dataset=dataset, scenes=only, max_frames=max_frames, workers=workers,
                          max_depth=max_depth)  # fmt: skip
        for mode, scores in summary["mean"].items():
            for key, value in scores.items():
                typer.echo(f"{mode:13}  {key:22}  {value:.4f}")
        typer.echo(f"{len(summary['scenes'])} scene(s); summary in {out / 'summary.json'}", err=True)

    guarded(ctx, body)


@bench_app.command("make-synthetic")
def make_synthetic_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Folder the scenes are written into."),
    kind: str = typer.Option("indoor", "--kind", help="indoor, outdoor (multi-view), video or loop (trajectories)."),
    scenes: int = typer.Option(4, "--scenes", min=1, help="Number of scenes."),
    views: int = typer.Option(8, "--views", min=2, help="Views (or frames) per scene."),
    size: str = typer.Option("256x192", "--size", help="WIDTHxHEIGHT of the images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first scene (scene i uses seed + i)."),
) -> None:
    """Write synthetic scenes with exact ground truth (anydepth.bench.synthetic), deterministic from the seed."""

    def body() -> None:
        from anydepth.bench.synthetic import make_dataset
        from anydepth.errors import InputError

        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise InputError(f"--size {size!r}: write WIDTHxHEIGHT, e.g. 256x192") from None
        folders = make_dataset(out, kind, scenes, views, width, height, seed)
        typer.echo(f"{len(folders)} scene(s) in {out}", err=True)

    guarded(ctx, body)


@bench_app.command("compare")
def compare_cmd(
    ctx: typer.Context,
    runs: List[Path] = typer.Argument(..., help="Run folders of `bench run` (or their summary.json)."),
) -> None:
    """Print the mean scores of several runs side by side."""

    def body() -> None:
        from anydepth.jobs.bench import compare_runs

        table = compare_runs(runs)
        header = ["mode", "metric", *[Path(r).name for r in table["runs"]]]
        cells = [header] + [[m, k, *("-" if v is None else f"{v:.4f}" for v in values)]
                            for m, k, *values in table["rows"]]  # fmt: skip
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        for row in cells:
            typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())

    guarded(ctx, body)


@bench_app.command("plot")
def plot_cmd(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="A run folder of `bench run`."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder of the PNGs (default: RUN/plots)."),
) -> None:
    """PNG plots of a run: per-scene bars of the main metrics, the AbsRel histogram, the camera trajectories."""

    def body() -> None:
        from anydepth.bench.plots import plot_run

        written = plot_run(run, out)
        typer.echo(f"{len(written)} plot(s) in {out or run / 'plots'}", err=True)

    guarded(ctx, body)


@bench_app.command("convert")
def convert_cmd(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", help="A reader's name (`anydepth bench datasets` lists them)."),
    root: Path = typer.Option(..., "--root", help="Where the dataset was downloaded (its own layout)."),
    out: Path = typer.Option(..., "--out", help="Folder of the converted scenes (the ground-truth layout)."),
    scenes: Optional[str] = typer.Option(None, "--scenes", help="Only these scenes, comma-separated."),
    max_frames: Optional[int] = typer.Option(
        None, "--max-frames", help="Frames per scene (default: the reader's, as upstream; <= 0: all)."
    ),
) -> None:
    """Convert a public benchmark into the ground-truth layout that `bench run` and `bench score` read."""

    def body() -> None:
        from anydepth.bench.datasets import convert

        chosen = [v.strip() for v in scenes.split(",") if v.strip()] if scenes else None
        folders = convert(dataset, root, out, chosen, max_frames)
        typer.echo(f"{len(folders)} scene(s) in {out}", err=True)

    guarded(ctx, body)


@bench_app.command("datasets")
def datasets_cmd() -> None:
    """List the benchmark readers: name, kind, the modes scored, and what they reproduce."""
    from anydepth.bench.datasets import DATASETS

    for d in DATASETS.values():
        typer.echo(f"{d.name:10} {d.kind:6} {','.join(d.modes):38} {d.summary}")


def register(app: typer.Typer) -> None:
    """Adds ``bench`` to the command line."""
    app.add_typer(bench_app, name="bench")
