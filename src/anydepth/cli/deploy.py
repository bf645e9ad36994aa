"""``anydepth export``: a preset with its weights -> a static-shape ONNX / OpenVINO / TorchScript / Neuron artefact
with its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from anydepth.cli.common import guarded


def register(app: typer.Typer) -> None:
    """Add the deployment commands to the ``anydepth`` application."""
    app.command("export")(export_cmd)


def export_cmd(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Preset name; `anydepth models` lists them."),
    weights: Optional[str] = typer.Option(None, "--weights", "-w", help="Local weights file or folder, or a hub repo."),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx, openvino, torchscript or neuron (AWS Inferentia)."),
    size: str = typer.Option(..., "--size", help="Static input size HEIGHTxWIDTH, multiples of 14 (518x686)."),
    batch: int = typer.Option(1, "--batch", help="Static batch (runtimes pad smaller batches)."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch axis (onnx and openvino only)."),
    views: int = typer.Option(1, "--views", help="Views per scene of DA3 any-view models (fixed in the graph)."),
    ref_view_strategy: str = typer.Option(
        "saddle_balanced", "--ref-view-strategy", help="[DA3, 3+ views] first, middle, saddle_balanced, ..."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Artefact path (.onnx, .xml, .pt) or a folder."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub branch, tag or commit of the weights."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Export a model at a fixed size for ONNX Runtime, OpenVINO, TorchScript or AWS Inferentia (torch-neuron).

    A manifest (model, size, preprocessing, sha256) is written beside the artefact as <artefact>.json; run the
    artefact with `anydepth images ... --backend onnxruntime --weights <artefact>`.
    """

    def body() -> None:
        from anydepth.deploy.export import ExportRequest, export_model, parse_size

        height, width = parse_size(size)
        request = ExportRequest(
            format=fmt.lower(),
            height=height,
            width=width,
            batch=batch,
            dynamic=dynamic,
            views=views,
            ref_view_strategy=ref_view_strategy,
        )
        result = export_model(model, request, output, weights=weights, revision=revision)
        if not quiet:
            megabytes = sum(f.stat().st_size for f in result.files) / 2**20
            typer.echo(f"wrote {result.path} ({megabytes:.1f} MiB) and {result.manifest_path.name}", err=True)

    guarded(ctx, body)
