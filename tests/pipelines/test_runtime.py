"""CPU runtime settings: the allocator's treatment of large freed blocks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.paths import SRC

# a fresh interpreter: the setting is process-wide and applied once
_PROBE = r"""
import resource, time, torch
from anydepth.pipelines.runtime import keep_freed_memory
applied = keep_freed_memory(torch.device("cpu"))
assert keep_freed_memory(torch.device("meta")) is False  # only CPU devices
for _ in range(8):  # let the heap settle (see the test)
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, faults)
"""


def _probe(env_value):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("ANYDEPTH_MALLOC_TUNING", None)
    if env_value is not None:
        env["ANYDEPTH_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_large_freed_blocks_are_reused_instead_of_page_faulted_in_again():
    applied, faults = _probe(None)
    off, faults_off = _probe("0")
    assert applied and not off
    # 64 MiB = 16,384 pages of 4 KiB; without the setting each of the five blocks is mapped and faulted in afresh,
    # with it the settled heap hands the freed block back and at most one block's pages are touched. Settling: in
    # about one process in four (glibc 2.36, torch allocating with posix_memalign) the first five freed blocks are
    # not reused and the heap grows by 320 MiB before it starts to reuse them; the warm-up covers that.
    assert faults_off > 4 * 16_384
    assert faults < 20_000
