"""What the backend's route modules share: the store, the workers, the model cache and the submission checks of one
running application, and how a route picks the key of its error bodies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from fastapi.routing import APIRoute

from anydepth.service.settings import ServiceSettings
from anydepth.service.store import Job, JobStore
from anydepth.service.worker import WorkerPool
from anydepth.web.models import ModelCache

ERROR_KEY = "anydepth.error_key"
"""Scope entry naming the key of a route's error bodies: "error" (anydepth's API) unless a route says otherwise."""


def error_body(scope: Dict[str, Any], message: str) -> Dict[str, str]:
    """An error body in the form the request's route answers with: ``{"error": ...}`` or ``{"detail": ...}``."""
    return {scope.get(ERROR_KEY, "error"): message}


class DetailErrorRoute(APIRoute):
    """A route whose errors are ``{"detail": "..."}``, FastAPI's own form, which upstream DA3's ``da3 backend``
    answers with, so that its clients read our refusals where they read its own."""

    def get_route_handler(self) -> Callable[..., Any]:
        handler = super().get_route_handler()

        async def marked(request: Any) -> Any:
            request.scope[ERROR_KEY] = "detail"  # read by the application's exception handlers
            return await handler(request)

        return marked


@dataclass
class Backend:
    """One running backend, as the route modules see it.

    Attributes:
        settings: the server's configuration.
        cache: the warm-model cache.
        store, pool: the job table and the workers (callables: both exist once the server has started).
        guard: the dependencies of a route that needs the token.
        submit_paths: checks server-side inputs (confined, present, images within the limits) and queues a job on
            them: ``(inputs, checked options, export folder or None for the server's own) -> Job``.
        check_options: validates the fields of a :class:`~anydepth.service.app.JobOptions` into the options a job
            stores (the model named).
        delete: forgets a finished job; its exports go with it when they are in the server's own folder.
        public: an error message with the server's folders cut out.
    """

    settings: ServiceSettings
    cache: ModelCache
    store: Callable[[], JobStore]
    pool: Callable[[], WorkerPool]
    guard: List[Any]
    submit_paths: Callable[[List[str], Dict[str, Any], Optional[Path]], Job]
    check_options: Callable[[Any], Dict[str, Any]]
    delete: Callable[[Job], None]
    public: Callable[[str], str]

    def device_name(self) -> str:
        """The device the served models run on ("cpu", "cuda", ...), "auto" resolved as the loader resolves it."""
        from anydepth.pipelines.runtime import resolve_device

        try:
            return str(resolve_device(self.settings.device))
        except Exception:  # a device this machine lacks: jobs will say so; the status pages still answer
            return self.settings.device
