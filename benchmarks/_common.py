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


def matmul_peak_gflops(dtype_name: str, n: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of an n-square matmul in ``dtype_name`` ("float32", "bfloat16") with torch's threads. A dtype
    without a fast kernel (bf16 under ``ONEDNN_MAX_CPU_ISA=AVX2``, about 1 GFLOP/s) is measured on one 512-square
    product instead of minutes of 2048-square ones."""
    import time

    import torch

    dtype = getattr(torch, dtype_name)
    small = torch.randn(512, 512).to(dtype)
    small @ small
    start = time.perf_counter()
    small @ small
    seconds = time.perf_counter() - start
    if seconds > 0.05:
        return 2 * 512**3 / seconds / 1e9
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
