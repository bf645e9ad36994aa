"""The backend's HTTP API (FastAPI): submit DA3 scene jobs, follow them, cancel them, fetch their exports."""

# No `from __future__ import annotations` here: FastAPI reads these annotations at runtime.

import logging
import shutil
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import Any, Dict, List, Literal, Optional, Set, Tuple

from fastapi import Depends, FastAPI, File, Form, Header, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from anydepth.errors import AnyDepthError
from anydepth.jobs.options import (
    GS_VIDEO_SHOWS,
    PROCESS_RES_METHODS,
    REF_VIEW_STRATEGIES,
    TRAJECTORIES,
    VIDEO_QUALITY,
    SceneOptions,
)
from anydepth.service.context import Backend, DetailErrorRoute, error_body
from anydepth.service.dashboard import add_dashboard, mount_gallery
from anydepth.service.docs import add_docs
from anydepth.service.settings import ServiceSettings
from anydepth.service.sizing import check_job_pixels, job_views
from anydepth.service.store import DONE, FINISHED, Job, JobStore, new_job_id
from anydepth.service.upstream import add_upstream_routes
from anydepth.service.worker import WorkerPool
from anydepth.web.models import ModelCache
from anydepth.web.security import (
    ServiceError,
    check_confined_inputs,
    check_image_header,
    confine,
    confine_any,
    is_inside,
    path_error,
    sanitize_filename,
    strip_folders,
    token_matches,
    upload_kind,
    validate_decodes,
)

logger = logging.getLogger(__name__)

JOB_ID = r"^[0-9a-f]{32}$"
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
_COPY_CHUNK = 1 << 20


_SCENE = SceneOptions.defaults()
ProcessResMethod = Literal[PROCESS_RES_METHODS]  # type: ignore[valid-type]
RefViewStrategy = Literal[REF_VIEW_STRATEGIES]  # type: ignore[valid-type]
GsTrajectory = Literal[TRAJECTORIES]  # type: ignore[valid-type]
GsVideoShow = Literal[GS_VIDEO_SHOWS]  # type: ignore[valid-type]
GsVideoQuality = Literal[tuple(VIDEO_QUALITY)]  # type: ignore[valid-type]


class JobOptions(BaseModel):
    """How a job runs: the served model and the options of `anydepth auto` (upstream's names).

    The scene fields are :class:`~anydepth.jobs.options.SceneOptions`' (all but the export folder and its cleanup,
    which the server owns), with its defaults; :meth:`scene` turns a request into them.
    """

    model_config = ConfigDict(extra="forbid")

    model: Optional[str] = Field(None, max_length=100, description="A served model; default: the server's first.")
    export_format: str = Field("mini_npz-glb", min_length=1, max_length=200, description="Formats joined by '-'.")
    process_res: int = Field(_SCENE["process_res"], ge=14, le=4096)
    process_res_method: ProcessResMethod = _SCENE["process_res_method"]
    ref_view_strategy: RefViewStrategy = _SCENE["ref_view_strategy"]
    use_ray_pose: bool = _SCENE["use_ray_pose"]
    conf_thresh_percentile: float = Field(_SCENE["conf_thresh_percentile"], ge=0, le=100)
    num_max_points: int = Field(_SCENE["num_max_points"], ge=1, le=50_000_000)
    show_cameras: bool = _SCENE["show_cameras"]
    export_feat: Optional[str] = Field(_SCENE["export_feat"], pattern=r"^[0-9]{1,3}(,[0-9]{1,3}){0,15}$")
    feat_vis_fps: float = Field(_SCENE["feat_vis_fps"], gt=0, le=240)
    export_at_input_res: bool = _SCENE["export_at_input_res"]
    gs_trajectory: GsTrajectory = _SCENE["gs_trajectory"]
    gs_video_show: GsVideoShow = _SCENE["gs_video_show"]
    gs_video_quality: GsVideoQuality = _SCENE["gs_video_quality"]
    fps: float = Field(1.0, gt=0, le=240, description="[Video] Frames per second to sample.")
    max_frames: Optional[int] = Field(None, ge=1, le=100_000, description="At most this many views / frames.")

    def scene(self, export_dir: FsPath) -> SceneOptions:
        """The request's scene options, checked, writing into ``export_dir``."""
        return SceneOptions.from_options(self.model_dump(), export_dir=export_dir)


class PathJobRequest(JobOptions):
    """A job on files the server already has: paths inside its allowed roots (absolute or relative to the first)."""

    inputs: List[str] = Field(
        ..., min_length=1, max_length=10_000, description="Image files / folders / .txt lists, or one video."
    )


class JobOut(BaseModel):
    id: str
    state: str
    progress: float
    stage: str
    model: str
    input_kind: str
    inputs: List[str] = Field(description="Input file names (no server folders).")
    options: Dict[str, Any]
    error: Optional[str]
    attempts: int = Field(description="Times a worker started it (more than one after a restart mid-run).")
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]


class JobList(BaseModel):
    jobs: List[JobOut]


class FileOut(BaseModel):
    path: str
    size: int


class FileList(BaseModel):
    job_id: str
    files: List[FileOut]


class ModelOut(BaseModel):
    name: str
    default: bool
    warm: bool
    depth_kind: str


class ModelList(BaseModel):
    models: List[ModelOut]


class Health(BaseModel):
    status: str
    workers: int
    jobs: Dict[str, int]


class ErrorOut(BaseModel):
    error: str


RETRY_AFTER_SECONDS = 10
"""What a 429 (queue full) tells the client to wait, in its Retry-After header."""

_ERROR_MEANINGS = {
    400: "An option, input or path the server cannot use.",
    401: "Missing or wrong token (when the server has one).",
    403: "A path outside the allowed roots, or server-side paths on a server that takes none.",
    404: "No such job, file or input.",
    409: "The job is not in a state that allows this.",
    413: "Over the server's limits: body size, files, views or pixels.",
    415: "An upload that is not a readable image or video of its kind.",
    422: "Parameters or body that do not match this schema.",
    429: "Too many jobs waiting; submit again after Retry-After seconds.",
    500: "Internal server error (the server log has the details).",
}


def _errors(*codes: int) -> Dict[Any, Dict[str, Any]]:
    """The documented error answers of a route: ``codes``, and 422 and 500 that every route may give."""
    documented: Dict[Any, Dict[str, Any]] = {
        code: {"model": ErrorOut, "description": _ERROR_MEANINGS[code]} for code in sorted({*codes, 422, 500})
    }
    if 429 in documented:
        retry = {"description": "Seconds to wait before submitting again.", "schema": {"type": "integer"}}
        documented[429]["headers"] = {"Retry-After": retry}
    return documented


DOWNLOAD_TYPES = {
    ".glb": "model/gltf-binary",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
}
"""Content types of exported files by suffix, as served and documented; any other file is application/octet-stream
(npz, ply, exr, COLMAP's .bin)."""
_BINARY = "application/octet-stream"


def _download_types() -> List[str]:
    return sorted({*DOWNLOAD_TYPES.values(), _BINARY})


_PRIVATE_OPTIONS = ("da3_request", "cameras")
"""Job options that ``/jobs`` does not show: an ``/inference`` request (server paths) and known cameras (bulky)."""


def _job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        state=job.state,
        progress=job.progress,
        stage=job.stage,
        model=job.model,
        input_kind=job.input_kind,
        inputs=[FsPath(p).name for p in job.inputs],
        options={k: v for k, v in job.options.items() if k not in _PRIVATE_OPTIONS},
        error=job.error,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0 or size > self.limit:
                status = 413 if size > self.limit else 400
                message = f"request body over the {self.limit} byte limit" if status == 413 else "bad Content-Length"
                await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise StarletteHTTPException(413, f"request body over the {self.limit} byte limit")
            return message

        await self.app(scope, limited_receive, send)


class _Methods:
    """ASGI middleware: a method that a path does not take gets 405 with an ``Allow`` header naming every method it
    takes (the router alone names one route's), routes of fixed segments winning over routes with parameters, so
    that ``GET /jobs/upload`` is a 405 and not ``GET /jobs/{job_id}`` with a malformed id."""

    def __init__(self, app: Any, router: Any) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            allowed = _allowed_methods(self.router.routes, scope)
            if allowed and scope["method"] not in allowed:
                listed = ", ".join(allowed)
                message = f"method {scope['method']} is not allowed here; use {listed}"
                key = "detail" if _upstream_path(self.router.routes, scope) else "error"
                await JSONResponse({key: message}, status_code=405, headers={"Allow": listed})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _upstream_path(routes: List[Any], scope: Dict[str, Any]) -> bool:
    """Whether the request's path is one of upstream's protocol (its errors are ``{"detail": ...}``)."""
    return any(isinstance(r, DetailErrorRoute) and r.matches(scope)[0] is not Match.NONE for r in routes)


def _allowed_methods(routes: List[Any], scope: Dict[str, Any]) -> List[str]:
    """The methods of the routes whose path matches the request's: those of fixed paths when one matches."""
    fixed: Set[str] = set()
    parametrised: Set[str] = set()
    for route in routes:
        methods = getattr(route, "methods", None)
        if methods and route.matches(scope)[0] is not Match.NONE:
            (parametrised if route.param_convertors else fixed).update(methods)
    return sorted(fixed or parametrised)


def create_app(settings: ServiceSettings, model_cache: Optional[ModelCache] = None) -> FastAPI:
    """The backend application: jobs persisted in ``settings.data_dir``, run by ``settings.workers`` threads.

    Args:
        settings: the server's configuration.
        model_cache: the warm-model cache (tests pass one with a fake loader); default: a real one under
            ``settings.model_budget_bytes``.
    """
    from anydepth.presets import get_preset

    for name in settings.models:
        get_preset(name)  # an unknown preset fails here, before the server starts
    cache = model_cache or ModelCache(settings.model_budget_bytes, settings.max_models)
    state: Dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        settings.exports_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(settings.database)
        requeued = store.requeue_interrupted()
        if requeued:
            logger.info("%d interrupted job(s) re-queued", requeued)
        if settings.preload:
            name = settings.default_model
            cache.get(settings.model_key(name))
        pool = WorkerPool(settings, store, cache)
        pool.sweep()  # the files of jobs that ended while the server was down, before any upload comes in
        state.update(store=store, pool=pool)
        pool.start()
        try:
            yield
        finally:
            pool.stop(timeout=30)
            store.close()

    app = FastAPI(
        title="anydepth backend",
        version="1",
        description="Depth, cameras and point clouds of scenes with Depth Anything 3 models, kept warm.",
        lifespan=lifespan,
        docs_url=None,  # served from the package, behind the token: anydepth.service.docs
        redoc_url=None,
        openapi_url=None,
    )
    add_docs(app, settings.token)
    app.add_middleware(_BodyLimit, limit=settings.max_request_bytes)
    app.add_middleware(_Methods, router=app.router)

    def store() -> JobStore:
        return state["store"]

    def require_token(
        authorization: Optional[str] = Header(None, description="Bearer <token>, when the server has one."),
        x_token: Optional[str] = Header(None, description="The token, instead of Authorization."),
    ) -> None:
        if not token_matches(settings.token, authorization, x_token):
            raise ServiceError(401, "missing or wrong token; send Authorization: Bearer <token>")

    server_folders = [settings.data_dir, settings.exports_dir, settings.uploads_dir, *settings.allowed_roots]

    def public(message: str) -> str:
        """An error for the client: the server's folders cut out (paths inside them made relative)."""
        return strip_folders(message, server_folders)

    # Errors are {"error": ...}; upstream's protocol routes (service/upstream.py) answer {"detail": ...}.
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {**exc.headers, **({"WWW-Authenticate": "Bearer"} if exc.status == 401 else {})}
        return JSONResponse(error_body(request.scope, public(exc.message)), status_code=exc.status, headers=headers)

    @app.exception_handler(AnyDepthError)
    async def _input_error(request: Request, exc: AnyDepthError) -> JSONResponse:
        return JSONResponse(error_body(request.scope, public(str(exc))), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = error_body(request.scope, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(request.scope, "invalid request: " + _describe(exc.errors())), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(request.scope, "internal server error; see the server log"), status_code=500)

    guarded = [Depends(require_token)]

    @app.get("/health", response_model=Health, responses=_errors(), tags=["server"])
    def health(authorization: Optional[str] = Header(None), x_token: Optional[str] = Header(None)) -> Health:
        """Liveness (no token needed); the job counts per state only with the token, when the server has one."""
        counts = store().counts() if token_matches(settings.token, authorization, x_token) else {}
        return Health(status="ok", workers=settings.workers, jobs=counts)

    @app.get("/models", response_model=ModelList, dependencies=guarded, responses=_errors(401), tags=["server"])
    def models() -> ModelList:
        """The models this server runs, and which are warm."""
        warm = {key.model for key in cache.loaded()}
        return ModelList(
            models=[
                ModelOut(
                    name=name,
                    default=name == settings.default_model,
                    warm=name in warm,
                    depth_kind=get_preset(name).depth_kind,
                )
                for name in settings.models
            ]
        )

    def _options(options: JobOptions) -> Dict[str, Any]:
        """Checks a job's options before it is queued; returns them as stored (with the model named)."""
        from anydepth.export.formats import parse_export_format

        scene = options.scene(settings.exports_dir)  # the request validated into the job's own options
        chosen = options.model_dump(exclude={"inputs"})
        chosen["model"] = chosen["model"] or settings.default_model
        if chosen["model"] not in settings.models:
            served = ", ".join(settings.models)
            raise ServiceError(400, f"model {chosen['model']!r} is not served here; served: {served}")
        preset = get_preset(chosen["model"])
        parse_export_format(scene.export_format, depth_kind=preset.depth_kind, has_features=bool(scene.feat_layers()))
        scene.check_against(preset)  # what the served model's architecture can give, without its weights
        return chosen

    def _check_queue() -> None:
        if store().counts()["queued"] >= settings.max_queued:
            raise ServiceError(
                429,
                f"{settings.max_queued} jobs are already waiting; try again in {RETRY_AFTER_SECONDS} s",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    def _queue(
        job_id: str, options: Dict[str, Any], inputs: List[str], kind: str, export_dir: Optional[FsPath] = None
    ) -> Job:
        """Queues a checked job; it exports into ``exports/<job>``, or into ``export_dir`` (a confined folder)."""
        if kind == "video":  # frames are held in memory as views: never more than the server allows
            options["max_frames"] = min(options["max_frames"] or settings.max_views, settings.max_views)
        elif len(inputs) > settings.max_views:
            raise ServiceError(413, f"{len(inputs)} views; this server takes at most {settings.max_views} per job")
        check_job_pixels(job_views(inputs, kind, options, settings.max_pixels)[0], settings.max_job_pixels)
        folder = str(export_dir if export_dir is not None else settings.exports_dir / job_id)
        job = store().create(job_id, options.pop("model"), options, inputs, kind, folder)
        state["pool"].notify()
        return job

    @app.post(
        "/jobs",
        response_model=JobOut,
        status_code=201,
        dependencies=guarded,
        responses=_errors(400, 401, 403, 404, 413, 429),
        tags=["jobs"],
    )
    def submit_paths(request: PathJobRequest) -> JobOut:
        """A job on server-side files inside the allowed roots: images (views of one scene) or one video."""
        return _job_out(_path_job(request.inputs, _options(request)))

    def _path_job(inputs: List[str], options: Dict[str, Any], export_dir: Optional[FsPath] = None) -> Job:
        """Checks server-side inputs (confined, present, images within the limits) and queues a job on them."""
        from anydepth.io.inputs import expand_inputs, is_video_path

        _check_queue()
        resolved = [confine_any(settings.allowed_roots, p) for p in inputs]
        missing = [given for given, p in zip(inputs, resolved) if not p.exists()]
        if missing:
            raise ServiceError(404, f"no such file or folder: {missing[0]!r}")
        videos = [p for p in resolved if p.is_file() and is_video_path(p)]
        if videos:
            if len(resolved) > 1:
                raise ServiceError(400, "a job takes one video, or image files; not both")
            return _queue(new_job_id(), options, [str(videos[0])], "video", export_dir)
        paths: List[FsPath] = []
        for given, p in zip(inputs, resolved):
            try:
                paths.extend(expand_inputs(p))
            except OSError as exc:  # a .txt list naming a path the system refuses, a folder it cannot list
                raise path_error(exc, given) from None
        if not paths:
            raise ServiceError(400, "the inputs name no images")
        check_confined_inputs(paths, settings.allowed_roots)
        if len(paths) > settings.max_views:  # before reading any header
            raise ServiceError(413, f"{len(paths)} views; this server takes at most {settings.max_views} per job")
        for p in paths:
            check_image_header(FsPath(p), settings.max_pixels, FsPath(p).name)
        return _queue(new_job_id(), options, [str(FsPath(p).resolve()) for p in paths], "images", export_dir)

    @app.post(
        "/jobs/upload",
        response_model=JobOut,
        status_code=201,
        dependencies=guarded,
        responses=_errors(400, 401, 413, 415, 429),
        tags=["jobs"],
    )
    def submit_upload(
        files: List[UploadFile] = File(..., description="Images (views of one scene) or one video."),
        options: Optional[str] = Form(None, description="JobOptions as a JSON object."),
    ) -> JobOut:
        """A job on uploaded files: images that are views of one scene, or one video."""
        try:
            chosen = _options(JobOptions.model_validate_json(options or "{}"))
        except ValidationError as exc:
            raise ServiceError(422, "invalid options: " + _describe(exc.errors())) from None
        if len(files) > settings.max_files:
            raise ServiceError(413, f"{len(files)} files; the limit is {settings.max_files} per job")
        _check_queue()
        job_id = new_job_id()
        folder = settings.uploads_dir / job_id
        folder.mkdir(parents=True)
        try:
            saved, kinds = _save_uploads(files, folder, settings.max_pixels)
            if "video" in kinds and len(saved) > 1:
                raise ServiceError(400, "a job takes one video, or image files; not both")
            kind = "video" if "video" in kinds else "images"
            return _job_out(_queue(job_id, chosen, [str(p) for p in saved], kind))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    @app.get("/jobs", response_model=JobList, dependencies=guarded, responses=_errors(401), tags=["jobs"])
    def list_jobs(
        state: Optional[JobState] = Query(None, description="Only jobs in this state."),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10**9),
    ) -> JobList:
        """Jobs, newest first."""
        return JobList(jobs=[_job_out(j) for j in store().list(state, limit, offset)])

    def _job(job_id: str) -> Job:
        job = store().get(job_id)
        if job is None:
            raise ServiceError(404, f"no job {job_id}")
        return job

    @app.get("/jobs/{job_id}", response_model=JobOut, dependencies=guarded, responses=_errors(401, 404), tags=["jobs"])
    def get_job(job_id: str = Path(..., pattern=JOB_ID)) -> JobOut:
        """One job's state, progress and error."""
        return _job_out(_job(job_id))

    @app.post(
        "/jobs/{job_id}/cancel",
        response_model=JobOut,
        dependencies=guarded,
        responses=_errors(401, 404, 409),
        tags=["jobs"],
    )
    def cancel_job(job_id: str = Path(..., pattern=JOB_ID)) -> JobOut:
        """Cancels a queued job at once, a running one at its next stage; a finished job answers 409."""
        job = _job(job_id)
        if job.state in FINISHED:
            raise ServiceError(409, f"job {job_id} is already {job.state}")
        cancelled = store().request_cancel(job_id)
        state["pool"].sweep(job_id)  # a queued job ends here; a running one ends in its worker, which sweeps
        return _job_out(cancelled)

    @app.delete(
        "/jobs/{job_id}", status_code=204, dependencies=guarded, responses=_errors(401, 404, 409), tags=["jobs"]
    )
    def delete_job(job_id: str = Path(..., pattern=JOB_ID)) -> Response:
        """Forgets a finished job and removes its exports; a queued or running one answers 409 (cancel it first)."""
        _forget(_job(job_id))
        return Response(status_code=204)

    def _forget(job: Job) -> None:
        """Deletes a finished job's row and, when they are in the server's own folder, its exports."""
        if job.state not in FINISHED or not store().delete(job.id):
            raise ServiceError(409, f"job {job.id} is {job.state}; cancel it and wait until it stops")
        state["pool"].sweep(job.id)
        if is_inside(FsPath(job.export_dir).resolve(), settings.exports_dir.resolve()):
            shutil.rmtree(job.export_dir, ignore_errors=True)

    def _done_job(job_id: str) -> Job:
        job = _job(job_id)
        if job.state != DONE:
            raise ServiceError(409, f"job {job_id} is {job.state}; files exist once it is done")
        return job

    @app.get(
        "/jobs/{job_id}/files",
        response_model=FileList,
        dependencies=guarded,
        responses=_errors(401, 404, 409),
        tags=["jobs"],
    )
    def list_files(job_id: str = Path(..., pattern=JOB_ID)) -> FileList:
        """The exported files of a finished job, relative to its export folder."""
        root = FsPath(_done_job(job_id).export_dir)
        files = [
            FileOut(path=p.relative_to(root).as_posix(), size=p.stat().st_size)
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()
        ]
        return FileList(job_id=job_id, files=files)

    @app.get(
        "/jobs/{job_id}/files/{file_path:path}",
        dependencies=guarded,
        responses={
            **_errors(400, 401, 403, 404, 409),
            200: {
                "description": "The file, as an attachment.",
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _download_types()},
            },
        },
        response_class=FileResponse,
        tags=["jobs"],
    )
    def get_file(job_id: str = Path(..., pattern=JOB_ID), file_path: str = Path(..., max_length=1000)) -> FileResponse:
        """One exported file; the path cannot leave the job's export folder."""
        root = FsPath(_done_job(job_id).export_dir)
        target = confine(root, file_path)
        if not target.is_file():
            raise ServiceError(404, f"job {job_id} has no file {file_path!r}")
        return FileResponse(target, filename=target.name, media_type=DOWNLOAD_TYPES.get(target.suffix.lower(), _BINARY))

    backend = Backend(
        settings=settings,
        cache=cache,
        store=store,
        pool=lambda: state["pool"],
        guard=guarded,
        submit_paths=_path_job,
        check_options=lambda fields: _options(JobOptions(**fields)),
        delete=_forget,
        public=public,
    )
    add_upstream_routes(app, backend)
    add_dashboard(app, backend)
    if settings.gallery_dir is not None:
        mount_gallery(app, settings.gallery_dir, settings.token)
    return app


def _save_uploads(files: List[UploadFile], folder: FsPath, max_pixels: int) -> Tuple[List[FsPath], Set[str]]:
    """Copies the uploads into ``folder`` under numbered, sanitised names; each must decode as its kind."""
    saved: List[FsPath] = []
    kinds: Set[str] = set()
    for i, upload in enumerate(files):
        shown = sanitize_filename(upload.filename)
        kind = upload_kind(shown, upload.content_type)
        target = folder / f"{i:04d}_{shown}"
        with open(target, "wb") as out:
            shutil.copyfileobj(upload.file, out, _COPY_CHUNK)
        if target.stat().st_size == 0:
            raise ServiceError(415, f"{shown}: the file is empty")
        validate_decodes(target, kind, shown, max_pixels)
        saved.append(target)
        kinds.add(kind)
    return saved, kinds


def _describe(errors: Any) -> str:
    """Validation errors as one line, without echoing the submitted values."""
    parts = []
    for error in list(errors)[:5]:
        location = ".".join(str(x) for x in error.get("loc", ()) if x not in ("body",))
        parts.append(f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"
