"""The world's truth by resolved customer key: for checking what the pipeline made of it."""

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

__all__ = ["truth_by_customer_key"]


def truth_by_customer_key(world: Path, mapping: Path, columns: Sequence[str]) -> pd.DataFrame:
    """``customer_key``, ``person_id`` and ``columns`` of ``truth/persons``, for every key of
    ingest's identity ``mapping`` that holds the accounts of one person only."""
    mapping = pq.read_table(mapping).to_pandas()
    accounts = pq.read_table(Path(world) / "truth" / "accounts", columns=["customer_id", "person_id"]).to_pandas()
    persons = pq.read_table(Path(world) / "truth" / "persons", columns=["person_id", *columns]).to_pandas()
    keyed = mapping.merge(accounts, on="customer_id").drop_duplicates(["customer_key", "person_id"])
    single = keyed.groupby("customer_key")["person_id"].nunique() == 1
    keyed = keyed[keyed["customer_key"].isin(single[single].index)].drop_duplicates("customer_key")
    return keyed[["customer_key", "person_id"]].merge(persons, on="person_id")
