"""Schemathesis against the backend's published OpenAPI schema: generated requests never get a 5xx."""

from __future__ import annotations

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


def _no_weights(key):
    raise WeightsError(f"{key.model}: no weights in this test")  # jobs fail fast; the HTTP surface is under test


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_generated_requests_get_no_server_error(tmp_path, mode):
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
    statuses, unsatisfiable = {}, []
    with TestClient(app):  # runs the lifespan: store and workers up
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 10
        for operation in operations:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call_and_validate(checks=[not_a_server_error])
                statuses.setdefault(case.operation.label, set()).add(response.status_code)
                assert response.status_code < 500, (case.path, response.status_code, response.text)
                if response.status_code >= 400:
                    body = response.json()
                    assert set(body) == {"error"} and "Traceback" not in body["error"]

            try:
                check()
            except Unsatisfiable:  # nothing to break in an operation without inputs (GET /health, GET /models)
                assert mode == GenerationMode.NEGATIVE and not operation.path_parameters and not operation.body
                unsatisfiable.append(operation.label)
    assert all(code < 500 for codes in statuses.values() for code in codes), statuses
    assert len(statuses) + len(unsatisfiable) == 10 and len(statuses) >= 8, (statuses, unsatisfiable)
