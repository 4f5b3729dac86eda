"""Tests for engine.backend: backend resolution, GPU probing, estimators, Dask clients."""

import logging
import os
import subprocess
import sys
import textwrap

import dask
import numpy as np
import pandas as pd
import pytest

import engine.backend as backend_module
from engine.backend import (
    BACKEND_CHOICES,
    SCHEDULER_ENV_VAR,
    Backend,
    GpuDevice,
    GpuProbe,
    dask_client,
    probe_gpu,
    resolve_backend,
    usable_cores,
)
from engine.exceptions import BackendUnavailableError, UsageError

GPU_PACKAGES = ("cudf", "cuml", "cupy", "dask_cuda", "rmm")
H100 = GpuDevice(index=0, name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * 2**20)


@pytest.fixture(autouse=True)
def _fresh_probe_cache():
    """Backends are resolved once per process; each test here resolves afresh and drops
    whatever was cached while it had the GPU stack faked."""
    resolve_backend.cache_clear()
    yield
    probe_gpu.cache_clear()
    resolve_backend.cache_clear()


def _fake_stack(monkeypatch, versions, devices):
    """Make probe_gpu see the given package versions (None: not installed) and devices."""

    def fake_import_version(module_name):
        version = versions.get(module_name)
        return (version, None) if version is not None else (None, "not installed")

    monkeypatch.setattr(backend_module, "_import_version", fake_import_version)
    monkeypatch.setattr(backend_module, "_cuda_devices_from_cupy", lambda: None)
    monkeypatch.setattr(backend_module, "_cuda_devices_from_nvidia_smi", lambda: tuple(devices))
    probe_gpu.cache_clear()


# --- resolve_backend ---------------------------------------------------------------------


def test_resolve_cpu():
    backend = resolve_backend("cpu")
    assert backend.name == "cpu"
    assert not backend.is_gpu
    assert backend.xp is np
    assert backend.df is pd
    assert backend.dataframe_backend == "pandas"


def test_resolve_auto_is_cpu_without_gpu():
    assert resolve_backend("auto") == resolve_backend("cpu")
    assert resolve_backend() == resolve_backend("cpu")


def test_backend_is_frozen():
    backend = resolve_backend("cpu")
    with pytest.raises(AttributeError):
        backend.name = "gpu"


@pytest.mark.parametrize("name", ["GPU", "cuda", "", "Cpu"])
def test_resolve_unknown_name_names_the_choices(name):
    with pytest.raises(UsageError) as caught:
        resolve_backend(name)
    message = str(caught.value)
    assert repr(name) in message
    for choice in BACKEND_CHOICES:
        assert choice in message


def test_resolve_gpu_without_gpu_names_every_missing_piece():
    with pytest.raises(BackendUnavailableError) as caught:
        resolve_backend("gpu")
    error = caught.value
    assert isinstance(error, UsageError)
    message = str(error)
    assert "\n" not in message
    for piece in ("cudf", "cuml", "cupy", "no CUDA device"):
        assert piece in message
    assert "--backend cpu" in message
    assert len(error.missing) == 4


def test_resolve_gpu_with_only_cuml_missing(monkeypatch):
    probe = GpuProbe(
        versions={"cudf": "26.6.0", "cuml": None, "cupy": "13.6.0", "dask_cuda": "26.6.0", "rmm": "26.6.0"},
        devices=(H100,),
        problems=("cuml not installed",),
    )
    monkeypatch.setattr(backend_module, "probe_gpu", lambda: probe)
    with pytest.raises(BackendUnavailableError) as caught:
        resolve_backend("gpu")
    message = str(caught.value)
    assert "cuml" in message
    assert "cudf" not in message
    assert "CUDA device" not in message
    assert caught.value.missing == ("cuml not installed",)


def test_probe_reports_only_what_is_missing(monkeypatch):
    _fake_stack(
        monkeypatch,
        {"cudf": "26.6.0", "cuml": None, "cupy": "13.6.0", "dask_cuda": None, "rmm": "26.6.0"},
        [H100],
    )
    probe = probe_gpu()
    # dask_cuda is optional (only a local GPU cluster needs it): not a problem.
    assert probe.problems == ("cuml not installed",)
    assert not probe.available
    assert probe.devices == (H100,)
    with pytest.raises(BackendUnavailableError, match="cuml not installed") as caught:
        resolve_backend("gpu")
    assert "cudf" not in str(caught.value)


def test_probe_without_device_is_a_problem_even_with_every_package(monkeypatch):
    _fake_stack(monkeypatch, dict.fromkeys(GPU_PACKAGES, "26.6.0"), [])
    probe = probe_gpu()
    assert len(probe.problems) == 1
    assert "no CUDA device" in probe.problems[0]
    assert not probe.available


def test_auto_with_partial_gpu_stack_warns_and_uses_cpu(monkeypatch, caplog):
    _fake_stack(
        monkeypatch,
        {"cudf": "26.6.0", "cuml": "26.6.0", "cupy": "13.6.0", "dask_cuda": None, "rmm": "26.6.0"},
        [],
    )
    caplog.set_level(logging.INFO, logger=backend_module.__name__)
    backend = resolve_backend("auto")
    assert backend.name == "cpu"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == backend_module.__name__
    assert "no CUDA device" in warnings[0].getMessage()
    assert "CPU" in warnings[0].getMessage()


def test_auto_with_a_device_but_no_rapids_warns(monkeypatch, caplog):
    _fake_stack(monkeypatch, dict.fromkeys(GPU_PACKAGES), [H100])
    caplog.set_level(logging.INFO, logger=backend_module.__name__)
    assert resolve_backend("auto").name == "cpu"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cudf not installed" in warnings[0].getMessage()


def test_auto_with_nothing_gpu_installed_does_not_warn(monkeypatch, caplog):
    _fake_stack(monkeypatch, dict.fromkeys(GPU_PACKAGES), [])
    caplog.set_level(logging.INFO, logger=backend_module.__name__)
    assert resolve_backend("auto").name == "cpu"
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert any("no GPU stack" in record.getMessage() for record in caplog.records)


def test_cpu_does_not_probe(monkeypatch):
    def fail():
        raise AssertionError("resolve_backend('cpu') must not probe the GPU")

    monkeypatch.setattr(backend_module, "probe_gpu", fail)
    assert resolve_backend("cpu").name == "cpu"


# --- probe_gpu -------------------------------------------------------------------------------


def test_probe_on_this_machine():
    probe_gpu.cache_clear()
    probe = probe_gpu()
    assert probe.available is False
    assert probe.versions == dict.fromkeys(GPU_PACKAGES)
    assert probe.devices == ()
    assert probe_gpu() is probe  # cached: probed once per process


def test_nvidia_smi_parsing(monkeypatch):
    calls = []

    def fake_run(args, **kwargs):
        calls.append((args, kwargs))
        return subprocess.CompletedProcess(
            args,
            0,
            stdout="0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n",
            stderr="",
        )

    monkeypatch.setattr(backend_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(backend_module.subprocess, "run", fake_run)
    devices = backend_module._cuda_devices_from_nvidia_smi()
    assert devices == (
        GpuDevice(0, "NVIDIA H100 80GB HBM3", 81559 * 2**20),
        GpuDevice(1, "NVIDIA H100 80GB HBM3", 81559 * 2**20),
    )
    [(args, kwargs)] = calls
    assert args[0] == "/usr/bin/nvidia-smi"
    assert "--query-gpu=index,name,memory.total" in args
    assert "--format=csv,noheader,nounits" in args
    assert kwargs.get("timeout") is not None


def test_nvidia_smi_odd_lines_do_not_break_the_probe(monkeypatch):
    stdout = "0, NVIDIA A100-SXM4-40GB MIG 1g.5gb, [N/A]\nWARNING: infoROM is corrupted at gpu 0000:41:00.0\n1, Tesla T4, 15360\n"
    monkeypatch.setattr(backend_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(
        backend_module.subprocess, "run", lambda args, **kwargs: subprocess.CompletedProcess(args, 0, stdout, "")
    )
    assert backend_module._cuda_devices_from_nvidia_smi() == (
        GpuDevice(0, "NVIDIA A100-SXM4-40GB MIG 1g.5gb", 0),
        GpuDevice(1, "Tesla T4", 15360 * 2**20),
    )


def test_nvidia_smi_missing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("nvidia-smi is not there: must not be run")

    monkeypatch.setattr(backend_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(backend_module.subprocess, "run", fail)
    assert backend_module._cuda_devices_from_nvidia_smi() == ()


@pytest.mark.parametrize(
    "error",
    [
        subprocess.CalledProcessError(9, ["nvidia-smi"], stderr="NVIDIA-SMI has failed"),
        subprocess.TimeoutExpired(["nvidia-smi"], 20),
        PermissionError("not executable"),
    ],
    ids=["nonzero-exit", "timeout", "oserror"],
)
def test_nvidia_smi_failing_means_no_devices(monkeypatch, error):
    def fake_run(*args, **kwargs):
        raise error

    monkeypatch.setattr(backend_module.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(backend_module.subprocess, "run", fake_run)
    assert backend_module._cuda_devices_from_nvidia_smi() == ()


def test_import_version_of_a_missing_module():
    assert backend_module._import_version("segscale_no_such_module") == (None, "not installed")


def test_import_version_of_a_broken_module_is_one_line(tmp_path, monkeypatch):
    # CuPy and cuDF raise multi-line ImportErrors on a broken CUDA install; the reason
    # ends up in a one-line UsageError message.
    (tmp_path / "segscale_broken_gpu_lib.py").write_text(
        textwrap.dedent(
            """
            raise ImportError(
                "Failed to import CuPy.\\n\\nIf you installed CuPy via wheels,\\n"
                "make sure that the package matches the CUDA version."
            )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "segscale_broken_gpu_lib", raising=False)
    version, why = backend_module._import_version("segscale_broken_gpu_lib")
    assert version is None
    assert why.startswith("fails to import (ImportError: Failed to import CuPy.")
    assert "matches the CUDA version" in why
    assert "\n" not in why
    assert "\n" not in str(BackendUnavailableError([why]))


def test_import_version_of_a_module_without_version(tmp_path, monkeypatch):
    (tmp_path / "segscale_unversioned_lib.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "segscale_unversioned_lib", raising=False)
    assert backend_module._import_version("segscale_unversioned_lib") == ("unknown", None)


# --- Backend.estimator ---------------------------------------------------------------------


def test_estimator_kmeans(backend):
    kmeans = backend.estimator("KMeans")
    assert isinstance(kmeans, type)
    assert kmeans.__name__ == "KMeans"
    if backend.is_gpu:
        assert kmeans.__module__.startswith("cuml")
    else:
        import sklearn.cluster

        assert kmeans is sklearn.cluster.KMeans


@pytest.mark.parametrize("name", sorted(backend_module._ESTIMATORS))
def test_every_estimator_resolves_on_cpu(name):
    estimator = resolve_backend("cpu").estimator(name)
    assert isinstance(estimator, type)
    assert estimator.__name__ == name
    assert estimator.__module__.startswith("sklearn.")
    assert hasattr(estimator, "fit")


def test_unknown_estimator_lists_the_known_ones(backend):
    with pytest.raises(ValueError, match="'HDBSCAN'") as caught:
        backend.estimator("HDBSCAN")
    for known in backend_module._ESTIMATORS:
        assert known in str(caught.value)


def test_cpu_kmeans_from_the_factory_fits():
    kmeans_class = resolve_backend("cpu").estimator("KMeans")
    points = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 10.0], [10.1, 10.0], [10.0, 10.1]])
    model = kmeans_class(n_clusters=2, n_init=1, random_state=0).fit(points)
    labels = model.labels_
    assert len(set(labels[:3])) == 1
    assert len(set(labels[3:])) == 1
    assert labels[0] != labels[3]
    np.testing.assert_allclose(
        sorted(model.cluster_centers_.tolist()), [[1 / 30, 1 / 30], [10 + 1 / 30, 10 + 1 / 30]]
    )


# --- dask_client ---------------------------------------------------------------------------

MEMORY_LIMIT = 2**30


def _assert_closed(client, cluster):
    assert client.status == "closed"
    assert cluster.status.name == "closed"


def test_dask_client_local_cpu_cluster(tmp_path, monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV_VAR, raising=False)
    spill = tmp_path / "spill"
    with dask_client(
        resolve_backend("cpu"), workers=2, memory_limit=MEMORY_LIMIT, local_directory=spill
    ) as client:
        cluster = client.cluster
        assert cluster is not None
        assert client.submit(lambda x: x + 1, 1).result() == 2
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
        assert [worker["memory_limit"] for worker in workers.values()] == [MEMORY_LIMIT] * 2
        assert [worker["nthreads"] for worker in workers.values()] == [1, 1]
        assert dask.config.get("dataframe.backend") == "pandas"
        assert spill.is_dir()
        # No statistical profiler in the workers of a cluster started here.
        profiling = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
        assert list(profiling.values()) == [False, False]
        # A worker the nanny starts again (as after dying past its memory limit) has them too.
        client.restart()
        profiling = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
        assert list(profiling.values()) == [False, False]
    _assert_closed(client, cluster)


def test_the_workers_thread_limits_stay_out_of_this_process(tmp_path, monkeypatch):
    """Nannies set OMP_NUM_THREADS=1 in their parent: the client then fitted on one core."""
    monkeypatch.delenv(SCHEDULER_ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # a setting of the user's own stays
    with dask_client(resolve_backend("cpu"), workers=1, local_directory=tmp_path) as client:
        assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "3"
        # The workers have theirs.
        assert list(client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()) == ["1"]


def test_dask_client_closes_on_error(tmp_path, monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV_VAR, raising=False)
    opened = []
    with pytest.raises(RuntimeError, match="stage failed"):
        with dask_client(
            resolve_backend("cpu"), workers=1, memory_limit=MEMORY_LIMIT, local_directory=tmp_path
        ) as client:
            opened.append((client, client.cluster))
            raise RuntimeError("stage failed")
    [(client, cluster)] = opened
    _assert_closed(client, cluster)


@pytest.fixture(scope="module")
def external_cluster():
    """A cluster the test started itself, as a user's running scheduler would be."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
    yield cluster
    cluster.close()


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_dask_client_connects_to_an_existing_scheduler(external_cluster, monkeypatch, tmp_path, via):
    address = external_cluster.scheduler_address
    if via == "environment":
        monkeypatch.setenv(SCHEDULER_ENV_VAR, address)
        scheduler = None
    else:
        monkeypatch.delenv(SCHEDULER_ENV_VAR, raising=False)
        scheduler = address
    local_directory = tmp_path / "unused"
    with dask.config.set({"dataframe.backend": "sentinel"}):
        with dask_client(resolve_backend("cpu"), scheduler=scheduler, local_directory=local_directory) as client:
            assert client.scheduler.address == address
            assert client.submit(lambda x: x * 3, 2).result() == 6
            assert dask.config.get("dataframe.backend") == "pandas"
        # The config is restored on exit.
        assert dask.config.get("dataframe.backend") == "sentinel"
    assert client.status == "closed"
    # A cluster the factory did not start is left running.
    assert external_cluster.status.name == "running"
    assert not local_directory.exists()


def test_dask_client_argument_wins_over_environment(external_cluster, monkeypatch):
    monkeypatch.setenv(SCHEDULER_ENV_VAR, "tcp://127.0.0.1:9")
    address = external_cluster.scheduler_address
    with dask_client(resolve_backend("cpu"), scheduler=address) as client:
        assert client.scheduler.address == address
    assert client.status == "closed"


def test_dask_client_unreachable_scheduler():
    # Nothing listens on the discard port; distributed retries until the factory's
    # 20 s connect timeout runs out, so this is the slowest test here.
    address = "tcp://127.0.0.1:9"
    with pytest.raises(UsageError, match="tcp://127.0.0.1:9") as caught:
        with dask_client(resolve_backend("cpu"), scheduler=address):
            pytest.fail("must not yield a client")
    message = str(caught.value)
    assert SCHEDULER_ENV_VAR in message
    assert "\n" not in message


@pytest.mark.parametrize("address", ["tcp://127.0.0.1", "nosuchscheme://127.0.0.1:8786"])
def test_dask_client_malformed_scheduler_address(address):
    with pytest.raises(UsageError, match="cannot reach Dask scheduler"):
        with dask_client(resolve_backend("cpu"), scheduler=address):
            pytest.fail("must not yield a client")


@pytest.mark.parametrize("workers", [0, -1])
def test_dask_client_rejects_too_few_workers(workers, tmp_path, monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV_VAR, raising=False)
    with pytest.raises(UsageError, match="workers must be at least 1"):
        with dask_client(resolve_backend("cpu"), workers=workers, local_directory=tmp_path / "dask"):
            pytest.fail("must not yield a client")
    assert not (tmp_path / "dask").exists()


@pytest.mark.gpu
def test_dask_client_local_cuda_cluster(tmp_path, monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV_VAR, raising=False)

    def cupy_sum():
        import cupy

        return int(cupy.arange(10).sum())

    with dask_client(resolve_backend("gpu"), workers=1, rmm_pool_size="1GB", local_directory=tmp_path) as client:
        cluster = client.cluster
        assert len(client.scheduler_info()["workers"]) == 1
        assert dask.config.get("dataframe.backend") == "cudf"
        assert client.submit(cupy_sum, pure=False).result() == 45
    _assert_closed(client, cluster)


# --- usable_cores --------------------------------------------------------------------------


def test_usable_cores():
    cores = usable_cores()
    assert isinstance(cores, int)
    assert 1 <= cores <= os.cpu_count()


@pytest.mark.parametrize(("cpu_max", "expected"), [("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", 8)])
def test_usable_cores_honours_a_cgroup_cpu_quota(monkeypatch, cpu_max, expected):
    monkeypatch.setattr(backend_module.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    real_read_text = backend_module.Path.read_text

    def read_text(path, *args, **kwargs):
        if str(path) == "/sys/fs/cgroup/cpu.max":
            return cpu_max
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(backend_module.Path, "read_text", read_text)
    assert usable_cores() == expected


def test_backend_constructed_directly_matches_resolved():
    assert Backend(name="cpu", xp=np, df=pd, dataframe_backend="pandas") == resolve_backend("cpu")


def test_a_backend_is_resolved_once_per_process(monkeypatch):
    calls = []
    real_probe = backend_module.probe_gpu
    monkeypatch.setattr(backend_module, "probe_gpu", lambda: calls.append(1) or real_probe())
    assert resolve_backend("auto") is resolve_backend("auto")
    assert len(calls) == 1


def test_array_namespace_follows_frames_and_arrays(backend):
    frame = backend.df.DataFrame({"a": [1.0, 2.0]})
    assert backend_module.array_namespace(frame) is backend.xp
    assert backend_module.array_namespace(frame["a"]) is backend.xp
    assert backend_module.array_namespace(backend.xp.zeros(2)) is backend.xp
    assert backend_module.array_namespace(np.zeros(2)) is np


def test_connected_components_number_each_vertex_by_its_component(backend):
    # Vertices 0-1-2 joined, 3 and 7 alone, 4-5, 6 with a loop onto itself.
    sources = backend.xp.asarray([0, 2, 4, 6])
    targets = backend.xp.asarray([1, 1, 5, 6])
    labels = backend_module.to_host_array(backend_module.connected_components(sources, targets, 8))
    assert labels.shape == (8,)
    groups = pd.Series(range(8)).groupby(labels).apply(list).sort_values().tolist()
    assert groups == [[0, 1, 2], [3], [4, 5], [6], [7]]
