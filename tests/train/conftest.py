"""The training tests run tiny networks: one torch thread each (a second thread only slows their many small
kernels, and the machine is shared)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
