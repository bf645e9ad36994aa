"""Every error the backend answers is a 4xx JSON body that names no server folder: hostile paths, paths the system
refuses, lists naming missing files, empty folders. No job runs here (a model cache without weights)."""

from __future__ import annotations

import re
import struct
import zlib

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient

from anydepth.errors import WeightsError
from anydepth.service.app import create_app
from anydepth.service.settings import ServiceSettings
from anydepth.service.store import DONE, JobStore
from anydepth.web.models import ModelCache

DONE_JOB = "d" * 32
ABSOLUTE = re.compile(r"(?<![\w.~-])/[\w.-]+/")
"""An absolute path (a slash-rooted name followed by a folder separator) anywhere in a message."""


def _no_weights(key):
    raise WeightsError(f"{key.model}: no weights in this test")


def _settings(tmp_path, **kw) -> ServiceSettings:
    kw.setdefault("poll_seconds", 0.05)
    return ServiceSettings(data_dir=tmp_path / "data", models={"da3-small": None}, device="cpu", **kw)


@pytest.fixture()
def backend(tmp_path):
    """(client, settings, allowed root): a server with one finished job and a root of hostile neighbours."""
    root = tmp_path / "root"
    (root / "empty").mkdir(parents=True)
    (root / "loop").symlink_to("loop")
    (root / "a.png").write_bytes(b"\x89PNG not decoded at submission")
    (root / "missing.txt").write_text("a.png\nnot_there.png\n")
    (root / "long.txt").write_text("a.png\n" + "x" * 300 + ".png\n")
    (tmp_path / "second_root").mkdir()  # an empty allowed root
    settings = _settings(tmp_path, allowed_roots=[root, tmp_path / "second_root"])
    export_dir = settings.exports_dir / DONE_JOB
    (export_dir / "exports" / "mini_npz").mkdir(parents=True)
    (export_dir / "exports" / "mini_npz" / "results.npz").write_bytes(b"PK")
    (export_dir / "loop").symlink_to("loop")
    store = JobStore(settings.database)
    store.create(DONE_JOB, "da3-small", {"fps": 1.0}, [str(root / "a.png")], "images", str(export_dir))
    store.claim_next()
    store.finish(DONE_JOB, DONE)
    store.close()
    with TestClient(create_app(settings, ModelCache(loader=_no_weights))) as client:
        yield client, settings, root


def _assert_client_error(response, *statuses):
    """A 4xx (one of ``statuses`` when given) with an ``{"error"}`` body that names no server folder."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"]
    assert not ABSOLUTE.search(body["error"]), body["error"]
    return body["error"]


def test_paths_the_system_refuses_get_a_4xx(backend):
    client, _, root = backend
    base = f"/jobs/{DONE_JOB}/files/"
    assert client.get(base + "exports/mini_npz/results.npz").status_code == 200
    for variant in ["x" * 300, "exports/" + "x" * 300 + ".npz", "loop", "loop/results.npz"]:
        _assert_client_error(client.get(base + variant), 400)
    _assert_client_error(client.get(base + "exports/mini_npz/results.npz/x"), 404)  # a file where a folder should be

    body = {"export_format": "mini_npz"}
    for inputs in (["x" * 300], [str(root / ("x" * 300))], ["loop"], ["loop/a.png"], ["long.txt"]):
        _assert_client_error(client.post("/jobs", json={**body, "inputs": inputs}), 400)
    _assert_client_error(client.post("/jobs", json={**body, "inputs": ["a.png/below.png"]}), 404)


def test_errors_name_no_server_folder(backend, tmp_path):
    client, _, root = backend
    body = {"export_format": "mini_npz"}
    cases = [
        (["missing.txt"], 400, "not_there.png"),  # a list naming a missing file
        (["empty"], 400, "no images"),  # an empty folder
        ([str(root / "empty")], 400, "no images"),
        ([str(tmp_path / "second_root")], 400, "second_root: no images"),  # an allowed root itself
        ([str(root / "nope.png")], 404, "nope.png"),
        ([str(root / "empty" / ("x" * 300))], 400, "too long"),
    ]
    for inputs, status, needle in cases:
        message = _assert_client_error(client.post("/jobs", json={**body, "inputs": inputs}), status)
        assert needle in message and str(tmp_path) not in message, (inputs, message)
    elsewhere = str(tmp_path / "elsewhere.png")  # not a server folder: the client's own words come back
    outside = client.post("/jobs", json={**body, "inputs": [elsewhere]})
    assert outside.status_code == 403 and outside.json()["error"] == f"path {elsewhere!r} is outside the allowed roots"


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels and that holds none: only its header can be read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("max_megapixels", [64, 10**6], ids=["default", "above-what-decodes"])
def test_huge_declared_sizes_get_413_at_submission(tmp_path, max_megapixels):
    from PIL import Image

    bomb = 20_000 * 20_000  # over PIL's decompression-bomb limit (twice Image.MAX_IMAGE_PIXELS)
    assert bomb > 2 * Image.MAX_IMAGE_PIXELS
    root = tmp_path / "root"
    root.mkdir()
    (root / "bomb.png").write_bytes(_png_declaring(20_000, 20_000))
    (root / "wide.png").write_bytes(_png_declaring(9_000, 9_000))  # under PIL's limit, over the default one
    settings = _settings(tmp_path, allowed_roots=[root], max_pixels=max_megapixels * 2**20)
    with TestClient(create_app(settings, ModelCache(loader=_no_weights))) as client:
        for name in ("bomb.png", "wide.png") if max_megapixels == 64 else ("bomb.png",):
            message = _assert_client_error(client.post("/jobs", json={"inputs": [name]}), 413)
            assert name in message
            upload = [("files", (name, (root / name).read_bytes(), "image/png"))]
            message = _assert_client_error(client.post("/jobs/upload", files=upload), 413)
            assert name in message
        assert client.get("/jobs").json()["jobs"] == []  # nothing queued to fail later


def test_options_the_served_model_cannot_honour_are_refused_at_submission(backend):
    client, _, _ = backend
    body = {"inputs": ["a.png"], "export_format": "mini_npz"}
    message = _assert_client_error(client.post("/jobs", json={**body, "export_format": "mini_npz-gs_ply"}), 400)
    assert "gs_ply" in message and "da3-small" in message  # no Gaussian head
    message = _assert_client_error(client.post("/jobs", json={**body, "export_feat": "3,12"}), 400)
    assert message.startswith("export_feat") and "0 to 11" in message  # vits has 12 blocks
    upload = [("files", ("a.png", b"\x89PNG", "image/png"))]
    options = '{"export_format": "gs_ply"}'
    assert "gs_ply" in _assert_client_error(client.post("/jobs/upload", files=upload, data={"options": options}), 400)
    assert client.get("/jobs").json()["jobs"][0]["id"] == DONE_JOB  # nothing queued to fail later
    assert client.post("/jobs", json={**body, "export_feat": "0,11"}).status_code == 201
