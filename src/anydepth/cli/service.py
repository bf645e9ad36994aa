"""``anydepth backend``: serve DA3 scene jobs over HTTP with the models kept warm."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

import logging
from pathlib import Path
from typing import Dict, List, Optional

import typer

from anydepth.cli.common import ALLOW_OPEN_HELP, guarded, refuse_open_server, state
from anydepth.errors import InputError
from anydepth.jobs.options import SceneOptions

logger = logging.getLogger(__name__)


def _served_models(model: str, weights: Optional[str], extra: List[str]) -> Dict[str, Optional[str]]:
    """--model/--weights first, then each --extra-model NAME or NAME=WEIGHTS."""
    from anydepth.families import family_of
    from anydepth.presets import get_preset

    models: Dict[str, Optional[str]] = {model: weights}
    for item in extra:
        name, _, extra_weights = item.partition("=")
        models[name.strip()] = extra_weights.strip() or None
    for name in models:
        get_preset(name)
        if family_of(name).task != "scene":
            raise InputError(f"the backend runs DA3 scene jobs; {name} is not a DA3 model (da3-*)")
    return models


DEFAULT_GALLERY_DIR = Path("workspace/gallery")
"""Upstream's default gallery folder, served by the backend only when it exists (as upstream does)."""


def _gallery_folder(given: Optional[Path]) -> Optional[Path]:
    """The gallery folder to serve: the one named (made if missing), else upstream's default if it exists."""
    if given is None:
        return DEFAULT_GALLERY_DIR if DEFAULT_GALLERY_DIR.is_dir() else None
    Path(given).mkdir(parents=True, exist_ok=True)
    return Path(given)


def backend_cmd(
    ctx: typer.Context,
    model: str = typer.Option("da3-small", "--model", "-m", help="DA3 preset served by default."),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", "--model-dir", help="Local weights file or folder, or a hub repo id."
    ),
    extra_model: List[str] = typer.Option(
        [], "--extra-model", help="Another served model, NAME or NAME=WEIGHTS (repeatable)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="fp32, bf16, fp16 or auto."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback only by default)."),
    port: int = typer.Option(8008, "--port", min=0, max=65535, help="Port to listen on."),
    data_dir: Path = typer.Option(
        Path("workspace/backend"), "--data-dir", help="Job database, uploads and exports (exports/<job id>/)."
    ),
    allowed_root: List[Path] = typer.Option(
        [], "--allowed-root", help="Folder whose files jobs may name by path (repeatable); none: uploads only."
    ),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="ANYDEPTH_BACKEND_TOKEN", help="Require this bearer token (or set the variable)."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Jobs run at the same time."),
    max_upload_mb: float = typer.Option(512.0, "--max-upload-mb", min=0.001, help="Largest upload per job, MiB."),
    max_files: int = typer.Option(64, "--max-files", min=1, help="Most files per job."),
    max_queued: int = typer.Option(1000, "--max-queued", min=1, help="Most waiting jobs; more get HTTP 429."),
    max_views: int = typer.Option(512, "--max-views", min=1, help="Most views (images or video frames) per job."),
    max_megapixels: float = typer.Option(64.0, "--max-megapixels", min=0.001, help="Largest image or frame."),
    max_job_megapixels: float = typer.Option(
        256.0, "--max-job-megapixels", min=0.001, help="Most pixels of one job's views together (HTTP 413 over it)."
    ),
    memory_budget_gb: Optional[float] = typer.Option(
        None,
        "--memory-budget-gb",
        min=0.001,
        help="GiB that warm models and running jobs share; a job waits until it fits. Default: 75% of the memory.",
    ),
    reduce_on_decode: bool = typer.Option(
        True,
        "--reduce-on-decode/--full-decode",
        help="Decode JPEGs reduced, just above the processing size (less memory; pixels differ slightly).",
    ),
    model_memory_gb: Optional[float] = typer.Option(
        None, "--model-memory-gb", min=0.0, help="Weights kept warm, GiB (least recently used models go first)."
    ),
    max_models: int = typer.Option(2, "--max-models", min=1, help="Most models kept warm."),
    preload: bool = typer.Option(True, "--preload/--no-preload", help="Load the default model before serving."),
    allow_open: bool = typer.Option(False, "--allow-open", help=ALLOW_OPEN_HELP.format(what="submit jobs")),
    gallery_dir: Optional[Path] = typer.Option(
        None,
        "--gallery-dir",
        help="Serve this folder of exported scenes as the gallery under /gallery/ (created if missing); "
        f"default: {DEFAULT_GALLERY_DIR} when it exists, as upstream.",
    ),
) -> None:
    """Run the backend: a job API (POST /jobs, GET /jobs/{id}, ...; schema at /openapi.json, docs at /docs), upstream
    DA3's protocol (/status, /inference, /task/{id}, ...), a dashboard at /dashboard and, with --gallery-dir, the
    gallery under /gallery/."""
    cli = state(ctx)

    def body() -> None:
        from anydepth.errors import require

        refuse_open_server(host, token, allow_open, what="submit jobs")
        require("fastapi", "service")
        uvicorn = require("uvicorn", "service")
        require("multipart", "service")
        from anydepth.service.app import create_app
        from anydepth.service.settings import ServiceSettings
        from anydepth.web.budget import default_budget_bytes
        from anydepth.web.models import ModelCache
        from anydepth.web.security import is_loopback

        if not is_loopback(host) and not token:
            logger.warning("serving on %s without a token (--allow-open): anyone who reaches it can submit jobs", host)
        settings = ServiceSettings(
            data_dir=data_dir,
            models=_served_models(model, weights, extra_model),
            device=device,
            precision=precision,
            threads=cli.threads,
            compile=cli.compile,
            allowed_roots=list(allowed_root),
            token=token,
            workers=workers,
            max_request_bytes=int(max_upload_mb * 2**20),
            max_files=max_files,
            max_queued=max_queued,
            max_views=max_views,
            max_pixels=int(max_megapixels * 2**20),
            max_job_pixels=int(max_job_megapixels * 2**20),
            memory_budget_bytes=default_budget_bytes() if memory_budget_gb is None else int(memory_budget_gb * 2**30),
            reduce_on_decode=reduce_on_decode,
            model_budget_bytes=None if model_memory_gb is None else int(model_memory_gb * 2**30),
            max_models=max_models,
            preload=False,
            gallery_dir=_gallery_folder(gallery_dir),
        )
        cache = ModelCache(settings.model_budget_bytes, settings.max_models)
        if preload:  # here, not in the server's startup, so that bad weights give one line and exit code 1
            name = settings.default_model
            cache.get(settings.model_key(name))
        app = create_app(settings, cache)
        typer.echo(
            f"anydepth backend on http://{host}:{port} (dashboard at /dashboard, API docs at /docs"
            + (", gallery at /gallery/)" if settings.gallery_dir is not None else ")"),
            err=True,
        )
        uvicorn.run(app, host=host, port=port, log_level="info" if cli.debug else "warning")

    guarded(ctx, body)


def run_on_backend(
    url: str,
    spec: str,
    model: Optional[str],
    scene: SceneOptions,
    fps: float,
    max_frames: Optional[int],
    is_colmap: bool,
    quiet: bool,
    files: Optional[list] = None,
) -> None:
    """``anydepth auto --use-backend`` (and ``image``, ``images``, ``video`` with a DA3 model): upload the views
    (``files``, else those ``spec`` names), wait for the job, download its exports into the folder."""
    import os

    from anydepth.jobs.scene import clean_export_dir
    from anydepth.service.client import BackendClient, scene_files

    if is_colmap:
        raise InputError(f"{spec} is a COLMAP dataset; those run locally (drop --use-backend)")
    files = scene_files(spec, max_frames) if files is None else files
    if not files:
        raise InputError(f"{spec}: no images to send")
    options = scene.request_fields()
    options.update(fps=fps, max_frames=max_frames)
    if model:
        options["model"] = model
    client = BackendClient(url, token=os.environ.get("ANYDEPTH_BACKEND_TOKEN"))
    job = client.submit(files, options)
    if not quiet:
        typer.echo(f"backend job {job['id']} queued at {url}", err=True)
    client.wait(job["id"])
    if scene.auto_cleanup:
        clean_export_dir(scene.export_dir)
    written = client.download(job["id"], scene.export_dir)
    if not quiet:
        typer.echo(f"{len(written)} file(s) from backend job {job['id']} written to {scene.export_dir}", err=True)


def register(app: typer.Typer) -> None:
    """Adds ``backend`` to the command line."""
    app.command("backend")(backend_cmd)
