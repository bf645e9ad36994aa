"""The backend's job store without a server: lifecycle, restart, exclusive claims."""

from __future__ import annotations

import threading

from anydepth.service.store import CANCELLED, DONE, QUEUED, RUNNING, JobStore


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
    assert reopened.unfinished_ids() == {f"{1:032x}"}
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
