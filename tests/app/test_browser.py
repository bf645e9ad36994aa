"""The Gradio app in headless Chromium: upload an image, click Run, the depth image appears and is not blank."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from tests.helpers.browser import element_pixels, free_port, headless_chromium, missing_browser, wait_for
from tests.helpers.inputs import scene_views

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=f"browser tests: {missing_browser()}")


def _upload(driver, path) -> None:
    """Puts ``path`` into the app's file input and waits until the page lists it."""
    wait_for(driver, "return document.querySelector('#inputs input[type=file]');")
    driver.find_element("css selector", "#inputs input[type=file]").send_keys(str(path))
    # the name is split over elements (stem, suffix); textContent joins them
    listed = "return document.querySelector('#inputs').textContent.replace(/\\s/g, '').includes(arguments[0]);"
    wait_for(driver, listed, args=(path.name,))


def test_upload_run_and_see_the_depth(tmp_path, da3_small_folder, monkeypatch):
    pytest.importorskip("gradio")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from anydepth.app.runner import AppSettings
    from anydepth.app.ui import create_app, launch

    weights, _ = da3_small_folder
    settings = AppSettings(weights=str(weights), device="cpu", precision="fp32", work_dir=tmp_path / "runs")
    image = tmp_path / "view.png"
    Image.fromarray(scene_views(1, 120, 160)[0]).save(image)
    blocks = create_app(settings)
    port = free_port()
    launch(settings, port=port, blocks=blocks, prevent_thread_lock=True, quiet=True)
    try:
        with headless_chromium(1280, 1100) as driver:
            driver.get(f"http://127.0.0.1:{port}/")
            _upload(driver, image)
            driver.execute_script(  # the smallest processing size keeps the run short
                "const s = document.querySelector('input[type=number][aria-label*=\"Processing\"]');"
                "if (s) { s.value = 56; s.dispatchEvent(new Event('input', {bubbles: true})); }"
            )
            driver.find_element("css selector", "#run").click()
            wait_for(
                driver,
                "const i = document.querySelector('#depth img'); return i && i.complete && i.naturalWidth > 0;",
                timeout=90,
            )
            summary = wait_for(driver, "return document.querySelector('#summary').innerText;")
            assert "da3-small: 1 view(s)" in summary
            depth = element_pixels(driver, driver.find_element("css selector", "#depth img"), tmp_path / "app.png")
            assert depth.shape[0] > 40 and depth.shape[1] > 40
            assert depth.std() > 10, "the depth image is blank"
            assert len(np.unique(depth.reshape(-1, 3), axis=0)) > 50

            # the 3D scene: Gradio's Model3D draws scene.glb into a canvas; its points are coloured, while the
            # block's label and buttons drawn over the canvas are grey
            wait_for(driver, "const c = document.querySelector('#scene canvas'); return c && c.width > 300;", 30)
            canvas = driver.find_element("css selector", "#scene canvas")
            deadline = time.monotonic() + 30
            while True:
                scene = element_pixels(driver, canvas, tmp_path / "app_scene.png")[40:].astype(int)
                coloured = (scene.max(-1) - scene.min(-1)) > 40
                if coloured.sum() > 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert coloured.sum() > 200, f"the 3D scene shows no points ({coloured.sum()} coloured pixels)"
    finally:
        blocks.close()
