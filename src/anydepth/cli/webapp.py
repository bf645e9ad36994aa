"""``anydepth app``: the Gradio web app (upload images or a video, get depth, a 3D scene and the exports)."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

import logging
from pathlib import Path
from typing import Optional

import typer

from anydepth.cli.common import guarded, state

logger = logging.getLogger(__name__)


def app_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback only by default)."),
    port: int = typer.Option(7860, "--port", min=0, max=65535, help="Port to listen on."),
    model: str = typer.Option("da3-small", "--model", "-m", help="Model selected when the page opens."),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", "--model-dir", help="Local weights file or folder, or a hub repo id, for --model."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="fp32, bf16, fp16 or auto."),
    work_dir: Optional[Path] = typer.Option(
        None, "--work-dir", "--workspace-dir", help="Where runs are written (default: a temporary folder)."
    ),
    max_files: int = typer.Option(32, "--max-files", min=1, help="Most files per run."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", min=0.001, help="Largest upload per run, MiB."),
    max_frames: int = typer.Option(64, "--max-frames", min=1, help="Most frames sampled from a video."),
) -> None:
    """Run the web app: upload images or a video, pick a model and options, see depth and the 3D scene."""
    cli = state(ctx)

    def body() -> None:
        from anydepth.app.runner import AppSettings
        from anydepth.app.ui import launch
        from anydepth.errors import require
        from anydepth.web.security import is_loopback

        require("gradio", "app")
        if not is_loopback(host):
            logger.warning("serving the app on %s: anyone who reaches it can run models on this machine", host)
        settings = AppSettings(
            model=model,
            weights=weights,
            device=device,
            precision=precision,
            threads=cli.threads,
            compile=cli.compile,
            work_dir=work_dir,
            max_files=max_files,
            max_upload_bytes=int(max_upload_mb * 2**20),
            max_frames=max_frames,
        )
        typer.echo(f"anydepth app on http://{host}:{port} (runs in {settings.work_dir})", err=True)
        launch(settings, host=host, port=port, quiet=not cli.debug)

    guarded(ctx, body)


def register(app: typer.Typer) -> None:
    """Adds ``app`` to the command line, and ``gradio`` (upstream's name of its web app) as the same command."""
    app.command("app")(app_cmd)
    app.command("gradio", help="The web app under upstream's name: `anydepth app`, with the same options.")(app_cmd)
