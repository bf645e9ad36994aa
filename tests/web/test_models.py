"""The warm-model cache the backend and the web app share: least recently used out under a budget, one load for
concurrent callers, keys that include how the model runs."""

from __future__ import annotations

import threading
import time

import torch

from anydepth.jobs.options import ModelSpec, RuntimeOptions
from anydepth.web.models import ModelCache, ModelKey, model_bytes


class _FakeModel:
    def __init__(self, numel: int) -> None:
        self.net = torch.nn.Linear(numel, 1, bias=False)  # numel float32 parameters


def _key(name: str, precision: str = "fp32") -> ModelKey:
    return ModelKey(ModelSpec(name), RuntimeOptions("cpu", precision))


def test_model_cache_keeps_recent_models_under_the_budget():
    loads = []

    def loader(key):
        loads.append(key.model)
        return _FakeModel({"a": 100, "b": 100, "c": 200}[key.model])

    cache = ModelCache(budget_bytes=4 * 300, max_models=3, loader=loader)
    a = cache.get(_key("a"))
    assert model_bytes(a) == 400 and cache.get(_key("a")) is a
    cache.get(_key("b"))
    cache.get(_key("a"))  # a becomes the most recently used
    cache.get(_key("c"))  # 400 + 400 + 800 bytes > 1200: the least recently used (b) goes
    assert [k.model for k in cache.loaded()] == ["a", "c"] and cache.total_bytes() == 1200
    cache.get(_key("b"))
    assert [k.model for k in cache.loaded()] == ["c", "b"]
    assert loads == ["a", "b", "c", "b"]

    alone = ModelCache(budget_bytes=10, loader=loader)  # the newest model stays even over the budget
    alone.get(_key("c"))
    assert [k.model for k in alone.loaded()] == ["c"]
    counted = ModelCache(max_models=1, loader=loader)
    counted.get(_key("a"))
    counted.get(_key("b"))
    assert [k.model for k in counted.loaded()] == ["b"]
    assert _key("a") != _key("a", "bf16")  # precision is part of the key
    assert _key("a") != ModelKey(ModelSpec("a"), RuntimeOptions("cpu", "fp32", threads=2))  # and the threads


def test_model_cache_loads_once_for_concurrent_callers():
    calls = []

    def loader(key):
        calls.append(key)
        time.sleep(0.2)
        return _FakeModel(10)

    cache = ModelCache(loader=loader)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(_key("a")))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 8 and all(m is got[0] for m in got)


def test_model_bytes_count_the_bf16_weight_copies():
    from anydepth.layers.linear import Linear
    from anydepth.layers.precision import PrecisionPolicy

    class _Model:
        def __init__(self, policy: PrecisionPolicy) -> None:
            self.net = policy.apply(torch.nn.Sequential(Linear(8, 4), torch.nn.LayerNorm(4)))

    float32 = (8 * 4 + 4 + 2 * 4) * 4  # the linear weight and bias, the norm's weight and bias
    assert model_bytes(_Model(PrecisionPolicy())) == float32
    bf16 = PrecisionPolicy.for_precision("bf16")
    if _Model(bf16).net[0].bf16_copy_bytes():  # the CPU bf16 fast path exists here (torch >= 2.0, fast paths on)
        assert model_bytes(_Model(bf16)) == float32 + (8 * 4 + 4) * 2
    assert model_bytes(object()) == 0
