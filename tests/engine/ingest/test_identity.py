import itertools
import json

import dask.dataframe as dd
import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.exceptions import SegscaleError, UsageError
from engine.ingest import _identity
from engine.ingest._identity import (
    BLOCKED_REASON,
    DEFAULT_BLOCKED,
    OVER_CAP_REASON,
    normalise_identifiers,
    resolve_identities,
)
from engine.synth import WorldSpec, generate_world


def _identities(rows):
    return pd.DataFrame(rows, columns=["customer_id", "id_type", "id_value"], dtype="str")


# The two ways of solving the components, as link_identities chooses them by the budget.
BUDGETS = {"in_process": _identity.DEFAULT_GRAPH_MEMORY_MIB, "propagation": 0}


@pytest.fixture(params=sorted(BUDGETS))
def method(request):
    return request.param


def _resolve(rows, customers=(), *, npartitions=2, method="in_process", **options):
    frame = _identities(rows)
    everyone = pd.Series([*customers, *frame["customer_id"]], dtype="str")
    result = resolve_identities(
        dd.from_pandas(frame, npartitions=npartitions),
        dd.from_pandas(everyone, npartitions=2),
        graph_memory_mib=BUDGETS[method],
        **options,
    )
    assert result.report["method"] == method
    return result


def _resolved(result):
    """The merged accounts: customer id -> resolved id, where the two differ."""
    return dict(zip(result.merged["customer_id"], result.merged["resolved_id"]))


def _by_customer_and_reason(pair):
    return pair[0], pair[1] or ""


def _reasons(result):
    """(customer_id, reason or None) of every identity row, sorted."""
    rows = result.identities.compute()
    reasons = rows["reason"].astype(object).where(rows["reason"].notna(), None)
    return sorted(zip(rows["customer_id"], reasons), key=_by_customer_and_reason)


# normalisation ------------------------------------------------------------------------


def test_normalise_identifiers_on_a_partition():
    frame = _identities(
        [
            ("A", "email", "  Ana.Smith@Example.COM "),
            ("B", "phone", "(555) 123-4567"),
            ("C", "Phone ", "555.123.4567"),
            ("D", "device_id", " ABCDEF01 "),
            ("E", "email", None),
        ]
    )
    out = normalise_identifiers(frame)
    assert list(out.columns) == ["customer_id", "id_type", "id_value", "id_key"]
    assert list(out["id_key"]) == ["ana.smith@example.com", "5551234567", "5551234567", "abcdef01", ""]
    assert normalise_identifiers(frame.iloc[:0])["id_key"].size == 0


def test_phone_formats_and_email_variants_link():
    result = _resolve(
        [
            ("C1", "phone", "(555) 123-4567"),
            ("C2", "phone", "555.123.4567"),
            ("C3", "phone", "5551234567"),
            ("C4", "email", "Ana@Example.com"),
            ("C5", "email", " ana@example.COM "),
        ]
    )
    assert _resolved(result) == {"C2": "C1", "C3": "C1", "C5": "C4"}


def test_values_of_different_types_do_not_link():
    result = _resolve([("C1", "account_id", "12345"), ("C2", "loyalty_id", "12345")])
    assert _resolved(result) == {}
    assert result.report["components"] == 2


# components ---------------------------------------------------------------------------


def test_transitive_chain_gets_the_smallest_id(method):
    result = _resolve(
        [
            ("B", "email", "shared@example.org"),
            ("A", "email", "SHARED@example.org"),
            ("B", "phone", "555-000-1111"),
            ("C", "phone", "(555) 000 1111"),
            ("D", "device_id", "d-1"),
        ],
        method=method,
    )
    assert _resolved(result) == {"B": "A", "C": "A"}
    assert result.report["merged_components"] == 1
    assert result.report["largest_component"] == 3


def test_a_long_chain_converges_in_few_rounds(method):
    # C000 - C001 - ... - C127, each neighbour pair sharing one phone: diameter 127.
    rows = [(f"C{i:03d}", "phone", f"555{i:07d}") for i in range(128)]
    rows += [(f"C{i + 1:03d}", "phone", f"555{i:07d}") for i in range(127)]
    result = _resolve(rows[::-1], npartitions=3, method=method)
    assert _resolved(result) == {f"C{i:03d}": "C000" for i in range(1, 128)}
    # Pointer jumping: about log2 of the diameter, far below one round per hop.
    assert result.report["iterations"] <= 12
    assert (result.report["iterations"] == 0) == (method == "in_process")


def test_customers_without_identifiers_map_to_themselves(method):
    rows = [("A", "email", "a@example.org"), ("B", "email", "a@example.org")]
    result = _resolve(rows, customers=["Z", "Y", "Z"], method=method)
    assert _resolved(result) == {"B": "A"}
    assert (result.report["customers"], result.report["components"]) == (4, 3)

    empty = _resolve([], customers=["Q", "P"], method=method)
    assert _resolved(empty) == {}
    assert empty.report["components"] == 2
    assert empty.report["merged_components"] == 0


def test_independent_of_partitions_and_row_order(method):
    rows = [
        (f"C{i % 40:02d}", kind, value)
        for i, (kind, value) in enumerate(
            [("email", f"p{i % 13}@example.org") for i in range(60)] + [("phone", f"555{i % 17:07d}") for i in range(50)]
        )
    ]
    reference = _resolve(rows, npartitions=1, method=method)
    shuffled = _identities(rows).sample(frac=1, random_state=3).itertuples(index=False)
    other = _resolve(list(shuffled), npartitions=3, method=method)
    pd.testing.assert_frame_equal(reference.merged, other.merged)
    assert reference.report == other.report


# guardrails ---------------------------------------------------------------------------


def test_a_value_over_the_cap_does_not_link(method):
    rows = [(f"C{i}", "device_id", "family-tablet-01") for i in range(6)]
    rows.append(("C0", "email", "c0@example.org"))
    result = _resolve(rows, cap=5, method=method)
    assert _resolved(result) == {}
    assert _reasons(result) == [("C0", None)] + [(f"C{i}", OVER_CAP_REASON) for i in range(6)]
    assert result.report["over_cap"] == {"device_id": {"values": 1, "rows": 6}}

    allowed = _resolve(rows, cap=5, caps={"device_id": 6}, method=method)
    assert _resolved(allowed) == {f"C{i}": "C0" for i in range(1, 6)}
    assert allowed.report["over_cap"] == {}


def test_the_cap_counts_customers_not_rows():
    # One customer listing the same value six times is one holder.
    rows = [("C1", "device_id", "dev-7")] * 6 + [("C2", "device_id", "DEV-7")]
    assert _resolved(_resolve(rows, cap=2)) == {"C2": "C1"}


def test_a_user_blocked_value_does_not_link():
    # Each value is blocked as written by a user: other case, spaces, another phone format.
    cases = [
        ("email", "Shared@Family.example", "  shared@FAMILY.example"),
        ("phone", "+1 (555) 999-0000", "1-555-999-0000"),
        ("device_id", "kiosk-7", "KIOSK-7"),
    ]
    rows = [(f"{who}{i}", kind, value) for i, (kind, value, _) in enumerate(cases) for who in "AB"]
    assert _resolved(_resolve(rows)) == {f"B{i}": f"A{i}" for i in range(3)}
    result = _resolve(rows, blocked=[user for _, _, user in cases])
    assert _resolved(result) == {}
    assert {reason for _, reason in _reasons(result)} == {BLOCKED_REASON}


# Junk as CRMs hold it, each written as it would arrive.
_JUNK = [
    ("email", "unknown"),
    ("email", "UNKNOWN "),
    ("email", ""),
    ("email", None),
    ("email", "test@test.com"),
    ("email", "None@None.com"),
    ("phone", "000-000-0000"),
    ("phone", "(000) 000 0000"),
    ("phone", "+00 000 000"),
    ("phone", "n/a"),
    ("device_id", "00000000000000000000000000000000"),
    ("device_id", "00000000-0000-0000-0000-000000000000"),
    ("device_id", "null"),
    ("account_id", "0"),
    ("account_id", "-"),
]


def test_unrelated_customers_never_merge_through_junk():
    junk = [(f"{who}{i:02d}", kind, value) for i, (kind, value) in enumerate(_JUNK) for who in "AB"]
    clean = [(f"B{i:02d}", "email", f"b{i}@example.org") for i in range(len(_JUNK))]
    result = _resolve(junk + clean, npartitions=3)
    assert _resolved(result) == {}
    expected = [(customer, BLOCKED_REASON) for customer, _, _ in junk] + [(customer, None) for customer, _, _ in clean]
    assert _reasons(result) == sorted(expected, key=_by_customer_and_reason)
    assert sum(result.report["blocked"].values()) == 2 * len(_JUNK)
    assert result.report["merged_components"] == 0


def test_default_blocked_is_normalised():
    assert all(value == value.strip().lower() for value in DEFAULT_BLOCKED)
    for value in ("", "0", "null", "none", "nan", "unknown", "n/a", "na", "-", "test", "test@example.com", "0000000000"):
        assert value in DEFAULT_BLOCKED


def test_report_counts_and_no_real_identifier_value(method):
    rows = [
        ("A", "email", "alice.private@example.org"),
        ("B", "email", "Alice.Private@example.org"),
        ("B", "phone", "555-867-5309"),
        ("C", "phone", "5558675309"),
        ("D", "email", "dora@example.org"),
        ("E", "email", "unknown"),
        ("F", "email", "unknown"),
        ("G", "phone", "000-000-0000"),
    ]
    rows += [(f"H{i}", "email", "family.shared@example.org") for i in range(7)]
    result = _resolve(rows, customers=["Z"], cap=5, method=method)
    assert result.report == {
        "customers": 15,
        "components": 13,
        "merged_components": 1,
        "customers_merged": 3,
        "largest_component": 3,
        "method": method,
        "iterations": result.report["iterations"],
        "blocked": {"unknown": 2, "0000000000": 1},
        "over_cap": {"email": {"values": 1, "rows": 7}},
    }
    assert result.report["iterations"] >= 2 if method == "propagation" else result.report["iterations"] == 0
    text = json.dumps(result.report).lower()
    for needle in ("alice", "private", "5309", "dora", "family", "example.org"):
        assert needle not in text


def test_reasons_keep_every_row():
    rows = [("A", "email", "a@example.org"), ("A", "email", "a@example.org"), ("B", "email", "unknown")]
    frame = dd.from_pandas(_identities(rows), npartitions=2)
    result = resolve_identities(frame, frame["customer_id"])
    assert result.identities.npartitions == frame.npartitions
    out = result.identities.compute().sort_values(["customer_id", "id_value"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(out.drop(columns="reason"), frame.compute().reset_index(drop=True))
    assert out["reason"].isna().tolist() == [True, True, False]


def test_screening_drops_exact_duplicates_when_asked():
    rows = [("A", "email", "a@example.org"), ("A", "email", "a@example.org"), ("A", "EMAIL", "a@example.org"),
            ("B", "email", "unknown"), ("B", "email", "unknown"), ("C", "email", "a@example.org")]  # fmt: skip
    # The duplicates sit in different input partitions: the shuffle by value brings them together.
    frame = dd.from_pandas(_identities(rows), npartitions=3)
    kept = _identity.screen_identities(frame, drop_duplicates=True)
    out = kept.identities.compute()
    assert kept.rows == len(out) == 4
    assert sorted(zip(out["customer_id"], out["id_type"], out["reason"].fillna(""))) == [
        ("A", "EMAIL", ""), ("A", "email", ""), ("B", "email", BLOCKED_REASON), ("C", "email", "")]  # fmt: skip
    assert kept.report["blocked"] == {"unknown": 1} and kept.report["customers"] == 3
    everything = _identity.screen_identities(frame)
    assert everything.rows == 6 and everything.report["blocked"] == {"unknown": 2}
    assert sorted(everything.edges.compute()["customer_id"]) == sorted(kept.edges.compute()["customer_id"]) == ["A", "C"]


def test_bad_caps_are_usage_errors():
    with pytest.raises(UsageError, match="cap"):
        _resolve([("A", "email", "a@example.org")], cap=0)
    with pytest.raises(UsageError, match="device_id"):
        _resolve([("A", "email", "a@example.org")], caps={"device_id": 0})


def test_an_identifier_hash_collision_is_an_error_not_a_wrong_link(monkeypatch):
    def same_hash(frame):
        return pd.Series(7, index=frame.index, dtype="uint64")

    monkeypatch.setattr(_identity, "row_fingerprints", same_hash)
    with pytest.raises(SegscaleError, match="2 distinct identifiers but 1 distinct hashes"):
        _resolve([("A", "email", "a@example.org"), ("B", "email", "a@example.org"),
                  ("C", "email", "c@example.org"), ("D", "email", "c@example.org")])  # fmt: skip


def test_edges_hold_a_hash_per_shared_identifier_not_its_text():
    rows = [("A", "email", "a@example.org"), ("B", "email", "A@example.org "), ("C", "phone", "555"),
            ("C", "phone", "+1 555"), ("D", "phone", "1555"), ("A", "device_id", "only-a")]  # fmt: skip
    frame = _identities(rows)
    screening = _identity.screen_identities(dd.from_pandas(frame, npartitions=2), dd.from_pandas(frame["customer_id"], npartitions=1))
    edges = screening.edges.compute()
    assert list(edges.columns) == ["customer_id", "node"] and edges["node"].dtype == "int64"
    # Values one customer holds (A's device, C's own "555") link no one and are left out.
    assert sorted(edges.groupby("node")["customer_id"].apply(sorted).tolist()) == [["A", "B"], ["C", "D"]]


def test_no_convergence_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_identity, "_MAX_ROUNDS", 1)
    with pytest.raises(SegscaleError, match="did not converge in 1 rounds"):
        _resolve([("A", "email", "a@example.org"), ("B", "email", "a@example.org")], method="propagation")


def test_same_result_on_each_backend(backend, method):
    import dask

    rows = [
        ("B", "email", "Shared@Example.org"),
        ("A", "email", "shared@example.org "),
        ("B", "phone", "(555) 000-1111"),
        ("C", "phone", "555.000.1111"),
        ("D", "email", "unknown"),
        ("E", "email", "unknown"),
    ] + [(f"H{i}", "device_id", "hub") for i in range(6)]
    frame = _identities(rows)
    with dask.config.set({"dataframe.backend": backend.dataframe_backend}):
        identities = dd.from_pandas(frame, npartitions=2).to_backend(backend.dataframe_backend)
        result = resolve_identities(identities, identities["customer_id"], graph_memory_mib=BUDGETS[method])
    merged = result.merged.to_pandas() if backend.is_gpu else result.merged
    assert dict(zip(merged["customer_id"], merged["resolved_id"])) == {"B": "A", "C": "A"}
    assert result.report["blocked"] == {"unknown": 2}


# the two methods ---------------------------------------------------------------------------


def _union_find(rows, cap):
    """customer -> smallest customer id of its component, by a plain union-find over the
    (customer, type, value) rows whose value at most ``cap`` customers hold: the oracle."""
    holders = {}
    for customer, kind, value in rows:
        holders.setdefault((kind, value), set()).add(customer)
    parent = {customer: customer for customer, _, _ in rows}

    def root(customer):
        while parent[customer] != customer:
            customer = parent[customer]
        return customer

    for members in holders.values():
        if 2 <= len(members) <= cap:
            first, *others = sorted(members)
            for other in others:
                a, b = sorted((root(first), root(other)))
                parent[b] = a
    return {customer: root(customer) for customer in parent if root(customer) != customer}


def _chains(draw, chains, length):
    """``chains`` chains of ``length`` accounts, ids in random order along each, every link an
    email or a phone: the smallest id sits anywhere along the chain."""
    rows, members = [], []
    for chain in range(chains):
        ids = [f"K{chain}-{n:05d}" for n in draw.sample(range(100_000), length)]
        for position, (left, right) in enumerate(itertools.pairwise(ids)):
            kind, value = ("email", f"c{chain}p{position}@example.org") if position % 2 else ("phone", f"5{chain}{position:07d}")
            rows += [(left, kind, value), (right, kind, value)]
        members.append(ids)
    return rows, members


def test_long_chains_and_a_star_over_the_cap_resolve_alike_both_ways():
    import random

    draw = random.Random(11)
    rows, chains = _chains(draw, chains=3, length=40)
    # A star over the cap (60 holders of one device) that would otherwise join two chains,
    # and one within it (5 holders) that does.
    rows += [(f"S{n:02d}", "device_id", "kiosk") for n in range(58)] + [(chains[0][5], "device_id", "kiosk"), (chains[1][5], "device_id", "kiosk")]
    rows += [(f"T{n}", "device_id", "family") for n in range(4)] + [(chains[2][-1], "device_id", "family")]
    # Random pairs and loners.
    rows += [(f"R{draw.randrange(400):03d}", "email", f"r{draw.randrange(150)}@example.org") for _ in range(500)]
    draw.shuffle(rows)
    expected = _union_find(rows, cap=5)
    results = {method: _resolve(rows, npartitions=4, method=method, cap=5) for method in BUDGETS}
    assert _resolved(results["in_process"]) == expected
    pd.testing.assert_frame_equal(results["in_process"].merged, results["propagation"].merged)
    reports = [{k: v for k, v in r.report.items() if k not in ("method", "iterations")} for r in results.values()]
    assert reports[0] == reports[1]
    roots = {customer: expected.get(customer, customer) for chain in chains for customer in [*chain, "T0"]}
    assert len({roots[c] for c in [*chains[2], "T0"]}) == 1 and roots[chains[0][0]] != roots[chains[1][0]]
    assert reports[0]["over_cap"]["device_id"] == {"values": 1, "rows": 60}


def test_a_long_chain_in_random_order_resolves_in_process():
    # Propagation needs about a round per three accounts on such a chain (101 rounds for 300
    # accounts); the in-process solve does not depend on the diameter.
    import random

    rows, _ = _chains(random.Random(5), chains=2, length=1500)
    result = _resolve(rows, npartitions=3)
    assert _resolved(result) == _union_find(rows, cap=5)
    assert result.report["largest_component"] == 1500 and result.report["merged_components"] == 2


def test_the_memory_budget_chooses_the_method(caplog):
    frame = _identities([("A", "email", "a@example.org"), ("B", "email", "a@example.org"), ("C", "email", "a@example.org")])
    edges = _identity.screen_identities(dd.from_pandas(frame, npartitions=1), dd.from_pandas(frame["customer_id"], npartitions=1)).edges
    needed_mib = 3 * _identity.GRAPH_BYTES_PER_EDGE / 2**20
    with caplog.at_level("INFO", logger="segscale"):
        within = _identity.link_identities(edges, edge_count=3, memory_mib=needed_mib)
        over = _identity.link_identities(edges, edge_count=3, memory_mib=needed_mib * 0.99)
    assert (within[1], over[1]) == ("in_process", "propagation")
    assert "components in this process" in caplog.text and "components by propagation" in caplog.text
    for merged, _, _ in (within, over):
        assert merged.compute().sort_values("customer_id").values.tolist() == [["B", "A"], ["C", "A"]]


# the synthetic world's planted links ------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("identity-world")
    generate_world(out, WorldSpec(customers=3000, seed=4, chunk_size=1000, dirt=0.02))
    parts = []
    for path in sorted((out / "identities").glob("*.parquet")):
        part = pq.read_table(path).to_pandas()
        part["file"], part["row"] = path.name, range(len(part))
        parts.append(part)
    identities = pd.concat(parts, ignore_index=True)
    accounts = pq.read_table(out / "truth" / "accounts").to_pandas()
    dirty = pq.read_table(out / "truth" / "dirty_rows").to_pandas()
    junk = dirty[(dirty["table"] == "identities") & (dirty["fault"] == "junk_identifier")]
    result = resolve_identities(
        dd.from_pandas(identities, npartitions=3),
        dd.from_pandas(accounts["customer_id"], npartitions=2),
    )
    return identities, accounts, junk[["file", "row"]], result


def _same_pairs(labels):
    """Unordered pairs of customers sharing a label, as a set."""
    pairs = set()
    for members in labels.groupby(labels.values).groups.values():
        members = sorted(members)
        pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return pairs


def test_world_planted_links_are_recovered_exactly(world):
    identities, accounts, junk, result = world
    assert result.report["customers"] == len(accounts)
    ids = accounts["customer_id"]
    resolved = ids.map(_resolved(result)).fillna(ids).set_axis(ids.values)
    person = accounts.set_index("customer_id")["person_id"]
    # A junk value overwrites an identity row and can erase the very identifier that linked two
    # accounts of one person; no resolver can see such a link, so recall is measured on people
    # none of whose identity rows were overwritten.
    junk_rows = identities.merge(junk, on=["file", "row"])
    touched = set(person[junk_rows["customer_id"]])
    intact = person[~person.isin(touched)].index

    found = _same_pairs(resolved)
    truth = _same_pairs(person)
    assert found and truth
    precision = len(found & truth) / len(found)
    assert precision == 1.0
    truth_intact = _same_pairs(person[intact])
    found_intact = _same_pairs(resolved[intact])
    recall = len(found_intact & truth_intact) / len(truth_intact)
    assert recall == 1.0
    # Of the people whose rows were touched, only those few lose a link; none gains one.
    assert len(truth - found) <= len(junk_rows)
    assert result.report["customers_merged"] == len({c for pair in found for c in pair})
    assert result.report["over_cap"] == {}


def test_world_junk_rows_are_blocked_and_named_only_when_junk(world):
    identities, _, junk, result = world
    out = result.identities.compute()
    assert len(out) == len(identities)
    junk_rows = out.merge(junk, on=["file", "row"])
    assert len(junk_rows) == len(junk) > 0
    assert (junk_rows["reason"] == BLOCKED_REASON).all()
    # Every clean row took part in linking: the world plants no other junk.
    clean = out.merge(junk, on=["file", "row"], how="left", indicator=True)
    assert clean.loc[clean["_merge"] == "left_only", "reason"].isna().all()
    assert sum(result.report["blocked"].values()) == len(junk)
    text = json.dumps(result.report)
    real = normalise_identifiers(out[out["reason"].isna()])
    for value in set(real["id_value"]) | set(real["id_key"]):
        assert f'"{value}"' not in text


def test_world_propagation_gives_the_in_process_mapping(world):
    identities, accounts, _, reference = world
    assert reference.report["method"] == "in_process" and len(reference.merged) > 100
    result = resolve_identities(
        dd.from_pandas(identities, npartitions=5),
        dd.from_pandas(accounts["customer_id"], npartitions=2),
        graph_memory_mib=0,
    )
    assert result.report["method"] == "propagation"
    pd.testing.assert_frame_equal(result.merged, reference.merged)


def test_the_same_links_whatever_the_partition_count(world):
    # Regression: with every grouped result in one partition, links went missing as the
    # input had more partitions (1,217 true merges found as 368 with 8 partitions, 106 with 20).
    identities, accounts, _, reference = world
    for npartitions in (1, 12):
        result = resolve_identities(
            dd.from_pandas(identities, npartitions=npartitions),
            dd.from_pandas(accounts["customer_id"], npartitions=2),
        )
        pd.testing.assert_frame_equal(result.merged, reference.merged)


def test_edges_come_in_partitions_sized_by_their_rows(world, monkeypatch):
    # Every propagation round shuffles the edges, and a shuffle's work grows with input x
    # output partitions: kept in the input's 400 partitions at 10M customers, a round took
    # 6 minutes on 23 MB of edges.
    identities, accounts, _, reference = world
    frame = dd.from_pandas(identities, npartitions=12)
    everyone = dd.from_pandas(accounts["customer_id"], npartitions=2)
    edges = _identity.screen_identities(frame, everyone).edges
    assert edges.npartitions == 1
    rows = len(edges)
    monkeypatch.setattr(_identity, "ROWS_PER_SHUFFLE_PARTITION", rows // 5)
    screening = _identity.screen_identities(frame, everyone)
    assert 1 < screening.edges.npartitions == _identity.shuffle_partitions(rows) < 12
    merged, method, _ = _identity.link_identities(screening.edges, memory_mib=0)
    assert method == "propagation"
    pd.testing.assert_frame_equal(merged.compute().sort_values("customer_id").reset_index(drop=True), reference.merged)
