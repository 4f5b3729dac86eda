"""Identity resolution: one resolved customer key per person, by connected components.

Customers are linked when they share an identifier (email, phone, device id, account id, any
``id_type``), compared after normalisation: case and surrounding whitespace for every type,
digits only for phones. The links form a bipartite graph of customers and identifier values;
each connected component becomes one resolved customer whose key is the smallest original
customer id in it, so keys are stable across re-runs and independent of partitioning.

Guardrails, as in a customer data platform: placeholder values ("", "null", "unknown", test
addresses, all-zero phones and device ids, and any values the user adds) never link anyone,
and a value held by more distinct customers than a cap (per ``id_type``) is treated as shared
junk rather than as evidence that they are one person. Both are reported, by count only for
values over the cap, since those may be real addresses.

Resolution is two steps so a caller can release the identity rows between them:
:func:`screen_identities` applies the guardrails on the cluster and leaves a compact edge list
(customer id, 64-bit identifier hash) of the values two customers or more share, and
:func:`link_identities` finds its components. Only shared values are edges, a small share of
the rows (about 1M edges at 10M customers), so while the coded graph fits a memory budget the
edges come to this process, are integer-coded and solved at once by
:func:`engine.backend.connected_components` (SciPy's csgraph, or cuGraph's on the GPU), as
DuckDB or polars users do it. Above the budget, components are found on the cluster by
min-label propagation with pointer jumping, in Dask dataframe operations only (merge,
groupby-min), so that memory stays per partition; the same code runs on pandas and dask-cudf.
Both give the same mapping.

Intermediate results used more than once (the screened rows, the edges, each round's labels)
are persisted in the workers' memory, or, given a ``workdir``, written there as Parquet and read
back, so that memory does not grow with the number of customers.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.dataframe as dd

from .._tasks import checkpoint, coarsened
from ..backend import (
    array_namespace,
    connected_components,
    dataframe_namespace,
    to_host,
)
from ..exceptions import SegscaleError, UsageError
from ._store import row_fingerprints

__all__ = [
    # guardrails
    "DEFAULT_BLOCKED",
    "BLOCKED_REASON",
    "OVER_CAP_REASON",
    # partition function
    "normalise_identifiers",
    # resolution
    "IdentityResolution",
    "IdentityScreening",
    "DEFAULT_GRAPH_MEMORY_MIB",
    "link_identities",
    "resolve_identities",
    "screen_identities",
    "shuffle_partitions",
]

DEFAULT_BLOCKED: frozenset[str] = frozenset(
    {
        # blanks and null spellings
        "", "0", "-", "null", "none", "nil", "nan", "na", "n/a", "undefined", "unknown", "test",
        # test and placeholder addresses
        "test@test.com", "none@none.com", "test@example.com", "noreply@example.com",
        "no-reply@example.com", "email@example.com", "user@example.com",
        # placeholder phones, as normalised (digits only)
        "0000000000", "1234567890", "9999999999",
        # the all-zero advertising / device id (Apple's limited-ad-tracking IDFA, undashed)
        "00000000000000000000000000000000",
    }
)  # fmt: skip

# Reasons on identity rows that took no part in linking.
BLOCKED_REASON = "blocked_identifier"
OVER_CAP_REASON = "identifier_over_cap"

# id_type values (after strip + lower) whose values are phone numbers: compared by digits only.
_PHONE_TYPES = ("phone", "mobile", "phone_number", "msisdn")
# Values of nothing but zeros and separators ("000-000-0000", "0000-0000-...", "()") carry no
# identity whatever their type; checked by rule because the list cannot hold every length.
_NO_SIGNAL = r"^[0\s.()+/_-]*$"
# What a user-supplied blocked value may contain to be read as a phone number too.
_PHONE_LIKE = re.compile(r"[\d\s().+/-]*\d[\d\s().+/-]*")
# Joins id type and value into one node key; the unit separator does not occur in either.
_NODE_SEPARATOR = "\x1f"
# Rows per partition of the frames that resolution shuffles. A shuffle cuts every input partition
# into a shard per output partition, so its work grows with inputs x outputs: partitions that
# followed the input's files (400 of 82k identity rows at 10M customers, and 400 of about 7k
# edges) made each propagation round take 6 minutes on a graph of 23 MB. Since the screening
# shuffles whole identity rows (not only their pairs), 500k-row partitions raised the phase's
# peak at 1M customers from 1.48 to 1.80 GiB for 0.3 s less.
ROWS_PER_SHUFFLE_PARTITION = 250_000
# The budget for solving the components in one process, and what one edge costs there: its
# customer id text and hash as gathered, their integer codes, the sparse graph and the answer
# (208 bytes measured at the peak, on 2M edges of 20-character ids).
DEFAULT_GRAPH_MEMORY_MIB = 1024
GRAPH_BYTES_PER_EDGE = 210
# Min-label propagation with pointer jumping needs about log2(diameter) rounds on a chain and
# a handful on realistic identity graphs; this many means something is badly wrong.
_MAX_ROUNDS = 100


@dataclass
class IdentityResolution:
    """What :func:`resolve_identities` found.

    Attributes
    ----------
    merged : DataFrame
        Computed, of the input's backend (pandas or cudf): columns ``customer_id`` and
        ``resolved_id`` for the accounts whose resolved id is not their own, sorted by
        ``customer_id``. Every other customer id resolves to itself. Only these rows come to
        the client, so its memory grows with the merges, not with the customers.
    identities : dask.dataframe.DataFrame
        The input identity rows, none dropped, in partitions by identifier value (as many
        as the input's), with an added ``reason`` column: null where the row took part in linking, else
        ``"blocked_identifier"`` or ``"identifier_over_cap"``.
    report : dict
        JSON-ready summary: ``customers``, ``components``, ``merged_components`` (of more
        than one customer), ``customers_merged`` (in those), ``largest_component``,
        ``iterations`` (propagation rounds, the last one confirming that no label changed),
        ``blocked`` ({normalised blocked value: rows}) and ``over_cap``
        ({id_type: {"values": distinct values, "rows": rows}}). Over-cap values themselves
        are never included: they may be real addresses.
    """

    merged: object
    identities: dd.DataFrame
    report: dict


@dataclass
class IdentityScreening:
    """What :func:`screen_identities` found: the links to follow, and the rows set aside.

    Attributes
    ----------
    edges : dask.dataframe.DataFrame
        Persisted, distinct ``customer_id``, ``node`` (int64 hash of id type + normalised
        value) pairs of every row used for linking whose value another customer holds too
        (a value only one customer holds links no one). Eight bytes per identifier instead of
        its text keep the graph small.
    identities : dask.dataframe.DataFrame
        The input rows with ``reason`` (see :class:`IdentityResolution`), in partitions by
        identifier value; lazy, over the screened rows' checkpoint.
    report : dict
        ``customers``, ``blocked`` and ``over_cap`` as in :class:`IdentityResolution`.
    edge_count : int
        Rows of ``edges``, which decide where :func:`link_identities` solves the graph.
    rows : int
        Rows of ``identities``: the input's, less the exact duplicates when they were dropped.
    """

    edges: dd.DataFrame
    identities: dd.DataFrame
    report: dict
    edge_count: int
    rows: int


logger = logging.getLogger("segscale")


def shuffle_partitions(rows: int) -> int:
    """Partitions for ``rows`` rows that a shuffle moves (see ``ROWS_PER_SHUFFLE_PARTITION``)."""
    return max(1, math.ceil(rows / ROWS_PER_SHUFFLE_PARTITION))


def _id_kind(id_type):
    """Normalised id type: a missing type is its own (empty) type, case and spaces ignored."""
    return id_type.fillna("").str.strip().str.lower()


def normalise_identifiers(frame):
    """Add ``id_key``, the normalised identifier value, to a partition of identity rows.

    Parameters
    ----------
    frame : pandas.DataFrame or cudf.DataFrame
        With string columns ``id_type`` and ``id_value`` (nulls allowed).

    Returns
    -------
    DataFrame
        ``frame`` with an added string column ``id_key``, never null: phone numbers (``id_type``
        phone, mobile, phone_number or msisdn) reduced to their digits, every other value
        stripped of surrounding whitespace and lower-cased. A missing value becomes ``""``,
        which is blocked.
    """
    value = frame["id_value"].fillna("")
    text = value.str.strip().str.lower()
    digits = value.str.replace(r"\D", "", regex=True)
    is_phone = _id_kind(frame["id_type"]).isin(_PHONE_TYPES)
    return frame.assign(id_key=text.where(~is_phone, digits))


def _normalise_blocked(values: Iterable[str]) -> frozenset[str]:
    """User-supplied blocked values as keys: stripped and lower-cased, and, where a value
    looks like a phone number, also as its digits, since the value's type is not given."""
    keys = set()
    for value in values:
        text = value.strip().lower()
        keys.add(text)
        if _PHONE_LIKE.fullmatch(text):
            keys.add(re.sub(r"\D", "", text))
    return frozenset(keys)


def _mark(frame, *, blocked):
    """Normalise a partition and mark its rows: ``_kind``, ``_node`` (type + key: values of
    different types never link) and ``_blocked``."""
    frame = normalise_identifiers(frame)
    kind = _id_kind(frame["id_type"])
    key = frame["id_key"]
    is_blocked = key.isin(blocked) | key.str.contains(_NO_SIGNAL, regex=True)
    return frame.assign(_kind=kind, _node=kind + _NODE_SEPARATOR + key, _blocked=is_blocked)


def _is_over_cap(frame, *, cap, caps):
    """Whether each row's value (``_kind``, ``holders``) is held by more customers than its
    type's cap."""
    over = frame["holders"] > cap
    for kind, kind_cap in caps.items():
        over = over.where(frame["_kind"] != kind, frame["holders"] > kind_cap)
    return over


def _screen(frame, *, columns, cap, caps, drop_duplicates):
    """Partition function over marked rows shuffled by ``_node``, so that every row of a value
    is in the partition: the rows (exact duplicates of ``columns`` dropped when asked) with
    ``holders``, the distinct customers holding the row's value among unblocked rows, and
    ``reason``: blocked, over the cap, or null for a row that takes part in linking."""
    if drop_duplicates:
        frame = frame.drop_duplicates(subset=columns, ignore_index=True)
    pairs = frame.loc[~frame["_blocked"], ["customer_id", "_node"]].drop_duplicates()
    holders = pairs.groupby("_node", sort=False).size().rename("holders").reset_index()
    frame = frame.merge(holders, on="_node", how="left")
    frame["holders"] = frame["holders"].fillna(0).astype("int64")
    over = ~frame["_blocked"] & _is_over_cap(frame, cap=cap, caps=caps)
    reason = frame["id_key"].mask(frame["_blocked"], BLOCKED_REASON).mask(over, OVER_CAP_REASON)
    return frame.assign(reason=reason.where(frame["_blocked"] | over))


def _links(screened):
    """The rows that link: taking part (no reason), their value held by two customers or more."""
    return screened["reason"].isna() & (screened["holders"] >= 2)


def _edges(screened):
    """Partition function: distinct ``customer_id``, ``node`` (the int64 hash of ``_node``) of
    the rows that link."""
    pairs = screened.loc[_links(screened), ["customer_id", "_node"]].drop_duplicates(ignore_index=True)
    node = row_fingerprints(pairs[["_node"]]).astype("int64")
    return pairs[["customer_id"]].assign(node=node.values)


def _linked_values(screened) -> int:
    """Partition function: distinct values (as text) among the rows that link."""
    return screened.loc[_links(screened), "_node"].nunique()


def _over_cap_rows(screened):
    """Partition function: ``_kind``, ``_node``, ``rows`` of the values over their cap."""
    over = screened.loc[screened["reason"] == OVER_CAP_REASON]
    return over.groupby(["_kind", "_node"], sort=False).size().rename("rows").reset_index()


def _jump(labels):
    """Pointer jumping: each customer also takes its label's label, when that is smaller."""
    ahead = labels[["customer_id", "label"]].rename(columns={"customer_id": "label", "label": "ahead"})
    # Inner merge loses no row: every label is the id of a customer in the same component, and
    # every such customer has a row in ``labels``.
    jumped = labels.merge(ahead, on="label")
    jumped["label"] = jumped["label"].where(jumped["label"] <= jumped["ahead"], jumped["ahead"])
    return jumped[["customer_id", "previous", "label"]]


def _propagate(edges, workdir=None):
    """Connected components of the customer-identifier graph by min-label propagation.

    Parameters
    ----------
    edges : dask.dataframe.DataFrame
        Distinct ``customer_id``, ``node`` pairs, persisted or checkpointed.
    workdir : path, optional
        Where each round's results are checkpointed (see :func:`engine._tasks.checkpoint`).

    Returns
    -------
    labels : dask.dataframe.DataFrame
        ``customer_id``, ``label`` (the smallest customer id in its component) for every
        customer in ``edges``, persisted or checkpointed.
    rounds : int
        Rounds run, the last of which changed no label.
    """
    state = edges.assign(label=edges["customer_id"])
    split = edges.npartitions
    for rounds in range(1, _MAX_ROUNDS + 1):
        # Each identifier offers the smallest label among its customers; each customer takes
        # the smallest offer, which is never above its own label (it offers that itself).
        offers = state.groupby("node")["label"].min(split_out=split).rename("offer").reset_index()
        offered = state.merge(offers, on="node")
        labels = (
            offered.groupby("customer_id")
            .agg({"label": "min", "offer": "min"}, split_out=split)
            .reset_index()
            .rename(columns={"label": "previous", "offer": "label"})
        )
        labels = _jump(labels)
        # Checkpoint so the next round starts from these results, not from the whole history.
        labels = checkpoint(labels, workdir, f"labels-{rounds}")
        state = checkpoint(edges.merge(labels[["customer_id", "label"]], on="customer_id"), workdir, f"state-{rounds}")
        if workdir is not None and rounds > 1:
            for name in (f"labels-{rounds - 1}", f"state-{rounds - 1}"):
                shutil.rmtree(Path(workdir) / name)
        changed = int((labels["label"] != labels["previous"]).sum().compute())
        if changed == 0:
            return labels[["customer_id", "label"]], rounds
    raise SegscaleError(
        f"identity resolution did not converge in {_MAX_ROUNDS} rounds "
        f"({changed} customer labels still changing); the identity graph may hold a very long chain: "
        "raise [ingest] identity_graph_memory_mib so that it is solved in one process"
    )


def _check_caps(cap: int, caps: Mapping[str, int]) -> None:
    for name, value in (("cap", cap), *((f"caps[{kind!r}]", v) for kind, v in caps.items())):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"identifier {name} must be an integer of at least 1, got {value!r}")


def screen_identities(
    identities: dd.DataFrame,
    customer_ids: dd.Series | None = None,
    *,
    cap: int = 5,
    caps: Mapping[str, int] | None = None,
    blocked: Iterable[str] = (),
    workdir: str | Path | None = None,
    drop_duplicates: bool = False,
) -> IdentityScreening:
    """Apply the guardrails: normalise, set aside blocked and over-cap values, count.

    Parameters are those of :func:`resolve_identities`, with ``customer_ids`` optional (the
    identity rows' own customers are counted either way), and:

    drop_duplicates : bool, default False
        Drop rows that are exact duplicates of another (``rows`` then counts the rest); the
        shuffle by value brings them together anyway, so this costs no pass of its own.

    One shuffle, by value, brings every row of a value into one partition: the holders of
    each value, the cap, the reasons, the duplicates and the edges all follow partition by
    partition, from one checkpoint of the screened rows. Only ``edges`` stays on the cluster
    (persisted, or checkpointed in ``workdir``) once ``identities`` has been computed.

    Raises
    ------
    UsageError
        A cap below 1.
    SegscaleError
        Two different identifiers hashed alike (about 1 in 10^10 at 10M identifiers).
    """
    caps = {kind.strip().lower(): value for kind, value in (caps or {}).items()}
    _check_caps(cap, caps)
    blocked_keys = tuple(sorted(DEFAULT_BLOCKED | _normalise_blocked(blocked)))
    columns = list(identities.columns)

    marked = identities.map_partitions(
        _mark, blocked=blocked_keys, meta=_mark(identities._meta, blocked=blocked_keys)
    )
    # The shuffle keeps the input's partition count (so a caller gives partitions of a size
    # worth shuffling: see shuffle_partitions); one output partition would put every
    # identifier in one task, and memory would grow with the customers instead of staying
    # per partition.
    split = identities.npartitions
    screen = {"columns": columns, "cap": cap, "caps": caps, "drop_duplicates": drop_duplicates}
    screened = marked.shuffle("_node", npartitions=split, ignore_index=True)
    screened = checkpoint(screened.map_partitions(_screen, **screen, meta=_screen(marked._meta, **screen)), workdir, "screened")
    edges = screened.map_partitions(_edges, meta=_edges(screened._meta))
    over = screened.map_partitions(_over_cap_rows, meta=_over_cap_rows(screened._meta))
    blocked_rows = screened.loc[screened["reason"] == BLOCKED_REASON].groupby("id_key").size()
    everyone = screened[["customer_id"]]
    if customer_ids is not None:
        everyone = dd.concat([coarsened(customer_ids.rename("customer_id").to_frame(), split), everyone])
    everyone = everyone.drop_duplicates(split_out=split)
    # Values live in one partition each: their counts add up across partitions.
    linked_texts = screened.map_partitions(_linked_values, meta=("_node", "int64")).sum()
    if workdir is None:
        edges = edges.persist()
        written = None
    else:
        written = edges.to_parquet(Path(workdir) / "edges", write_index=False, compute=False)
    customers, rows, linked_texts, hashes, edge_rows, blocked_rows, over, _ = dask.compute(
        everyone.shape[0], screened.shape[0], linked_texts, edges["node"].nunique(), edges.shape[0],
        blocked_rows, over, written,
    )  # fmt: skip
    if workdir is not None:
        edges = dd.read_parquet(Path(workdir) / "edges")
    # Only values two customers share are edges, a small share of the rows: every round of
    # the propagation shuffles them, so they are regrouped into partitions worth shuffling.
    edges = coarsened(edges, shuffle_partitions(int(edge_rows)))
    if hashes != linked_texts:
        raise SegscaleError(
            f"identity resolution: {linked_texts} distinct identifiers but {hashes} distinct hashes; "
            "two identifiers collided in the 64-bit hash, so links could be wrong (please report this)"
        )
    reasons = screened[[*columns, "reason"]]
    report = {"customers": int(customers), **_guardrail_report(to_host(blocked_rows), to_host(over))}
    return IdentityScreening(edges=edges, identities=reasons, report=report, edge_count=int(edge_rows), rows=int(rows))


def _components_in_process(edges):
    """``customer_id``, ``resolved_id`` of the relabelled customers of a computed edge frame.

    The graph is bipartite: customers are vertices ``0..customers-1``, numbered in the sorted
    order of their ids, and identifier values follow them. A component's smallest customer
    number is then its smallest id, the key propagation would give it.
    """
    df = dataframe_namespace(edges)
    customer_codes, customer_ids = df.factorize(edges["customer_id"], sort=True)
    node_codes, nodes = df.factorize(edges["node"])
    customers = len(customer_ids)
    labels = connected_components(customer_codes, node_codes + customers, customers + len(nodes))
    numbers = array_namespace(customer_codes).arange(customers)
    by_number = df.DataFrame({"component": labels[:customers], "number": numbers})
    roots = by_number.groupby("component")["number"].transform("min").values
    moved = roots != numbers
    return df.DataFrame(
        {
            "customer_id": customer_ids.take(numbers[moved]),
            "resolved_id": customer_ids.take(roots[moved]),
        }
    )


def link_identities(
    edges: dd.DataFrame,
    workdir: str | Path | None = None,
    *,
    edge_count: int | None = None,
    memory_mib: float = DEFAULT_GRAPH_MEMORY_MIB,
):
    """Connected components over screened edges; ``workdir`` as in :func:`screen_identities`.

    Parameters
    ----------
    edges : dask.dataframe.DataFrame
        ``IdentityScreening.edges``.
    workdir : path, optional
        Where propagation checkpoints its rounds.
    edge_count : int, optional
        Rows of ``edges`` (``IdentityScreening.edge_count``); counted here when not given.
    memory_mib : float, default ``DEFAULT_GRAPH_MEMORY_MIB``
        While the edges, coded as a graph, take no more than this (about 210 bytes an edge),
        they are gathered and solved in this process; above it, by propagation on the
        cluster, whose memory stays per partition. 0 always propagates.

    Returns
    -------
    merged : dask.dataframe.DataFrame
        ``customer_id``, ``resolved_id`` (the smallest customer id of its component) for the
        accounts whose resolved id is not their own; lazy over persisted or checkpointed labels
        when propagated.
    method : {"in_process", "propagation"}
    rounds : int
        Propagation rounds, the last confirming that no label changed; 0 in process.
    """
    if edge_count is None:
        edge_count = int(edges.shape[0].compute())
    needed_mib = edge_count * GRAPH_BYTES_PER_EDGE / 2**20
    if memory_mib > 0 and needed_mib <= memory_mib:
        logger.info(
            "identities: %d edges, about %.0f MiB as a graph (budget %g MiB): components in this process",
            edge_count, needed_mib, memory_mib,
        )  # fmt: skip
        merged = _components_in_process(edges.compute())
        return dd.from_pandas(merged, npartitions=1, sort=False), "in_process", 0
    logger.info(
        "identities: %d edges, about %.0f MiB as a graph, over the %g MiB budget: components by propagation "
        "on the cluster",
        edge_count, needed_mib, memory_mib,
    )  # fmt: skip
    labels, rounds = _propagate(edges, workdir)
    merged = labels[labels["customer_id"] != labels["label"]]
    return merged.rename(columns={"label": "resolved_id"}), "propagation", rounds


def resolve_identities(
    identities: dd.DataFrame,
    customer_ids: dd.Series,
    *,
    cap: int = 5,
    caps: Mapping[str, int] | None = None,
    blocked: Iterable[str] = (),
    workdir: str | Path | None = None,
    graph_memory_mib: float = DEFAULT_GRAPH_MEMORY_MIB,
) -> IdentityResolution:
    """Resolve customers linked through shared identifiers to one key per connected component.

    :func:`screen_identities` then :func:`link_identities`, for callers that keep the
    identity rows anyway.

    Parameters
    ----------
    identities : dask.dataframe.DataFrame
        Identity rows with string columns ``customer_id`` (validated: never blank), ``id_type``
        and ``id_value`` (nulls allowed); other columns are carried through untouched.
    customer_ids : dask.dataframe.Series
        Every valid customer id seen in any table, duplicates allowed; counted in the report.
    cap : int, default 5
        A value (per id type, after normalisation) held by more distinct customers than this
        links nobody.
    caps : dict of str to int, optional
        Per id type overrides of ``cap``.
    blocked : iterable of str, default ()
        Values that never link, on top of :data:`DEFAULT_BLOCKED`; normalised like the
        identifiers (case, whitespace, and phone digits) before comparing.
    workdir : path, optional
        A directory for intermediate results as Parquet, instead of worker memory.
    graph_memory_mib : float, default ``DEFAULT_GRAPH_MEMORY_MIB``
        The budget under which components are solved in this process (see
        :func:`link_identities`).

    Returns
    -------
    IdentityResolution
        The merged accounts (computed), the identity rows with a ``reason`` column (lazy)
        and a report.

    Raises
    ------
    UsageError
        A cap below 1.
    SegscaleError
        Propagation did not converge in 100 rounds, or identifiers collided in the hash.
    """
    screening = screen_identities(identities, customer_ids, cap=cap, caps=caps, blocked=blocked, workdir=workdir)
    merged, method, rounds = link_identities(
        screening.edges, workdir, edge_count=screening.edge_count, memory_mib=graph_memory_mib
    )
    merged = merged.compute().sort_values("customer_id").reset_index(drop=True)
    return IdentityResolution(
        merged=merged,
        identities=screening.identities,
        report=link_report(screening.report, merged, method, rounds),
    )


def _guardrail_report(blocked_rows, over) -> dict:
    """``blocked`` and ``over_cap`` of the report; both arguments are pandas."""
    over_by_kind = over.groupby("_kind").agg(values=("_node", "count"), rows=("rows", "sum"))
    return {
        # Only blocked values are named: they are junk by definition (or chosen by the user).
        "blocked": {str(key): int(rows) for key, rows in sorted(blocked_rows.items())},
        "over_cap": {
            str(kind): {"values": int(row["values"]), "rows": int(row["rows"])}
            for kind, row in sorted(over_by_kind.iterrows())
        },
    }


def link_report(screened: dict, merged, method: str, rounds: int) -> dict:
    """The JSON-ready report (see :class:`IdentityResolution`) from the screening's report
    and the merged accounts (computed, or a Dask frame whose counts are computed here)."""
    customers = screened["customers"]
    if isinstance(merged, dd.DataFrame):
        sizes = merged.groupby("resolved_id").size(split_out=merged.npartitions)
    else:
        sizes = merged.groupby("resolved_id").size()
    relabelled, components, largest = dask.compute(merged.shape[0], sizes.count(), sizes.max())
    # Each merged component holds its resolved id, which is not among the relabelled rows.
    relabelled, components = int(relabelled), int(components)
    return {
        "customers": customers,
        "components": customers - relabelled,
        "merged_components": components,
        "customers_merged": relabelled + components,
        "largest_component": int(largest) + 1 if components else (1 if customers else 0),
        "method": method,
        "iterations": rounds,
        **{key: screened[key] for key in ("blocked", "over_cap")},
    }
