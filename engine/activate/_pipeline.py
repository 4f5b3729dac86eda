"""The activate stage: audiences from the run's outputs, with consent, suppressions, frequency
caps and control groups, one task per store partition (issue 27).

Per partition, the customers of that part of every output are joined on their key
(``_catalog``); then each audience, in the config's (priority) order:

1. its conditions pick the **candidates**;
2. removals, each customer counted under the first that applies: ``suppressed: <reason>``
   (a row of the ``suppressions`` input for this channel or for every channel),
   ``recent_purchase`` (bought in ``recent_purchase_days`` before as-of), ``no_consent``
   (``consent_<channel>`` of the customers input not true), ``in_an_earlier_audience``
   (without ``allow_overlap``), ``frequency_cap`` (``contacts`` on the channel in the
   ``days`` before as-of, plus this send, would pass the cap; sends of earlier audiences in
   this run count);
3. the rest is the audience: a keyed hash holds ``holdout_share`` of it out as the control
   group (``_holdout``), the others are treated (and count as a send for later caps).

Nothing is gathered: each task writes its part of every audience and returns counts and
balance sums, added up at the end. Output, under ``<run>/activate/`` (written to a temporary
directory, renamed into place): ``audiences/<name>/part-NNNNN.parquet`` and
``audiences/<name>.csv`` (``customer_key``, ``group`` treated or control, ``segment``, and
``customer_id`` only with ``export_ids``), with a playbook ``next_best_action/part-NNNNN.parquet``
(each customer's best eligible action, its expected value and a plain reason; ``_actions``),
and ``activation.json``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .._summary import Summary
from .._tasks import compute_tasks, staged_output
from ..exceptions import ConfigError
from ..ingest import read_store_meta, read_store_table
from ..layout import ActivateLayout, RunLayout, part_name
from ._actions import next_best_actions
from ._catalog import CLV_PERCENTILE, Catalog, condition_mask, read_catalog
from ._holdout import assign_holdout, balance_sums, balance_table, imbalanced

__all__ = ["ActivationSummary", "Selected", "activate", "select_audiences"]

logger = logging.getLogger(__name__)

MICROS_PER_DAY = 86_400 * 1_000_000
# Compared treated against control in each audience's balance table, where the run has them.
BALANCE_COLUMNS = ("recency_days", "frequency", "monetary_total", "score", "p_alive", "clv")
# The CLV percentile is read off this many quantiles of every customer's CLV.
_QUANTILES = 1001
# At most this many CLVs are read for the quantiles, evenly spread over the parts.
_CLV_SAMPLE = 1_000_000


@dataclass
class ActivationSummary(Summary):
    """What ``activate`` wrote: per audience its counts, removals and balance."""

    out_dir: Path
    campaign: str
    as_of: str
    customers: int
    audiences: list = field(default_factory=list)
    next_best_action: dict | None = None
    seconds: float = 0.0


def _clv_quantiles(directory: Path, parts: int) -> np.ndarray:
    """Quantiles of every customer's CLV (from an even sample at most ``_CLV_SAMPLE`` long)."""
    per_part = math.ceil(_CLV_SAMPLE / max(parts, 1))
    values = []
    for number in range(parts):
        path = directory / part_name(number)
        if path.exists():
            clv = pq.read_table(path, columns=["clv"]).column(0).to_numpy(zero_copy_only=False)
            values.append(clv[:: max(1, len(clv) // per_part)])
    sample = np.concatenate(values) if values else np.zeros(0)
    sample = sample[np.isfinite(sample)]
    return np.quantile(sample, np.linspace(0, 1, _QUANTILES)) if len(sample) else np.zeros(0)


def _customers(catalog: Catalog, wanted: dict[str, list[str]], number: int, quantiles) -> pd.DataFrame:
    """Part ``number`` of every output named in ``wanted``, joined on the key (features first)."""
    frame = None
    for source in ("features", "segments", "propensity", "value"):
        if source not in catalog.directories or (source not in wanted and source != "features"):
            continue
        columns = ["customer_key", *wanted.get(source, [])]
        part = pq.read_table(catalog.directories[source] / part_name(number), columns=columns).to_pandas()
        frame = part if frame is None else frame.merge(part, on="customer_key", how="left")
    if "clv" in frame.columns and len(quantiles):
        clv = frame["clv"].to_numpy(dtype="float64", na_value=np.nan)
        frame[CLV_PERCENTILE] = np.where(np.isnan(clv), np.nan, np.interp(clv, quantiles, np.linspace(0, 100, len(quantiles))))
    return frame


def _consent(store: Path, number: int, keys: pd.Series, channels, required: bool, tables: set) -> dict[str, np.ndarray]:
    """Per channel, whether each customer consents (``consent_<channel>`` of the customers input).

    A customer whose accounts were merged, or who has several profile rows, consents only if
    every row does: one "no" is a no. With ``required`` a row without a value is no consent;
    otherwise it is taken as consent. A customer with no profile row at all has no value.
    """
    if "customers" not in tables:  # no profiles at all (consent assumed: required stops at the start)
        return {channel: np.full(len(keys), not required) for channel in channels}
    names = [f"consent_{channel}" for channel in channels]
    table = read_store_table(store, "customers", number, ["customer_key", *names], None).to_pandas()
    consent = {}
    for channel, name in zip(channels, names):
        given = table[name].astype("boolean") if name in table.columns else pd.Series(pd.NA, index=table.index,
                                                                                          dtype="boolean")  # fmt: skip
        agrees = given.fillna(not required).astype(bool).groupby(table["customer_key"]).all()
        consent[channel] = agrees.reindex(keys, fill_value=not required).to_numpy(dtype=bool)
    return consent


def _suppressed(store: Path, number: int, keys: pd.Series, tables: set) -> pd.DataFrame:
    """The suppressions of these customers: ``customer_key``, ``reason``, ``channel`` (None: all)."""
    if "suppressions" not in tables:
        return pd.DataFrame({"customer_key": [], "reason": [], "channel": []})
    table = read_store_table(store, "suppressions", number, ["customer_key", "reason", "channel"], None).to_pandas()
    if "channel" not in table.columns:
        table["channel"] = None
    table["reason"] = table["reason"].astype(str)
    table["channel"] = table["channel"].astype(object).where(table["channel"].notna(), None)
    return table[table["customer_key"].isin(keys)]


def _prior_contacts(store: Path, number: int, keys: pd.Series, caps: dict, as_of_day: int, tables: set) -> dict:
    """Per capped channel, each customer's contacts in the cap's days before as-of."""
    counts = {channel: np.zeros(len(keys), dtype=np.int64) for channel in caps}
    if not caps or "contacts" not in tables:
        return counts
    as_of_us = as_of_day * MICROS_PER_DAY
    table = read_store_table(store, "contacts", number, ["customer_key", "ts", "channel"], as_of_us).to_pandas()
    table["channel"] = table["channel"].astype(str)
    position = pd.Index(keys)
    for channel, cap in caps.items():
        window = table[(table["channel"] == channel) & (table["ts"] >= as_of_us - cap.days * MICROS_PER_DAY)]
        where = position.get_indexer(window["customer_key"])
        counts[channel] = np.bincount(where[where >= 0], minlength=len(keys))
    return counts


def _strata(frame: pd.DataFrame) -> np.ndarray:
    """Each customer's segment, the control draw's stratum (0 for all in a run without segments)."""
    return frame["segment"].to_numpy() if "segment" in frame.columns else np.zeros(len(frame), dtype=np.int64)


def _remove(remaining: np.ndarray, removed: dict, why: np.ndarray, reason: str, mask: np.ndarray) -> None:
    """Take the customers of ``mask`` out of ``remaining`` (in place), counting under ``reason``
    those still in it and noting it in ``why``."""
    hit = remaining & mask
    if hit.any():
        removed[reason] = removed.get(reason, 0) + int(hit.sum())
        why[hit] = reason
    remaining &= ~mask


@dataclass
class Selected:
    """One audience in one partition: its members (row positions), which of them are control,
    how many customers its conditions picked, how many each removal took, and per customer
    the removal that took them (None for members and non-candidates)."""

    members: np.ndarray
    control: np.ndarray
    candidates: int
    removed: dict
    why: np.ndarray


def select_audiences(frame: pd.DataFrame, consent: dict, suppressions: pd.DataFrame, sends: dict, options) -> list:
    """Every audience's members among the customers of ``frame``, in the config's order (see
    the module docstring); a pure function of its inputs.

    Parameters
    ----------
    frame : DataFrame
        One row per customer: ``customer_key``, the columns the conditions name, ``segment``
        (the control draw's stratum; optional) and ``recency_days`` (with
        ``recent_purchase_days``).
    consent : dict of str to ndarray of bool
        Per channel, whether each customer consents.
    suppressions : DataFrame
        ``customer_key``, ``reason``, ``channel`` (None: every channel).
    sends : dict of str to ndarray of int
        Per capped channel, each customer's contacts in the cap's window; updated in place
        with this run's treated sends.
    options : ActivateOptions

    Returns
    -------
    list of Selected
    """
    keys = frame["customer_key"].to_numpy()
    segment = _strata(frame)
    taken = np.zeros(len(frame), dtype=bool)
    selected = []
    for audience in options.audiences:
        remaining = np.ones(len(frame), dtype=bool)
        for column, condition in audience.where.items():
            remaining &= condition_mask(frame, column, condition)
        candidates = int(remaining.sum())
        removed: dict[str, int] = {}
        why = np.full(len(frame), None, dtype=object)
        remove = functools.partial(_remove, remaining, removed, why)
        applies = suppressions[suppressions["channel"].isna() | (suppressions["channel"] == audience.channel)]
        # A customer suppressed for several reasons counts under the first, alphabetically.
        first_reason = applies.sort_values("reason").drop_duplicates("customer_key").set_index("customer_key")["reason"]
        reasons = first_reason.reindex(keys).to_numpy()
        for reason in sorted(first_reason.unique()):
            remove(f"suppressed: {reason}", reasons == reason)
        if options.recent_purchase_days and "recency_days" in frame.columns:
            recency = frame["recency_days"].to_numpy(dtype="float64", na_value=np.nan)
            remove("recent_purchase", recency < options.recent_purchase_days)
        remove("no_consent", ~consent[audience.channel])
        if not options.allow_overlap:
            remove("in_an_earlier_audience", taken)
        cap = options.caps.get(audience.channel)
        if cap is not None:
            remove("frequency_cap", sends[audience.channel] + 1 > cap.contacts)
        members = np.flatnonzero(remaining)
        control = assign_holdout(keys[members], segment[members], options.campaign, options.salt or "",
                                 options.holdout_share)  # fmt: skip
        if cap is not None:
            sends[audience.channel][members[~control]] += 1
        taken[members] = True
        selected.append(Selected(members, control, candidates, removed, why))
    return selected


def _part_task(run_dir: str, number: int, staging: str, options, catalog: Catalog, wanted: dict, quantiles,
               as_of_day: int, tables: set, has_mapping: bool) -> dict:  # fmt: skip
    """One partition: every audience's part, its counts and its balance sums."""
    layout = RunLayout(run_dir)
    store = layout.store.root
    frame = _customers(catalog, wanted, number, quantiles)
    keys = frame["customer_key"]
    channels = sorted({audience.channel for audience in options.audiences})
    consent = _consent(store, number, keys, channels, options.consent == "required", tables)
    suppressions = _suppressed(store, number, keys, tables)
    sends = _prior_contacts(store, number, keys, options.caps, as_of_day, tables)
    ids = None
    if options.export_ids and has_mapping:
        mapping = pq.read_table(layout.ingest.identity_mapping / part_name(number)).to_pandas()
        ids = mapping.groupby("customer_key")["customer_id"].agg(lambda v: "|".join(sorted(map(str, v))))
        ids = ids.reindex(keys).to_numpy()
    segment = _strata(frame)
    balance_columns = [c for c in BALANCE_COLUMNS if c in frame.columns]
    results = []
    selected = select_audiences(frame, consent, suppressions, sends, options)
    actions = None
    if options.actions:
        actions = next_best_actions(frame, options.audiences, selected, options.actions)
        directory = ActivateLayout(staging).next_best_action
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(actions.rows, preserve_index=False), directory / part_name(number))
        actions = {"per_action": actions.per_action, "no_action": actions.no_action}
    for audience, chosen in zip(options.audiences, selected):
        members, control = chosen.members, chosen.control
        rows = pd.DataFrame({"customer_key": keys.to_numpy()[members],
                             "group": np.where(control, "control", "treated"), "segment": segment[members]})  # fmt: skip
        if ids is not None:
            rows["customer_id"] = ids[members]
        directory = ActivateLayout(staging).audience(audience.name)
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), directory / part_name(number))
        results.append({
            "candidates": chosen.candidates, "removed": chosen.removed, "control": int(control.sum()),
            "treated": int((~control).sum()),
            "balance": balance_sums(frame.iloc[members], control, balance_columns),
        })  # fmt: skip
    return {"customers": len(frame), "audiences": results, "actions": actions}


def _added_up(parts: list[dict]) -> dict:
    """The partitions' next-best-action counts, added up."""
    total = {"per_action": {}, "no_action": {}}
    for part in parts:
        for kind in total:
            for name, count in part[kind].items():
                total[kind][name] = total[kind].get(name, 0) + count
    return {kind: dict(sorted(counts.items(), key=lambda item: -item[1])) for kind, counts in total.items()}


def _write_csv(directory: Path, target: Path) -> None:
    """One CSV of an audience from its parts, part after part (never all in memory at once)."""
    with open(target, "wb") as sink:
        for number, path in enumerate(sorted(directory.glob("part-*.parquet"))):
            buffer = pa.BufferOutputStream()
            pcsv.write_csv(pq.read_table(path), buffer, pcsv.WriteOptions(include_header=number == 0))
            sink.write(buffer.getvalue().to_pybytes())


def activate(run_dir, options, *, as_of: date, source: str = "config", client=None, progress=None) -> ActivationSummary:
    """Materialise ``options.audiences`` from the outputs in ``run_dir`` as of ``as_of``.

    Raises
    ------
    ConfigError
        A condition on a column no output has, or min/max on a text column; consent
        required on a channel the customers input has no ``consent_<channel>`` column for.
    """
    started = time.perf_counter()
    layout = RunLayout(run_dir)
    catalog = read_catalog(layout)
    catalog.check(options.audiences, source)
    catalog.check_actions(options.actions, source)
    meta = read_store_meta(layout.store.root)
    tables = set(meta.get("tables", {}))
    if options.consent == "required":
        customers_columns = set(meta["tables"].get("customers", {}).get("columns", []))
        for channel in sorted({audience.channel for audience in options.audiences}):
            if f"consent_{channel}" not in customers_columns:
                raise ConfigError(
                    f"{source}: [activate] consent = \"required\" but the customers input has no consent_{channel} "
                    f"column for the {channel} audiences; add it, or set consent = \"assumed\""
                )
    partitions = int(meta["partitions"])
    columns = [c for audience in options.audiences for c in audience.where]
    columns += [c for c in BALANCE_COLUMNS if c in catalog.columns] + ["segment"]
    if options.actions:
        columns += ["score", "expected_spend"]
    if options.recent_purchase_days:
        columns.append("recency_days")
    wanted = catalog.sources_of(columns)
    quantiles = _clv_quantiles(catalog.directories["value"], partitions) if "clv" in wanted.get("value", []) else []
    as_of_day = (as_of - date(1970, 1, 1)).days
    out = layout.activate.root
    has_mapping = layout.ingest.identity_mapping.exists()
    with staged_output(out) as staging:
        tasks = [
            dask.delayed(_part_task)(str(layout.root), number, str(staging), options, catalog, wanted, quantiles,
                                     as_of_day, tables, has_mapping)  # fmt: skip
            for number in range(partitions)
        ]
        parts = compute_tasks(tasks, client, progress, "activation")
        audiences = []
        for index, audience in enumerate(options.audiences):
            mine = [part["audiences"][index] for part in parts]
            removed: dict[str, int] = {}
            for part in mine:
                for reason, count in part["removed"].items():
                    removed[reason] = removed.get(reason, 0) + count
            balance = balance_table([part["balance"] for part in mine])
            off = imbalanced(balance)
            if off:
                logger.warning("activate: %s: treated and control differ by more than 0.1 standardised difference "
                               "on %s", audience.name, ", ".join(off))  # fmt: skip
            written = ActivateLayout(staging)
            _write_csv(written.audience(audience.name), written.audience_csv(audience.name))
            audiences.append({
                "name": audience.name, "channel": audience.channel,
                "candidates": sum(p["candidates"] for p in mine), "removed": dict(sorted(removed.items())),
                "treated": sum(p["treated"] for p in mine), "control": sum(p["control"] for p in mine),
                "balance": balance.to_dict("records"), "imbalanced": off,
            })  # fmt: skip
        summary = ActivationSummary(
            out_dir=out, campaign=options.campaign, as_of=as_of.isoformat(),
            customers=sum(part["customers"] for part in parts), audiences=audiences,
            next_best_action=_added_up([part["actions"] for part in parts]) if options.actions else None,
            seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip
        document = {**summary.to_dict(), "finished_at": datetime.now(timezone.utc).isoformat()}
        ActivateLayout(staging).summary.write_text(json.dumps(document, indent=2) + "\n")
    for audience in audiences:
        logger.info("activate: %s (%s): %d candidates, %d treated, %d control; removed %s", audience["name"],
                    audience["channel"], audience["candidates"], audience["treated"], audience["control"],
                    audience["removed"] or "none")  # fmt: skip
    return summary
