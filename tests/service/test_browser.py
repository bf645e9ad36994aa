"""The backend's API docs in headless Chromium: Swagger UI renders every operation offline, behind the token."""

from __future__ import annotations

import pytest

from tests.helpers.browser import headless_chromium, missing_browser, uvicorn_server, wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from anydepth.errors import WeightsError
from anydepth.service.app import create_app
from anydepth.service.settings import ServiceSettings
from anydepth.web.models import ModelCache

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=f"browser tests: {missing_browser()}")


def _no_weights(key):
    raise WeightsError(f"{key.model}: no weights in this test")


def test_docs_render_every_operation_from_the_server_alone(tmp_path):
    settings = ServiceSettings(data_dir=tmp_path / "data", models={"da3-small": None}, device="cpu", token="t0k")
    app = create_app(settings, ModelCache(loader=_no_weights))
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    with uvicorn_server(app) as url, headless_chromium() as driver:
        driver.get(url + "/docs")
        assert "missing or wrong token" in driver.page_source  # no token: no docs
        driver.get(url + "/docs?token=t0k")  # once; the cookie carries it to the script, style sheet and schema
        shown = wait_for(driver, "return document.querySelectorAll('.opblock').length;")
        assert shown == operations
        assert driver.execute_script("return document.querySelector('.info .title').textContent").startswith(
            "anydepth backend"
        )
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
        assert loaded and all(name.startswith(url + "/") for name in loaded), loaded
