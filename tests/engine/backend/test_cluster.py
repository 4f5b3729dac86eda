"""engine.backend._cluster: local clusters, existing schedulers, and what is closed after."""

import os
import stat
import tempfile
from pathlib import Path

import dask
import pytest

from engine.backend import (
    SCHEDULER_ENV_VAR,
    dask_client,
    resolve_backend,
)
from engine.exceptions import UsageError

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


def test_workers_keep_glibc_sliding_mmap_threshold(tmp_path, monkeypatch):
    """Dask's MALLOC_TRIM_THRESHOLD_ made every large array a fresh mmap: 1.5-2x the CPU."""
    monkeypatch.delenv(SCHEDULER_ENV_VAR, raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with dask_client(resolve_backend("cpu"), workers=1, local_directory=tmp_path) as client:
        assert list(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == [None]


def test_spilled_rows_go_to_a_private_directory_removed_on_exit(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV_VAR, raising=False)
    with dask_client(resolve_backend("cpu"), workers=1) as client:
        (where,) = client.run(lambda dask_worker: dask_worker.local_directory).values()
        private = next(p for p in Path(where).parents if p.name.startswith("segscale-dask-"))
        assert private.parent == Path(tempfile.gettempdir()) and stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not private.exists()


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
    # Nothing listens on the discard port; distributed retries until the connect timeout
    # runs out (20 s by default).
    address = "tcp://127.0.0.1:9"
    with pytest.raises(UsageError, match="tcp://127.0.0.1:9") as caught:
        with dask_client(resolve_backend("cpu"), scheduler=address, connect_timeout="2s"):
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
