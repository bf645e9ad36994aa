"""Upstream DA3's backend protocol on `anydepth backend` (in process, tiny random da3-small): upstream's fields,
statuses and `{"detail"}` errors, exports written into the requested folder beside what it holds, and our guards
(allowed roots, the data folder, the token, the limits) refusing with a 4xx that names the field."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient

from anydepth.service.app import create_app
from tests.helpers.backend import da3_settings
from tests.helpers.inputs import scene_cameras, scene_views

TASK_FIELDS = {
    "task_id", "status", "message", "progress", "created_at", "started_at", "completed_at", "export_dir", "request",
    "num_images", "export_format", "process_res_method", "video_path",
}  # fmt: skip
STATUS_FIELDS = {"model_loaded", "model_dir", "device", "load_time", "last_used", "uptime", "gpu_memory"}


def _write_views(folder, n=3):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, view in enumerate(scene_views(n)):
        path = folder / f"{i:03d}.png"
        Image.fromarray(view).save(path)
        paths.append(str(path))
    return paths


def _wait(client, task_id, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        task = client.get(f"/task/{task_id}").json()
        if task["status"] in ("completed", "failed"):
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    root = tmp_path / "root"
    root.mkdir()
    settings = da3_settings(tmp_path, weights, allowed_roots=[root])
    return create_app(settings, warm_cache), root, settings


def test_a_scene_through_inference_lands_in_the_requested_folder(served):
    app, root, settings = served
    images = _write_views(root / "images")
    export_dir = root / "out"
    export_dir.mkdir()
    (export_dir / "keep.txt").write_text("the client's own file")
    with TestClient(app) as client:
        status = client.get("/status").json()
        assert set(status) == STATUS_FIELDS and status["device"] == "cpu" and status["gpu_memory"] is None
        body = {"image_paths": images, "export_dir": str(export_dir), "export_format": "mini_npz-depth_vis",
                "process_res": 56, "use_ray_pose": False, "unknown_field": "ignored as upstream does"}  # fmt: skip
        answer = client.post("/inference", json=body).json()
        assert answer["success"] is True and answer["message"] == "Task submitted successfully"
        assert answer["export_dir"] == str(export_dir) and answer["export_format"] == "mini_npz-depth_vis"
        assert answer["processing_time"] is None
        task = _wait(client, answer["task_id"])
        assert set(task) == TASK_FIELDS
        assert task["status"] == "completed" and task["progress"] == 1.0, task
        assert task["message"].startswith(f"[{answer['task_id']}] Completed in ")
        assert task["export_dir"] == str(export_dir) and task["num_images"] == 3 and task["video_path"] == images[0]
        assert task["request"]["image_paths"] == images and task["request"]["process_res"] == 56
        assert task["request"]["extrinsics"] is None and "unknown_field" not in task["request"]
        assert task["export_format"] == "mini_npz-depth_vis" and task["process_res_method"] == "upper_bound_resize"

        assert (export_dir / "keep.txt").read_text() == "the client's own file"  # merged in, not replaced
        assert sorted(p.name for p in (export_dir / "depth_vis").iterdir()) == ["0000.jpg", "0001.jpg", "0002.jpg"]
        with np.load(export_dir / "exports" / "mini_npz" / "results.npz") as npz:
            assert npz["depth"].shape == (3, 42, 56)
        assert not list((settings.exports_dir).iterdir())  # no partial folder left behind

        status = client.get("/status").json()
        assert status["model_loaded"] is True and status["load_time"] > 0 and status["uptime"] >= 0
        listed = client.get("/tasks").json()
        assert set(listed) == {"tasks", "active_tasks", "completed_tasks", "active_count", "total_count"}
        assert listed["active_count"] == 0 and listed["total_count"] == 1
        assert listed["completed_tasks"][0]["task_id"] == answer["task_id"]
        assert client.get("/jobs").json()["jobs"][0]["options"].get("da3_request") is None  # no server paths there

        assert client.get("/gpu-memory").json() == {
            "available": False,
            "message": "CUDA not available or memory info cannot be retrieved",
        }
        assert client.post("/reload").json() == {"message": "Model reloaded successfully"}
        assert client.get("/status").json()["model_loaded"] is True

        cleanup = client.post("/cleanup").json()
        assert cleanup == {"message": "Cleanup completed", "active_tasks": 1}  # finished seconds ago: kept
        deleted = client.delete(f"/task/{answer['task_id']}")
        assert deleted.json() == {"message": f"Task {answer['task_id']} deleted successfully"}
        assert client.get(f"/task/{answer['task_id']}").json() == {"detail": "Task not found"}
        assert (export_dir / "exports" / "mini_npz" / "results.npz").is_file()  # the client's files stay


def test_known_cameras_condition_the_model_and_come_back_in_the_outputs(served):
    app, root, _ = served
    images = _write_views(root / "images")
    extrinsics, intrinsics = scene_cameras()
    body = {
        "image_paths": images,
        "export_dir": str(root / "posed"),
        "export_format": "mini_npz",
        "process_res": 56,
        "extrinsics": extrinsics.astype(np.float64).tolist(),
        "intrinsics": intrinsics.astype(np.float64).tolist(),
    }
    only_intrinsics = {**body, "extrinsics": None, "export_dir": str(root / "focal")}
    with TestClient(app) as client:
        task = _wait(client, client.post("/inference", json=body).json()["task_id"])
        assert task["status"] == "completed", task
        assert np.allclose(task["request"]["extrinsics"], extrinsics)
        task = _wait(client, client.post("/inference", json=only_intrinsics).json()["task_id"])
        assert task["status"] == "completed" and task["request"]["extrinsics"] is None, task
    with np.load(root / "posed" / "exports" / "mini_npz" / "results.npz") as npz:
        np.testing.assert_allclose(npz["extrinsics"], extrinsics[:, :3, :4], atol=1e-4)
    with np.load(root / "focal" / "exports" / "mini_npz" / "results.npz") as npz:
        assert not np.allclose(npz["extrinsics"], extrinsics[:, :3, :4], atol=1e-2)  # predicted, not given


def test_refusals_are_upstream_detail_bodies_naming_the_field(served, tmp_path):
    app, root, settings = served
    images = _write_views(root / "images")
    outside = tmp_path / "outside"
    outside_images = _write_views(outside)
    cases = [
        ({"image_paths": images, "export_dir": str(outside / "out")}, 403, "export_dir: path"),
        ({"image_paths": outside_images}, 403, "image_paths: path"),
        ({"image_paths": [str(root / "missing.png")]}, 404, "image_paths: no such file"),
        ({"image_paths": images, "process_res": 5}, 422, "process_res"),
        ({"image_paths": images, "process_res_method": "stretch"}, 422, "process_res_method"),
        ({"image_paths": images, "export_feat_layers": [-1]}, 422, "export_feat_layers"),
        ({"image_paths": images, "export_format": "mini_npz-bogus"}, 400, "bogus"),
        ({"image_paths": images, "export_feat_layers": [40], "export_format": "feat_vis"}, 400, "export_feat_layers"),
        ({"image_paths": images, "extrinsics": [[[1.0, 0.0]]]}, 400, "extrinsics"),
        ({"image_paths": images, "extrinsics": scene_cameras()[0].tolist()}, 400, "intrinsics"),
        ({"image_paths": []}, 422, "image_paths"),
        ({"export_dir": str(root)}, 422, "image_paths"),
    ]
    (root / "a_file").write_text("x")
    cases.append(({"image_paths": images, "export_dir": str(root / "a_file")}, 400, "export_dir"))
    with TestClient(app) as client:
        for body, status, needle in cases:
            response = client.post("/inference", json=body)
            assert response.status_code == status, (body, response.text)
            detail = response.json()
            assert set(detail) == {"detail"} and needle in detail["detail"], (body, detail)
            assert "\n" not in detail["detail"] and str(settings.data_dir) not in detail["detail"], detail
        assert client.get("/tasks").json()["total_count"] == 0  # nothing was queued
        missing = client.delete("/task/nope")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Task not found"})
        assert client.get("/jobs/" + "0" * 32).json() == {"error": "no job " + "0" * 32}  # our API keeps its form


def test_the_data_folder_is_never_an_export_folder(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    settings = da3_settings(tmp_path, weights, allowed_roots=[tmp_path])  # the data folder lies inside the root
    images = _write_views(tmp_path / "images")
    with TestClient(create_app(settings, warm_cache)) as client:
        for export_dir in (settings.data_dir, settings.exports_dir / "x", tmp_path):
            response = client.post("/inference", json={"image_paths": images, "export_dir": str(export_dir)})
            assert response.status_code == 403 and "data folder" in response.json()["detail"], response.text


def test_a_pending_task_cannot_be_deleted_and_the_token_guards_every_route(tmp_path, da3_small_folder):
    import threading

    from anydepth.errors import WeightsError
    from anydepth.web.models import ModelCache

    release = threading.Event()

    def slow(key):
        release.wait(30)
        raise WeightsError("no weights in this test")

    weights, _ = da3_small_folder
    root = tmp_path / "root"
    images = _write_views(root / "images")
    settings = da3_settings(tmp_path, weights, allowed_roots=[root], token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    with TestClient(create_app(settings, ModelCache(loader=slow))) as client:
        routes = [("GET", "/status"), ("POST", "/inference"), ("GET", "/tasks"), ("GET", "/task/x"),
                  ("POST", "/cleanup"), ("DELETE", "/task/x"), ("POST", "/reload"), ("GET", "/gpu-memory")]  # fmt: skip
        for method, path in routes:
            response = client.request(method, path)
            assert response.status_code == 401 and "token" in response.json()["detail"], (method, path)
        try:
            task_id = client.post("/inference", json={"image_paths": images}, headers=auth).json()["task_id"]
            pending = client.delete(f"/task/{task_id}", headers=auth)
            assert pending.status_code == 400 and pending.json() == {"detail": "Cannot delete running or pending tasks"}
            assert client.get(f"/task/{task_id}", headers=auth).json()["status"] in ("pending", "running")
        finally:
            release.set()
        task = client.get(f"/task/{task_id}", headers=auth).json()
        deadline = time.monotonic() + 30
        while task["status"] != "failed":
            assert time.monotonic() < deadline, task
            time.sleep(0.05)
            task = client.get(f"/task/{task_id}", headers=auth).json()
        assert task["message"].startswith(f"[{task_id}] Failed after ") and "no weights" in task["message"]
        failed_reload = client.post("/reload", headers=auth)
        assert failed_reload.status_code == 500
        assert failed_reload.json()["detail"].startswith("Failed to reload model: ")


@pytest.mark.parametrize("planted, export_format", [("depth_vis", "depth_vis"), ("exports", "mini_npz")])
def test_a_symlink_planted_in_the_export_folder_leads_nothing_out(served, tmp_path, planted, export_format):
    """Neither a file nor a folder lands outside: ``exports`` -> outside would have had ``mini_npz/`` made there."""
    app, root, _ = served
    images = _write_views(root / "images")
    outside = tmp_path / "outside"
    outside.mkdir()
    export_dir = root / "out"
    export_dir.mkdir()
    (export_dir / planted).symlink_to(outside)  # an exporter's folder, pointing out of the allowed root
    body = {"image_paths": images, "export_dir": str(export_dir), "export_format": export_format, "process_res": 56}
    with TestClient(app) as client:
        task = _wait(client, client.post("/inference", json=body).json()["task_id"])
    assert task["status"] == "failed" and "leads outside" in task["message"], task
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("reserved, health", [(10.0, "healthy"), (70.0, "warning"), (78.0, "critical")])
def test_cuda_memory_is_reported_as_upstream_rounds_and_grades_it(tmp_path, monkeypatch, reserved, health):
    """No GPU here: the figures torch.cuda would give are put in place of ``cuda_memory``'s."""
    from anydepth.service import upstream
    from anydepth.service.settings import ServiceSettings
    from anydepth.web.models import ModelCache

    total = 80.0
    figures = {"total_gb": total, "allocated_gb": 3.14159, "reserved_gb": reserved, "free_gb": total - reserved,
               "utilization": reserved / total * 100}  # fmt: skip
    monkeypatch.setattr(upstream, "cuda_memory", lambda: figures)
    settings = ServiceSettings(data_dir=tmp_path / "data", models={"da3-small": None}, device="cpu")
    with TestClient(create_app(settings, ModelCache())) as client:
        report = client.get("/gpu-memory").json()
        expected = {"total_gb": 80.0, "allocated_gb": 3.14, "reserved_gb": reserved, "free_gb": total - reserved,
                    "utilization_percent": round(reserved / total * 100, 1)}  # fmt: skip
        assert report == {"available": True, **expected, "status": health}
        assert client.get("/status").json()["gpu_memory"] == expected
