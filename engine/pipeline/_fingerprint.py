"""What a stage's output depends on, reduced to one digest.

A stage is up to date when its fingerprint matches the one recorded when it last finished:
the settings it reads (its config sections and the run values it uses, such as as-of and
seed), its upstream outputs' identities (``engine.pipeline._run``), the code that computes it, and for ingest the
input files themselves (path, size and modification time of every file, the cheap test
build tools use) and the pseudonymisation key. How the work runs (backend, scheduler,
workers) is not part of it: both backends compute the same outputs.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from ..config import InputSpec, config_to_dict

__all__ = ["code_version", "digest", "input_fingerprint", "key_check"]

_PACKAGES = ("engine", "kernels")


def digest(document) -> str:
    """SHA-256 of a JSON-ready document, independent of key order."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The installed version and a digest of every source file of the engine and its kernels.

    A version number alone would miss an edited checkout (``pip install -e``), whose next run
    must not reuse outputs the old code wrote.
    """
    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    sha = hashlib.sha256()
    for package in _PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            sha.update(str(path.relative_to(root)).encode())
            sha.update(path.read_bytes())
    return f"{__version__}+{sha.hexdigest()[:16]}"


def _local_files(path: Path) -> list[dict]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    entries = []
    for file in files:
        status = file.stat()
        entries.append({"path": str(file), "size": status.st_size, "mtime_ns": status.st_mtime_ns})
    return entries


def _remote_files(url: str) -> list[dict]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    found = fs.find(root, detail=True) or {root: fs.info(root)}
    entries = []
    for name, info in sorted(found.items()):
        # Whatever the store offers that changes with the content: a checksum or tag, or a time.
        marks = {k: str(info[k]) for k in ("ETag", "etag", "md5Hash", "LastModified", "mtime", "updated", "created") if k in info}
        entries.append({"path": name, "size": info.get("size"), **marks})
    return entries


def input_fingerprint(spec: InputSpec) -> str:
    """Digest of an input's settings and of the files it reads."""
    files = _remote_files(spec.path) if "://" in spec.path else _local_files(Path(spec.path))
    return digest({"spec": config_to_dict(spec), "files": files})


def key_check(key: bytes) -> str:
    """A keyed digest of a fixed label: changes with the pseudonymisation key, reveals nothing
    the store's keyed customer keys do not (it is the same keyed hash), and is never the key."""
    return hashlib.blake2b(b"segscale stage fingerprint", key=key, digest_size=8).hexdigest()

