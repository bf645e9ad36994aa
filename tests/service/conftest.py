"""Fixtures of the backend's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def warm_cache():
    """One warm-model cache per module, so each test does not load the weights again."""
    pytest.importorskip("fastapi")
    from anydepth.web.models import ModelCache

    return ModelCache()
