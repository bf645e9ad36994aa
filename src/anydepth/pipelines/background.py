"""Overlap I/O with inference: read the next inputs and write finished outputs in threads, through bounded queues."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead of the consumer.

    Decoding images and video frames releases the GIL in OpenCV, Pillow and PyAV, so the next inputs are ready
    while the model runs. An exception raised by ``items`` is re-raised in the consumer at the point where it
    happened; closing the generator early stops the producer.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put(_Failure(exc))

    thread = threading.Thread(target=produce, name="anydepth-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class BackgroundWriter:
    """Runs write jobs in one background thread, in submission order, with at most ``depth`` waiting.

    :meth:`close` (or leaving the ``with`` block) waits for every job; the first exception a job raised is
    re-raised there, or at the next :meth:`submit`.
    """

    def __init__(self, depth: int = 4) -> None:
        self._jobs: queue.Queue[Optional[Callable[[], Any]]] = queue.Queue(maxsize=max(1, depth))
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._work, name="anydepth-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # kept for the caller
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, job: Callable[[], Any]) -> None:
        self._raise()
        self._jobs.put(job)

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._raise()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # finish what was queued (each write is atomic), but keep the original error
            if self._thread.is_alive():
                self._jobs.put(None)
                self._thread.join()
