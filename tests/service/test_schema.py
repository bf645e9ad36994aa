"""Schemathesis against the backend's published OpenAPI schema: generated requests never get a 5xx, and every
check schemathesis has (status codes, content types, headers, bodies, data acceptance, methods) passes."""

from __future__ import annotations

import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from anydepth.errors import WeightsError  # noqa: E402
from anydepth.service.app import create_app  # noqa: E402
from anydepth.service.settings import ServiceSettings  # noqa: E402
from anydepth.web.models import ModelCache  # noqa: E402

EXAMPLES = 25

UPSTREAM_PATHS = ("/status", "/inference", "/task/", "/tasks", "/cleanup", "/reload", "/gpu-memory")
"""Upstream DA3's protocol: its errors are ``{"detail": ...}``, as upstream's are."""


def _error_key(path):
    return "detail" if path.startswith(UPSTREAM_PATHS) else "error"


def _failed_reload(case, response):
    """POST /reload on a server without weights answers 500 "Failed to reload model", as upstream's does."""
    if (case.method.upper(), case.path, response.status_code) != ("POST", "/reload", 500):
        return False
    return response.json()["detail"].startswith("Failed to reload model: ")


def _no_weights(key):
    raise WeightsError(f"{key.model}: no weights in this test")  # jobs fail fast; the HTTP surface is under test


def _app(tmp_path):
    """A backend whose jobs fail fast (no weights), with one allowed root holding a file that is not an image."""
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "a.png").write_bytes(b"not really a png")
    settings_ = ServiceSettings(
        data_dir=tmp_path / "backend",
        models={"da3-small": None},
        device="cpu",
        allowed_roots=[root],
        max_request_bytes=1 << 20,
        poll_seconds=0.05,
    )
    app = create_app(settings_, ModelCache(loader=_no_weights))
    app.state.anydepth_settings = settings_
    return app


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_generated_requests_get_no_server_error(tmp_path, mode):
    app = _app(tmp_path)
    statuses, unsatisfiable = {}, []
    with TestClient(app):  # runs the lifespan: store and workers up
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 18
        for operation in operations:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call()
                if _failed_reload(case, response):
                    statuses.setdefault(case.operation.label, set()).add(response.status_code)
                    return
                case.validate_response(response, checks=[not_a_server_error])
                statuses.setdefault(case.operation.label, set()).add(response.status_code)
                assert response.status_code < 500, (case.path, response.status_code, response.text)
                if response.status_code >= 400:
                    body, key = response.json(), _error_key(case.path)
                    assert set(body) == {key} and "Traceback" not in body[key], (case.path, body)

            try:
                check()
            except Unsatisfiable:  # nothing to break in an operation without inputs (GET /health, GET /models)
                assert mode == GenerationMode.NEGATIVE and not operation.path_parameters and not operation.body
                unsatisfiable.append(operation.label)
    assert all(code < 500 for label, codes in statuses.items() for code in codes if label != "POST /reload"), statuses
    assert len(statuses) + len(unsatisfiable) == 18 and len(statuses) >= 11, (statuses, unsatisfiable)


def _engine_failures(schema):
    """Every distinct failure of a schemathesis run over all its phases: (operation, check, title, status)."""
    from schemathesis.engine import events, from_schema

    failures, errors = {}, []
    for event in from_schema(schema).execute():
        if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
            for case_id, checks in event.recorder.checks.items():
                interaction = event.recorder.interactions.get(case_id)
                status = interaction.response.status_code if interaction and interaction.response else None
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        key = (event.recorder.label, check.name, failure.title, status)
                        failures.setdefault(key, failure.message[:300])
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            errors.append(str(getattr(event, "info", event))[:500])
    return failures, errors


# What decides whether a submission is accepted is also its content: files that decode as images of a size the
# server takes, the options JSON inside the upload's form field, export formats the served model can write. The
# schema cannot say that, so a schema-valid submission may be refused with one of these (each documented).
CONTENT_REFUSALS = [400, 413, 415, 422]


def test_every_schemathesis_check_passes_in_every_phase(tmp_path):
    from schemathesis.config import SchemathesisConfig

    app = _app(tmp_path)
    config = SchemathesisConfig.from_dict(
        {
            "seed": 18,
            "generation": {"max-examples": EXAMPLES},
            "checks": {"enabled": True},  # every check the installed schemathesis has
            "suppress-health-check": ["all"],
            "operations": [
                {
                    "include-path-regex": "^/jobs(/upload)?$",
                    "include-method": "POST",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "3xx", 401, 403, 404, 409, 429, *CONTENT_REFUSALS]
                        }
                    },
                },
                {  # upstream's /inference: the same content checks, on server paths
                    "include-path": "/inference",
                    "include-method": "POST",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", 401, 403, 404, 429, *CONTENT_REFUSALS]
                        }
                    },
                },
                {  # no weights here: a reload fails with upstream's 500 (test_generated_... checks its body)
                    "include-path": "/reload",
                    "include-method": "POST",
                    "checks": {
                        "not_a_server_error": {"enabled": False},
                        "positive_data_acceptance": {"enabled": False},
                    },
                },
            ],
        }
    )
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        failures, errors = _engine_failures(schema)
    assert not errors, errors
    assert not failures, "\n".join(f"{key}: {message}" for key, message in sorted(failures.items(), key=str))


def test_served_files_match_the_schema(tmp_path):
    """A finished job's files (GLB, JPEG, NPZ, PLY) pass every check: their content types are the documented ones."""
    from anydepth.service.store import DONE, JobStore

    app = _app(tmp_path)
    settings_ = app.state.anydepth_settings
    job_id = "d" * 32
    export_dir = settings_.exports_dir / job_id
    files = ["scene.glb", "depth_vis/0000.jpg", "exports/mini_npz/results.npz", "gs_ply/0000.ply", "colmap/images.bin"]
    for name in files:
        (export_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (export_dir / name).write_bytes(b"exported")
    store = JobStore(settings_.database)
    store.create(job_id, "da3-small", {"fps": 1.0}, ["a.png"], "images", str(export_dir))
    store.claim_next()
    store.finish(job_id, DONE)
    store.close()
    with TestClient(app) as client:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operation = schema["/jobs/{job_id}/files/{file_path}"]["GET"]
        for name in files:
            case = operation.Case(path_parameters={"job_id": job_id, "file_path": name})
            response = case.call_and_validate()  # every check that applies to one response
            assert response.status_code == 200
        assert client.get(f"/jobs/{job_id}/files/scene.glb").headers["content-type"] == "model/gltf-binary"
        assert client.get(f"/jobs/{job_id}/files/depth_vis/0000.jpg").headers["content-type"] == "image/jpeg"


def test_busy_queue_says_when_to_retry_and_405_lists_every_method(tmp_path):
    import threading

    from PIL import Image

    release = threading.Event()

    def blocked(key):
        release.wait(30)
        raise WeightsError("no weights in this test")

    root = tmp_path / "allowed"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "a.png")
    settings_ = ServiceSettings(
        data_dir=tmp_path / "backend", models={"da3-small": None}, device="cpu", allowed_roots=[root], max_queued=1
    )
    app = create_app(settings_, ModelCache(loader=blocked))
    schema = app.openapi()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert "500" in operation["responses"], (method, path)
    assert "Retry-After" in schema["paths"]["/jobs"]["post"]["responses"]["429"]["headers"]
    assert "Retry-After" in schema["paths"]["/jobs/upload"]["post"]["responses"]["429"]["headers"]
    with TestClient(app) as client:
        try:
            body = {"inputs": ["a.png"], "export_format": "mini_npz"}
            assert client.post("/jobs", json=body).status_code == 201  # running (its model loading waits)
            deadline = time.monotonic() + 30
            while client.get("/jobs", params={"state": "running"}).json()["jobs"] == []:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert client.post("/jobs", json=body).status_code == 201  # queued
            busy = client.post("/jobs", json=body)
            assert busy.status_code == 429 and int(busy.headers["retry-after"]) > 0
        finally:
            release.set()

        for method, path, allowed in [
            ("OPTIONS", "/jobs", {"GET", "POST"}),
            ("PUT", "/jobs", {"GET", "POST"}),
            ("OPTIONS", "/jobs/" + "0" * 32, {"DELETE", "GET"}),
            ("PATCH", "/jobs/" + "0" * 32, {"DELETE", "GET"}),
            ("GET", "/jobs/upload", {"POST"}),
        ]:
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert set(response.headers["allow"].split(", ")) == allowed, (method, path, response.headers["allow"])
            assert set(response.json()) == {"error"}
