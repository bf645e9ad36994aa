"""Device and precision policy: which device to run on and which dtype the matmuls use."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import sys
from typing import ContextManager, Optional, Union

import torch

from anydepth.errors import InputError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """Device for a name: "auto" -> CUDA if available, else Apple MPS, else CPU; others are checked."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r} ({exc}); use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
    return dev


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU does bf16 matmuls natively (AMX-BF16 or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def auto_picks_cpu_bf16() -> bool:
    """Whether "auto" runs bf16 on this CPU: native bf16 matmuls, torch >= 2, and not switched off by
    ``ANYDEPTH_CPU_BF16=0`` (read on every call, so the setting can change within a process)."""
    if os.environ.get("ANYDEPTH_CPU_BF16", "1").strip() == "0":
        return False
    return cpu_has_fast_bf16() and _torch_major() >= 2


def _torch_major() -> int:
    return int(torch.__version__.split(".")[0])


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision ("fp32", "bf16" or "fp16") for a requested one on a device.

    "auto" picks bf16 on CUDA devices that support it (fp16 on older ones) and on CPUs with native bf16
    matmuls (unless ``ANYDEPTH_CPU_BF16=0``, see :func:`auto_picks_cpu_bf16`), and float32 elsewhere. fp16 on a
    CPU is refused: it is slower than float32 there.
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and auto_picks_cpu_bf16():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise InputError("precision fp16 is not supported on the CPU; use fp32, bf16 or auto")
    if precision == "bf16" and device.type == "cpu" and _torch_major() < 2:
        # torch 1.x CPU autocast leaves LayerNorm inputs in bf16 against float32 weights and fails
        raise InputError(f"precision bf16 on the CPU needs torch >= 2.0 (this is {torch.__version__}); use fp32")
    return precision


def autocast(precision: str, device: torch.device) -> ContextManager:
    """Mixed-precision context for a concrete precision; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30


@functools.cache
def _keep_freed_memory() -> bool:
    if sys.platform != "linux" or os.environ.get("ANYDEPTH_MALLOC_TUNING", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc; absent on musl
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    if ok:
        logger.debug("malloc keeps freed blocks below %d bytes for reuse", _KEEP_BYTES)
    return ok


def keep_freed_memory(device: torch.device) -> bool:
    """On a CPU device under glibc, keep freed large blocks (up to 1 GiB) in the process for reuse.

    glibc serves every block over 32 MiB with a fresh ``mmap`` and unmaps it on free, so each large activation of
    a depth head (45 MiB for one 518x686 map of 32 channels) is page-faulted in anew on every call: filling such a
    tensor took 22 ms instead of 4.5 ms, and the Depth Anything V2 head about a tenth of its time. Raising the
    mmap and trim thresholds (what ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do) keeps the pages.
    The cost: up to 1 GiB of freed memory stays with the process until it exits, as with PyTorch's CUDA caching
    allocator. Process-wide and once; ``ANYDEPTH_MALLOC_TUNING=0`` turns it off. Returns whether it applies.

    The image and multi-view pipelines apply it (DA3-small on 4 views: 12% less CPU time, about 20 MiB more peak
    RSS). The video pipelines do not: the video command sets the opposite (a 128 KiB mmap threshold, see
    ``cli.video_depth_job.return_freed_memory_early``) so that memory stays flat over long videos.
    """
    return device.type == "cpu" and _keep_freed_memory()


def set_cpu_threads(num_threads: Optional[int]) -> None:
    """Use ``num_threads`` intra-op threads for CPU inference (None leaves torch's default)."""
    if num_threads is not None and num_threads > 0:
        torch.set_num_threads(int(num_threads))


def compile_network(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile`` the network where this torch and machine can (fused elementwise kernels; the first call
    of each input size compiles, which takes a minute or more); the network unchanged, with a warning, elsewhere.

    CPU compilation needs a C++ compiler on the PATH; torch 1.x has no ``torch.compile``.
    """
    if not hasattr(torch, "compile"):
        logger.warning("torch %s has no torch.compile; running the network uncompiled", torch.__version__)
        return net
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        logger.warning("torch.compile on the CPU needs a C++ compiler (g++ or clang++); running uncompiled")
        return net
    return torch.compile(net)
