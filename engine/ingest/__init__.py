"""Ingest: validated, deduplicated, identity-resolved, customer-partitioned store (DESIGN 2).

Every input row is kept, written to quarantine with a reason, or dropped as an exact
duplicate (unless its input says ``duplicates = "none"``), and ``ingest.json`` reconciles
the three with the rows read.
"""

from ._pipeline import ROWS_PER_PARTITION, IngestSummary, check_inputs, ingest
from ._pseudonym import KEY_ENV_VAR, pseudonym_key
from ._stored import (
    default_as_of,
    first_transaction,
    has_amounts,
    latest_ts,
    read_store_files,
    read_store_meta,
    read_store_table,
    store_part_files,
)

__all__ = [
    "check_inputs",
    "ingest", "IngestSummary", "ROWS_PER_PARTITION", "KEY_ENV_VAR", "pseudonym_key", "default_as_of", "first_transaction",
    "has_amounts", "latest_ts", "read_store_files", "read_store_meta", "read_store_table", "store_part_files",
]  # fmt: skip
