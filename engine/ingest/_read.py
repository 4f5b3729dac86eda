"""Open one configured input as a Dask dataframe in canonical column names.

CSV is read as text (every cell a string, empty cells null) so that validation sees what
the file says and quarantine can keep it; Parquet keeps its types. Derived columns (one
source column, or the product of two) are computed here; the source columns they use are
kept beside them so quarantined rows show the values they came from.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import zlib

import dask
import dask.dataframe as dd

from ..backend import dataframe_namespace
from ..config import InputSpec
from ..contract import TABLES
from ..exceptions import InputDataError, one_line

__all__ = ["read_input", "expression_columns", "estimate_rows"]

# Large enough that per-task overhead stays small, small enough for 2-core, 24 GiB workers.
_CSV_BLOCKSIZE = "64MB"
# Bytes decoded at a time by the text check.
_CHECK_CHUNK = 16 * 2**20
# For sizing only: typical bytes per CSV row, and how much gzip shrinks such text.
_CSV_BYTES_PER_ROW = 80
_GZIP_RATIO = 5


def expression_columns(expression: str) -> list[str]:
    """Source columns of a derive expression: ``"Quantity * UnitPrice"`` -> both names."""
    return [part.strip() for part in expression.split("*")]


def _unreadable(spec: InputSpec, error: Exception) -> InputDataError:
    return InputDataError(f"{spec.path}: cannot read as {spec.format}: {one_line(error)}")


def _check_header(path: str, text: str, separator: str) -> None:
    """Refuse a header that names a column twice: which of the two is meant cannot be known
    (pandas would quietly read the second as ``name.1``)."""
    first = text.splitlines()[0] if text else ""
    names = [name.strip() for name in next(csv.reader([first], delimiter=separator), [])]
    if not any(names):
        raise InputDataError(f"{path}: the first line is blank; a CSV file starts with its header of column names")
    repeated = ", ".join(sorted({repr(name) for name in names if name and names.count(name) > 1}))
    if repeated:
        raise InputDataError(f"{path}: the header names {repeated} more than once; rename or drop the copies")


def _check_text(spec: InputSpec, compressed: bool, separator: str) -> None:
    """Decode every CSV file of ``spec`` once, so that a byte that is not text in its encoding,
    or a gzip stream cut short, is an error naming the file, byte offset and line before any
    work, not a task failure half-way through ingest; an empty file or a repeated column name
    in the header are refused here too."""
    import fsspec

    for opened in fsspec.open_files(spec.path, mode="rb", compression="gzip" if compressed else None):
        decoder = codecs.getincrementaldecoder(spec.encoding)("strict")
        offset = lines = 0
        try:
            with opened as stream:
                while chunk := stream.read(_CHECK_CHUNK):
                    pending = len(decoder.getstate()[0])  # the last chunk's unfinished character
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as error:
                        at = offset - pending + error.start
                        line = lines + chunk.count(b"\n", 0, max(0, error.start - pending)) + 1
                        raise InputDataError(
                            f"{opened.path}: byte {at:,} (line {line:,}) is not {spec.encoding} text; set "
                            f'[inputs.{spec.table}] encoding = "..." to the file\'s encoding (e.g. "latin-1", '
                            '"cp1252"), or convert the file to UTF-8'
                        ) from None
                    if not offset:
                        _check_header(opened.path, chunk[: 2**16].decode(spec.encoding, errors="replace"), separator)
                    offset += len(chunk)
                    lines += chunk.count(b"\n")
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputDataError(
                f"{opened.path}: the file ends inside a multi-byte character (line {lines + 1:,}); is it cut short?"
            ) from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise InputDataError(
                f"{opened.path}: not a complete gzip file ({one_line(error)}) after {offset:,} bytes of text "
                f"(line {lines + 1:,}); download or compress it again"
            ) from None
        if not offset:
            raise InputDataError(f"{opened.path}: the file is empty (not even a header line)")


def _encoding(spec: InputSpec) -> dict:
    """``read_csv``'s encoding argument: none for UTF-8, which cuDF's reader (it has no such
    argument) reads as pandas' does; another encoding only where pandas reads."""
    if codecs.lookup(spec.encoding).name == "utf-8":
        return {}
    if dask.config.get("dataframe.backend", "pandas") == "cudf":
        raise InputDataError(
            f"{spec.path}: the GPU backend reads UTF-8 text only, and [inputs.{spec.table}] encoding is "
            f"{spec.encoding!r}; convert the file to UTF-8 or use --backend cpu"
        )
    return {"encoding": spec.encoding}


def _open(spec: InputSpec) -> dd.DataFrame:
    try:
        if spec.format == "parquet":
            return dd.read_parquet(spec.path)
        compressed = spec.path.lower().endswith(".gz")
        separator = "\t" if spec.path.lower().endswith((".tsv", ".tsv.gz")) else ","
        _check_text(spec, compressed, separator)
        return dd.read_csv(
            spec.path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            sep=separator,
            # gzip cannot be split into blocks; a plain CSV can.
            blocksize=None if compressed else _CSV_BLOCKSIZE,
            compression="gzip" if compressed else None,
            **_encoding(spec),
        )
    except InputDataError:
        raise
    except FileNotFoundError as error:
        raise InputDataError(f"{spec.path}: no such file or directory ({spec.table} input)") from error
    except Exception as error:  # pyarrow, pandas and fsspec each raise their own kinds
        raise _unreadable(spec, error) from error


def _derive(frame, derive: dict[str, str]):
    """Partition function: add each derived canonical column from its source columns."""
    namespace = dataframe_namespace(frame)
    frame = frame.copy()
    for column, expression in derive.items():
        value = None
        for source in expression_columns(expression):
            number = namespace.to_numeric(frame[source], errors="coerce")
            value = number if value is None else value * number
        frame[column] = value.astype("float64")
    return frame


def _derive_sources(spec: InputSpec) -> set[str]:
    return {source for expression in spec.derive.values() for source in expression_columns(expression)}


def read_input(spec: InputSpec) -> dd.DataFrame:
    """The rows of ``spec`` with canonical column names.

    Returns every canonical column the source has (the required ones always), renamed, the
    derived columns, and every other source column under its own name (profile attributes
    for customers; context such as a product code elsewhere).

    Transactions without an amount (none mapped to another name, none derived, no
    ``amount`` column) are counts-only: the frame has no ``amount`` column, and ingest
    stores it null.

    Raises
    ------
    InputDataError
        The source cannot be read, or lacks a required column, a column a derived one is
        computed from, or the column an amount is explicitly mapped to (the message names
        the file, the column and how to map it).
    """
    frame = _open(spec)
    available = set(frame.columns)
    contract = TABLES[spec.table]
    needed = [*contract.required, *(c for c in spec.derive if c not in contract.required)]
    # An amount mapped to a column of another name was meant to be read: its absence is a
    # mistake, not a counts-only source (whose transactions name no amount at all).
    if spec.table == "transactions" and "amount" not in spec.derive and spec.columns.get("amount", "amount") != "amount":
        needed.append("amount")
    for column in needed:
        sources = expression_columns(spec.derive[column]) if column in spec.derive else [spec.columns[column]]
        for source in sources:
            if source not in available:
                hint = (
                    f"[inputs.{spec.table}.derive] {column}"
                    if column in spec.derive
                    else f"map it in [inputs.{spec.table}.columns] {column} = \"...\""
                )
                raise InputDataError(
                    f"{spec.path}: missing required column '{source}' for {spec.table}.{column} "
                    f"({hint}; the file has: {', '.join(sorted(map(str, available)))})"
                )
    renames = {
        source: column
        for column, source in spec.columns.items()
        if source in available and column not in spec.derive
    }
    # Every source column stays: duplicates are judged on whole rows, and quarantine keeps
    # them whole. Only a column named like a canonical one fed from elsewhere must go.
    shadowed = (set(spec.columns.values()) | set(spec.derive)) - set(renames)
    keep = [c for c in frame.columns if c in renames or c not in shadowed or c in _derive_sources(spec)]
    frame = frame[keep]
    if spec.derive:  # before renaming: expressions name source columns
        frame = frame.map_partitions(_derive, spec.derive, meta=_derive(frame._meta, spec.derive))
    return frame.rename(columns=renames)


def estimate_rows(spec: InputSpec) -> int:
    """Rows in the input, for choosing the partition count: exact for Parquet (footers only),
    estimated from the size for CSV."""
    import fsspec
    import pyarrow.dataset as ds

    try:
        filesystem, path = fsspec.core.url_to_fs(spec.path)
        if spec.format == "parquet":
            return ds.dataset(path, filesystem=filesystem, format="parquet").count_rows()
        size = filesystem.du(path) if filesystem.isdir(path) else filesystem.size(path)
    except Exception as error:
        raise _unreadable(spec, error) from error
    return int(size * (_GZIP_RATIO if spec.path.lower().endswith(".gz") else 1) / _CSV_BYTES_PER_ROW)
