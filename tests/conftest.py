"""Shared fixtures. No GPU library is imported here: GPU items skip themselves."""

import dataclasses

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


@pytest.fixture(scope="session")
def backtest_world(tmp_path_factory):
    """2,000 people with 1% dirt, and a config that runs as of 90 days before the world's end
    (the pipeline, report and CLI tests share it)."""
    from engine.synth import WorldSpec, generate_world, write_backtest_config

    out = tmp_path_factory.mktemp("backtest-world")
    spec = WorldSpec(customers=2_000, seed=5, dirt=0.01, chunk_size=1_000)
    generate_world(out, spec)
    return out, write_backtest_config(out, spec, holdout_days=90)


@pytest.fixture(scope="session")
def config_in(backtest_world):
    """``config_in(directory, **segments)``: the backtest config writing into ``directory``, with
    lighter segment settings (fewer refits and micro-segments) so a run takes seconds."""
    from engine.config import load_config

    config = load_config(backtest_world[1])

    def make(directory, **segments):
        settings = {"stability_resamples": 3, "micro_k": 12, "niche_points": 2_000, "k_max": 6, **segments}
        return dataclasses.replace(
            config,
            run=dataclasses.replace(config.run, output_dir=directory),
            segments=dataclasses.replace(config.segments, **settings),
        )

    return make


@pytest.fixture(scope="session")
def full_run(tmp_path_factory, config_in):
    """The run directory of one whole run of the backtest config (every stage and the report),
    shared by the tests that only read it."""
    from engine.pipeline import run_pipeline

    return run_pipeline(config_in(tmp_path_factory.mktemp("full-run") / "run")).run_dir
