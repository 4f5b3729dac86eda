"""What a stage command works on: a run config (its paths, settings and run directory) with
the command line's overrides, or bare paths; and the cluster and lock it runs under.

A stage command given a run config, and no paths of its own, runs that one stage through
the pipeline (:meth:`Target.run_stage`), as ``segscale run --stages NAME`` would: the same
lock, stage record, manifest and resume (an up-to-date stage is skipped unless forced).
Given paths outside a run, it calls the engine function on them."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from engine.backend import dask_client, resolve_backend
from engine.config import RunConfig, load_config
from engine.layout import RunLayout

__all__ = ["Target", "is_own", "overridden", "resolve_target"]


def is_own(given, own: Path) -> bool:
    """Whether a path option is unset or names the run's own ``own`` path."""
    return given is None or Path(given).absolute() == Path(own).absolute()


def overridden(config: RunConfig, *, as_of=None, backend=None, scheduler=None, workers=None,
               memory_limit=None) -> RunConfig:  # fmt: skip
    """``config`` with the command line's ``--as-of``, ``--backend``, ``--scheduler``,
    ``--workers`` and ``--memory-limit`` in place of its ``[run]`` values, where given."""
    run = config.run
    run = dataclasses.replace(
        run,
        as_of=as_of.date() if as_of else run.as_of,
        backend=backend.value if backend else run.backend,
        scheduler=scheduler or run.scheduler,
        workers=workers or run.workers,
        memory_limit=memory_limit or run.memory_limit,
    )
    return dataclasses.replace(config, run=run)


@dataclass(frozen=True)
class Target:
    """A stage command's config (None when it was given paths only) and where it runs."""

    config: RunConfig | None
    backend_name: str
    scheduler: str | None
    workers: int | None
    memory_limit: str | None = None

    @property
    def layout(self) -> RunLayout | None:
        return RunLayout(self.config.run.output_dir) if self.config is not None else None

    @property
    def as_of(self):
        """The config's ``[run] as_of``; None without one (the stage then uses its default)."""
        return self.config.run.as_of if self.config is not None else None

    @property
    def seed(self) -> int:
        return self.config.run.seed if self.config is not None else 0

    @contextlib.contextmanager
    def into_run(self, stage: str, out):
        """Hold the run directory's lock when ``out`` is the run's own output of ``stage``,
        and drop the stage's record, so the next ``segscale run`` recomputes it and what reads
        it; outside a run directory, nothing."""
        layout = self.layout
        if layout is None or not Path(out).absolute().is_relative_to(layout.stage_dir(stage)):
            yield
            return
        from engine.pipeline import RunLock, forget_stage

        with RunLock(layout.root, stage):
            forget_stage(layout.root, stage)
            yield

    def run_stage(self, stage: str, *, force: bool) -> dict:
        """Run ``stage`` of the config's run through the pipeline; return its manifest entry
        (``status`` "ran" or "skipped", ``seconds``, ``summary`` ...)."""
        from engine.pipeline import RunLock, run_pipeline

        from ._console import progress

        # The lock before the cluster: a run directory in use is refused before workers start.
        with RunLock(self.config.run.output_dir, stage), self._dask_client() as client:
            summary = run_pipeline(self.config, stages=[stage], force=force, client=client, progress=progress,
                                   report=False)  # fmt: skip
        return summary.manifest["stages"][stage]

    @contextlib.contextmanager
    def client(self, stage: str, out):
        """`into_run`, and a Dask client for the backend inside it."""
        with self.into_run(stage, out), self._dask_client() as client:
            yield client

    def _dask_client(self):
        return dask_client(resolve_backend(self.backend_name), scheduler=self.scheduler, workers=self.workers,
                           memory_limit=self.memory_limit)  # fmt: skip


def resolve_target(config_path: Path | None, *, backend=None, scheduler=None, workers=None,
                   memory_limit=None) -> Target:  # fmt: skip
    """The config at ``config_path`` (if any) with the overrides, and the backend, scheduler,
    workers and worker memory limit that follow: the command line's, else the config's, else
    the defaults."""
    if config_path is None:
        return Target(None, backend.value if backend else "auto", scheduler, workers, memory_limit)
    config = overridden(load_config(config_path), backend=backend, scheduler=scheduler, workers=workers,
                        memory_limit=memory_limit)  # fmt: skip
    return Target(config, config.run.backend, config.run.scheduler, config.run.workers, config.run.memory_limit)
