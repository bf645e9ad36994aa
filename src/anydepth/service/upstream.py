"""Upstream DA3's backend protocol (``da3 backend``) on anydepth's job queue: ``/status``, ``/inference``,
``/task/{task_id}``, ``/tasks``, ``/cleanup``, ``/reload``, ``/gpu-memory``, with upstream's fields, task statuses,
messages and error bodies (``{"detail": ...}``), so that clients written for ``da3 backend`` (its own
``da3 auto --use-backend``) work unchanged.

What differs, on purpose: server paths (``image_paths``, ``export_dir``) must lie inside the allowed roots (upstream
reads and writes wherever a request says), the token and the limits apply, a refusal is a 4xx naming the field
before anything is queued (upstream fails the task later), ``use_ray_pose`` and ``ref_view_strategy`` are honoured
(upstream's server drops them), and task records stay until ``/cleanup`` or ``DELETE /task/{id}`` (upstream forgets
them after ten minutes).
"""

# No `from __future__ import annotations` here: FastAPI reads these annotations at runtime.

import time
from contextlib import contextmanager
from pathlib import Path as FsPath
from typing import Annotated, Any, Dict, Iterator, List, Literal, Optional

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from anydepth.errors import AnyDepthError, OptionError
from anydepth.jobs.options import PROCESS_RES_METHODS, REF_VIEW_STRATEGIES
from anydepth.service.context import Backend, DetailErrorRoute
from anydepth.service.store import CANCELLED, DONE, FAILED, FINISHED, QUEUED, RUNNING, Job
from anydepth.service.worker import CAMERAS
from anydepth.web.security import ServiceError, confine_any, is_inside

REQUEST = "da3_request"
"""The job option that keeps an ``/inference`` request as it came (less its cameras, kept under ``cameras``)."""

UPSTREAM_NAMES = {"export_feat": "export_feat_layers"}
"""Job option names that upstream's request spells differently."""

STATUSES = {QUEUED: "pending", RUNNING: "running", DONE: "completed", FAILED: "failed", CANCELLED: "failed"}
"""Upstream's four task statuses for our five job states (upstream cannot cancel: a cancelled job failed)."""

TASK_HISTORY = 100
"""Finished tasks that ``/tasks`` lists and ``/cleanup`` keeps at most, upstream's ``MAX_TASK_HISTORY``."""
CLEANUP_AGE_SECONDS = 600
"""``/cleanup`` forgets tasks finished longer ago than this, as upstream's does."""

ProcessResMethod = Literal[PROCESS_RES_METHODS]  # type: ignore[valid-type]
RefViewStrategy = Literal[REF_VIEW_STRATEGIES]  # type: ignore[valid-type]
Matrices = List[List[List[float]]]


class InferenceRequest(BaseModel):
    """Upstream's ``InferenceRequest`` (names, types, defaults), plus the two fields its client sends and its server
    drops (``use_ray_pose``, ``ref_view_strategy``); other fields are ignored, as upstream ignores them."""

    model_config = ConfigDict(extra="ignore")

    image_paths: List[str] = Field(..., min_length=1, max_length=10_000, description="Images on the server.")
    export_dir: Optional[str] = Field(
        None, max_length=4096, description="Folder on the server, inside an allowed root; none: the server's own."
    )
    export_format: str = Field("mini_npz-glb", min_length=1, max_length=200)
    extrinsics: Optional[Matrices] = Field(None, description="(S, 3|4, 4) world-to-camera, OpenCV.")
    intrinsics: Optional[Matrices] = Field(None, description="(S, 3, 3) in pixels.")
    process_res: int = Field(504, ge=14, le=4096)
    process_res_method: ProcessResMethod = "upper_bound_resize"
    export_feat_layers: List[Annotated[int, Field(ge=0, le=999)]] = Field([], max_length=16)
    align_to_input_ext_scale: bool = True
    use_ray_pose: bool = False
    ref_view_strategy: RefViewStrategy = "saddle_balanced"
    conf_thresh_percentile: float = Field(40.0, ge=0, le=100)
    num_max_points: int = Field(1_000_000, ge=1, le=50_000_000)
    show_cameras: bool = True
    feat_vis_fps: int = Field(15, ge=1, le=240)


class InferenceResponse(BaseModel):
    success: bool
    message: str
    task_id: Optional[str] = None
    export_dir: Optional[str] = None
    export_format: str = "mini_npz-glb"
    processing_time: Optional[float] = None


class TaskStatus(BaseModel):
    """Upstream's task record."""

    task_id: str
    status: str = Field(description='"pending", "running", "completed" or "failed".')
    message: str
    progress: Optional[float] = None
    created_at: float
    started_at: Optional[float] = None
    completed_at: Optional[float] = None
    export_dir: Optional[str] = None
    request: Optional[InferenceRequest] = None
    num_images: Optional[int] = None
    export_format: Optional[str] = None
    process_res_method: Optional[str] = None
    video_path: Optional[str] = None


class TaskList(BaseModel):
    tasks: List[TaskStatus]
    active_tasks: List[TaskStatus]
    completed_tasks: List[TaskStatus]
    active_count: int
    total_count: int


class GpuMemory(BaseModel):
    total_gb: float
    allocated_gb: float
    reserved_gb: float
    free_gb: float
    utilization_percent: float


class BackendStatus(BaseModel):
    model_loaded: bool
    model_dir: Optional[str]
    device: str
    load_time: Optional[float]
    last_used: Optional[float]
    uptime: float
    gpu_memory: Optional[GpuMemory]


class GpuMemoryReport(BaseModel):
    """Upstream's ``/gpu-memory``: ``available`` and ``message`` without CUDA, the numbers and a status with it."""

    available: bool
    message: Optional[str] = None
    total_gb: Optional[float] = None
    allocated_gb: Optional[float] = None
    reserved_gb: Optional[float] = None
    free_gb: Optional[float] = None
    utilization_percent: Optional[float] = None
    status: Optional[str] = Field(None, description='"healthy" under 80% reserved, "warning" under 95%, "critical".')


class Message(BaseModel):
    message: str


class CleanupResult(BaseModel):
    message: str
    active_tasks: int = Field(description="Tasks left (upstream's name for it).")


class DetailOut(BaseModel):
    detail: str


_MEANINGS = {
    400: "An option or path the server cannot use, or a task that is still pending or running.",
    401: "Missing or wrong token (when the server has one).",
    403: "A path outside the allowed roots, or a server that takes no server-side paths.",
    404: "No such task, or an input that does not exist.",
    413: "Over the server's limits: views or pixels.",
    422: "A body that does not match this schema.",
    429: "Too many jobs waiting; submit again later.",
    500: "The model could not be loaded, or an internal error (the server log has the details).",
}


def _errors(*codes: int) -> Dict[Any, Dict[str, Any]]:
    return {code: {"model": DetailOut, "description": _MEANINGS[code]} for code in sorted({*codes, 422, 500})}


def cuda_memory() -> Optional[Dict[str, float]]:
    """The current CUDA device's memory in GiB as upstream reports it (``reserved / total`` is its utilisation);
    None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    try:
        device = torch.cuda.current_device()
        total = torch.cuda.get_device_properties(device).total_memory
        allocated = torch.cuda.memory_allocated(device)
        reserved = torch.cuda.memory_reserved(device)
    except Exception:  # a driver that answers is_available() but not the rest: no numbers, as upstream
        return None
    gib = 2.0**30
    return {
        "total_gb": total / gib,
        "allocated_gb": allocated / gib,
        "reserved_gb": reserved / gib,
        "free_gb": (total - reserved) / gib,
        "utilization": reserved / total * 100,
    }


def _stored_request(job: Job) -> Optional[InferenceRequest]:
    stored = job.options.get(REQUEST)
    if stored is None:
        return None
    cameras = job.options.get(CAMERAS) or {}
    return InferenceRequest(**stored, extrinsics=cameras.get("extrinsics"), intrinsics=cameras.get("intrinsics"))


def task_status(job: Job) -> TaskStatus:
    """A job as upstream's task record; a job of anydepth's own API (``/jobs``) has no ``request``."""
    request = _stored_request(job)
    status = STATUSES[job.state]
    tag = f"[{job.id}]"
    num_images = len(request.image_paths) if request else len(job.inputs)
    if job.state == QUEUED:
        message = f"{tag} Task submitted"
    elif job.state == RUNNING:
        message = f"{tag} {job.stage[:1].upper()}{job.stage[1:]}..."
    else:
        took = (job.finished_at or job.created_at) - (job.started_at or job.created_at)
        if job.state == DONE:
            message = f"{tag} Completed in {took:.2f}s ({took / max(num_images, 1):.2f}s per image)"
        else:
            reason = job.error or ("cancelled" if job.state == CANCELLED else "no reason given")
            message = f"{tag} Failed after {took:.2f}s: {reason}"
    return TaskStatus(
        task_id=job.id,
        status=status,
        message=message,
        progress=None if job.state == QUEUED else job.progress,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.finished_at,
        export_dir=request.export_dir if request else None,
        request=request,
        num_images=num_images,
        export_format=job.options.get("export_format"),
        process_res_method=job.options.get("process_res_method"),
        video_path=request.image_paths[0] if request else None,
    )


def _job_options(request: InferenceRequest) -> Dict[str, Any]:
    """The request's fields under the names of anydepth's job options (``JobOptions``)."""
    layers = request.export_feat_layers
    return {
        "export_format": request.export_format,
        "process_res": request.process_res,
        "process_res_method": request.process_res_method,
        "ref_view_strategy": request.ref_view_strategy,
        "use_ray_pose": request.use_ray_pose,
        "conf_thresh_percentile": request.conf_thresh_percentile,
        "num_max_points": request.num_max_points,
        "show_cameras": request.show_cameras,
        "export_feat": ",".join(str(i) for i in layers) if layers else None,
        "feat_vis_fps": float(request.feat_vis_fps),
    }


def _check_cameras(request: InferenceRequest) -> Optional[Dict[str, Any]]:
    """The request's cameras as a job stores them, checked: shapes, and intrinsics with extrinsics."""
    import numpy as np

    if request.extrinsics is None and request.intrinsics is None:
        return None
    views = len(request.image_paths)
    for name, value, shapes in (
        ("extrinsics", request.extrinsics, ((3, 4), (4, 4))),
        ("intrinsics", request.intrinsics, ((3, 3),)),
    ):
        if value is None:
            continue
        try:
            array = np.asarray(value, dtype=np.float64)
        except ValueError:
            raise ServiceError(400, f"{name}: the matrices must all have the same shape") from None
        if array.ndim != 3 or array.shape[1:] not in shapes or array.shape[0] != views:
            wanted = " or ".join(f"({views}, {h}, {w})" for h, w in shapes)
            raise ServiceError(400, f"{name}: shape {array.shape}; give {wanted}, one matrix per image path")
        if not np.isfinite(array).all():
            raise ServiceError(400, f"{name}: every value must be finite")
    if request.extrinsics is not None and request.intrinsics is None:
        raise ServiceError(400, "intrinsics: pose conditioning needs them with the extrinsics")
    return {
        "extrinsics": request.extrinsics,
        "intrinsics": request.intrinsics,
        "align_to_input_ext_scale": request.align_to_input_ext_scale,
    }


@contextmanager
def _field(name: str) -> Iterator[None]:
    """Refusals of the block name the request's field ``name`` (a busy queue is not the field's fault)."""
    try:
        yield
    except ServiceError as exc:
        if exc.status == 429 or exc.message.startswith(f"{name}: "):
            raise
        raise ServiceError(exc.status, f"{name}: {exc.message}", exc.headers) from None


def _export_folder(backend: Backend, export_dir: Optional[str]) -> Optional[FsPath]:
    """The request's export folder, confined to the allowed roots and apart from the server's data folder; None:
    the server's own ``exports/<task>``."""
    if export_dir is None:
        return None
    with _field("export_dir"):
        folder = confine_any(backend.settings.allowed_roots, export_dir)
    data = backend.settings.data_dir.resolve()
    if is_inside(folder, data) or is_inside(data, folder):
        raise ServiceError(403, f"export_dir {export_dir!r} overlaps the server's data folder")
    if folder.exists() and not folder.is_dir():
        raise ServiceError(400, f"export_dir {export_dir!r} is a file, not a folder")
    return folder


def add_upstream_routes(app: Any, backend: Backend) -> None:
    """Adds upstream's protocol to the backend ``app``: every route behind the token, errors as ``{"detail"}``."""
    settings = backend.settings

    def route(method: str, path: str, **options: Any) -> Any:
        """Registers a route on the application itself (the methods middleware sees it there), errors as detail."""

        def register(endpoint: Any) -> Any:
            app.router.add_api_route(
                path,
                endpoint,
                methods=[method],
                dependencies=backend.guard,
                tags=["da3 backend protocol"],
                route_class_override=DetailErrorRoute,
                **options,
            )
            return endpoint

        return register

    def default_key() -> Any:
        return settings.model_key(settings.default_model)

    @route("GET", "/status", response_model=BackendStatus, responses=_errors(401))
    def status() -> BackendStatus:
        """The default model's state (upstream serves one model) and the CUDA memory."""
        from anydepth.presets import get_preset

        name = settings.default_model
        timing = backend.cache.timing(default_key())
        weights = settings.models[name]
        preset_weights = get_preset(name).weights
        model_dir = weights if weights is not None else (preset_weights.repo_id if preset_weights else name)
        memory = cuda_memory()
        return BackendStatus(
            model_loaded=timing is not None,
            model_dir=backend.public(model_dir),
            device=backend.device_name(),
            load_time=timing.load_seconds if timing else None,
            last_used=timing.last_used if timing else None,
            uptime=time.time() - timing.loaded_at if timing else 0,
            gpu_memory=None if memory is None else _gpu_memory(memory),
        )

    @route("POST", "/inference", response_model=InferenceResponse, responses=_errors(400, 401, 403, 404, 413, 429))
    def inference(request: InferenceRequest) -> InferenceResponse:
        """Queues a scene job on server-side images; answers at once with its task id (follow it at /task/{id})."""
        try:
            options = backend.check_options(_job_options(request))
        except OptionError as exc:  # worded with upstream's field names
            raise ServiceError(400, exc.worded(UPSTREAM_NAMES.get(exc.option, exc.option))) from None
        except ServiceError:
            raise
        except AnyDepthError as exc:  # the one other check of the options: the export formats
            raise ServiceError(400, f"export_format: {exc}") from None
        cameras = _check_cameras(request)
        if cameras:
            options[CAMERAS] = cameras
        options[REQUEST] = request.model_dump(exclude={"extrinsics", "intrinsics"})
        folder = _export_folder(backend, request.export_dir)
        with _field("image_paths"):
            job = backend.submit_paths(request.image_paths, options, folder)
        return InferenceResponse(
            success=True,
            message="Task submitted successfully",
            task_id=job.id,
            export_dir=request.export_dir,
            export_format=request.export_format,
        )

    def task(task_id: str) -> Job:
        job = backend.store().get(task_id)
        if job is None:
            raise ServiceError(404, "Task not found")
        return job

    TaskId = Path(..., min_length=1, max_length=100)

    @route("GET", "/task/{task_id}", response_model=TaskStatus, responses=_errors(401, 404))
    def get_task(task_id: str = TaskId) -> TaskStatus:
        """One task's record."""
        return task_status(task(task_id))

    @route("GET", "/tasks", response_model=TaskList, responses=_errors(401))
    def tasks() -> TaskList:
        """Every pending and running task, and the newest finished ones (at most 100, as upstream keeps)."""
        store = backend.store()
        active = store.list(RUNNING, 10_000) + store.list(QUEUED, 10_000)
        finished = [j for j in store.list(None, TASK_HISTORY + len(active)) if j.state in FINISHED][:TASK_HISTORY]
        active.sort(key=lambda j: j.created_at)
        finished.sort(key=lambda j: j.created_at)
        active_out = [task_status(j) for j in active]
        finished_out = [task_status(j) for j in finished]
        everything = sorted(active_out + finished_out, key=lambda t: t.created_at)
        return TaskList(
            tasks=everything,
            active_tasks=active_out,
            completed_tasks=finished_out,
            active_count=len(active_out),
            total_count=len(everything),
        )

    @route("POST", "/cleanup", response_model=CleanupResult, responses=_errors(401))
    def cleanup() -> CleanupResult:
        """Forgets the ``/inference`` tasks that finished over ten minutes ago, and the oldest finished ones past
        100; their files stay where they were written. Jobs of anydepth's own API are left alone."""
        store = backend.store()
        now = time.time()
        finished = [j for j in store.list(None, 1_000_000) if j.state in FINISHED and REQUEST in j.options]
        finished.sort(key=lambda j: j.finished_at or 0, reverse=True)
        for rank, job in enumerate(finished):
            if rank >= TASK_HISTORY or now - (job.finished_at or now) > CLEANUP_AGE_SECONDS:
                backend.delete(job)
        return CleanupResult(message="Cleanup completed", active_tasks=len(tasks().tasks))

    @route("DELETE", "/task/{task_id}", response_model=Message, responses=_errors(400, 401, 404))
    def delete_task(task_id: str = TaskId) -> Message:
        """Forgets a completed or failed task (its files stay in a folder the request named)."""
        job = task(task_id)
        if job.state not in FINISHED:
            raise ServiceError(400, "Cannot delete running or pending tasks")
        backend.delete(job)
        return Message(message=f"Task {task_id} deleted successfully")

    @route("POST", "/reload", response_model=Message, responses=_errors(401))
    def reload() -> Message:
        """Loads the default model again from its weights (a running job finishes on the model it has)."""
        key = default_key()
        backend.cache.drop(key)
        try:
            backend.cache.get(key)
        except Exception as exc:
            raise ServiceError(500, f"Failed to reload model: {backend.public(str(exc))}") from None
        return Message(message="Model reloaded successfully")

    @route(
        "GET", "/gpu-memory", response_model=GpuMemoryReport, response_model_exclude_none=True, responses=_errors(401)
    )
    def gpu_memory() -> GpuMemoryReport:
        """The CUDA device's memory, with upstream's health status."""
        memory = cuda_memory()
        if memory is None:
            return GpuMemoryReport(available=False, message="CUDA not available or memory info cannot be retrieved")
        used = memory["utilization"]
        health = "healthy" if used < 80 else "warning" if used < 95 else "critical"
        return GpuMemoryReport(available=True, **_gpu_memory(memory).model_dump(), status=health)


def _gpu_memory(memory: Dict[str, float]) -> GpuMemory:
    return GpuMemory(
        total_gb=round(memory["total_gb"], 2),
        allocated_gb=round(memory["allocated_gb"], 2),
        reserved_gb=round(memory["reserved_gb"], 2),
        free_gb=round(memory["free_gb"], 2),
        utilization_percent=round(memory["utilization"], 1),
    )
