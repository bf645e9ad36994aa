"""What a backend server is configured with: served models, folders, limits and the optional token."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from anydepth.jobs.options import ModelSpec, RuntimeOptions
from anydepth.web.budget import default_budget_bytes
from anydepth.web.models import ModelKey


@dataclass
class ServiceSettings:
    """Configuration of one backend server (``anydepth backend`` builds it from its options).

    Args:
        data_dir: holds the job database (``jobs.sqlite``), uploads (``uploads/<job>``) and results
            (``exports/<job>``).
        models: served presets, name -> weights (local file or folder, hub id, or None for the preset's own);
            the first is the default of jobs that name none.
        device: "auto", "cpu", "cuda", ...
        precision: "fp32", "bf16", "fp16" or "auto".
        threads: CPU threads of the models (None: one per core).
        compile: run the networks through ``torch.compile``.
        allowed_roots: folders whose files jobs may name as server-side paths; none: uploads only.
        token: when set, every job and model endpoint needs ``Authorization: Bearer <token>`` (or ``X-Token``).
        workers: jobs run at the same time.
        max_request_bytes: largest request body (all uploaded files of one job together).
        max_files: most files in one job.
        max_queued: most jobs waiting at once; more are refused with 429 until the queue drains.
        max_pixels: largest uploaded image or video frame (width x height).
        max_views: most views of one job; a video job samples at most this many frames.
        max_job_pixels: most pixels of one job's views together (a video's: the frames it samples), read from the
            headers at submission; more is refused with 413.
        memory_budget_bytes: memory that the warm models (bf16 weight copies included) and the running jobs'
            working memory share (:mod:`anydepth.web.budget`). A job waits until it fits, and fails at once if it
            never can. Default: 75% of the machine's memory (or of the container's limit); None: no budget.
        reduce_on_decode: decode JPEG views at a reduced scale just above the processing size (much less memory
            and time on large photos; pixels differ by about a grey level from upstream's full decode).
        model_budget_bytes: most bytes of weights kept warm (None: no limit).
        max_models: most models kept warm.
        preload: load the default model when the server starts, not on the first job.
        poll_seconds: how often an idle worker looks for queued jobs submitted by another process.
        gallery_dir: a folder of exported scenes served as the gallery under ``/gallery`` (None: no gallery), as
            upstream's ``da3 backend --gallery-dir`` does.
    """

    data_dir: Path
    models: Dict[str, Optional[str]]
    device: str = "auto"
    precision: str = "auto"
    threads: Optional[int] = None
    compile: bool = False
    allowed_roots: List[Path] = field(default_factory=list)
    token: Optional[str] = None
    workers: int = 1
    max_request_bytes: int = 512 * 2**20
    max_files: int = 64
    max_queued: int = 1000
    max_pixels: int = 64 * 2**20
    max_views: int = 512
    max_job_pixels: Optional[int] = 256 * 2**20
    memory_budget_bytes: Optional[int] = field(default_factory=default_budget_bytes)
    reduce_on_decode: bool = True
    model_budget_bytes: Optional[int] = None
    max_models: int = 2
    preload: bool = False
    poll_seconds: float = 1.0
    gallery_dir: Optional[Path] = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.gallery_dir is not None:
            self.gallery_dir = Path(self.gallery_dir).expanduser().resolve()
        self.allowed_roots = [Path(r).expanduser().resolve() for r in self.allowed_roots]
        if not self.models:
            raise ValueError("a backend serves at least one model")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    @property
    def runtime(self) -> RuntimeOptions:
        """How every served model runs."""
        return RuntimeOptions(device=self.device, precision=self.precision, threads=self.threads, compile=self.compile)

    def model_key(self, name: str) -> ModelKey:
        """The warm-cache key of a served model."""
        return ModelKey(ModelSpec(name, self.models[name]), self.runtime)

    @property
    def default_model(self) -> str:
        return next(iter(self.models))

    @property
    def database(self) -> Path:
        return self.data_dir / "jobs.sqlite"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"
