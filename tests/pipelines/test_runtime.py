"""CPU runtime settings: the allocator profiles (treatment of large freed blocks) and the choice of bf16 for "auto"."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.paths import SRC

# a fresh interpreter: the setting is process-wide
_PROBE = r"""
import resource, sys, time, torch
from anydepth.pipelines.runtime import tune_allocator
profile = sys.argv[1]
applied = tune_allocator(profile)
assert tune_allocator(profile) is applied  # idempotent
for _ in range(8):  # let the heap settle (see the test)
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, faults)
"""


def _run(code, *args, tuning=None, allocator=None):
    """``code`` in a fresh interpreter with ANYDEPTH_MALLOC_TUNING and ANYDEPTH_ALLOCATOR as given (unset: None);
    its standard output."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for name, value in (("ANYDEPTH_MALLOC_TUNING", tuning), ("ANYDEPTH_ALLOCATOR", allocator)):
        env.pop(name, None)
        if value is not None:
            env[name] = value
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def _probe(profile, env_value=None, allocator=None):
    applied, faults = _run(_PROBE, profile, tuning=env_value, allocator=allocator).split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_reuses_large_freed_blocks_and_release_returns_them():
    applied, faults = _probe("keep")
    off, faults_off = _probe("keep", "0")
    released, faults_released = _probe("release")
    assert applied and released and not off
    # 64 MiB = 16,384 pages of 4 KiB; without the setting each of the five blocks is mapped and faulted in afresh,
    # with it the settled heap hands the freed block back and at most one block's pages are touched. Settling: in
    # about one process in four (glibc 2.36, torch allocating with posix_memalign) the first five freed blocks are
    # not reused and the heap grows by 320 MiB before it starts to reuse them; the warm-up covers that.
    assert faults_off > 4 * 16_384
    assert faults < 20_000
    # "release" hands every such block back at once: each one is faulted in afresh
    assert faults_released > 4 * 16_384


def test_unknown_allocator_profile_is_refused():
    from anydepth.errors import InputError
    from anydepth.pipelines.runtime import tune_allocator

    with pytest.raises(InputError, match="keep, release"):
        tune_allocator("hoard")


_TRIM_PROBE = r"""
import torch
from anydepth.pipelines.runtime import release_free_memory, tune_allocator
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
assert tune_allocator("keep")
blocks = [torch.empty(64 << 20, dtype=torch.uint8).fill_(1) for _ in range(4)]
small = torch.ones(1000)  # a live block above them keeps the heap's top from shrinking by itself
del blocks
held = rss_mib()
assert release_free_memory()
print(held - rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_release_free_memory_hands_back_what_keep_holds():
    assert float(_run(_TRIM_PROBE)) > 200  # of the 256 MiB freed under "keep", held until trimmed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_the_environment_chooses_the_profile_for_every_entry_point():
    applied, faults = _probe("keep", allocator="release")
    assert applied and faults > 4 * 16_384  # "release" in force although the caller asked "keep"


def test_auto_takes_cpu_bf16_only_where_its_matmuls_are_measured_faster(monkeypatch):
    import torch

    from anydepth.pipelines import runtime

    cpu = torch.device("cpu")
    monkeypatch.delenv("ANYDEPTH_CPU_BF16", raising=False)
    monkeypatch.setattr(runtime, "_torch_major", lambda: 2)
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    # AMX (about 7x), an AVX512-BF16 core that runs bf16 faster (2.3x) or slower (0.6x) than float32
    for speedup, expected in ((7.0, "bf16"), (2.3, "bf16"), (1.2, "fp32"), (0.6, "fp32")):
        monkeypatch.setattr(runtime, "cpu_bf16_matmul_speedup", lambda s=speedup: s)
        assert runtime.resolve_precision("auto", cpu) == expected, speedup
    # an explicit bf16 is taken as asked
    assert runtime.resolve_precision("bf16", cpu) == "bf16"

    def unmeasurable():
        raise AssertionError("measured although the setting decides")

    monkeypatch.setattr(runtime, "cpu_bf16_matmul_speedup", unmeasurable)
    monkeypatch.setenv("ANYDEPTH_CPU_BF16", "1")
    assert runtime.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setenv("ANYDEPTH_CPU_BF16", "0")
    assert runtime.resolve_precision("auto", cpu) == "fp32"
    # no native bf16 instructions (a plain AVX2 CPU): float32 without measuring, whatever the setting
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    for setting in ("", "1"):
        monkeypatch.setenv("ANYDEPTH_CPU_BF16", setting)
        assert runtime.resolve_precision("auto", cpu) == "fp32"


_ISA_PROBE = r"""
import time, torch
from anydepth.pipelines.runtime import cpu_bf16_matmul_speedup, cpu_has_fast_bf16, resolve_precision
start = time.perf_counter()
speedup = cpu_bf16_matmul_speedup() if cpu_has_fast_bf16() else None
print(resolve_precision("auto", torch.device("cpu")), speedup, time.perf_counter() - start)
"""


def test_a_onednn_held_to_avx2_makes_auto_float32_on_every_cpu():
    """``ONEDNN_MAX_CPU_ISA=AVX2`` leaves oneDNN without bf16 kernels even on an AMX CPU, whose cpuinfo still
    lists the instructions: the measurement, not the flags, decides (this is also how a plain AVX2 machine is
    emulated on a newer one)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
    }
    env.pop("ANYDEPTH_CPU_BF16", None)
    done = subprocess.run([sys.executable, "-c", _ISA_PROBE], env=env, capture_output=True, text=True, check=True)
    precision, speedup, seconds = done.stdout.split()
    assert precision == "fp32"
    if speedup != "None":  # a CPU with bf16 instructions: measured slower than float32
        assert 0 < float(speedup) < 1.0
    assert float(seconds) < 5.0  # the fallback kernel is timed once, not five times
