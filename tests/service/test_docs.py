"""The backend's API docs: Swagger UI and the schema served from the package (no CDN), behind the token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient

from anydepth.errors import WeightsError
from anydepth.service.app import create_app
from anydepth.service.settings import ServiceSettings
from anydepth.web.models import ModelCache

EXTERNAL = re.compile(r"(?i)\b(?:https?:)?//(?!testserver[/:])[a-z0-9.-]+")
"""A URL naming a host other than the server itself (TestClient's ``testserver``)."""


def _no_weights(key):
    raise WeightsError(f"{key.model}: no weights in this test")


def _app(tmp_path, token=None):
    settings = ServiceSettings(data_dir=tmp_path / "data", models={"da3-small": None}, device="cpu", token=token)
    return create_app(settings, ModelCache(loader=_no_weights))


def _urls(html: str):
    return re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)


def test_docs_page_loads_nothing_external(tmp_path):
    import anydepth.service

    with TestClient(_app(tmp_path)) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert not EXTERNAL.search(page.text), EXTERNAL.search(page.text)
        urls = _urls(page.text)
        assert "/openapi.json" in urls and len(urls) >= 4  # the schema, the script, the style sheet, the icon
        packaged = Path(anydepth.service.__file__).parent / "static"
        for url in urls:
            assert url.startswith("/"), url
            response = client.get(url)
            assert response.status_code == 200, url
            if url.startswith("/docs/assets/"):
                assert response.content == (packaged / url.rsplit("/", 1)[1]).read_bytes()
        assert client.get("/docs/assets/swagger-ui-bundle.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
        assert client.get("/openapi.json").json()["info"]["title"] == "anydepth backend"
        for missing in ("/docs/assets/other.js", "/docs/assets/..%2fapp.py", "/redoc"):
            response = client.get(missing)
            assert response.status_code == 404 and set(response.json()) == {"error"}, missing
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy


def test_docs_and_schema_need_the_token(tmp_path):
    guarded = ["/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"]
    with TestClient(_app(tmp_path, token="s3cret")) as client:
        for path in guarded:
            response = client.get(path)
            assert response.status_code == 401 and set(response.json()) == {"error"}, path
            assert client.get(path, params={"token": "wrong"}).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
            assert client.get(path, headers={"X-Token": "s3cret"}).status_code == 200, path
        assert client.get("/health").status_code == 200  # liveness stays open
        page = client.get("/docs", params={"token": "s3cret"})  # a browser opens the link once ...
        assert page.status_code == 200
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "s3cret" not in page.text
        for path in guarded:  # ... and the page's script, style and schema load with the cookie
            assert client.get(path).status_code == 200, path
        assert client.get("/jobs").status_code == 401  # the cookie opens the docs, not the API
