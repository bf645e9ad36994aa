"""`anydepth gallery` in-process (TestClient): listing, files, path confinement, escaping, tokens, the bundle."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from anydepth.gallery import scenes as gallery_scenes
from anydepth.gallery.server import STATIC_DIR, TOKEN_COOKIE, create_gallery_app
from tests.helpers.gallery_scenes import SCRIPT_NAME, SECRET, build_gallery

URL = re.compile(rb"(?i)\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}")
# the one URL in the bundle: an XML namespace three.js passes to createElementNS, never fetched
BUNDLE_URLS = {b"http://www.w3.org/1999/xhtml"}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, da3_small_folder):
    weights, _ = da3_small_folder
    return build_gallery(weights, tmp_path_factory.mktemp("gallery_base"))


@pytest.fixture()
def client(gallery):
    with TestClient(create_gallery_app(gallery)) as test_client:
        yield test_client


def _assert_error(response, *statuses):
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"] and 'File "' not in body["error"]
    assert SECRET not in response.content


def test_scenes_are_listed_with_thumbnails(client):
    listed = {s["name"]: s for s in client.get("/api/scenes").json()["scenes"]}
    assert set(listed) == {"room", "group/points", SCRIPT_NAME}  # no hidden, no symlinked folder
    room = listed["room"]
    assert room["thumbnail"] == "/files/room/depth_vis/0000.jpg"
    assert room["model_3d"] == room["glb"] == "/files/room/scene.glb" and room["ply"] == "/files/room/scene.ply"
    assert room["depth_images"] == [f"/files/room/depth_vis/{i:04d}.jpg" for i in range(3)]
    assert "/files/room/escape.jpg" not in room["input_images"]  # a symlink out is not offered
    assert listed["group/points"]["model_3d"] == "/files/group/points/scene.ply"
    assert listed["group/points"]["thumbnail"] is None
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="/scene/room"' in page.text and 'src="/files/room/depth_vis/0000.jpg"' in page.text
    assert 'href="/scene/group/points"' in page.text and "linked_scene" not in page.text


def test_scene_page_has_the_viewer_and_depth_maps(client):
    page = client.get("/scene/room").text
    assert '<div id="viewer" data-src="/files/room/scene.glb" data-kind="glb">' in page
    assert '<script src="/static/viewer.js" defer></script>' in page
    assert all(f'src="/files/room/depth_vis/{i:04d}.jpg"' in page for i in range(3))
    ply_page = client.get("/scene/group/points").text
    assert 'data-src="/files/group/points/scene.ply" data-kind="ply"' in ply_page
    assert client.get("/api/scene/room").json()["glb"] == "/files/room/scene.glb"
    _assert_error(client.get("/scene/group"), 404)  # a folder, but not a scene
    _assert_error(client.get("/scene/nowhere"), 404)


def test_names_are_escaped(client):
    index = client.get("/").text
    assert "<script>alert" not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    href = "/scene/" + quote(SCRIPT_NAME, safe="/")
    assert f'href="{href}"' in index
    page = client.get(href)
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script" not in page.text.replace('<script src="/static/viewer.js" defer></script>', "")
    image = client.get("/files/" + quote(SCRIPT_NAME) + "/depth_vis/0000.jpg")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


def test_files_are_served_with_their_types(client, gallery):
    for path, content_type in [
        ("room/scene.glb", "model/gltf-binary"),
        ("room/scene.ply", "application/octet-stream"),
        ("room/depth_vis/0001.jpg", "image/jpeg"),
    ]:
        response = client.get("/files/" + path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == content_type
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == (gallery / path).read_bytes()
    _assert_error(client.get("/files/room/notes.txt"), 403)  # not an allowed type
    _assert_error(client.get("/files/room/exports/mini_npz/results.npz"), 403)
    _assert_error(client.get("/files/room/missing.jpg"), 404)
    _assert_error(client.get("/files/.hidden_scene/scene.glb"), 403)
    _assert_error(client.get("/nothing/here"), 404)


@pytest.mark.parametrize(
    "variant",
    [
        "../outside/secret.jpg",
        "room/../../outside/secret.jpg",
        "%2e%2e/outside/secret.jpg",
        "room/%2e%2e/%2e%2e/outside/secret.jpg",
        "..%2foutside%2fsecret.jpg",
        "%2E%2E%2Foutside%2Fsecret.jpg",
        "%252e%252e/outside/secret.jpg",
        "%252e%252e%252foutside%252fsecret.jpg",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "%2F" + quote(str(Path("/").resolve() / "etc" / "passwd"), safe=""),
        "room/escape.jpg",
        "room/escape_dir/secret.jpg",
        "room/escape_dir/secret.glb",
        "linked_scene/scene.glb",
        "room%5c..%5c..%5coutside%5csecret.jpg",
        "room/scene.glb%00.jpg",
        "room/%00scene.glb",
        "room/depth_vis/0000.jpg%2500",
        # paths the system refuses to look up: a 4xx, never a 500
        "x" * 300 + ".jpg",
        "room/" + "x" * 256 + "/scene.glb",
        "room/loop.jpg",
        "room/loop.jpg/x.jpg",
        "room/scene.glb/x.jpg",
    ],
)
def test_paths_cannot_leave_the_gallery(client, variant):
    for prefix in ("/files/", "/scene/", "/api/scene/"):
        response = client.get(prefix + variant)
        assert 400 <= response.status_code < 500, (prefix, variant, response.status_code)
        _assert_error(response, response.status_code)
        assert b"root:" not in response.content


def test_absolute_gallery_path_is_refused(client, gallery):
    _assert_error(client.get("/files/" + quote(str(gallery / "room" / "scene.glb"))), 403, 404)


def test_pages_load_nothing_external_and_serve_the_packaged_bundle(client):
    pages = [client.get(p) for p in ("/", "/scene/room", "/scene/group/points", "/scene/" + quote(SCRIPT_NAME))]
    for page in pages:
        assert page.status_code == 200
        assert not URL.search(page.content), URL.search(page.content)
        assert b"http:" not in page.content and b"https:" not in page.content
        assert "default-src 'self'" in page.headers["content-security-policy"]
    scripts = set(re.findall(r'<script[^>]*src="([^"]+)"', pages[1].text))
    assert scripts == {"/static/viewer.js"}
    bundle = client.get("/static/viewer.js")
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
    import anydepth.gallery

    packaged = Path(anydepth.gallery.__file__).parent / "static" / "viewer.js"
    assert packaged == STATIC_DIR / "viewer.js"
    assert bundle.content == packaged.read_bytes()
    assert len(bundle.content) > 100_000  # three.js is in it, not fetched from elsewhere
    assert set(re.findall(rb"https?://[^\"'\s)]+", bundle.content)) <= BUNDLE_URLS
    assert b"viewerReady" in bundle.content and b"GLTFLoader" not in bundle.content[:200]
    _assert_error(client.get("/static/other.js"), 404)
    _assert_error(client.get("/static/..%2fserver.py"), 404)


def test_token(gallery):
    with TestClient(create_gallery_app(gallery, token="s3cret")) as client:
        assert client.get("/health").status_code == 200
        for path in ("/", "/api/scenes", "/files/room/scene.glb", "/static/viewer.js"):
            _assert_error(client.get(path), 401)
        _assert_error(client.get("/", params={"token": "wrong"}), 401)
        _assert_error(client.get("/", headers={"Authorization": "Bearer wrong"}), 401)
        assert client.get("/api/scenes", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/scenes", headers={"X-Token": "s3cret"}).status_code == 200
        page = client.get("/", params={"token": "s3cret"})  # a browser opens the link once ...
        assert page.status_code == 200
        cookie = page.headers["set-cookie"]
        assert cookie.startswith(TOKEN_COOKIE + "=s3cret") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert client.get("/files/room/scene.glb").status_code == 200  # ... and its images load with the cookie


def test_scene_folders_match_the_exporters():
    from anydepth.export.depth_vis import DEPTH_VIS_DIR
    from anydepth.export.glb import GLB_PATH
    from anydepth.export.ply import PLY_PATH

    assert GLB_PATH.name == gallery_scenes.GLB_NAME and PLY_PATH.name == gallery_scenes.PLY_NAME
    assert DEPTH_VIS_DIR.name == gallery_scenes.DEPTH_VIS_DIR


def test_gallery_command_binds_loopback_by_default(tmp_path, gallery, monkeypatch):
    import uvicorn

    from tests.helpers.cli import run_cli

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    code, output = run_cli("gallery", "--gallery-dir", gallery)
    assert code == 0, output
    assert served["host"] == "127.0.0.1" and served["port"] == 8007  # upstream's `da3 gallery` port
    with TestClient(served["app"]) as client:
        assert client.get("/api/scenes").status_code == 200
    code, output = run_cli("gallery", "--gallery-dir", tmp_path / "missing")
    assert code == 1 and "is not a folder" in output and "Traceback" not in output


def test_gallery_open_browser_opens_the_served_address(gallery, monkeypatch):
    import threading
    import webbrowser

    import uvicorn

    from tests.helpers.cli import run_cli

    opened = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr(webbrowser, "open", opened.append)

    class Now:  # the timer's call, at once
        def __init__(self, delay, function, args):
            self.call = lambda: function(*args)

        def start(self):
            self.call()

    monkeypatch.setattr(threading, "Timer", Now)
    code, output = run_cli("gallery", "--gallery-dir", gallery, "--port", "8123", "--open-browser")
    assert code == 0, output
    assert opened == ["http://127.0.0.1:8123/"]
    code, output = run_cli("gallery", "--gallery-dir", gallery, "--no-open-browser")
    assert code == 0 and opened == ["http://127.0.0.1:8123/"]


def test_gallery_command_refuses_an_open_host_without_a_token(gallery, monkeypatch):
    import uvicorn

    from tests.helpers.cli import assert_one_line_error, run_cli

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.delenv("ANYDEPTH_GALLERY_TOKEN", raising=False)
    for host in ("0.0.0.0", "::", "10.0.0.2"):
        code, output = run_cli("gallery", "--gallery-dir", gallery, "--host", host)
        assert_one_line_error(code, output, f"--host {host}", "--token", "--allow-open")
    assert served == {}
    code, output = run_cli("gallery", "--gallery-dir", gallery, "--host", "0.0.0.0", "--allow-open")
    assert code == 0 and served["host"] == "0.0.0.0", output
    code, output = run_cli("gallery", "--gallery-dir", gallery, "--host", "0.0.0.0", "--token", "t")
    assert code == 0, output
    code, output = run_cli("gallery", "--help")
    assert "--allow-open" in output
