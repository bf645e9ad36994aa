"""The gallery's HTTP server (FastAPI): scene pages, a JSON listing, confined scene files and the viewer bundle."""

# No `from __future__ import annotations` here: FastAPI reads these annotations at runtime.

import logging
from pathlib import Path as FsPath
from typing import Any, Dict, List, Optional

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from anydepth.gallery.pages import file_url, index_page, scene_page, scene_url
from anydepth.gallery.scenes import CONTENT_TYPES, Scene, find_scenes, is_hidden, read_scene
from anydepth.web.security import ServiceError, confine, path_error, request_token_source

logger = logging.getLogger(__name__)

STATIC_DIR = FsPath(__file__).with_name("static")
STATIC_FILES = {"viewer.js": "text/javascript; charset=utf-8"}
"""The packaged front-end files, the only ones served from ``/static``."""

TOKEN_COOKIE = "anydepth_gallery_token"

SECURITY_HEADERS = {
    # same-origin only: the pages can neither load nor send anything elsewhere
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self' blob: data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class SceneOut(BaseModel):
    name: str
    url: str
    thumbnail: Optional[str]
    model_3d: Optional[str]
    glb: Optional[str]
    ply: Optional[str]
    depth_images: List[str]
    input_images: List[str]


class SceneList(BaseModel):
    scenes: List[SceneOut]


def _scene_out(scene: Scene, base: str) -> SceneOut:
    def url(p: Optional[str]) -> Optional[str]:
        return file_url(p, base) if p else None

    return SceneOut(
        name=scene.name,
        url=scene_url(scene, base),
        thumbnail=url(scene.thumbnail),
        model_3d=url(scene.model_3d),
        glb=url(scene.glb),
        ply=url(scene.ply),
        depth_images=[file_url(p, base) for p in scene.depth_images],
        input_images=[file_url(p, base) for p in scene.input_images],
    )


def _base(request: Request) -> str:
    """Where the gallery is mounted ("" when it is its own server): its links are absolute paths below it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def create_gallery_app(gallery_dir: FsPath, token: Optional[str] = None, cookie: str = TOKEN_COOKIE) -> FastAPI:
    """The gallery application over the exports in ``gallery_dir``.

    Args:
        gallery_dir: the folder browsed; nothing outside it (after symlinks) is served.
        token: when set, every request but ``/health`` needs it: ``Authorization: Bearer <t>``, ``X-Token``,
            or ``?token=<t>`` once in a browser (the answer then sets an HttpOnly same-site cookie, so the
            page's images and 3D files load without it).
        cookie: the name of that cookie; the backend, which mounts the gallery, passes its own, so that one
            ``?token=`` opens its dashboard, API docs and gallery alike.
    """
    root = FsPath(gallery_dir).expanduser().resolve()
    if not root.is_dir():
        raise ServiceError(404, f"gallery folder {gallery_dir} does not exist")
    app = FastAPI(title="anydepth gallery", version="1", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        source = None
        if token and request.url.path != "/health":
            source = request_token_source(request, token, cookie)
            if source is None:
                response: Response = JSONResponse(
                    {"error": "missing or wrong token; open the gallery with ?token=<token>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                response.headers.update(SECURITY_HEADERS)
                return response
        response = await call_next(request)
        if source == "query":
            response.set_cookie(cookie, token or "", httponly=True, samesite="strict", path="/")
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request path or parameters"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal server error; see the server log"}, status_code=500)

    def scene_at(name: str) -> Scene:
        if name.strip("/") == "":
            folder = root
        else:
            folder = _confined(root, name)
        try:
            scene = read_scene(root, folder) if folder.is_dir() else None
        except OSError as exc:  # a folder the system will not list
            raise path_error(exc, name) from None
        if scene is None or not scene.is_scene:
            raise ServiceError(404, f"no scene {name!r} in this gallery")
        return scene

    @app.get("/health")
    def health() -> Dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return HTMLResponse(index_page(find_scenes(root), root.name, _base(request)))

    @app.get("/api/scenes", response_model=SceneList)
    def scenes(request: Request) -> SceneList:
        return SceneList(scenes=[_scene_out(s, _base(request)) for s in find_scenes(root)])

    @app.get("/api/scene/{name:path}", response_model=SceneOut)
    def scene_json(request: Request, name: str = Path(..., max_length=1000)) -> SceneOut:
        return _scene_out(scene_at(name), _base(request))

    @app.get("/scene/{name:path}", response_class=HTMLResponse)
    def scene(request: Request, name: str = Path(..., max_length=1000)) -> HTMLResponse:
        return HTMLResponse(scene_page(scene_at(name), _base(request)))

    @app.get("/files/{file_path:path}", response_class=FileResponse)
    def files(file_path: str = Path(..., max_length=1000)) -> FileResponse:
        """A scene file: inside the gallery folder after symlinks, not hidden, of an allowed type."""
        target = _confined(root, file_path)
        content_type = CONTENT_TYPES.get(target.suffix.lower())
        if content_type is None:
            raise ServiceError(403, f"{target.suffix or 'this'} files are not served; allowed: {_allowed()}")
        if not target.is_file():
            raise ServiceError(404, f"no file {file_path!r} in this gallery")
        return FileResponse(target, media_type=content_type)

    @app.get("/static/{name}")
    def static(name: str = Path(..., max_length=100)) -> FileResponse:
        if name not in STATIC_FILES:
            raise ServiceError(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])

    return app


def _confined(root: FsPath, relative: str) -> FsPath:
    """``relative`` inside the (resolved) ``root`` after symlinks, and neither it nor its target hidden.

    Absolute paths are refused even when they point inside: the gallery only ever links relative ones.
    """
    if relative.startswith("/"):
        raise ServiceError(403, f"path {relative!r} is not allowed (absolute)")
    target = confine(root, relative)
    if is_hidden(relative) or (target != root and is_hidden(target.relative_to(root).as_posix())):
        raise ServiceError(403, f"path {relative!r} is not allowed")
    return target


def _allowed() -> str:
    return ", ".join(sorted(CONTENT_TYPES))
