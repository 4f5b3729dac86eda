"""A fixed-seed run writes the same rows as before: refactoring must not change results.

The digests in ``expected_outputs.json`` are of the rows of every Parquet output of one run
of the shared backtest config (the store, features, segment assignments, propensity scores
and customer values), floats rounded to 6 significant digits so that only a change of
result moves them, not the library writing the file. A change meant to alter results
regenerates them: ``SEGSCALE_UPDATE_OUTPUTS=1 python -m pytest tests/engine/pipeline/test_outputs.py``,
and says so in its commit.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from engine.layout import RunLayout

EXPECTED = Path(__file__).with_name("expected_outputs.json")


def _rounded(column: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(column.dtype):
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        return pd.Series([float(f"{value:.6g}") for value in values], dtype="float64")
    return column


def rows_digest(directory: Path) -> str:
    """SHA-256 of the column names and rows of every Parquet file under ``directory``, in path
    order, but those under a directory whose name starts with ``_``, as Arrow's readers skip
    them (the feature table's event summaries, which only make a later build quicker)."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.parquet")):
        if any(part.startswith("_") for part in path.relative_to(directory).parent.parts):
            continue
        frame = pq.read_table(path).to_pandas()
        frame = pd.DataFrame({name: _rounded(frame[name]) for name in frame.columns})
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + "\0".join(frame.columns).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _outputs(run: RunLayout) -> dict[str, Path]:
    return {
        "store": run.store.root,
        "features": run.features.root,
        "segment assignments": run.segments.assignments,
        "propensity scores": run.propensity_scores.root,
        "customer values": run.value.customers,
    }


def test_a_fixed_seed_run_writes_the_rows_it_wrote_before(full_run):
    digests = {name: rows_digest(path) for name, path in _outputs(RunLayout(full_run)).items()}
    if os.environ.get("SEGSCALE_UPDATE_OUTPUTS"):
        EXPECTED.write_text(json.dumps(digests, indent=2) + "\n")
    assert digests == json.loads(EXPECTED.read_text())
