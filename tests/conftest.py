"""Shared fixtures. No GPU library is imported here: GPU items skip themselves."""

import pytest


def _gpu_unavailable_reason():
    from engine.backend import probe_gpu

    probe = probe_gpu()
    return None if probe.available else "; ".join(probe.problems)


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = _gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"GPU backend unavailable: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request):
    """Each backend in turn; the GPU one only where cuDF, cuML and a CUDA device exist."""
    from engine.backend import resolve_backend

    return resolve_backend(request.param)
