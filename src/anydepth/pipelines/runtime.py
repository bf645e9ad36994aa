"""Runtime settings of the pipelines: device, precision policy, CPU threads, allocator profile, compilation."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import sys
import time
from typing import Any, Callable, ContextManager, Optional, Union

import torch

from anydepth.errors import InputError
from anydepth.layers.precision import PrecisionPolicy

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
    """True where the CPU has native bf16 matmul instructions (AMX-BF16 or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


# "auto" takes bf16 only where its matmuls run at least this many times as fast as float32 ones: the rest of a
# network (normalisations, activations, the casts) gains less than its matmuls, and float32 is the more accurate
BF16_MIN_MATMUL_SPEEDUP = 1.5


@functools.cache
def cpu_bf16_matmul_speedup() -> float:
    """How many times as fast a bf16 matmul runs as a float32 one on this CPU, measured once per process (best of
    five 384-square products each, about 10 ms), under this process's settings: ``ONEDNN_MAX_CPU_ISA`` and
    ``MKL_ENABLE_INSTRUCTIONS`` included.

    Native bf16 instructions alone do not make bf16 the faster choice. Measured (benchmarks/RESULTS.md): AMX runs
    bf16 matmuls about 7x as fast as float32 ones at 2048-square (this probe's small products: about 4x), an AMD
    EPYC with AVX512-BF16 2.3x, an Intel core held to AVX512-BF16 without AMX 0.6x, and a oneDNN held below the
    CPU's instruction set (``ONEDNN_MAX_CPU_ISA=AVX2``) has no bf16 kernel at all.
    """
    n = 384
    a, b = torch.randn(n, n), torch.randn(n, n)

    def best(x: torch.Tensor, y: torch.Tensor) -> float:
        start = time.perf_counter()
        x @ y  # the first call builds oneDNN's kernel for the shape
        first = time.perf_counter() - start
        if first > 0.05:  # a fallback kernel (tens of ms for this size): one timing says enough
            return first
        times = []
        for _ in range(5):
            start = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.no_grad():
        fp32 = best(a, b)
        bf16 = best(a.to(torch.bfloat16), b.to(torch.bfloat16))
    return fp32 / max(bf16, 1e-9)


def auto_picks_cpu_bf16() -> bool:
    """Whether "auto" runs bf16 on this CPU: torch >= 2, native bf16 instructions, and bf16 matmuls measured at
    least :data:`BF16_MIN_MATMUL_SPEEDUP` times as fast as float32 ones (:func:`cpu_bf16_matmul_speedup`).

    ``ANYDEPTH_CPU_BF16=0`` switches bf16 off, ``ANYDEPTH_CPU_BF16=1`` takes it wherever the instructions are
    there without measuring (read on every call, so the setting can change within a process).
    """
    setting = os.environ.get("ANYDEPTH_CPU_BF16", "").strip()
    if setting == "0" or _torch_major() < 2 or not cpu_has_fast_bf16():
        return False
    return setting == "1" or cpu_bf16_matmul_speedup() >= BF16_MIN_MATMUL_SPEEDUP


def _torch_major() -> int:
    return int(torch.__version__.split(".")[0])


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision ("fp32", "bf16" or "fp16") for a requested one on a device.

    "auto" picks bf16 on CUDA devices that support it (fp16 on older ones) and on CPUs whose bf16 matmuls are
    native and measured faster than float32 ones (see :func:`auto_picks_cpu_bf16`), and float32 elsewhere. fp16
    on a CPU is refused: it is slower than float32 there.
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


def precision_policy(precision: str) -> PrecisionPolicy:
    """The :class:`~anydepth.layers.precision.PrecisionPolicy` of a concrete precision ("fp32", "bf16", "fp16";
    see :func:`resolve_precision` for "auto"): what the pipelines apply to their networks."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise InputError(f"precision {precision!r} is not a concrete one; resolve_precision() turns it into one")
    return PrecisionPolicy.for_precision(precision)


def autocast(precision: str, device: torch.device) -> ContextManager:
    """Mixed-precision context for a concrete precision; a no-op for fp32 (the policy's :meth:`autocast`)."""
    return precision_policy(precision).autocast(device)


# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# profile -> the mmap and trim thresholds it sets (bytes); a fixed value also turns glibc's adaptation off
ALLOCATOR_PROFILES = {"keep": 1 << 30, "release": 128 << 10}
_allocator_profile: Optional[str] = None  # the profile in force, once set


@functools.cache
def _glibc(name: str, *argtypes: Any) -> Optional[Callable[..., int]]:
    """glibc's function ``name`` (``mallopt``, ``malloc_trim``), or None off Linux and where the C library lacks
    it (musl)."""
    if sys.platform != "linux":
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    function.argtypes = list(argtypes)
    return function  # type: ignore[no-any-return]


def _malloc_tuning_off() -> bool:
    return os.environ.get("ANYDEPTH_MALLOC_TUNING", "1").strip() == "0"


def release_free_memory() -> bool:
    """Give the memory that glibc holds in freed blocks back to the system (``malloc_trim(0)``: the heap's top and
    every free page inside it); True where it ran. Long jobs call it between units of work (a video's windows)
    under the "keep" profile: within a unit freed blocks are reused without page faults, and the fragments that
    other sizes leave behind do not accumulate from one unit to the next."""
    trim = None if _malloc_tuning_off() else _glibc("malloc_trim", ctypes.c_size_t)
    if trim is None:
        return False
    trim(0)
    return True


def tune_allocator(profile: str) -> bool:
    """Set how glibc's allocator treats large freed blocks, for the whole process. Entry points call it once
    (``anydepth.load_model``, the compat facades' constructors, the command line's jobs); models never do.

    Profiles:

    - ``"keep"``: freed blocks up to 1 GiB stay in the process for reuse (mmap and trim thresholds of 1 GiB,
      what ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do). glibc otherwise serves every block
      over its (adaptive) mmap threshold with a fresh ``mmap`` and unmaps it on free, so each large activation
      of a depth head is page-faulted in anew on every call. For repeated inference at one size (images,
      multi-view scenes); the cost is up to 1 GiB of freed memory held until the process exits, as with
      PyTorch's CUDA caching allocator.
    - ``"release"``: freed blocks over 128 KiB go back to the system at once (both thresholds 128 KiB, fixed).
      For long videos: each window allocates and frees the same few hundred MB, which with glibc's adaptive
      threshold end up on the heap, whose fragments keep the peak growing over the first windows.

    The video jobs and the Video Depth Anything facade run "keep" and call :func:`release_free_memory` between
    windows: 1.6 to 1.9 times the frames per second of "release", for about a quarter more peak memory
    (benchmarks/RESULTS.md). ``ANYDEPTH_ALLOCATOR=release`` (or ``keep``) chooses the profile for every entry
    point of the process.

    The measurements behind both are in benchmarks/RESULTS.md ("Allocator profiles"). Idempotent (a profile
    already in force is not set again; a different one replaces it); a no-op returning False off glibc and where
    ``ANYDEPTH_MALLOC_TUNING=0``.

    Returns:
        whether the profile is in force.
    """
    global _allocator_profile
    if profile not in ALLOCATOR_PROFILES:
        raise InputError(f"unknown allocator profile {profile!r}; use one of {', '.join(ALLOCATOR_PROFILES)}")
    chosen = os.environ.get("ANYDEPTH_ALLOCATOR", "").strip()
    if chosen in ALLOCATOR_PROFILES:
        profile = chosen  # the user's choice for the whole process wins over the entry point's
    if profile == _allocator_profile:
        return True
    mallopt = None if _malloc_tuning_off() else _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:
        return False
    threshold = ALLOCATOR_PROFILES[profile]
    if not (mallopt(_M_MMAP_THRESHOLD, threshold) and mallopt(_M_TRIM_THRESHOLD, threshold)):
        return False
    logger.debug("allocator profile %r: mmap and trim thresholds %d bytes", profile, threshold)
    _allocator_profile = profile
    return True


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
