"""CPU runtime settings: the allocator profiles (treatment of large freed blocks)."""

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
