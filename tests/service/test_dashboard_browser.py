"""The backend's dashboard and its mounted gallery in headless Chromium: live job progress, the warm model and its
memory, a finished scene's link into /gallery where the 3D viewer draws it; no console error, nothing from another
host. Screenshots are saved in the test's tmp folder."""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers.browser import console_errors, headless_chromium, missing_browser, uvicorn_server, wait_for

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from anydepth.errors import WeightsError  # noqa: E402
from anydepth.service.app import create_app  # noqa: E402
from anydepth.web.models import ModelCache  # noqa: E402
from tests.helpers.backend import da3_settings  # noqa: E402
from tests.service.test_upstream_protocol import _write_views  # noqa: E402

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=f"browser tests: {missing_browser()}")

TOKEN = "t0k"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _loaded_from(driver) -> list:
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")


def _rows(driver, table: str) -> list:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent));",
        f"#{table}",
    )


def test_dashboard_follows_a_job_into_the_mounted_gallery(tmp_path, da3_small_folder, warm_cache):
    weights, _ = da3_small_folder
    root = tmp_path / "root"
    gallery = root / "gallery"
    gallery.mkdir(parents=True)
    images = _write_views(root / "images")
    settings = da3_settings(tmp_path, weights, allowed_roots=[root], gallery_dir=gallery, token=TOKEN)
    app = create_app(settings, warm_cache)
    with uvicorn_server(app) as url, headless_chromium() as driver:
        assert httpx.get(url + "/dashboard").status_code == 401  # the token, also for the page
        assert httpx.get(url + "/gallery/").status_code == 401
        driver.get(url + "/dashboard?token=" + TOKEN)  # once; the cookie carries it to the data and the gallery
        wait_for(driver, "return document.body.dataset.refreshed;")
        assert _rows(driver, "finished") == [["No finished jobs."]]
        driver.save_screenshot(str(tmp_path / "dashboard-empty.png"))

        body = {"image_paths": images, "export_dir": str(gallery / "room"), "export_format": "glb-depth_vis",
                "process_res": 112}  # fmt: skip
        task_id = httpx.post(url + "/inference", json=body, headers=AUTH).json()["task_id"]
        link = wait_for(
            driver, "const a = document.querySelector('#finished a'); return a && a.getAttribute('href');", timeout=120
        )  # the page polls: the job appears, runs and ends without a reload
        assert link == "/gallery/scene/room"
        finished = _rows(driver, "finished")
        assert finished[0][0] == task_id[:8] and finished[0][2] == "done (completed)"
        models = _rows(driver, "models")
        assert models[0][0] == "da3-small" and models[0][2].endswith("MiB") and float(models[0][2].split()[0]) > 1
        memory = driver.find_element("id", "memory").text
        assert "Memory budget" in memory and "in use" in memory and "no CUDA device" in memory
        assert not driver.find_element("id", "gallery-link").get_attribute("hidden")
        driver.save_screenshot(str(tmp_path / "dashboard-finished.png"))

        driver.find_element("css selector", "#finished a").click()
        points = wait_for(driver, "return window.viewerReady && window.viewerPointCount;", timeout=60)
        assert points > 100 and driver.execute_script("return window.viewerError || null;") is None
        wait_for(
            driver,
            "return [...document.images].every(x => x.complete && x.naturalWidth > 0) && document.images.length;",
        )
        assert len(driver.find_elements("css selector", ".depth img")) == 3
        driver.save_screenshot(str(tmp_path / "gallery-scene.png"))

        driver.find_element("css selector", "header a").click()  # back to the gallery's index, under the mount
        wait_for(driver, "return location.pathname === '/gallery/' && document.querySelectorAll('.card').length;")
        assert driver.find_element("css selector", ".card").get_attribute("href") == url + "/gallery/scene/room"
        driver.save_screenshot(str(tmp_path / "gallery-index.png"))

        loaded = _loaded_from(driver)
        assert loaded and all(name.startswith(url + "/") for name in loaded), loaded
        assert console_errors(driver) == []
    for name in ("dashboard-empty", "dashboard-finished", "gallery-scene", "gallery-index"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def test_dashboard_shows_running_and_queued_jobs_with_progress(tmp_path, da3_small_folder):
    release = threading.Event()

    def slow(key):
        release.wait(60)
        raise WeightsError("no weights in this test")

    weights, _ = da3_small_folder
    root = tmp_path / "root"
    images = _write_views(root / "images")
    settings = da3_settings(tmp_path, weights, allowed_roots=[root])
    app = create_app(settings, ModelCache(loader=slow))
    try:
        with uvicorn_server(app) as url, headless_chromium() as driver:
            for _ in range(2):
                assert httpx.post(url + "/inference", json={"image_paths": images}).status_code == 200
            driver.get(url + "/dashboard")
            progress = wait_for(driver, "const p = document.querySelector('#running progress'); return p && p.value;")
            assert 0 < progress < 1
            assert _rows(driver, "running")[0][4] == "loading model"
            assert len(_rows(driver, "queued")) == 1
            assert driver.find_element("id", "gallery-link").get_attribute("hidden")  # no --gallery-dir
            driver.save_screenshot(str(tmp_path / "dashboard-running.png"))
            release.set()
            wait_for(
                driver,
                "return document.querySelectorAll('#finished td:nth-child(3) .state-failed').length === 2;",
                timeout=30,
            )
            assert "no weights" in _rows(driver, "finished")[0][4]
            driver.save_screenshot(str(tmp_path / "dashboard-failed.png"))
            assert console_errors(driver) == []
            loaded = _loaded_from(driver)
            assert all(name.startswith(url + "/") for name in loaded), loaded
    finally:
        release.set()
        time.sleep(0.1)
