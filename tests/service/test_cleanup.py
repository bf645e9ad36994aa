"""A job's working files (``uploads/<job>``, ``exports/<job>.partial``) go whenever it ends, and at start for those
that ended while the server was down; a queued or running job keeps them (it is re-queued at restart)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient

from anydepth.service.app import create_app
from anydepth.service.settings import ServiceSettings
from anydepth.service.store import CANCELLED, DONE, FAILED, JobStore
from anydepth.service.worker import WorkerPool
from anydepth.web.models import ModelCache, ModelKey, default_loader
from tests.helpers.inputs import scene_views

OPTIONS = '{"process_res": 56, "export_format": "mini_npz"}'


def _settings(tmp_path, weights="unused") -> ServiceSettings:
    models = {"da3-small": str(weights)}
    return ServiceSettings(data_dir=tmp_path / "data", models=models, device="cpu", precision="fp32", poll_seconds=0.05)


def _upload(client):
    def png(view):
        buffer = io.BytesIO()
        Image.fromarray(view).save(buffer, format="PNG")
        return buffer.getvalue()

    files = [("files", (f"v{i}.png", png(v), "image/png")) for i, v in enumerate(scene_views(2))]
    response = client.post("/jobs/upload", files=files, data={"options": OPTIONS})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _wait(client, job_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/jobs/{job_id}").json())["state"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def _working_files(settings, job_id):
    """A job's upload folder with one file, and a partial export folder, as a server leaves them."""
    upload = settings.uploads_dir / job_id
    upload.mkdir(parents=True)
    Image.fromarray(scene_views(1)[0]).save(upload / "0000_v.png")
    partial = settings.exports_dir / f"{job_id}.partial"
    partial.mkdir(parents=True)
    (partial / "half.npz").write_bytes(b"half")
    return [str(upload / "0000_v.png")]


def _jobs_in_every_state(settings, store):
    """Job ids by state (and 'deleted': files, no row), each with its working files."""
    ids = {name: f"{n:032x}" for n, name in enumerate(["running", "queued", DONE, FAILED, CANCELLED, "deleted"])}
    for name, job_id in ids.items():
        inputs = _working_files(settings, job_id)
        if name != "deleted":
            store.create(job_id, "da3-small", {}, inputs, "images", str(settings.exports_dir / job_id))
    assert store.claim_next().id == ids["running"]  # the oldest
    for name in (DONE, FAILED):
        store.finish(ids[name], name)
    store.request_cancel(ids[CANCELLED])
    assert {name: store.get(i).state for name, i in ids.items() if name != "deleted"} == {
        "queued": "queued", "running": "running", DONE: DONE, FAILED: FAILED, CANCELLED: CANCELLED,
    }  # fmt: skip
    return ids


def _left(settings):
    return sorted(p.name for p in [*settings.uploads_dir.iterdir(), *settings.exports_dir.iterdir()])


def test_sweep_removes_the_working_files_of_ended_and_unknown_jobs_only(tmp_path):
    settings = _settings(tmp_path)
    store = JobStore(settings.database)
    ids = _jobs_in_every_state(settings, store)
    (settings.uploads_dir / "stray").mkdir()  # a folder no job owns
    (settings.exports_dir / "stray.partial").write_bytes(b"")
    (settings.exports_dir / ids[DONE]).mkdir()  # a finished job's result stays: only DELETE removes it
    pool = WorkerPool(settings, store, ModelCache())

    assert pool.sweep(ids["queued"]) == 0 and pool.sweep(ids["running"]) == 0
    assert pool.sweep(ids[DONE]) == 2  # one job: its upload folder and partial export
    assert not (settings.uploads_dir / ids[DONE]).exists() and (settings.exports_dir / ids[DONE]).is_dir()
    assert pool.sweep(ids["deleted"]) == 2  # a deleted job (no row any more) has ended too
    assert pool.sweep(ids["deleted"]) == 0
    with pytest.raises(ValueError, match="job id"):
        pool.sweep("../" + "0" * 29)

    assert pool.sweep() == 6  # at start: all that no queued or running job owns
    live = [ids["queued"], ids["running"]]
    assert _left(settings) == sorted([*live, *(f"{i}.partial" for i in live), ids[DONE]])
    store.close()


def test_cancelled_and_deleted_jobs_leave_no_uploads(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    release, loading = threading.Event(), threading.Event()

    def slow_loader(key: ModelKey):
        loading.set()
        release.wait(30)
        return default_loader(key)

    settings = _settings(tmp_path, weights)
    with TestClient(create_app(settings, ModelCache(loader=slow_loader))) as client:
        running = _upload(client)
        assert loading.wait(30)  # the first job is now inside its model-loading stage
        queued, deleted = _upload(client), _upload(client)
        assert client.post(f"/jobs/{queued}/cancel").json()["state"] == "cancelled"
        assert not (settings.uploads_dir / queued).exists()  # cancelled while queued: no worker will ever see it
        assert client.post(f"/jobs/{deleted}/cancel").json()["state"] == "cancelled"
        (settings.uploads_dir / deleted).mkdir(exist_ok=True)  # as an older server left them
        (settings.exports_dir / f"{deleted}.partial").mkdir()
        assert client.delete(f"/jobs/{deleted}").status_code == 204
        assert not (settings.uploads_dir / deleted).exists()
        assert not (settings.exports_dir / f"{deleted}.partial").exists()
        assert (settings.uploads_dir / running).is_dir()  # running: its files stay until it stops
        assert client.post(f"/jobs/{running}/cancel").json()["state"] == "running"
        release.set()
        assert _wait(client, running)["state"] == "cancelled"
        done = _upload(client)
        assert _wait(client, done)["state"] == "done"
        assert client.delete(f"/jobs/{done}").status_code == 204
    assert _left(settings) == []


def test_start_removes_the_files_of_jobs_that_ended_while_the_server_was_down(tmp_path):
    settings = _settings(tmp_path)
    store = JobStore(settings.database)
    ids = _jobs_in_every_state(settings, store)
    flagged = "a" * 32  # running with a cancel asked when the server died: cancelled at start
    store.create(flagged, "da3-small", {}, _working_files(settings, flagged), "images", "unused")
    assert store.claim_next().id == ids["queued"] and store.claim_next().id == flagged  # two running now
    store.request_cancel(flagged)
    assert store.get(flagged).state == "running"
    store.close()
    orphan = "b" * 32  # an upload cut off before its row was written
    (settings.uploads_dir / orphan).mkdir()
    loading, release = threading.Event(), threading.Event()

    def blocked_loader(key: ModelKey):  # the re-queued jobs wait here, their files untouched
        loading.set()
        release.wait(30)
        raise RuntimeError("not loaded in this test")

    with TestClient(create_app(settings, ModelCache(loader=blocked_loader))) as client:
        assert loading.wait(30)
        assert client.get(f"/jobs/{flagged}").json()["state"] == "cancelled"
        live = [ids["queued"], ids["running"]]
        assert _left(settings) == sorted([*live, *(f"{i}.partial" for i in live)])
        release.set()
        for job_id in live:
            assert _wait(client, job_id)["state"] == "failed"
    assert _left(settings) == []
