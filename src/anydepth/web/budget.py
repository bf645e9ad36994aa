"""One memory budget for a server: the warm models and the working memory of the running jobs share it.

A job asks for its bytes (:func:`anydepth.jobs.memory.scene_working_bytes`) and for its model's before it starts.
It starts when the warm models, the jobs already running and itself fit; otherwise it waits for a running job to
end. With no job running, idle warm models are evicted to make room; a job that does not fit even then (its
working memory and its model over the whole budget) fails at once with a message that says by how much.

The model's bytes are the warm-model cache's (:func:`anydepth.web.models.model_bytes`: parameters, buffers and
the bf16 weight copies), or, before it was ever loaded, :func:`estimated_model_bytes` from the preset.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Dict, List, Optional

from anydepth.errors import AnyDepthError
from anydepth.web.models import ModelCache, ModelKey

logger = logging.getLogger(__name__)

DEFAULT_BUDGET_FRACTION = 0.75
"""Share of the machine's memory a server budgets by default: the rest is for the interpreter, the libraries,
the allocator's free lists and the rest of the machine."""


class OverBudgetError(AnyDepthError):
    """A job that cannot fit in the server's memory budget, even alone."""


def machine_memory_bytes() -> Optional[int]:
    """Memory this process may use: ``MemTotal`` from ``/proc/meminfo``, or the cgroup's limit when it is lower
    (a container); None where neither can be read (not Linux)."""
    total: Optional[int] = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value.isdigit() and (total is None or int(value) < total):
            total = int(value)  # cgroup v1 says "no limit" with a huge number, v2 with "max": both skipped
        break
    return total


def default_budget_bytes(fraction: float = DEFAULT_BUDGET_FRACTION) -> Optional[int]:
    """``fraction`` of :func:`machine_memory_bytes` (None where that is unknown: no budget)."""
    total = machine_memory_bytes()
    return None if total is None else int(total * fraction)


def estimated_model_bytes(key: ModelKey) -> int:
    """Bytes of a model never loaded yet: its preset's parameter count in float32, and half as much again for the
    bf16 weight copies a CPU bf16 policy may make (an upper bound; the cache measures the model once loaded)."""
    from anydepth.presets import get_preset

    return int(get_preset(key.spec.name).params * 1e6 * 4 * 1.5)


class Reservation:
    """Bytes a running job holds in a :class:`MemoryBudget`; a context manager that gives them back."""

    def __init__(self, budget: MemoryBudget, job_bytes: int, key: ModelKey, model_bytes: int) -> None:
        self.budget = budget
        self.job_bytes = job_bytes
        self.key = key
        self.model_bytes = model_bytes

    def release(self) -> None:
        self.budget._release(self)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


class MemoryBudget:
    """``total_bytes`` shared by the models warm in ``models`` and the jobs that :meth:`reserve` their bytes.

    Args:
        total_bytes: the budget; None: no limit (every job starts at once).
        models: the server's warm-model cache (its models' bytes count against the budget).
    """

    def __init__(self, total_bytes: Optional[int], models: ModelCache) -> None:
        self.total_bytes = total_bytes
        self.models = models
        self._running: List[Reservation] = []
        self._changed = threading.Condition()

    def model_bytes(self, key: ModelKey) -> int:
        measured = self.models.measured_bytes(key)
        return estimated_model_bytes(key) if measured is None else measured

    def in_use(self) -> int:
        """Bytes counted now: the warm models, the running jobs, and the models of running jobs that are not warm
        (still loading, or evicted while the job runs on them)."""
        with self._changed:
            return self._in_use()

    def _in_use(self) -> int:
        warm = set(self.models.loaded())
        unwarm_models: Dict[ModelKey, int] = {
            r.key: r.model_bytes for r in self._running if r.key not in warm
        }  # one copy of a model however many jobs wait for it
        return self.models.total_bytes() + sum(r.job_bytes for r in self._running) + sum(unwarm_models.values())

    def reserve(
        self,
        job_bytes: int,
        key: ModelKey,
        check: Callable[[], None] = lambda: None,
        on_wait: Optional[Callable[[str], None]] = None,
        poll_seconds: float = 1.0,
    ) -> Reservation:
        """Waits until a job of ``job_bytes`` on ``key``'s model fits, then counts it until it is released.

        Args:
            job_bytes: the job's working memory, besides the model.
            key: the model it runs.
            check: called while waiting, at least every ``poll_seconds``; raises to stop waiting (a cancel).
            on_wait: told once, in words, why the job waits.

        Raises:
            OverBudgetError: the job and its model are over the whole budget.
        """
        model_bytes = self.model_bytes(key)
        if self.total_bytes is not None and job_bytes + model_bytes > self.total_bytes:
            raise OverBudgetError(
                f"this job needs about {_gib(job_bytes + model_bytes)} of memory ({_gib(job_bytes)} to process "
                f"its views, {_gib(model_bytes)} for {key.model}) and the server's memory budget is "
                f"{_gib(self.total_bytes)}; send fewer or smaller views, or a lower process_res"
            )
        told = False
        with self._changed:
            while True:
                reservation = self._try(job_bytes, key, model_bytes)
                if reservation is not None:
                    return reservation
                if on_wait is not None and not told:
                    free = max(0, (self.total_bytes or 0) - self._in_use())
                    on_wait(f"waiting for memory ({_gib(job_bytes + model_bytes)} needed, {_gib(free)} free)")
                    told = True
                self._changed.wait(poll_seconds)
                check()

    def _try(self, job_bytes: int, key: ModelKey, model_bytes: int) -> Optional[Reservation]:
        if self.total_bytes is not None and self._in_use() + self._need(job_bytes, key, model_bytes) > self.total_bytes:
            if self._running:
                return None  # a running job will give memory back
            # nothing runs: the warm models are all idle, and the least recently used make room
            self.models.evict_until(self.total_bytes - self._need(job_bytes, key, model_bytes), keep=key)
            if self._in_use() + self._need(job_bytes, key, model_bytes) > self.total_bytes:
                # only its own model is left, larger than the check before waiting took it for: nothing to wait for
                logger.warning("a job on %s starts over the memory budget, alone", key.model)
        reservation = Reservation(self, job_bytes, key, model_bytes)
        self._running.append(reservation)
        return reservation

    def _need(self, job_bytes: int, key: ModelKey, model_bytes: int) -> int:
        return job_bytes + (0 if self.models.is_warm(key) else model_bytes)

    def _release(self, reservation: Reservation) -> None:
        with self._changed:
            if reservation in self._running:
                self._running.remove(reservation)
            self._changed.notify_all()
