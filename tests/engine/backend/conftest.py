"""Backends are resolved once per process; each test here resolves afresh and drops whatever
was cached while it had the GPU stack faked."""

import pytest

from engine.backend import probe_gpu, resolve_backend


@pytest.fixture(autouse=True)
def _fresh_probe_cache():
    resolve_backend.cache_clear()
    yield
    probe_gpu.cache_clear()
    resolve_backend.cache_clear()
