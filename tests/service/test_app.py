"""The backend's HTTP API in-process (TestClient): jobs run through the CLI's scene pipeline, guards refuse."""

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

from anydepth.api import load_model
from anydepth.jobs import SceneOptions, run_scene
from anydepth.service.app import create_app
from anydepth.service.store import JobStore
from anydepth.web.models import ModelCache, ModelKey, default_loader
from tests.helpers.backend import da3_settings
from tests.helpers.inputs import scene_views

OPTIONS = '{"process_res": 56, "export_format": "mini_npz"}'


def _png(view: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(view).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(client, views=None, options=OPTIONS, headers=None):
    views = scene_views() if views is None else views
    files = [("files", (f"view {i}.png", _png(v), "image/png")) for i, v in enumerate(views)]
    return client.post("/jobs/upload", files=files, data={"options": options}, headers=headers or {})


def _wait(client, job_id, timeout=60.0, headers=None):
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}", headers=headers or {}).json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def _assert_error(response, status, *needles):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"]
    for needle in needles:
        assert needle in body["error"], body


def test_upload_job_matches_the_cli_pipeline(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    settings = da3_settings(tmp_path, weights)
    with TestClient(create_app(settings, warm_cache)) as client:
        response = _upload(client)
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["state"] == "queued" and job["model"] == "da3-small" and job["input_kind"] == "images"
        assert job["inputs"] == ["0000_view_0.png", "0001_view_1.png", "0002_view_2.png"]  # sanitised names
        job = _wait(client, job["id"])
        assert job["state"] == "done" and job["progress"] == 1.0 and job["error"] is None and job["attempts"] == 1
        listing = client.get(f"/jobs/{job['id']}/files").json()
        assert [f["path"] for f in listing["files"]] == ["exports/mini_npz/results.npz"]
        fetched = client.get(f"/jobs/{job['id']}/files/exports/mini_npz/results.npz")
        assert fetched.status_code == 200 and len(fetched.content) == listing["files"][0]["size"]
        assert client.get("/models").json()["models"] == [
            {"name": "da3-small", "default": True, "warm": True, "depth_kind": "depth"}
        ]
        assert client.get("/health").json()["jobs"]["done"] == 1
    assert not (settings.uploads_dir / job["id"]).exists()  # uploads go once the job is done
    assert not list(settings.exports_dir.glob("*.partial"))

    # the same views through the CLI's own path give the same arrays
    model = load_model("da3-small", weights=weights, device="cpu", precision="fp32")
    run_scene(model, scene_views(), SceneOptions(export_dir=tmp_path / "cli", export_format="mini_npz", process_res=56))
    with np.load(io.BytesIO(fetched.content)) as served, np.load(tmp_path / "cli/exports/mini_npz/results.npz") as cli:
        assert served["depth"].shape == (3, 42, 56)
        assert set(served.files) == set(cli.files)
        for key in cli.files:
            np.testing.assert_allclose(served[key], cli[key], rtol=1e-5, atol=1e-6)


def test_server_paths_inside_the_allowed_root(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    root = tmp_path / "root"
    (root / "scene").mkdir(parents=True)
    for i, view in enumerate(scene_views()):
        Image.fromarray(view).save(root / "scene" / f"v{i}.png")
    outside = tmp_path / "secret.png"
    Image.fromarray(scene_views(1)[0]).save(outside)
    (root / "link.png").symlink_to(outside)
    (root / "linked_dir").symlink_to(tmp_path)
    (root / "list.txt").write_text(f"scene/v0.png\n{outside}\n")
    (root / "mixed").mkdir()
    Image.fromarray(scene_views(1)[0]).save(root / "mixed" / "a.png")
    (root / "mixed" / "b.png").symlink_to(outside)
    Image.fromarray(np.zeros((60, 81, 3), np.uint8)).save(root / "big.png")
    settings = da3_settings(tmp_path, weights, allowed_roots=[root], max_pixels=80 * 60)
    with TestClient(create_app(settings, warm_cache)) as client:
        body = {"inputs": ["scene"], "process_res": 56, "export_format": "mini_npz"}
        _assert_error(client.post("/jobs", json={**body, "inputs": ["big.png"]}), 413, "81x60")
        response = client.post("/jobs", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["inputs"] == ["v0.png", "v1.png", "v2.png"]
        assert _wait(client, response.json()["id"])["state"] == "done"
        absolute = client.post("/jobs", json={**body, "inputs": [str(root / "scene" / "v0.png")]})
        assert absolute.status_code == 201

        refused = [
            "../secret.png",
            "scene/../../secret.png",
            str(outside),
            "/etc/passwd",
            "link.png",  # symlink to a file outside
            "linked_dir/secret.png",  # symlinked folder outside
            "list.txt",  # a list naming a file outside
            "mixed",  # a folder holding a symlink to a file outside
            "%2e%2e/secret.png",
            "..%2fsecret.png",
            "scene\\..\\..\\secret.png",
        ]
        for spec in refused:
            _assert_error(client.post("/jobs", json={**body, "inputs": [spec]}), 403)
        _assert_error(client.post("/jobs", json={**body, "inputs": ["nope.png"]}), 404, "nope.png")
        assert client.get("/jobs", params={"state": "done"}).json()["jobs"][0]["state"] == "done"

    with TestClient(create_app(da3_settings(tmp_path / "b", weights), warm_cache)) as client:  # no roots: uploads only
        _assert_error(client.post("/jobs", json=body), 403, "--allowed-root")


def test_export_files_cannot_be_escaped(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    settings = da3_settings(tmp_path, weights)
    with TestClient(create_app(settings, warm_cache)) as client:
        job = _wait(client, _upload(client).json()["id"])
        assert job["state"] == "done"
        export_dir = settings.exports_dir / job["id"]
        (export_dir / "escape").symlink_to(settings.database)
        (export_dir / "escape_dir").symlink_to(tmp_path)
        base = f"/jobs/{job['id']}/files/"
        assert client.get(base + "exports/mini_npz/results.npz").status_code == 200
        variants = [
            "%2e%2e/%2e%2e/jobs.sqlite",
            "..%2f..%2fjobs.sqlite",
            "%2E%2E%2F%2E%2E%2Fjobs.sqlite",
            "%252e%252e/%252e%252e/jobs.sqlite",
            "%2fetc%2fpasswd",
            "/etc/passwd",
            "escape",
            "escape_dir/data/jobs.sqlite",
            "exports%5c..%5c..%5c..%5cjobs.sqlite",
            "exports/%00results.npz",
        ]
        for variant in variants:
            response = client.get(base + variant)
            assert response.status_code in (403, 404), (variant, response.status_code)
            assert b"SQLite" not in response.content and b"root:" not in response.content
            assert set(response.json()) == {"error"}
        assert client.get(base + "%2e%2e/%2e%2e/jobs.sqlite").status_code == 403
        assert client.get(base + "escape").status_code == 403
        _assert_error(client.get(base + "exports/none.npz"), 404)
        # raw dot segments never reach the handler as a climb either (the client or router normalises them)
        raw = client.get(base + "../../jobs.sqlite")
        assert 400 <= raw.status_code < 500 and b"SQLite" not in raw.content


def test_uploads_are_validated(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    settings = da3_settings(tmp_path, weights, max_files=4, max_request_bytes=200_000, max_pixels=80 * 60, max_views=3)
    png = _png(scene_views(1)[0])
    wide = _png(np.zeros((60, 81, 3), np.uint8))
    with TestClient(create_app(settings, warm_cache)) as client:

        def post(files, options=OPTIONS):
            return client.post("/jobs/upload", files=files, data={"options": options})

        _assert_error(post([("files", ("a.png", b"not an image at all", "image/png"))]), 415, "a.png", "readable")
        _assert_error(post([("files", ("a.png", png[: len(png) // 2], "image/png"))]), 415, "a.png")
        _assert_error(post([("files", ("a.png", b"", "image/png"))]), 415, "empty")
        _assert_error(post([("files", ("notes.txt", b"hello", "text/plain"))]), 415, "unsupported")
        _assert_error(post([("files", ("a.png", png, "video/mp4"))]), 415, "content type")
        _assert_error(post([("files", ("clip.mp4", b"\x00" * 64, "video/mp4"))]), 415, "clip.mp4", "video")
        _assert_error(post([("files", (f"{i}.png", png, "image/png")) for i in range(5)]), 413, "limit is 4")
        _assert_error(post([("files", ("big.png", b"\x00" * 300_000, "image/png"))]), 413, "byte limit")
        _assert_error(post([("files", ("w.png", wide, "image/png"))]), 413, "w.png", "81x60")
        _assert_error(post([("files", (f"{i}.png", png, "image/png")) for i in range(4)]), 413, "at most 3")
        _assert_error(post([("files", ("a.png", png, "image/png"))], options="{not json"), 422, "options")
        _assert_error(post([("files", ("a.png", png, "image/png"))], options='{"process_res": 5}'), 422)
        _assert_error(post([("files", ("a.png", png, "image/png"))], options='{"bogus": 1}'), 422, "bogus")
        _assert_error(post([("files", ("a.png", png, "image/png"))], options='{"model": "da3-giant"}'), 400, "served")
        _assert_error(post([("files", ("a.png", png, "image/png"))], options='{"export_format": "tiff"}'), 400, "tiff")
        _assert_error(client.post("/jobs/upload"), 422)
        _assert_error(client.get("/jobs/" + "0" * 32), 404)
        _assert_error(client.get("/jobs/not-a-job"), 422)
        _assert_error(client.post("/jobs/" + "0" * 32 + "/cancel"), 404)
        _assert_error(client.get("/nowhere"), 404)
        _assert_error(client.get("/jobs", params={"state": "sleeping"}), 422)
        evil = post([("files", ("../../../evil name.png", png, "application/octet-stream"))])
        assert evil.status_code == 201 and evil.json()["inputs"] == ["0000_evil_name.png"]
        assert [p.name for p in (settings.uploads_dir / evil.json()["id"]).iterdir()] in ([], ["0000_evil_name.png"])
        assert _wait(client, evil.json()["id"])["state"] == "done"
    assert not list(settings.uploads_dir.iterdir())  # refused uploads leave nothing behind


def test_token_auth(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    with TestClient(create_app(da3_settings(tmp_path, weights, token="s3cret"), warm_cache)) as client:
        assert client.get("/health").json() == {"status": "ok", "workers": 1, "jobs": {}}  # liveness stays open
        assert client.get("/health", headers={"X-Token": "s3cret"}).json()["jobs"]["queued"] == 0
        _assert_error(client.get("/jobs"), 401, "token")
        _assert_error(client.get("/jobs", headers={"Authorization": "Bearer wrong"}), 401)
        _assert_error(_upload(client), 401)
        assert client.get("/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/models", headers={"X-Token": "s3cret"}).status_code == 200
        headers = {"Authorization": "Bearer s3cret"}
        job = _upload(client, headers=headers).json()
        assert _wait(client, job["id"], headers=headers)["state"] == "done"


def test_cancel_queued_and_running_jobs(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    release = threading.Event()
    loading = threading.Event()

    def slow_loader(key: ModelKey):
        loading.set()
        release.wait(30)
        return default_loader(key)

    settings = da3_settings(tmp_path, weights, max_queued=1)
    with TestClient(create_app(settings, ModelCache(loader=slow_loader))) as client:
        running = _upload(client).json()
        assert loading.wait(30)  # the first job is now inside its model-loading stage
        queued = _upload(client).json()
        _assert_error(_upload(client), 429, "waiting")  # the queue holds one job
        _assert_error(client.delete(f"/jobs/{queued['id']}"), 409, "queued")
        cancelled = client.post(f"/jobs/{queued['id']}/cancel").json()
        assert cancelled["state"] == "cancelled"
        flagged = client.post(f"/jobs/{running['id']}/cancel").json()
        assert flagged["state"] == "running" and flagged["stage"] == "loading model"
        release.set()
        assert _wait(client, running["id"])["state"] == "cancelled"
        _assert_error(client.post(f"/jobs/{running['id']}/cancel"), 409, "already cancelled")
        _assert_error(client.get(f"/jobs/{running['id']}/files"), 409, "cancelled")
        after = _upload(client).json()  # the model stayed warm and the worker goes on
        assert _wait(client, after["id"])["state"] == "done"
        assert sorted(p.name for p in settings.exports_dir.iterdir()) == [after["id"]]
        assert client.delete(f"/jobs/{after['id']}").status_code == 204
        assert client.delete(f"/jobs/{queued['id']}").status_code == 204
        _assert_error(client.get(f"/jobs/{after['id']}"), 404)
        _assert_error(client.delete(f"/jobs/{after['id']}"), 404)
        assert [j["id"] for j in client.get("/jobs").json()["jobs"]] == [running["id"]]
    assert not list(settings.exports_dir.iterdir())


def test_restart_requeues_running_jobs(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    settings = da3_settings(tmp_path, weights)
    store = JobStore(settings.database)
    ids = []
    for n in range(3):
        job_id = f"{n:032x}"
        folder = settings.uploads_dir / job_id
        folder.mkdir(parents=True)
        paths = []
        for i, view in enumerate(scene_views(2)):
            Image.fromarray(view).save(folder / f"{i:04d}_v.png")
            paths.append(str(folder / f"{i:04d}_v.png"))
        options = {"process_res": 56, "export_format": "mini_npz", "fps": 1.0}
        store.create(job_id, "da3-small", options, paths, "images", str(settings.exports_dir / job_id))
        ids.append(job_id)
    assert store.claim_next().id == ids[0] and store.claim_next().id == ids[1]  # two "running" when the server died
    gone = "f" * 32  # queued for a model this server no longer serves
    (settings.uploads_dir / gone).mkdir()
    Image.fromarray(scene_views(1)[0]).save(settings.uploads_dir / gone / "0000_v.png")
    gone_inputs = [str(settings.uploads_dir / gone / "0000_v.png")]
    store.create(gone, "da3-base", {"fps": 1.0}, gone_inputs, "images", str(settings.exports_dir / gone))
    stray = "e" * 32  # a row naming files of another job's upload folder: checked again when it runs
    store.create(stray, "da3-small", {"fps": 1.0}, paths, "images", str(settings.exports_dir / stray))
    store.request_cancel(ids[1])  # one of them had been asked to stop
    partial = settings.exports_dir / f"{ids[0]}.partial"
    partial.mkdir(parents=True)
    (partial / "half.npz").write_bytes(b"half")
    store.close()

    with TestClient(create_app(settings, warm_cache)) as client:
        first, second, third, unserved, strayed = (_wait(client, i) for i in [*ids, gone, stray])
    assert strayed["state"] == "failed" and "outside the allowed roots" in strayed["error"]
    assert unserved["state"] == "failed"
    assert unserved["error"] == "model 'da3-base' is not served by this server any more"
    assert first["state"] == "done" and first["attempts"] == 2
    assert second["state"] == "cancelled"
    assert third["state"] == "done" and third["attempts"] == 1
    assert not partial.exists()
    assert [
        p.relative_to(settings.exports_dir / ids[0]).as_posix() for p in (settings.exports_dir / ids[0]).rglob("*.npz")
    ] == ["exports/mini_npz/results.npz"]


def test_failed_job_reports_a_clean_error(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    root = tmp_path / "root"
    root.mkdir()
    Image.fromarray(scene_views(1)[0]).save(root / "a.png")
    (root / "b.png").write_bytes(b"garbage, not a png")  # server-side files are decoded by the job itself
    settings = da3_settings(tmp_path, weights, allowed_roots=[root])
    with TestClient(create_app(settings, warm_cache)) as client:
        body = {"inputs": ["a.png", "b.png"], "process_res": 56, "export_format": "mini_npz"}
        job = _wait(client, client.post("/jobs", json=body).json()["id"])
    assert job["state"] == "failed" and "b.png" in job["error"]
    assert str(tmp_path) not in job["error"] and "Traceback" not in job["error"]
    assert not list(settings.exports_dir.iterdir())


def test_openapi_schema_is_published(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    with TestClient(create_app(da3_settings(tmp_path, weights), warm_cache)) as client:
        schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "anydepth backend"
    assert {"/jobs", "/jobs/upload", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/jobs/{job_id}/files"} <= set(
        schema["paths"]
    )
    assert {"PathJobRequest", "JobOut", "ErrorOut"} <= set(schema["components"]["schemas"])


def test_uploaded_video_is_sampled_into_views(tmp_path, da3_small_folder, warm_cache):
    from tests.helpers.inputs import write_video

    weights, _ = da3_small_folder
    clip = write_video(tmp_path / "clip.mp4", frames=12, fps=10).read_bytes()
    with TestClient(create_app(da3_settings(tmp_path, weights, max_views=4), warm_cache)) as client:
        options = '{"process_res": 56, "export_format": "mini_npz", "fps": 5}'
        response = client.post(
            "/jobs/upload", files=[("files", ("clip.mp4", clip, "video/mp4"))], data={"options": options}
        )
        assert response.status_code == 201 and response.json()["input_kind"] == "video"
        assert response.json()["options"]["max_frames"] == 4  # the server's --max-views, shown in the job
        job = _wait(client, response.json()["id"])
        assert job["state"] == "done", job
        fetched = client.get(f"/jobs/{job['id']}/files/exports/mini_npz/results.npz")
        with np.load(io.BytesIO(fetched.content)) as npz:
            assert npz["depth"].shape == (4, 42, 56)  # 12 frames at 10 fps sampled at 5 fps: 6, cut to --max-views 4
        png = _png(scene_views(1)[0])
        mixed = [("files", ("clip.mp4", clip, "video/mp4")), ("files", ("a.png", png, "image/png"))]
        _assert_error(client.post("/jobs/upload", files=mixed, data={"options": options}), 400, "one video")


def test_backend_command_refuses_bad_setups(tmp_path):
    from tests.helpers.cli import assert_one_line_error, run_cli

    code, output = run_cli("backend", "--model", "dav2-small", "--data-dir", tmp_path / "d")
    assert_one_line_error(code, output, "dav2-small", "DA3")
    code, output = run_cli("backend", "--model", "da3-small", "--extra-model", "no-such-model", "--data-dir", tmp_path)
    assert_one_line_error(code, output, "no-such-model")
    code, output = run_cli("auto", tmp_path, "--use-backend", "--backend-url", "http://127.0.0.1:9")
    assert_one_line_error(code, output, "no images")  # checked locally, before any request
    code, output = run_cli(
        "backend", "--weights", tmp_path / "missing", "--device", "cpu", "--data-dir", tmp_path / "d"
    )
    assert_one_line_error(code, output, "missing")  # the default model loads before the server starts
    assert not (tmp_path / "d").exists()  # nothing written before the checks pass


def test_streamed_body_over_the_limit_is_cut_off(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    settings = da3_settings(tmp_path, weights, max_request_bytes=100_000)
    boundary = "b0undary"

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'.encode()
        yield b"Content-Type: image/png\r\n\r\n"
        for _ in range(50):
            yield b"\x00" * 10_000

    with TestClient(create_app(settings, warm_cache)) as client:
        response = client.post(
            "/jobs/upload", content=chunks(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert "content-length" not in {k.lower() for k in response.request.headers}
        _assert_error(response, 413, "byte limit")
        _assert_error(client.post("/jobs", content=b"{}", headers={"Content-Length": "-5"}), 400, "Content-Length")
        assert client.get("/jobs").json()["jobs"] == []
    assert not list(settings.uploads_dir.iterdir())


def test_backend_command_binds_loopback_by_default(tmp_path, da3_small_folder, monkeypatch):
    import uvicorn

    from tests.helpers.cli import run_cli

    weights, _ = da3_small_folder
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    code, output = run_cli(
        "backend", "--weights", weights, "--device", "cpu", "--precision", "fp32", "--data-dir", tmp_path / "d",
        "--token", "t", "--allowed-root", tmp_path, "--max-files", "3", "--workers", "2",
    )  # fmt: skip
    assert code == 0, output
    assert served["host"] == "127.0.0.1" and served["port"] == 8008
    with TestClient(served["app"]) as client:
        headers = {"Authorization": "Bearer t"}
        assert client.get("/health", headers=headers).json()["workers"] == 2
        assert client.get("/models", headers=headers).json()["models"][0]["warm"]  # loaded before serving
        _assert_error(client.get("/models"), 401)
        files = [("files", (f"{i}.png", _png(v), "image/png")) for i, v in enumerate(scene_views(4))]
        _assert_error(client.post("/jobs/upload", files=files, headers=headers), 413, "limit is 3")


def test_backend_command_refuses_an_open_host_without_a_token(tmp_path, monkeypatch):
    import uvicorn

    from tests.helpers.cli import assert_one_line_error, run_cli

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.delenv("ANYDEPTH_BACKEND_TOKEN", raising=False)
    base = ("backend", "--no-preload", "--device", "cpu", "--data-dir", tmp_path / "d")
    for host in ("0.0.0.0", "::", "192.168.1.4"):
        code, output = run_cli(*base, "--host", host)
        assert_one_line_error(code, output, f"--host {host}", "--token", "--allow-open")
    assert served == {} and not (tmp_path / "d").exists()
    code, output = run_cli(*base, "--host", "0.0.0.0", "--allow-open")  # said on purpose: served open
    assert code == 0 and served["host"] == "0.0.0.0", output
    code, output = run_cli(*base, "--host", "0.0.0.0", "--token", "t")
    assert code == 0, output
    code, output = run_cli("backend", "--help")
    assert "--allow-open" in output
