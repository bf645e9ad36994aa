"""What a backend job weighs: its pixels refused over --max-job-megapixels at submission, its memory reserved in
the budget it shares with the warm models before it starts, and its JPEG views decoded reduced."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient

from anydepth.io.images import ImageHeader
from anydepth.jobs import SceneOptions, run_scene
from anydepth.jobs.memory import JOB_BYTES
from anydepth.service import worker as worker_module
from anydepth.service.app import create_app
from anydepth.service.sizing import check_job_pixels, job_views, job_working_bytes
from anydepth.web.budget import MemoryBudget
from anydepth.web.security import ServiceError
from tests.helpers.backend import da3_settings
from tests.helpers.inputs import scene_views, write_video

OPTIONS = '{"process_res": 56, "export_format": "mini_npz"}'


def _encoded(view: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(view).save(buffer, format=fmt)
    return buffer.getvalue()


def _upload(client, views, fmt="PNG"):
    suffix = fmt.lower().replace("jpeg", "jpg")
    files = [("files", (f"v{i}.{suffix}", _encoded(v, fmt), f"image/{fmt.lower()}")) for i, v in enumerate(views)]
    return client.post("/jobs/upload", files=files, data={"options": OPTIONS})


def _wait(client, job_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_job_pixels_are_counted_from_the_headers(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(60, 80), (30, 40)]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(paths[-1])
    (tmp_path / "odd.heic").write_bytes(b"not readable by PIL")
    views, in_memory = job_views([str(p) for p in paths] + [str(tmp_path / "odd.heic")], "images", {}, 100 * 100)
    assert views[:2] == [ImageHeader(60, 80, "PNG"), ImageHeader(30, 40, "PNG")] and not in_memory
    assert views[2] == ImageHeader(100, 100)  # unknown: as large as the server accepts
    assert len(job_views([str(p) for p in paths], "images", {"max_frames": 1}, 1)[0]) == 1
    check_job_pixels(views[:2], 6000)
    with pytest.raises(ServiceError, match=r"2 view\(s\) of 0\.0 megapixels .* at most 0\.0 megapixels") as caught:
        check_job_pixels(views[:2], 5999)
    assert caught.value.status == 413
    clip = write_video(tmp_path / "clip.mp4", frames=12, h=48, w=64, fps=10)
    frames, in_memory = job_views([str(clip)], "video", {"fps": 5.0, "max_frames": 4}, 10**6)
    assert frames == [ImageHeader(48, 64)] * 4 and in_memory
    stack = job_working_bytes(frames, False, "vits", {"process_res": 56}, False)
    assert job_working_bytes(frames, True, "vits", {"process_res": 56}, False) == stack + 4 * 48 * 64 * 3
    assert stack > JOB_BYTES


def test_a_job_over_the_pixel_limit_is_refused_at_submission(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    root = tmp_path / "root"
    root.mkdir()
    for i, view in enumerate(scene_views()):  # three views of 60x80
        Image.fromarray(view).save(root / f"v{i}.png")
    settings = da3_settings(tmp_path, weights, max_job_pixels=2 * 60 * 80, allowed_roots=[root])
    with TestClient(create_app(settings, warm_cache)) as client:
        response = _upload(client, scene_views())
        assert response.status_code == 413, response.text
        assert set(response.json()) == {"error"} and "3 view(s)" in response.json()["error"]
        assert "\n" not in response.json()["error"]
        response = client.post("/jobs", json={"inputs": ["."], "process_res": 56, "export_format": "mini_npz"})
        assert response.status_code == 413 and "megapixels per job" in response.json()["error"]
        accepted = _upload(client, scene_views(2))  # two fit
        assert accepted.status_code == 201 and _wait(client, accepted.json()["id"])["state"] == "done"
    assert not list(settings.uploads_dir.iterdir())  # the refused uploads were not kept


def test_a_job_that_can_never_fit_fails_with_the_figures(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    settings = da3_settings(tmp_path, weights, memory_budget_bytes=200 * 2**20)
    with TestClient(create_app(settings, warm_cache)) as client:
        job = _wait(client, _upload(client, scene_views()).json()["id"])
    assert job["state"] == "failed" and "memory budget is 200 MiB" in job["error"]
    assert "fewer or smaller views" in job["error"]


def test_jobs_wait_for_memory_and_all_finish(tmp_path, da3_small_folder, warm_cache, monkeypatch):
    """Two workers, room for one job at a time: the second waits, then runs; never both at once."""
    weights, _ = da3_small_folder
    seen = {"running": 0, "most": 0}
    lock = threading.Lock()

    class Watched(MemoryBudget):
        def reserve(self, *args, **kwargs):
            reservation = super().reserve(*args, **kwargs)
            with lock:
                seen["running"] += 1
                seen["most"] = max(seen["most"], seen["running"])
            release = reservation.release

            def counted_release():
                with lock:
                    seen["running"] -= 1
                release()

            reservation.release = counted_release
            return reservation

    settings = da3_settings(tmp_path, weights, workers=2)
    model_bytes = MemoryBudget(None, warm_cache).model_bytes(settings.model_key("da3-small"))
    one_job = job_working_bytes([ImageHeader(60, 80, "PNG")] * 3, False, "vits", {"process_res": 56}, True)
    settings.memory_budget_bytes = model_bytes + one_job + one_job // 2
    monkeypatch.setattr(worker_module, "MemoryBudget", Watched)
    with TestClient(create_app(settings, warm_cache)) as client:
        ids = [_upload(client, scene_views()).json()["id"] for _ in range(3)]
        jobs = [_wait(client, job_id) for job_id in ids]
    assert [j["state"] for j in jobs] == ["done"] * 3, jobs
    assert seen == {"running": 0, "most": 1}


def test_the_server_decodes_jpeg_views_reduced(tmp_path, da3_small_folder, warm_cache):
    from anydepth.api import load_model

    weights, _ = da3_small_folder
    yy, xx = np.mgrid[0:240, 0:320]
    views = [np.stack([xx * 255 // 320, yy * 255 // 240, (xx + 9 * i) % 256], -1).astype(np.uint8) for i in range(3)]
    results = {}
    for reduce in (True, False):
        settings = da3_settings(tmp_path / str(reduce), weights, reduce_on_decode=reduce)
        with TestClient(create_app(settings, warm_cache)) as client:
            job = _wait(client, _upload(client, views, "JPEG").json()["id"])
            fetched = client.get(f"/jobs/{job['id']}/files/exports/mini_npz/results.npz")
        with np.load(io.BytesIO(fetched.content)) as npz:
            results[reduce] = npz["depth"]
    paths = []
    for i, view in enumerate(views):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(_encoded(view, "JPEG"))
    model = load_model("da3-small", weights=weights, device="cpu", precision="fp32")
    for reduce in (True, False):
        scene = SceneOptions(export_dir=tmp_path / f"cli{reduce}", export_format="mini_npz", process_res=56)
        local = run_scene(model, [str(p) for p in paths], scene, reduce_on_decode=reduce)
        np.testing.assert_allclose(results[reduce], local.depth, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(results[True], results[False])  # the default (reduced) is not the full decode


def test_backend_command_takes_the_memory_options(tmp_path, da3_small_folder, monkeypatch):
    import uvicorn

    import anydepth.service.app as app_module
    from anydepth.web.budget import default_budget_bytes
    from tests.helpers.cli import run_cli

    weights, _ = da3_small_folder
    made = []
    real_create_app = app_module.create_app
    monkeypatch.setattr(
        app_module, "create_app", lambda settings, cache: made.append(settings) or real_create_app(settings, cache)
    )
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    base = ("backend", "--weights", weights, "--device", "cpu", "--precision", "fp32", "--no-preload")
    code, output = run_cli(*base, "--data-dir", tmp_path / "a", "--max-job-megapixels", "16", "--memory-budget-gb", "3")
    assert code == 0, output
    assert made[-1].max_job_pixels == 16 * 2**20 and made[-1].memory_budget_bytes == 3 * 2**30
    assert made[-1].reduce_on_decode
    code, output = run_cli(*base, "--data-dir", tmp_path / "b", "--full-decode")
    assert code == 0, output
    assert made[-1].max_job_pixels == 256 * 2**20 and not made[-1].reduce_on_decode
    assert made[-1].memory_budget_bytes == default_budget_bytes()
