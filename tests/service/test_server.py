"""`anydepth backend` as a real uvicorn server on loopback: concurrent clients, and a kill mid-run loses no job."""

from __future__ import annotations

import http.client
import io
import json
import sqlite3
import threading
import time

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from tests.helpers.backend import BackendProcess, free_port, submit_views, wait_all  # noqa: E402
from tests.helpers.inputs import scene_views  # noqa: E402


def _raw_get(port: int, target: str):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _depth(client, job_id) -> np.ndarray:
    response = client.get(f"/jobs/{job_id}/files/exports/mini_npz/results.npz")
    assert response.status_code == 200
    with np.load(io.BytesIO(response.content)) as npz:
        return npz["depth"]


def test_fifty_jobs_from_ten_concurrent_clients(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    (tmp_path / "data").mkdir()
    server = BackendProcess(weights, tmp_path / "data")
    views = scene_views(2)
    results, errors = {}, []

    def client_run(n: int) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                ids = [
                    submit_views(client, views, '{"process_res": 56, "export_format": "mini_npz"}') for _ in range(5)
                ]
                for job_id, job in wait_all(client, ids).items():
                    results[job_id] = (job["state"], _depth(client, job_id) if job["state"] == "done" else None)
        except Exception as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(repr(exc))

    try:
        clients = [threading.Thread(target=client_run, args=(n,)) for n in range(10)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        assert not errors, errors
        assert len(results) == 50 and {state for state, _ in results.values()} == {"done"}
        depths = [depth for _, depth in results.values()]
        assert depths[0].shape == (2, 42, 56) and np.isfinite(depths[0]).all()
        for depth in depths[1:]:  # the same views give the same depth whichever worker thread ran them
            np.testing.assert_array_equal(depth, depths[0])
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/health").json()["jobs"]["done"] == 50
            assert len(client.get("/jobs", params={"limit": 1000}).json()["jobs"]) == 50
        job_id = next(iter(results))
        for raw in ["../../jobs.sqlite", "..%2f..%2fjobs.sqlite", "%2e%2e/%2e%2e/jobs.sqlite", "/../../../etc/passwd"]:
            status, body = _raw_get(server.port, f"/jobs/{job_id}/files/{raw}")  # sent as is, never normalised
            assert 400 <= status < 500 and b"SQLite" not in body and b"root:" not in body, (raw, status)
            assert "error" in json.loads(body)
    finally:
        server.stop()


def test_a_server_killed_mid_run_loses_no_job(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    data = tmp_path / "data"
    data.mkdir()
    server = BackendProcess(weights, data, workers=1)
    options = '{"process_res": 168, "export_format": "mini_npz-glb", "num_max_points": 2000}'
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            ids = [submit_views(client, scene_views(4), options) for _ in range(8)]
            deadline = time.monotonic() + 120
            while client.get("/health").json()["jobs"]["running"] == 0:  # wait until a job is mid-run
                assert time.monotonic() < deadline
                time.sleep(0.02)
            server.kill()  # SIGKILL: no shutdown code runs
    finally:
        server.stop()
    with sqlite3.connect(str(data / "jobs.sqlite")) as db:
        before = dict(db.execute("SELECT id, state FROM jobs").fetchall())
    assert len(before) == 8 and "running" in before.values() and "queued" in before.values()

    restarted = BackendProcess(weights, data, workers=1)
    try:
        with httpx.Client(base_url=restarted.url, timeout=60) as client:
            finished = wait_all(client, ids)
            assert {job["state"] for job in finished.values()} == {"done"}
            interrupted = [i for i, state in before.items() if state == "running"]
            assert all(finished[i]["attempts"] == 2 for i in interrupted)
            assert all(finished[i]["attempts"] == 1 for i, state in before.items() if state == "queued")
            for job_id in ids:
                assert _depth(client, job_id).shape == (4, 126, 168)
                listing = {f["path"] for f in client.get(f"/jobs/{job_id}/files").json()["files"]}
                pictures = {f"depth_vis/{i:04d}.jpg" for i in range(4)}  # glb writes them and the thumbnail
                assert listing == {"exports/mini_npz/results.npz", "scene.glb", "scene.jpg", *pictures}
    finally:
        restarted.stop()
    assert not list((data / "exports").glob("*.partial")) and not list((data / "uploads").iterdir())


def _view_folder(tmp_path):
    """tmp_path/views with the three test views as PNG files."""
    views = tmp_path / "views"
    views.mkdir()
    for i, view in enumerate(scene_views()):
        Image.fromarray(view).save(views / f"view{i}.png")
    return views


def test_auto_use_backend_gives_the_local_exports(tmp_path, da3_small_folder, monkeypatch):
    from tests.helpers.cli import assert_one_line_error, run_cli

    weights, _ = da3_small_folder
    views = _view_folder(tmp_path)
    common = ["--export-format", "mini_npz-glb", "--process-res", "56", "--num-max-points", "500", "--quiet"]
    code, output = run_cli("auto", views, "--weights", weights, "--device", "cpu", "--precision", "fp32",
                        "--export-dir", tmp_path / "local", *common)  # fmt: skip
    assert code == 0, output
    (tmp_path / "data").mkdir()
    server = BackendProcess(weights, tmp_path / "data", workers=1, token="tok")
    try:
        monkeypatch.setenv("ANYDEPTH_BACKEND_TOKEN", "tok")
        code, output = run_cli("auto", views, "--use-backend", "--backend-url", server.url,
                            "--export-dir", tmp_path / "remote", *common)  # fmt: skip
        assert code == 0, output
        monkeypatch.setenv("ANYDEPTH_BACKEND_TOKEN", "wrong")
        code, output = run_cli(
            "auto", views, "--use-backend", "--backend-url", server.url, "--export-dir", tmp_path / "x"
        )
        assert_one_line_error(code, output, "token", "401")
    finally:
        server.stop()
    assert sorted(p.relative_to(tmp_path / "remote").as_posix() for p in (tmp_path / "remote").rglob("*.*")) == [
        "depth_vis/0000.jpg",  # glb writes the depth pictures and the thumbnail too, as upstream's
        "depth_vis/0001.jpg",
        "depth_vis/0002.jpg",
        "exports/mini_npz/results.npz",
        "scene.glb",
        "scene.jpg",
    ]
    local = dict(np.load(tmp_path / "local/exports/mini_npz/results.npz"))
    remote = dict(np.load(tmp_path / "remote/exports/mini_npz/results.npz"))
    assert set(local) == set(remote)
    for key in local:  # the server runs one torch thread: sums in another order, float32 rounding apart
        np.testing.assert_allclose(remote[key], local[key], rtol=1e-5, atol=1e-6)
    code, output = run_cli("auto", views, "--use-backend", "--backend-url", f"http://127.0.0.1:{free_port()}")
    assert_one_line_error(code, output, "cannot reach the backend")


def test_image_images_and_video_commands_take_the_backend_too(tmp_path, da3_small_folder, monkeypatch):
    """Upstream's `da3 image`, `da3 images` and `da3 video` take --use-backend and --backend-url, as `auto`."""
    from tests.helpers.cli import assert_one_line_error, run_cli
    from tests.helpers.inputs import write_video

    weights, _ = da3_small_folder
    views = _view_folder(tmp_path)
    (views / "notes.txt").write_text("not a view")
    clip = write_video(tmp_path / "clip.mp4")
    common = ["--export-format", "mini_npz", "--process-res", "56", "--quiet"]
    (tmp_path / "data").mkdir()
    server = BackendProcess(weights, tmp_path / "data", workers=1)
    try:
        runs = {
            "image": ("image", views / "view1.png", 1),
            "images": ("images", views, 3),
            "video": ("video", clip, 12),  # 12 frames at 10 fps, sampled at --fps 10
        }
        for name, (command, spec, count) in runs.items():
            extra = ["--fps", "10"] if command == "video" else []
            code, output = run_cli(command, spec, "-m", "da3-small", "--use-backend", "--backend-url", server.url,
                                "--export-dir", tmp_path / name, *extra, *common)  # fmt: skip
            assert code == 0, (name, output)
            with np.load(tmp_path / name / "exports" / "mini_npz" / "results.npz") as npz:
                assert npz["depth"].shape[0] == count, name
    finally:
        server.stop()
    code, output = run_cli("image", views / "view1.png", "--use-backend", "--export-dir", tmp_path / "v2")
    assert_one_line_error(code, output, "--use-backend", "dav2-small")
