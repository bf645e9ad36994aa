"""Warm models for the web interfaces (backend, web app): loaded once, kept in a least-recently-used cache under a
memory budget."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from anydepth.jobs.loader import load
from anydepth.jobs.options import ModelSpec, RuntimeOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelKey:
    """What makes two loaded models interchangeable: the model and how it runs."""

    spec: ModelSpec
    runtime: RuntimeOptions

    @property
    def model(self) -> str:
        return self.spec.name


def model_bytes(model: Any) -> int:
    """Bytes held by a loaded model: its parameters and buffers, and the bf16 weight copies that its linear layers
    keep under a CPU bf16 policy (counted from loading on, before the first call makes them; see
    :meth:`anydepth.layers.linear.Linear.bf16_copy_bytes`). 0 when it has no ``net``."""
    from anydepth.layers.linear import Linear

    net = getattr(model, "net", None)
    if net is None or not hasattr(net, "parameters"):
        return 0
    tensors = list(net.parameters()) + list(net.buffers())
    copies = sum(m.bf16_copy_bytes() for m in net.modules() if isinstance(m, Linear))
    return sum(t.numel() * t.element_size() for t in tensors) + copies


@dataclass
class LoadTiming:
    """Times of a warm model, as ``time.time()`` seconds: what upstream's ``/status`` reports of its one model."""

    load_seconds: float
    loaded_at: float
    last_used: float


def default_loader(key: ModelKey) -> Any:
    return load(key.spec, key.runtime)


class ModelCache:
    """Loads models on first use and keeps the most recently used ones while they fit in ``budget_bytes``.

    The newest model always stays, even alone over the budget. An evicted model is only dropped from the cache:
    a job still running on it keeps its reference until it ends.

    Args:
        budget_bytes: most bytes of weights kept warm (None: no limit).
        max_models: most models kept warm.
        loader: builds a model from its key (tests pass a fake).
    """

    def __init__(
        self,
        budget_bytes: Optional[int] = None,
        max_models: int = 4,
        loader: Callable[[ModelKey], Any] = default_loader,
    ) -> None:
        self.budget_bytes = budget_bytes
        self.max_models = max(1, max_models)
        self._loader = loader
        self._models: OrderedDict[ModelKey, Tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: Dict[ModelKey, threading.Lock] = {}
        self._sizes: Dict[ModelKey, int] = {}  # measured at load, kept after eviction
        self._timings: Dict[ModelKey, LoadTiming] = {}
        self.loads = 0

    def get(self, key: ModelKey) -> Any:
        """The warm model for ``key``, loading it (once, even with concurrent callers) if needed."""
        with self._lock:
            if key in self._models:
                return self._use(key)
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._use(key)
            started = time.time()
            model = self._loader(key)
            size = model_bytes(model)
            with self._lock:
                self.loads += 1
                self._sizes[key] = size
                done = time.time()
                self._timings[key] = LoadTiming(load_seconds=done - started, loaded_at=done, last_used=done)
                self._models[key] = (model, size)
                self._evict()
                self._loading.pop(key, None)
            logger.info("model %s warm (%.1f MiB)", key.model, size / 2**20)
            return model

    def _use(self, key: ModelKey) -> Any:
        """A warm model, marked most recently used (under the lock)."""
        self._models.move_to_end(key)
        timing = self._timings.get(key)
        if timing is not None:
            timing.last_used = time.time()
        return self._models[key][0]

    def timing(self, key: ModelKey) -> Optional[LoadTiming]:
        """When ``key``'s model was last loaded, how long that took and when a job last took it; None when it is
        not warm (the status pages report a cold model as not loaded)."""
        with self._lock:
            return self._timings.get(key) if key in self._models else None

    def drop(self, key: ModelKey) -> bool:
        """Forgets ``key``'s warm model, so that the next :meth:`get` loads it again (a reload of changed weights);
        a job running on it keeps its reference. False when it was not warm."""
        with self._lock:
            self._timings.pop(key, None)
            return self._models.pop(key, None) is not None

    def _evict(self) -> None:
        def over() -> bool:
            too_many = len(self._models) > self.max_models
            too_big = self.budget_bytes is not None and sum(s for _, s in self._models.values()) > self.budget_bytes
            return len(self._models) > 1 and (too_many or too_big)

        while over():
            key, _ = self._models.popitem(last=False)
            logger.info("model %s evicted from the warm cache", key.model)

    def loaded(self) -> List[ModelKey]:
        """Keys of the warm models, least recently used first."""
        with self._lock:
            return list(self._models)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(s for _, s in self._models.values())

    def is_warm(self, key: ModelKey) -> bool:
        with self._lock:
            return key in self._models

    def measured_bytes(self, key: ModelKey) -> Optional[int]:
        """:func:`model_bytes` of ``key``'s model when this cache has loaded it (warm or evicted since), else None."""
        with self._lock:
            return self._sizes.get(key)

    def evict_until(self, budget_bytes: int, keep: Optional[ModelKey] = None) -> int:
        """Drops least recently used models, never ``keep``, until the warm ones hold at most ``budget_bytes``
        (or only ``keep`` is left); returns the bytes they hold then. A job still running on a dropped model keeps
        it until it ends: callers make room this way when no job runs."""
        with self._lock:
            for other in [k for k in self._models if k != keep]:
                if sum(s for _, s in self._models.values()) <= budget_bytes:
                    break
                del self._models[other]
                logger.info("model %s evicted from the warm cache to make room for a job", other.model)
            return sum(s for _, s in self._models.values())
