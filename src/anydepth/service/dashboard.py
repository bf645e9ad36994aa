"""The backend's dashboard (``/dashboard``: jobs with their progress, warm models, memory, gallery links, refreshed
by polling ``/dashboard/data``) and the gallery mounted under ``/gallery``, as upstream's ``da3 backend`` has them.

The page and its script come from the package (no CDN, nothing from another host: the content security policy
says so). With a token, the page is opened once with ``?token=``; the answer sets the same HttpOnly same-site
cookie as the API docs, which the page's data and assets then accept (the job API itself takes headers only).
"""

# No `from __future__ import annotations` here: FastAPI reads these annotations at runtime.

import time
from pathlib import Path as FsPath
from typing import Any, Dict, Optional

from fastapi import FastAPI, Path, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from anydepth.service.context import Backend
from anydepth.service.docs import TOKEN_COOKIE
from anydepth.service.store import FINISHED, QUEUED, RUNNING, Job
from anydepth.service.upstream import STATUSES, cuda_memory
from anydepth.web.security import ServiceError, is_inside, request_token_source

STATIC_DIR = FsPath(__file__).with_name("static")
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
"""The dashboard's own files, the only ones served under ``/dashboard/assets``."""

FINISHED_SHOWN = 50
"""Finished jobs the dashboard lists (newest first)."""

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


def add_dashboard(app: FastAPI, backend: Backend) -> None:
    """Adds ``/dashboard``, ``/dashboard/data`` and ``/dashboard/assets/{name}`` to the backend ``app`` (outside
    its OpenAPI schema: they are the browser's, with the cookie, not the API's)."""
    token = backend.settings.token

    def check(request: Request) -> Optional[str]:
        if not token:
            return None
        source = request_token_source(request, token, TOKEN_COOKIE)
        if source is None:
            raise ServiceError(401, "missing or wrong token; open the dashboard with ?token=<token>")
        return source

    def answer(response: Response, source: Optional[str]) -> Response:
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if source == "query":
            response.set_cookie(TOKEN_COOKIE, token or "", httponly=True, samesite="strict", path="/")
        return response

    @app.get("/dashboard", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        source = check(request)
        return answer(FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html; charset=utf-8"), source)

    @app.get("/dashboard/data", include_in_schema=False)
    def data(request: Request) -> Response:
        source = check(request)
        return answer(JSONResponse(dashboard_data(backend)), source)

    @app.get("/dashboard/assets/{name}", include_in_schema=False)
    def asset(request: Request, name: str = Path(..., max_length=100)) -> Response:
        source = check(request)
        if name not in ASSETS:
            raise ServiceError(404, f"no dashboard file {name!r}")
        return answer(FileResponse(STATIC_DIR / name, media_type=ASSETS[name]), source)


def dashboard_data(backend: Backend) -> Dict[str, Any]:
    """What the dashboard shows: jobs by state, warm models with their memory, device memory, the gallery."""
    settings = backend.settings
    store = backend.store()
    queued = sorted(store.list(QUEUED, 1000), key=lambda j: j.created_at)
    running = sorted(store.list(RUNNING, 1000), key=lambda j: j.created_at)
    finished = [j for j in store.list(None, FINISHED_SHOWN + len(queued) + len(running)) if j.state in FINISHED]
    gallery = settings.gallery_dir
    models = []
    for key in reversed(backend.cache.loaded()):  # most recently used first
        timing = backend.cache.timing(key)
        models.append(
            {
                "name": key.model,
                "precision": key.runtime.precision,
                "bytes": backend.cache.measured_bytes(key),
                "load_seconds": timing.load_seconds if timing else None,
                "last_used": timing.last_used if timing else None,
            }
        )
    budget = backend.pool().budget
    return {
        "now": time.time(),
        "device": backend.device_name(),
        "workers": settings.workers,
        "served": list(settings.models),
        "counts": store.counts(),
        "jobs": {
            "queued": [_job(j, gallery) for j in queued],
            "running": [_job(j, gallery) for j in running],
            "finished": [_job(j, gallery) for j in finished[:FINISHED_SHOWN]],
        },
        "models": models,
        "memory": {
            "budget_bytes": budget.total_bytes,
            "in_use_bytes": budget.in_use(),
            "models_bytes": backend.cache.total_bytes(),
            "cuda": cuda_memory(),
        },
        "gallery": "/gallery/" if gallery is not None else None,
    }


def _job(job: Job, gallery: Optional[FsPath]) -> Dict[str, Any]:
    """One job for the page: no server folders, only its gallery link when its exports lie in the gallery."""
    views: Optional[int] = len(job.inputs) if job.input_kind == "images" else None
    return {
        "id": job.id,
        "state": job.state,
        "status": STATUSES[job.state],
        "progress": job.progress,
        "stage": job.stage,
        "model": job.model,
        "input_kind": job.input_kind,
        "views": views,
        "export_format": job.options.get("export_format"),
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "gallery_url": _gallery_url(job, gallery),
    }


def _gallery_url(job: Job, gallery: Optional[FsPath]) -> Optional[str]:
    from urllib.parse import quote

    if gallery is None or job.state not in FINISHED:
        return None
    folder = FsPath(job.export_dir).resolve()
    if not is_inside(folder, gallery):
        return None
    relative = folder.relative_to(gallery).as_posix()
    return "/gallery/" if relative == "." else "/gallery/scene/" + quote(relative, safe="/")


def mount_gallery(app: FastAPI, gallery_dir: FsPath, token: Optional[str]) -> None:
    """Serves :mod:`anydepth.gallery` over ``gallery_dir`` under ``/gallery`` (its pages link below the mount),
    behind the backend's token; ``/gallery`` alone redirects to ``/gallery/``."""
    from starlette.responses import RedirectResponse

    from anydepth.gallery.server import create_gallery_app

    gallery = create_gallery_app(gallery_dir, token, cookie=TOKEN_COOKIE)  # one sign-in: the backend's cookie

    @app.get("/gallery", include_in_schema=False)
    def gallery_home(request: Request) -> Response:
        query = request.url.query
        return RedirectResponse("/gallery/" + (f"?{query}" if query else ""), status_code=307)

    app.mount("/gallery", gallery)
