"""One run at a time per run directory: a lock file naming its holder.

``<run dir>/.segscale.lock`` is created exclusively (``O_CREAT | O_EXCL``, atomic on local
and NFS v3+ file systems) and holds the holder's pid, host and start time. A second run into
the same directory is refused with those three. A lock whose holder is gone (same host, pid
no longer running: a run killed with SIGKILL or by the OOM killer) is taken over with a
warning, and the staging directories that run left behind are removed, so a scheduler's
retry after a crash needs no hand clean-up. Within one process the lock nests: the CLI takes
it before starting a cluster, and ``run_pipeline`` inside takes it again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path

import psutil

from ..exceptions import RunLockedError
from ..layout import RunLayout, staging_pattern

__all__ = ["LOCK_NAME", "RunLock"]

logger = logging.getLogger(__name__)

LOCK_NAME = RunLayout(".").lock.name
# Lock files this process holds, and how many times: an inner RunLock on one of them nests.
_HELD: dict[Path, int] = {}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.AccessDenied:  # another user's process: running, just not ours to inspect
        return True
    except (psutil.NoSuchProcess, ValueError):
        return False


def _leftover_staging(run_dir: Path, pid: int) -> list[Path]:
    """Staging directories of a dead run: ``.<name>-staging-<pid>`` anywhere in the run dir."""
    return [path for path in run_dir.rglob(staging_pattern(pid)) if path.is_dir()]


class RunLock:
    """Hold ``run_dir``'s lock for the duration of a ``with`` block.

    Parameters
    ----------
    run_dir : path
        Created if missing.
    command : str
        What holds the lock (``"run"``, ``"ingest"``...), written into it for whoever is refused.

    Raises
    ------
    RunLockedError
        A live process holds the lock (or one on another host: its liveness cannot be known).
    """

    def __init__(self, run_dir, command: str = "run"):
        self.path = RunLayout(Path(run_dir).absolute()).lock
        self.command = command
        self._held = False

    def __enter__(self) -> RunLock:
        if self.path in _HELD:
            _HELD[self.path] += 1
            self._held = True
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
        }
        for _ in range(2):  # a second try only after removing a dead holder's lock
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_or_refuse()
                continue
            with os.fdopen(descriptor, "w") as file:
                json.dump(holder, file)
            _HELD[self.path] = 1
            self._held = True
            return self
        raise RunLockedError(f"{self.path}: could not take the lock; another run took it first")

    def _take_over_or_refuse(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host, started = int(holder["pid"]), str(holder["host"]), holder.get("started_at", "?")
        except FileNotFoundError:
            return  # released between our attempt and this read: try again
        except (ValueError, KeyError, TypeError, OSError):
            raise RunLockedError(
                f"{self.path}: a lock file that cannot be read; if no segscale run uses {self.path.parent}, remove it"
            ) from None
        if host == socket.gethostname() and not _alive(pid):
            leftovers = _leftover_staging(self.path.parent, pid)
            logger.warning(
                "taking over the lock of %s run pid %d (started %s), which is no longer running; "
                "removing %d staging directories it left",
                holder.get("command", "a"), pid, started, len(leftovers),
            )  # fmt: skip
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)
            self.path.unlink(missing_ok=True)
            return
        raise RunLockedError(
            f"{self.path.parent}: another segscale {holder.get('command', 'run')} is using this run directory "
            f"(pid {pid} on {host}, started {started}); wait for it to finish, or use another [run] output_dir"
        )

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._held:
            self._held = False
            _HELD[self.path] -= 1
            if not _HELD[self.path]:
                del _HELD[self.path]
                self.path.unlink(missing_ok=True)
        return False
