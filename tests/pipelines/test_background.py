"""Prefetching and background writing keep order, bound their queues and hand errors back to the caller."""

from __future__ import annotations

import threading
import time

import pytest

from anydepth.pipelines.background import BackgroundWriter, prefetch

pytestmark = pytest.mark.torch113


def test_prefetch_keeps_order_and_bounds_lookahead():
    produced = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    seen = []
    for item in prefetch(items(), depth=3):
        time.sleep(0.002)
        # the producer is never more than the queue plus the item in hand ahead of the consumer
        assert len(produced) - len(seen) <= 3 + 2
        seen.append(item)
    assert seen == list(range(20))


def test_prefetch_reraises_at_the_failing_item():
    def items():
        yield 1
        yield 2
        raise ValueError("bad input 3")

    got = []
    with pytest.raises(ValueError, match="bad input 3"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_prefetch_stops_the_producer_when_the_consumer_leaves():
    def items():
        yield from range(10**9)

    before = threading.active_count()
    for item in prefetch(items(), depth=2):
        if item == 5:
            break
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before


def test_writer_runs_jobs_in_order_and_reports_the_first_error():
    done = []
    with BackgroundWriter(depth=2) as writer:
        for i in range(10):
            writer.submit(lambda i=i: done.append(i))
    assert done == list(range(10))

    writer = BackgroundWriter()
    with pytest.raises(OSError, match="disk full"):  # at the next submit or at close, whichever comes first
        writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
        time.sleep(0.05)
        writer.submit(lambda: done.append("after"))  # refused or skipped once a job has failed
        writer.close()
    writer.close()
    assert "after" not in done
