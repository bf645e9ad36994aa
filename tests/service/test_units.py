"""The backend's building blocks without a server: warm-model LRU, path confinement, names, tokens, job store."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from anydepth.jobs.options import ModelSpec, RuntimeOptions
from anydepth.service.store import CANCELLED, DONE, QUEUED, RUNNING, JobStore
from anydepth.web.models import ModelCache, ModelKey, model_bytes
from anydepth.web.security import (
    ServiceError,
    confine,
    confine_any,
    sanitize_filename,
    token_matches,
    upload_kind,
)


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


def test_confine(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "out_link").symlink_to(tmp_path / "outside.txt")
    (root / "in_link").symlink_to(root / "sub" / "f.txt")
    assert confine(root, "sub/f.txt") == (root / "sub" / "f.txt").resolve()
    assert confine(root, "sub/../sub/f.txt") == (root / "sub" / "f.txt").resolve()
    assert confine(root, "in_link") == (root / "sub" / "f.txt").resolve()  # a symlink that stays inside is fine
    for bad in ["../outside.txt", "sub/../../outside.txt", str(tmp_path / "outside.txt"), "/etc/passwd", "out_link",
                "%2e%2e/outside.txt", "..\\outside.txt", "sub/f.txt\x00", ""]:  # fmt: skip
        with pytest.raises(ServiceError) as info:
            confine(root, bad)
        assert info.value.status == 403, bad
    assert confine_any([root], str(root / "sub")) == (root / "sub").resolve()
    assert confine_any([root, tmp_path], str(tmp_path / "outside.txt")) == (tmp_path / "outside.txt").resolve()
    with pytest.raises(ServiceError, match="--allowed-root"):
        confine_any([], "sub")
    with pytest.raises(ServiceError, match="outside"):
        confine_any([root], "../outside.txt")


def test_sanitize_filename():
    assert sanitize_filename("photo.jpg") == "photo.jpg"
    assert sanitize_filename("../../etc/pass wd.PNG") == "pass_wd.PNG"
    assert sanitize_filename("C:\\Users\\me\\img.png") == "img.png"
    assert sanitize_filename(".hidden.png") == "hidden.png"
    assert sanitize_filename("a..b...png") == "a.b.png"
    assert sanitize_filename("ｆｕｌｌｗｉｄｔｈ.png") == "fullwidth.png"  # NFKC folds look-alike characters
    assert sanitize_filename("caf\u00e9 \u2603.png") == "caf_.png"
    assert sanitize_filename("..") == "file" and sanitize_filename(None) == "file" and sanitize_filename("/") == "file"
    long = sanitize_filename("x" * 300 + ".png")
    assert len(long) == 100 and long.endswith(".png")


def test_token_and_upload_kind():
    assert token_matches(None, None, None)
    assert token_matches("t0k", "Bearer t0k", None) and token_matches("t0k", "bearer t0k", None)
    assert token_matches("t0k", None, "t0k")
    assert not token_matches("t0k", None, None) and not token_matches("t0k", "Bearer t0", None)
    assert not token_matches("t0k", "Basic t0k", None)
    assert upload_kind("a.PNG", "image/png") == "image" and upload_kind("a.mp4", None) == "video"
    assert upload_kind("a.jpg", "application/octet-stream; charset=x") == "image"
    for name, content_type in [("a.exe", None), ("a", "image/png"), ("a.png", "text/html"), ("a.mp4", "image/png")]:
        with pytest.raises(ServiceError) as info:
            upload_kind(name, content_type)
        assert info.value.status == 415


def test_store_lifecycle_and_restart(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for i in range(3):
        store.create(f"{i:032x}", "da3-small", {"process_res": 56}, [f"/in/{i}.png"], "images", f"/out/{i}")
    first = store.claim_next()
    assert first.id == f"{0:032x}" and first.state == RUNNING and first.attempts == 1
    store.set_progress(first.id, 0.4, "inference and export")
    assert store.request_cancel(f"{2:032x}").state == CANCELLED  # queued: at once
    store.close()

    reopened = JobStore(path)  # the server died with job 0 running
    assert reopened.requeue_interrupted() == 1
    job = reopened.get(first.id)
    assert job.state == QUEUED and job.progress == 0 and job.options == {"process_res": 56}
    assert reopened.claim_next().attempts == 2
    reopened.finish(first.id, DONE)
    assert reopened.get(first.id).progress == 1.0
    assert reopened.counts() == {"queued": 1, "running": 0, "done": 1, "failed": 0, "cancelled": 1}
    assert [j.id for j in reopened.list(limit=2)] == [f"{2:032x}", f"{1:032x}"]
    assert reopened.get("f" * 32) is None


def test_claims_are_exclusive_across_threads(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    for i in range(40):
        store.create(f"{i:032x}", "m", {}, [], "images", "/out")
    claimed = []

    def worker():
        while (job := store.claim_next()) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [f"{i:032x}" for i in range(40)]
