"""Even samples of a table of parts: every n-th row of each part, which drift compares
(``engine.measure``), and the sample a table may keep beside its parts so that drift reads it
instead of them (the feature stage keeps one). Apart from ``engine.measure`` so that the
stages that write samples import no statistics library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .layout import KEPT_SAMPLE_FILE, part_files

__all__ = ["KEPT_SAMPLE", "even_rows", "keep_sample", "kept_sample", "numeric_columns", "numeric_columns_of"]

# The sample a table may keep beside its parts (an update's drift compares samples of this size).
KEPT_SAMPLE = 100_000


def numeric_columns(schema: pa.Schema) -> list[str]:
    return [item.name for item in schema if pa.types.is_integer(item.type) or pa.types.is_floating(item.type)]


def numeric_columns_of(directory: Path) -> list[str]:
    files = part_files(directory)
    return numeric_columns(pq.read_schema(files[0])) if files else []


def even_rows(table: pa.Table, columns: list[str], parts: int, sample: int) -> pa.Table:
    """One part's share of a sample of about ``sample`` rows over ``parts`` parts: every n-th
    row of ``table``'s ``columns``, of their own types."""
    step = max(1, table.num_rows // max(1, sample // max(parts, 1)))
    return table.select(columns).take(np.arange(0, table.num_rows, step))


def keep_sample(rows: pa.Table, directory: Path, sample: int) -> None:
    """Keep ``rows``, a sample of about ``sample`` rows of the parts of ``directory`` (their
    `even_rows`), beside them, where `kept_sample` finds it. Read once or twice and small:
    written plain, without statistics."""
    path = Path(directory) / KEPT_SAMPLE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows.replace_schema_metadata({"sample": str(sample)}), path, compression="none",
                   write_statistics=False)  # fmt: skip


def kept_sample(directory: Path, columns, sample: int) -> Path | None:
    """The file of the sample ``directory`` keeps, when it is of ``sample`` rows and has
    ``columns`` (None: every numeric column of the parts); else None."""
    path = Path(directory) / KEPT_SAMPLE_FILE
    if not path.is_file():
        return None
    schema = pq.read_schema(path)
    columns = numeric_columns_of(Path(directory)) if columns is None else columns
    if (schema.metadata or {}).get(b"sample") != str(sample).encode() or not set(columns) <= set(schema.names):
        return None
    return path
