"""What every benchmark script shares (imported as ``from _common import ...``: the scripts run from this folder)."""

from __future__ import annotations

import platform
import subprocess
from typing import Dict, Optional


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


def synthetic_views(count: int, height: int, width: int) -> list:
    """``count`` float (height, width, 3) images in [0, 255]: shifted gradients with noise (seed 0), the inputs of
    the side-by-side speed runs and the profiles (``.astype(np.uint8)`` for RGB frames)."""
    import numpy as np

    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:height, 0:width]
    return [
        np.clip(
            np.stack([(xx * 0.4 + 9 * i) % 256, (yy * 0.5 + 5 * i) % 256, (xx + yy) * 0.2 % 256], -1)
            + rng.normal(0, 10, (height, width, 3)),
            0,
            255,
        )
        for i in range(count)
    ]


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


def count_flops_by_op(fn) -> Optional[Dict[str, int]]:
    """FLOPs per aten / mkldnn operation of one call of ``fn`` under ``FlopCounterMode``, with the kernels that it
    does not count added by formula: CPU flash attention, and oneDNN's convolution and linear with post-ops (the
    fused kernels of layers/linear.py and layers/dpt_blocks.py). None on a torch without the counter."""
    import numpy as np
    import torch

    try:
        from torch.utils import flop_counter
    except ImportError:
        return None

    def shapes(args, kwargs):  # the counter passes shapes (or tensors, by version), positionally or by schema name
        values = list(args) + [v for k, v in kwargs.items() if k != "out_shape"]
        keep = [v for v in values if isinstance(v, (tuple, list, torch.Size)) or hasattr(v, "shape")]
        return [tuple(getattr(v, "shape", v)) for v in keep]

    def sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs):
        (q, k, v) = (tuple(getattr(x, "shape", x)) for x in (query, key, value))
        *batch, n_q, d = q
        return 2 * int(np.prod(batch)) * n_q * k[-2] * (d + v[-1])

    def conv_fused(*args, out_shape=None, **kwargs):  # (x, [other,] w, ...)
        w_shape = next(s for s in shapes(args, kwargs)[1:] if len(s) == 4 and s != tuple(out_shape))
        return 2 * int(np.prod(out_shape)) * int(np.prod(w_shape[1:]))

    def linear_fused(*args, out_shape=None, **kwargs):  # (x, w, ...)
        return 2 * int(np.prod(out_shape)) * int(shapes(args, kwargs)[1][-1])

    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = sdpa_cpu
    for name, formula in (("_convolution_pointwise", conv_fused), ("_linear_pointwise", linear_fused)):
        if hasattr(torch.ops.mkldnn, name):
            mapping[getattr(torch.ops.mkldnn, name)] = formula
    with flop_counter.FlopCounterMode(display=False, custom_mapping=mapping) as counter, torch.inference_mode():
        fn()
    return {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
