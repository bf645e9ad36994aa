"""What every benchmark script shares (imported as ``from _common import ...``: the scripts run from this folder)."""

from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """``lscpu``'s "Model name", printed with every figure (the processor's name where lscpu has none)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine() or "unknown"


def write_photos(folder, count: int, seed: int = 0) -> None:
    """``count`` 640x480 JPEGs (``0000.jpg`` ...): shifted gradients with noise, so that each one encodes and
    decodes like a photo rather than a flat image."""
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(count):
        img = np.stack([(xx + 3 * i) % 256, (yy + i) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(f"{folder}/{i:04d}.jpg", quality=90)
