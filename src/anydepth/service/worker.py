"""The backend's worker threads: take queued jobs and run them as scene jobs (:mod:`anydepth.jobs.scene`)."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np

from anydepth.errors import AnyDepthError
from anydepth.jobs.options import SceneOptions
from anydepth.jobs.scene import collect_views, run_scene
from anydepth.service.settings import ServiceSettings
from anydepth.service.sizing import job_views, job_working_bytes
from anydepth.service.store import CANCELLED, DONE, FAILED, FINISHED, Job, JobStore
from anydepth.web.budget import MemoryBudget, Reservation
from anydepth.web.models import ModelCache, ModelKey
from anydepth.web.security import ServiceError, check_confined_inputs, is_inside, strip_folders

logger = logging.getLogger(__name__)


CAMERAS = "cameras"
"""The job option holding known cameras: ``extrinsics`` (S, 3|4, 4) and ``intrinsics`` (S, 3, 3) as nested lists
(either may be None: intrinsics alone only fix the focal lengths), and ``align_to_input_ext_scale``; absent when
the model predicts the cameras."""


class _Cancelled(Exception):
    pass


class _Stopped(Exception):
    """The pool stopped while the job waited for memory: it stays running and is re-queued at restart."""


def scene_option_names() -> List[str]:
    """The SceneOptions fields a job may set (its export folder and cleanup belong to the server; array-valued
    render cameras are for Python callers)."""
    skip = (*SceneOptions.SERVER_OWNED, *SceneOptions.PYTHON_ONLY)
    return [name for name in SceneOptions.field_names() if name not in skip]


class WorkerPool:
    """``settings.workers`` threads that run queued jobs; a cancel takes effect between stages.

    Stages and their progress: reading inputs (0.05; "waiting for memory" while the job does not fit in the
    memory budget), loading the model (0.25), inference and export (0.4), done (1.0). Exports are written to
    ``exports/<job>.partial`` and renamed into place when complete, so a job's folder is either whole or absent,
    also after a crash. A job that names its own export folder (upstream's ``/inference`` with ``export_dir``)
    gets the finished files moved into that folder, beside what it already holds, as upstream writes there.

    Args:
        budget: the memory budget the jobs and ``models`` share; default: ``settings.memory_budget_bytes``.
    """

    def __init__(
        self, settings: ServiceSettings, store: JobStore, models: ModelCache, budget: Optional[MemoryBudget] = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.models = models
        self.budget = budget or MemoryBudget(settings.memory_budget_bytes, models)
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads: List[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.settings.workers):
            thread = threading.Thread(target=self._loop, name=f"anydepth-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stops taking jobs and waits for the running ones (a job cut short stays running, re-queued at restart)."""
        self._stop.set()
        self.notify()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def notify(self) -> None:
        """Wakes an idle worker (a job was queued)."""
        with self._wake:
            self._wake.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self.store.claim_next()
            if job is None:
                with self._wake:
                    self._wake.wait(self.settings.poll_seconds)
                continue
            self.run(job)

    def run(self, job: Job) -> None:
        """Runs one claimed job to its end state; never raises."""
        final = Path(job.export_dir)
        partial = self.settings.exports_dir / f"{job.id}{_PARTIAL}"
        owned = final.resolve() == (self.settings.exports_dir / job.id).resolve()  # else one a client named
        try:
            self._stage(job, 0.05, "reading inputs")
            self._check_inputs(job)
            if job.model not in self.settings.models:  # queued before a restart with other models
                raise ServiceError(400, f"model {job.model!r} is not served by this server any more")
            key = self.settings.model_key(job.model)
            with self._reserve_memory(job, key):
                views = self._views(job)
                self._stage(job, 0.25, "loading model")
                model = self.models.get(key)
                self._stage(job, 0.4, "inference and export")
                _remove(partial)
                self._run_scene(job, model, views, partial)
                del model, views
            self._check_cancel(job)
            if owned:
                _remove(final)
                os.replace(partial, final)
            else:
                merge_into(partial, final, self.settings.allowed_roots)
            self.store.finish(job.id, DONE)
            logger.info("job %s done", job.id)
        except _Stopped:
            logger.info("job %s left for the next start: the server stopped while it waited for memory", job.id)
        except _Cancelled:
            self.store.finish(job.id, CANCELLED)
            logger.info("job %s cancelled", job.id)
        except (AnyDepthError, ServiceError) as exc:
            self.store.finish(job.id, FAILED, self._public_message(job, str(exc)))
            logger.info("job %s failed: %s", job.id, exc)
        except Exception as exc:
            logger.exception("job %s failed unexpectedly", job.id)
            self.store.finish(job.id, FAILED, f"internal error ({type(exc).__name__}); see the server log")
        finally:
            self.sweep(job.id)  # its uploads and partial export; a job cut short by a stop is running: they stay

    def sweep(self, job_id: Optional[str] = None) -> int:
        """Removes the working files of jobs that have ended: ``uploads/<job>`` and ``exports/<job>.partial``.

        A queued or running job keeps them (it is re-queued at restart); a job ended as done, failed or cancelled,
        or deleted (no row any more), loses them. The finished exports (``exports/<job>``) are results, never
        touched here.

        Args:
            job_id: sweep this job's files, which is what every end of a job calls. None: every entry of
                ``uploads/`` and every ``exports/*.partial`` that no queued or running job owns, which is what the
                server calls at start, before it takes requests (an upload has its folder before its row).

        Returns:
            How many files or folders were removed.
        """
        uploads, exports = self.settings.uploads_dir, self.settings.exports_dir
        if job_id is not None:
            if not _JOB_ID.fullmatch(job_id):  # it names folders that are removed
                raise ValueError(f"not a job id: {job_id!r}")
            job = self.store.get(job_id)
            if job is not None and job.state not in FINISHED:
                return 0
            candidates = [uploads / job_id, exports / f"{job_id}.partial"]
        else:
            unfinished = self.store.unfinished_ids()
            candidates = [p for p in _entries(uploads) if p.name not in unfinished]
            candidates += [
                p for p in _entries(exports) if p.name.endswith(_PARTIAL) and p.name[: -len(_PARTIAL)] not in unfinished
            ]
        removed = 0
        for path in candidates:
            if path.exists() or path.is_symlink():
                _remove(path)
                removed += 1
        if removed and job_id is None:
            logger.info("removed %d upload folder(s) and partial export(s) of ended jobs", removed)
        return removed

    def _stage(self, job: Job, progress: float, stage: str) -> None:
        self._check_cancel(job)
        self.store.set_progress(job.id, progress, stage)

    def _check_cancel(self, job: Job) -> None:
        if self.store.cancel_requested(job.id):
            raise _Cancelled

    def _check_inputs(self, job: Job) -> None:
        if not self._is_upload(job):  # server paths: check again, the files may have changed since submission
            check_confined_inputs(job.inputs, self.settings.allowed_roots)

    def _reserve_memory(self, job: Job, key: ModelKey) -> Reservation:
        """Waits until the job fits in the memory budget beside the warm models and the running jobs."""
        from anydepth.presets import get_preset

        views, in_memory = job_views(job.inputs, job.input_kind, job.options, self.settings.max_pixels)
        needed = job_working_bytes(
            views, in_memory, get_preset(job.model).encoder, job.options, self.settings.reduce_on_decode
        )

        def check() -> None:
            if self._stop.is_set():
                raise _Stopped
            self._check_cancel(job)

        return self.budget.reserve(needed, key, check, lambda why: self._stage(job, 0.05, why))

    def _views(self, job: Job) -> List[Any]:
        if job.input_kind == "video":
            return collect_views(job.inputs[0], fps=job.options["fps"], max_frames=job.options.get("max_frames"))
        views = list(job.inputs)
        max_frames = job.options.get("max_frames")
        return views[:max_frames] if max_frames else views

    def _is_upload(self, job: Job) -> bool:
        uploads = (self.settings.uploads_dir / job.id).resolve()
        return all(Path(p).resolve().parent == uploads for p in job.inputs)

    def _run_scene(self, job: Job, model: Any, views: List[Any], export_dir: Path) -> None:
        chosen = {name: job.options[name] for name in scene_option_names() if name in job.options}
        scene = SceneOptions.from_options(chosen, export_dir=export_dir)
        stored = job.options.get(CAMERAS)
        cameras = None
        if stored:  # known cameras (upstream's extrinsics / intrinsics): poses condition the model
            cameras = {
                name: None if stored[name] is None else np.asarray(stored[name], dtype=np.float32)
                for name in ("extrinsics", "intrinsics")
            }
            cameras["align_to_input_ext_scale"] = bool(stored["align_to_input_ext_scale"])
        run_scene(model, views, scene, cameras, reduce_on_decode=self.settings.reduce_on_decode)

    def _public_message(self, job: Job, message: str) -> str:
        """An error for the client: server folders are cut out of it."""
        s = self.settings
        return strip_folders(message, (s.uploads_dir / job.id, s.exports_dir, s.data_dir, *s.allowed_roots))


_JOB_ID = re.compile(r"[0-9a-f]{32}")
_PARTIAL = ".partial"


def merge_into(partial: Path, target: Path, roots: Sequence[Path]) -> None:
    """Moves every file of ``partial`` to the same place under ``target``, replacing files of the same name and
    keeping the rest of ``target``, then removes ``partial``.

    ``target`` is checked against ``roots`` again (it may have become a symlink since the job was submitted), and
    so is every folder a file goes into, so that a symlink planted inside ``target`` cannot lead a file out.
    """
    check_confined_inputs([target], roots)
    target.mkdir(parents=True, exist_ok=True)
    real_target = target.resolve()
    for source in sorted(p for p in partial.rglob("*") if p.is_file() and not p.is_symlink()):
        destination = target / source.relative_to(partial)
        # checked before the folders are made (a planted symlink must not get folders made outside) and after
        for _ in range(2):
            if not is_inside(destination.parent.resolve(), real_target):
                raise ServiceError(403, f"export folder {destination.parent.name!r} leads outside the export folder")
            destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.is_dir() and not destination.is_symlink():
            raise ServiceError(409, f"the export folder holds a folder where the file {source.name!r} goes")
        _move(source, destination)
    _remove(partial)


def _move(source: Path, destination: Path) -> None:
    """``os.replace``, or across file systems a copy beside the destination renamed over it (never half a file)."""
    try:
        os.replace(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
        source.unlink()


def _entries(folder: Path) -> List[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)  # a concurrent sweep of the same job may have removed it
