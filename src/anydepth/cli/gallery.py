"""``anydepth gallery``: browse exported scenes (depth maps, 3D viewer of scene.glb / scene.ply) in a browser."""

# No `from __future__ import annotations` here: typer reads these annotations at runtime.

import logging
from pathlib import Path
from typing import Optional

import typer

from anydepth.cli.common import ALLOW_OPEN_HELP, guarded, refuse_open_server, state
from anydepth.errors import InputError

logger = logging.getLogger(__name__)


def gallery_cmd(
    ctx: typer.Context,
    gallery_dir: Path = typer.Option(
        Path("workspace/gallery"), "--gallery-dir", help="Folder of exported scenes (each sub-folder one scene)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback only by default)."),
    port: int = typer.Option(8007, "--port", min=0, max=65535, help="Port to listen on (upstream's default)."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="ANYDEPTH_GALLERY_TOKEN", help="Require this token (open the page with ?token=...)."
    ),
    open_browser: bool = typer.Option(
        False, "--open-browser/--no-open-browser", help="Open the gallery in the default web browser."
    ),
    allow_open: bool = typer.Option(False, "--allow-open", help=ALLOW_OPEN_HELP.format(what="browse the gallery")),
) -> None:
    """Serve a gallery of exported scenes: thumbnails, depth maps and a 3D viewer (three.js, no CDN)."""

    def body() -> None:
        from anydepth.errors import require

        refuse_open_server(host, token, allow_open, what="browse the gallery")
        require("fastapi", "service")
        uvicorn = require("uvicorn", "service")
        from anydepth.gallery.server import create_gallery_app
        from anydepth.web.security import is_loopback

        if not gallery_dir.is_dir():
            raise InputError(f"--gallery-dir {gallery_dir} is not a folder; export scenes into it first")
        if not is_loopback(host) and not token:
            logger.warning("serving %s on %s without a token (--allow-open): anyone can browse it", gallery_dir, host)
        app = create_gallery_app(gallery_dir, token=token)
        suffix = "/?token=<token>" if token else "/"
        typer.echo(f"anydepth gallery of {gallery_dir} on http://{host}:{port}{suffix}", err=True)
        if open_browser:
            import threading
            import webbrowser

            address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
            address += f"?token={token}" if token else ""
            threading.Timer(1.0, webbrowser.open, [address]).start()  # once the server listens
        uvicorn.run(app, host=host, port=port, log_level="info" if state(ctx).debug else "warning")

    guarded(ctx, body)


def register(app: typer.Typer) -> None:
    """Adds ``gallery`` to the command line."""
    app.command("gallery")(gallery_cmd)
