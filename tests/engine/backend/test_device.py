"""engine.backend._device: GPU probing, usable cores, resolving the backend once."""

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import engine.backend._device as device_module
from engine.backend import (
    BACKEND_CHOICES,
    Backend,
    GpuDevice,
    GpuProbe,
    probe_gpu,
    resolve_backend,
    usable_cores,
)
from engine.exceptions import BackendUnavailableError, UsageError

GPU_PACKAGES = ("cudf", "cuml", "cupy", "dask_cudf", "dask_cuda", "rmm")
H100 = GpuDevice(index=0, name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * 2**20)


def _fake_stack(monkeypatch, versions, devices):
    """Make probe_gpu see the given package versions (None: not installed) and devices."""

    def fake_import_version(module_name):
        version = versions.get(module_name)
        return (version, None) if version is not None else (None, "not installed")

    monkeypatch.setattr(device_module, "_import_version", fake_import_version)
    monkeypatch.setattr(device_module, "_cuda_devices_from_cupy", lambda: None)
    monkeypatch.setattr(device_module, "_cuda_devices_from_nvidia_smi", lambda: tuple(devices))
    probe_gpu.cache_clear()


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
    for piece in ("cudf", "cuml", "cupy", "dask_cudf", "no CUDA device"):
        assert piece in message
    assert "--backend cpu" in message
    assert len(error.missing) == 5


def test_resolve_gpu_with_only_cuml_missing(monkeypatch):
    probe = GpuProbe(
        versions={"cudf": "26.6.0", "cuml": None, "cupy": "13.6.0", "dask_cuda": "26.6.0", "rmm": "26.6.0"},
        devices=(H100,),
        problems=("cuml not installed",),
    )
    monkeypatch.setattr(device_module, "probe_gpu", lambda: probe)
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
        {"cudf": "26.6.0", "cuml": None, "cupy": "13.6.0", "dask_cudf": "26.6.0", "dask_cuda": None, "rmm": "26.6.0"},
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


def test_a_rapids_older_than_the_floor_is_named_with_the_release_needed(monkeypatch):
    _fake_stack(monkeypatch, {**dict.fromkeys(GPU_PACKAGES, "26.6.0"), "cuml": "25.10.00"}, [H100])
    with pytest.raises(BackendUnavailableError, match=r"cuml 25.10.00 is older than the 26.04 release segscale needs"):
        resolve_backend("gpu")
    _fake_stack(monkeypatch, {**dict.fromkeys(GPU_PACKAGES, "26.04.01"), "dask_cudf": None}, [H100])
    assert probe_gpu().problems == ("dask_cudf not installed",)


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
    caplog.set_level(logging.INFO, logger=device_module.__name__)
    backend = resolve_backend("auto")
    assert backend.name == "cpu"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == device_module.__name__
    assert "no CUDA device" in warnings[0].getMessage()
    assert "CPU" in warnings[0].getMessage()


def test_auto_with_a_device_but_no_rapids_warns(monkeypatch, caplog):
    _fake_stack(monkeypatch, dict.fromkeys(GPU_PACKAGES), [H100])
    caplog.set_level(logging.INFO, logger=device_module.__name__)
    assert resolve_backend("auto").name == "cpu"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cudf not installed" in warnings[0].getMessage()


def test_auto_with_nothing_gpu_installed_does_not_warn(monkeypatch, caplog):
    _fake_stack(monkeypatch, dict.fromkeys(GPU_PACKAGES), [])
    caplog.set_level(logging.INFO, logger=device_module.__name__)
    assert resolve_backend("auto").name == "cpu"
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert any("no GPU stack" in record.getMessage() for record in caplog.records)


def test_cpu_does_not_probe(monkeypatch):
    def fail():
        raise AssertionError("resolve_backend('cpu') must not probe the GPU")

    monkeypatch.setattr(device_module, "probe_gpu", fail)
    assert resolve_backend("cpu").name == "cpu"


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

    monkeypatch.setattr(device_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(device_module.subprocess, "run", fake_run)
    devices = device_module._cuda_devices_from_nvidia_smi()
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
    monkeypatch.setattr(device_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(
        device_module.subprocess, "run", lambda args, **kwargs: subprocess.CompletedProcess(args, 0, stdout, "")
    )
    assert device_module._cuda_devices_from_nvidia_smi() == (
        GpuDevice(0, "NVIDIA A100-SXM4-40GB MIG 1g.5gb", 0),
        GpuDevice(1, "Tesla T4", 15360 * 2**20),
    )


def test_nvidia_smi_missing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("nvidia-smi is not there: must not be run")

    monkeypatch.setattr(device_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(device_module.subprocess, "run", fail)
    assert device_module._cuda_devices_from_nvidia_smi() == ()


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

    monkeypatch.setattr(device_module.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(device_module.subprocess, "run", fake_run)
    assert device_module._cuda_devices_from_nvidia_smi() == ()


def test_import_version_of_a_missing_module():
    assert device_module._import_version("segscale_no_such_module") == (None, "not installed")


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
    version, why = device_module._import_version("segscale_broken_gpu_lib")
    assert version is None
    assert why.startswith("fails to import (ImportError: Failed to import CuPy.")
    assert "matches the CUDA version" in why
    assert "\n" not in why
    assert "\n" not in str(BackendUnavailableError([why]))


def test_import_version_of_a_module_without_version(tmp_path, monkeypatch):
    (tmp_path / "segscale_unversioned_lib.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "segscale_unversioned_lib", raising=False)
    assert device_module._import_version("segscale_unversioned_lib") == ("unknown", None)


def test_usable_cores():
    cores = usable_cores()
    assert isinstance(cores, int)
    assert 1 <= cores <= os.cpu_count()


@pytest.mark.parametrize(("cpu_max", "expected"), [("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", 8)])
def test_usable_cores_honours_a_cgroup_cpu_quota(monkeypatch, cpu_max, expected):
    monkeypatch.setattr(device_module.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    real_read_text = device_module.Path.read_text

    def read_text(path, *args, **kwargs):
        if str(path) == "/sys/fs/cgroup/cpu.max":
            return cpu_max
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(device_module.Path, "read_text", read_text)
    assert usable_cores() == expected


def test_backend_constructed_directly_matches_resolved():
    assert Backend(name="cpu", xp=np, df=pd, dataframe_backend="pandas") == resolve_backend("cpu")


def test_a_backend_is_resolved_once_per_process(monkeypatch):
    calls = []
    real_probe = device_module.probe_gpu
    monkeypatch.setattr(device_module, "probe_gpu", lambda: calls.append(1) or real_probe())
    assert resolve_backend("auto") is resolve_backend("auto")
    assert len(calls) == 1
