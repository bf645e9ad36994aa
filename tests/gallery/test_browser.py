"""The gallery in headless Chromium: a real uvicorn on loopback, the three.js viewer loads scene.glb and draws it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.browser import element_pixels, headless_chromium, missing_browser, uvicorn_server, wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from anydepth.gallery.server import create_gallery_app
from tests.helpers.gallery_scenes import build_gallery

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=f"browser tests: {missing_browser()}")

BACKGROUND = np.array([0x20, 0x21, 0x24])  # the viewer's clear colour


def test_scene_page_draws_the_glb_and_depth_maps(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    root = build_gallery(weights, tmp_path)
    with uvicorn_server(create_gallery_app(root, token="t0k")) as url, headless_chromium() as driver:
        driver.get(url + "/?token=t0k")  # the token once; the cookie carries it to the thumbnails and 3D files
        thumbnails = wait_for(
            driver,
            "const i = [...document.images]; return i.length && i.every(x => x.complete && x.naturalWidth > 0)"
            " && i.length;",
        )
        assert thumbnails == 2  # room and <script>: group/points has no image
        driver.find_element("css selector", 'a[href="/scene/room"]').click()
        points = wait_for(driver, "return window.viewerReady && window.viewerPointCount;", timeout=60)
        assert driver.execute_script("return window.viewerError || null;") is None
        assert points > 100
        wait_for(driver, "return [...document.images].every(x => x.complete && x.naturalWidth > 0);")

        canvas = element_pixels(driver, driver.find_element("css selector", "#viewer canvas"), tmp_path / "viewer.png")
        assert canvas.shape[0] > 200 and canvas.shape[1] > 200
        drawn = np.abs(canvas.astype(int) - BACKGROUND).sum(-1) > 30  # points and frusta, not the clear colour
        assert drawn.mean() > 0.002, f"the 3D view is blank ({drawn.sum()} drawn pixels)"
        assert len(np.unique(canvas[drawn].reshape(-1, 3), axis=0)) > 20  # coloured points, not one flat colour

        depth = element_pixels(driver, driver.find_element("css selector", ".depth img"), tmp_path / "depth.png")
        assert depth.shape[0] > 50 and depth.std() > 10, "the depth map is not shown"
        half = depth.shape[1] // 2  # depth_vis: the input image, then its coloured depth
        assert depth[:, half:].std() > 10

        driver.get(url + "/scene/group/points")  # the ply-only scene: points, no frusta
        assert wait_for(driver, "return window.viewerReady && window.viewerPointCount;", timeout=60) == points
        ply = element_pixels(driver, driver.find_element("css selector", "#viewer canvas"), tmp_path / "ply.png")
        assert (np.abs(ply.astype(int) - BACKGROUND).sum(-1) > 30).mean() > 0.002
