"""The memory budget the warm models and the running jobs share: jobs wait for room, idle models make room, a job
that can never fit fails at once."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import torch

from anydepth.jobs.options import ModelSpec, RuntimeOptions
from anydepth.web.budget import (
    MemoryBudget,
    OverBudgetError,
    default_budget_bytes,
    estimated_model_bytes,
    machine_memory_bytes,
)
from anydepth.web.models import ModelCache, ModelKey

MODEL_BYTES = {"da3-small": 1000, "da3-base": 3000}


class _FakeModel:
    def __init__(self, size: int) -> None:
        self.net = torch.nn.Linear(size // 4, 1, bias=False)  # size bytes of float32 weights


def _key(name: str = "da3-small") -> ModelKey:
    return ModelKey(ModelSpec(name), RuntimeOptions("cpu", "fp32"))


def _budget(total, **cache_kw) -> MemoryBudget:
    cache = ModelCache(loader=lambda key: _FakeModel(MODEL_BYTES[key.model]), **cache_kw)
    return MemoryBudget(total, cache)


def test_a_job_that_fits_starts_and_counts_until_released():
    budget = _budget(10_000)
    budget.models.get(_key())
    with budget.reserve(4000, _key()) as reservation:
        assert budget.in_use() == 1000 + 4000 and reservation.model_bytes == 1000
    assert budget.in_use() == 1000
    assert _budget(None).reserve(10**15, _key()).job_bytes == 10**15  # no budget: no limit


def test_a_job_over_the_whole_budget_fails_with_the_figures():
    budget = _budget(8 * 2**30)
    budget.models.get(_key())
    with pytest.raises(
        OverBudgetError, match=r"about 9\.0 GiB .*\(9\.0 GiB to process .* 0 MiB for da3-small.* budget is 8\.0 GiB"
    ):
        budget.reserve(9 * 2**30, _key())


def test_a_model_never_loaded_counts_with_its_estimate():
    budget = _budget(10_000)
    assert budget.model_bytes(_key("da3-base")) == estimated_model_bytes(_key("da3-base"))
    assert estimated_model_bytes(_key("da3-small")) == int(34.3e6 * 4 * 1.5)  # float32 and bf16 copies
    with pytest.raises(OverBudgetError, match="da3-base"):
        budget.reserve(10, _key("da3-base"))  # about 800 MB of weights


def test_a_job_waits_for_a_running_one_and_tells_why():
    budget = _budget(10_000)
    budget.models.get(_key())
    first = budget.reserve(6000, _key())
    said, started = [], threading.Event()

    def second():
        with budget.reserve(6000, _key(), on_wait=said.append, poll_seconds=0.05):
            started.set()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert not started.is_set() and said and said[0].startswith("waiting for memory")
    first.release()
    assert started.wait(5)
    thread.join(5)
    assert budget.in_use() == 1000


def test_a_cancel_stops_the_wait():
    budget = _budget(10_000)
    budget.models.get(_key())
    budget.reserve(6000, _key())

    class Cancelled(Exception):
        pass

    def check():
        raise Cancelled

    with pytest.raises(Cancelled):
        budget.reserve(6000, _key(), check=check, poll_seconds=0.01)
    assert budget.in_use() == 7000  # the cancelled job holds nothing


def test_idle_models_make_room_when_no_job_runs():
    budget = _budget(5000, max_models=3)
    budget.models.get(_key("da3-base"))
    budget.models.get(_key())
    assert budget.in_use() == 4000
    with budget.reserve(3500, _key()):  # 4000 + 3500 > 5000: da3-base (idle, least recent) goes
        assert [k.model for k in budget.models.loaded()] == ["da3-small"]
        assert budget.in_use() == 4500


def test_a_running_job_on_an_evicted_model_still_counts_it():
    budget = _budget(20_000, max_models=1)
    budget.models.get(_key())
    with budget.reserve(2000, _key()):
        budget.models.get(_key("da3-base"))  # max_models=1: da3-small leaves the cache, not the running job
        assert budget.in_use() == 3000 + 2000 + 1000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/meminfo")
def test_the_default_budget_is_three_quarters_of_the_machine():
    total = machine_memory_bytes()
    assert total is not None and total > 2**28
    assert abs(default_budget_bytes() - 0.75 * total) <= 1
