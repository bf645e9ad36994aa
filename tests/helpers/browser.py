"""Headless Chromium for the browser tests (selenium + chromium-driver), and servers on a loopback port.

``scripts/install_browser.sh`` installs Chromium and its driver; without them the browser tests skip and say so.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_browser() -> Optional[str]:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return "no chromium binary (run scripts/install_browser.sh)"
    if not shutil.which("chromedriver"):
        return "no chromedriver (run scripts/install_browser.sh)"
    return None


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A selenium Chrome driver on the system's Chromium, headless, WebGL through SwiftShader (no GPU needed)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",  # software WebGL for three.js
        "--disable-extensions",
        "--no-first-run",
        "--disable-background-networking",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for console_errors()
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """``app`` served by a real uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def console_errors(driver: Any) -> list:
    """The page's console errors since the last call (failed loads, exceptions, content-policy refusals)."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def wait_for(driver: Any, script: str, timeout: float = 30.0, args: tuple = ()) -> Any:
    """Polls ``script`` (JavaScript returning a value; ``args`` are its ``arguments``) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for: {script}"
        time.sleep(0.1)


def element_pixels(driver: Any, element: Any, save_as: Path) -> np.ndarray:
    """A screenshot of the page saved at ``save_as`` (PNG) and the pixels of ``element`` in it, (h, w, 3) uint8."""
    from PIL import Image

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    png = driver.get_screenshot_as_png()
    save_as.write_bytes(png)
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom];", element
    )
    page = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    left, top, right, bottom = (round(v) for v in rect)
    return page[max(top, 0) : bottom, max(left, 0) : right]
