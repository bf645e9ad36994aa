"""The backend's API docs from the package: the OpenAPI schema and Swagger UI (no CDN), behind the server's token."""

# No `from __future__ import annotations` here: FastAPI reads these annotations at runtime.

import base64
import hashlib
import re
from pathlib import Path as FsPath
from typing import Optional

from fastapi import FastAPI, Path, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response

from anydepth.web.security import ServiceError, request_token_source

STATIC_DIR = FsPath(__file__).with_name("static")
ASSETS_URL = "/docs/assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",  # the licences of what the bundle holds
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
}
"""Swagger UI's files from swagger-ui-dist (copied by web/build.mjs, ``make viewer``), the only ones served."""

TOKEN_COOKIE = "anydepth_backend_token"
"""Set when the docs are opened with ``?token=``: the page's script, style sheet and schema then load with it."""


def add_docs(app: FastAPI, token: Optional[str]) -> None:
    """Adds ``/openapi.json``, ``/docs`` and ``/docs/assets/{name}`` to ``app`` (made with ``docs_url``,
    ``redoc_url`` and ``openapi_url`` None).

    With a ``token``, each needs it: ``Authorization: Bearer <t>``, ``X-Token``, or once ``?token=<t>`` in a
    browser, whose answer sets an HttpOnly same-site cookie that the docs (never the API) accept.
    """

    def check(request: Request) -> Optional[str]:
        if not token:
            return None
        source = request_token_source(request, token, TOKEN_COOKIE)
        if source is None:
            raise ServiceError(401, "missing or wrong token; open the docs with ?token=<token>")
        return source

    def answer(response: Response, source: Optional[str]) -> Response:
        if source == "query":
            response.set_cookie(TOKEN_COOKIE, token or "", httponly=True, samesite="strict", path="/")
        return response

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> Response:
        return answer(JSONResponse(app.openapi()), check(request))

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would send the schema to a public validator
        )
        page.headers["Content-Security-Policy"] = _policy(bytes(page.body))
        return answer(page, check(request))

    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    def asset(request: Request, name: str = Path(..., max_length=100)) -> Response:
        source = check(request)
        if name not in ASSETS:
            raise ServiceError(404, f"no docs file {name!r}")
        return answer(FileResponse(STATIC_DIR / name, media_type=ASSETS[name]), source)


def _policy(html: bytes) -> str:
    """Same-origin only, the page's one inline script allowed by its hash: the docs can load nothing elsewhere."""
    inline = re.findall(rb"<script>(.*?)</script>", html, flags=re.S)
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(s).digest()).decode() + "'" for s in inline)
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
