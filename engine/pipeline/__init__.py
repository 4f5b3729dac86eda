"""The whole run (DESIGN 2): ingest, features, segments, propensity, value and, against an
earlier run, compare; then the report. Resumable stage by stage, one run per directory at a
time, recorded in ``manifest.json``.
"""

from ._fingerprint import code_version, digest, input_fingerprint
from ._lock import LOCK_NAME, RunLock
from ._run import RunSummary, forget_stage, run_pipeline, write_json
from ._stages import STAGE_NAMES, STAGES, Stage, StageContext

__all__ = [
    "run_pipeline",
    "RunSummary",
    "forget_stage",
    "STAGES",
    "STAGE_NAMES",
    "Stage",
    "StageContext",
    "RunLock",
    "LOCK_NAME",
    "code_version",
    "digest",
    "input_fingerprint",
    "write_json",
]
