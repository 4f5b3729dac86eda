"""segscale activate (and activate as a stage of run): audiences with consent, suppressions,
frequency caps and control groups, end to end on a small synthetic world."""

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.layout import RunLayout

from .conftest import invoke, one_line_error

AS_OF = pd.Timestamp("2025-10-03", tz="UTC")

ACTIVATE = """
[activate]
campaign = "autumn"
recent_purchase_days = 3

[activate.caps]
email = { contacts = 2, days = 7 }

[[activate.audiences]]
name = "likely-buyers"
channel = "email"
[activate.audiences.where]
band = { values = ["high", "medium"] }

[[activate.audiences]]
name = "everyone-else"
channel = "email"

[[activate.actions]]
name = "coupon"
audience = "likely-buyers"
offer = "10% off"
cost = 1.0

[[activate.actions]]
name = "newsletter"
audience = "everyone-else"
value = 5.0
cost = 0.1
"""


@pytest.fixture(scope="module")
def activated(backtest_world, tmp_path_factory):
    """The backtest world with consent flags, a contact history and suppressions, run whole
    with two audiences. Returns the config, the run directory and what was planted."""
    world, config = backtest_world
    rng = np.random.default_rng(11)
    customers = pd.read_parquet(world / "customers")
    customers["consent_email"] = rng.uniform(size=len(customers)) < 0.8
    directory = tmp_path_factory.mktemp("activate")
    customers.to_parquet(directory / "customers.parquet", index=False)
    ids = customers["customer_id"].dropna().astype(str).unique()
    suppressed = rng.choice(ids, 150, replace=False)
    pd.DataFrame({"customer_id": suppressed, "reason": rng.choice(["unsubscribed", "complaint"], 150)}).to_csv(
        directory / "suppressions.csv", index=False
    )
    # Two contacts each in the week before as-of for some customers (the cap is reached), one
    # for others (this send is the second, allowed), and two older than the week.
    pool = rng.permutation(np.setdiff1d(ids, suppressed))
    capped, once, old = pool[:100], pool[100:200], pool[200:300]
    day = pd.Timedelta(days=1)
    contacts = pd.DataFrame({
        "customer_id": np.concatenate([capped, capped, once, old, old]),
        "ts": np.concatenate([np.full(100, AS_OF - 2 * day), np.full(100, AS_OF - 6 * day), np.full(100, AS_OF - day),
                              np.full(200, AS_OF - 8 * day)]),
        "channel": "email",
    })  # fmt: skip
    contacts["ts"] = contacts["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
    contacts.to_csv(directory / "contacts.csv", index=False)
    text = config.read_text().replace('output_dir = "backtest"', f'output_dir = "{directory / "run"}"')
    text = text.replace('path = "customers"\nformat = "parquet"', f'path = "{directory / "customers.parquet"}"\nformat = "parquet"')
    text += (f'\n[inputs.contacts]\npath = "{directory / "contacts.csv"}"\ntimestamp_format = "%Y-%m-%d %H:%M:%S"\n'
             f'\n[inputs.suppressions]\npath = "{directory / "suppressions.csv"}"\n')  # fmt: skip
    path = world / "activate.toml"
    path.write_text(text + ACTIVATE)
    result = invoke("run", path, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    refused = customers.loc[~customers["consent_email"], "customer_id"].dropna().astype(str)
    planted = {"suppressed": set(suppressed), "no_consent": set(refused),
               "capped": set(capped), "once": set(once), "old": set(old)}  # fmt: skip
    return path, RunLayout(directory / "run"), planted


def _members(layout: RunLayout, name: str) -> pd.DataFrame:
    """An audience's rows with each customer's original id (through the identity mapping)."""
    rows = pd.read_parquet(layout.activate.audience(name))
    mapping = pd.read_parquet(layout.ingest.identity_mapping)
    mapping["customer_id"] = mapping["customer_id"].astype(str)
    return rows.merge(mapping, on="customer_key", how="left")


def test_audiences_leave_out_the_suppressed_the_unconsenting_and_the_capped(activated):
    _, layout, planted = activated
    document = json.loads(layout.activate.summary.read_text())
    first, second = document["audiences"]
    for audience in (first, second):
        members = _members(layout, audience["name"])
        ids = set(members["customer_id"])
        assert not ids & planted["suppressed"] and not ids & planted["no_consent"]
        size = members["customer_key"].nunique()  # a merged customer has several ids
        assert size == len(members.drop_duplicates("customer_key")) == audience["treated"] + audience["control"]
        assert audience["candidates"] == size + sum(audience["removed"].values())
    assert {"no_consent", "in_an_earlier_audience"} <= set(second["removed"])
    assert any(reason.startswith("suppressed: ") for reason in second["removed"])
    # Two contacts in the week: a third is over the cap. One: this send is the second, allowed.
    # Older contacts do not count.
    everyone = pd.concat([_members(layout, audience["name"]) for audience in (first, second)])
    treated = set(everyone.loc[everyone["group"] == "treated", "customer_id"])
    assert not treated & planted["capped"]
    assert planted["once"] & treated and planted["old"] & treated
    assert document["audiences"][0]["removed"].get("frequency_cap", 0) + second["removed"]["frequency_cap"] >= 1


def test_the_files_a_campaign_tool_takes(activated):
    _, layout, _ = activated
    for name in ("likely-buyers", "everyone-else"):
        csv = pd.read_csv(layout.activate.audience_csv(name))
        parquet = pq.read_table(layout.activate.audience(name)).to_pandas()
        assert list(csv.columns) == ["customer_key", "group", "segment"]  # keys only: export_ids is off
        assert len(csv) == len(parquet) and set(csv["group"]) <= {"treated", "control"}
        assert csv["customer_key"].is_unique
    # Every file the stage wrote is a path of its layout.
    names = ("likely-buyers", "everyone-else")
    parts = {layout.activate.audience(name) for name in names} | {layout.activate.next_best_action}
    named = {layout.activate.summary, *(layout.activate.audience_csv(name) for name in names)}
    for path in layout.activate.root.rglob("*"):
        assert path.is_dir() or path in named or (path.parent in parts and path.name.startswith("part-")), path
    manifest = json.loads(layout.manifest.read_text())
    sizes = manifest["metrics"]["activate"]
    assert set(sizes) == {"likely-buyers", "everyone-else"} and sizes["likely-buyers"]["treated"] > 0
    report = layout.report.read_text()
    assert ">Activation<" in report and "Balance: likely-buyers" in report and "standardised difference" in report


def test_the_control_group_is_the_same_on_a_rerun(activated, tmp_path):
    config, layout, _ = activated
    before = pd.read_parquet(layout.activate.audience("everyone-else"))
    result = invoke("activate", config, "--workers", 1, "--force", "--json")
    assert result.exit_code == 0, result.stderr
    after = pd.read_parquet(layout.activate.audience("everyone-else"))
    pd.testing.assert_frame_equal(before.sort_values("customer_key", ignore_index=True),
                                  after.sort_values("customer_key", ignore_index=True))  # fmt: skip
    document = json.loads(result.stdout)
    assert [audience["name"] for audience in document["audiences"]] == ["likely-buyers", "everyone-else"]


@pytest.mark.parametrize(
    "where, fragments",
    [
        ("nonsense = { min = 1 }", ["where.nonsense", "no output of this run has a column 'nonsense'"]),
        ('segment_name = { min = 1 }', ["where.segment_name", "is text; give values = [...], not min/max"]),
        ('band = { values = ["high"], min = 1 }', ["where.band", "give either values or min/max, not both"]),
    ],
)
def test_a_bad_audience_condition_is_one_line_and_exit_2(activated, tmp_path, where, fragments):
    config, _, _ = activated
    bad = config.with_name(f"bad-{tmp_path.name}.toml")
    bad.write_text(config.read_text() + f'\n[[activate.audiences]]\nname = "bad"\nchannel = "email"\n'
                   f"[activate.audiences.where]\n{where}\n")  # fmt: skip
    result = invoke("activate", bad, "--workers", 1)
    assert result.exit_code == 2
    one_line_error(result, *fragments, after_progress=True)


def test_consent_required_without_a_consent_column_is_exit_2(backtest_world, tmp_path):
    _, config = backtest_world
    text = config.read_text().replace('output_dir = "backtest"', f'output_dir = "{tmp_path / "run"}"')
    path = config.with_name("no-consent.toml")
    path.write_text(text + '\n[[activate.audiences]]\nname = "all"\nchannel = "sms"\n')
    result = invoke("run", path, "--workers", 1)
    assert result.exit_code == 2
    one_line_error(result, "no consent_sms column", 'consent = "assumed"', after_progress=True)


def test_each_customer_gets_its_best_eligible_action_or_a_reason(activated):
    _, layout, _ = activated
    document = json.loads(layout.activate.summary.read_text())
    chosen = pd.read_parquet(layout.activate.next_best_action)
    assert chosen["customer_key"].is_unique and (chosen["expected_value"] > 0).all()
    for name, action in (("likely-buyers", "coupon"), ("everyone-else", "newsletter")):
        members = pd.read_parquet(layout.activate.audience(name))
        treated = set(members.loc[members["group"] == "treated", "customer_key"])
        mine = chosen[chosen["action"] == action]
        assert set(mine["customer_key"]) <= treated and (mine["audience"] == name).all()
        assert mine["reason"].str.startswith(f"{name}: score ").all()
    counts = document["next_best_action"]
    assert counts["per_action"] == chosen["action"].value_counts().to_dict()
    assert sum(counts["per_action"].values()) + sum(counts["no_action"].values()) == document["customers"]
    assert counts["no_action"]["control group"] > 0
    assert "Next best action" in layout.report.read_text()


def test_an_action_for_an_undeclared_audience_is_one_line_and_exit_2(activated):
    config, _, _ = activated
    bad = config.with_name("bad-action.toml")
    bad.write_text(config.read_text() + '\n[[activate.actions]]\nname = "x"\naudience = "nobody"\n')
    result = invoke("activate", bad, "--workers", 1)
    assert result.exit_code == 2
    one_line_error(result, "actions[2]", 'no audience is named "nobody"')


def test_measure_finds_a_planted_lift_and_says_what_is_wrong_with_bad_outcomes(activated, tmp_path):
    _, layout, _ = activated
    rng = np.random.default_rng(3)
    members = pd.concat([pd.read_parquet(layout.activate.audience(name)) for name in ("likely-buyers", "everyone-else")])
    treated = (members["group"] == "treated").to_numpy()
    converted = rng.uniform(size=len(members)) < np.where(treated, 0.40, 0.20)
    outcomes = pd.DataFrame({"customer_key": members["customer_key"], "converted": converted.astype(int),
                             "revenue": np.where(converted, 50.0, 0.0),
                             "unsubscribed": (rng.uniform(size=len(members)) < np.where(treated, 0.2, 0.01)).astype(int)})  # fmt: skip
    # Non-converters may be missing from a campaign tool's file: they count as not converted.
    outcomes = pd.concat([outcomes[outcomes["converted"] == 1],
                          pd.DataFrame({"customer_key": ["k-not-in-any-audience"], "converted": [1], "revenue": [9.0],
                                        "unsubscribed": [0]})])  # fmt: skip
    outcomes.to_csv(tmp_path / "outcomes.csv", index=False)
    result = invoke("measure", "--assignments", layout.activate.root, "--outcomes", tmp_path / "outcomes.csv",
                    "--out", tmp_path / "measured", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["outside_audiences"] == 1 and (tmp_path / "measured" / "measure.html").exists()
    assert json.loads((tmp_path / "measured" / "measure.json").read_text())["audiences"] == document["audiences"]
    manifest = json.loads((tmp_path / "measured" / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["inputs"]["outcomes"]["sha256"] == hashlib.sha256(
        (tmp_path / "outcomes.csv").read_bytes()).hexdigest()
    for audience in document["audiences"]:
        assert manifest["audiences"][audience["name"]]["absolute_lift"] == audience["conversion"]["absolute_lift"]
    for audience in document["audiences"]:
        lift = audience["conversion"]
        assert lift["absolute_low"] < lift["treated_rate"] - lift["control_rate"] < lift["absolute_high"]
        assert lift["treated"] + lift["control"] == len(pd.read_parquet(layout.activate.audience(audience["name"])))
        assert audience["revenue_per_customer"]["absolute_lift"] == pytest.approx(50 * lift["absolute_lift"])
    # Unsubscribes at 20% against 1% in the bigger audience: flagged as worse.
    assert any(audience["guardrails"]["unsubscribed"]["worse"] for audience in document["audiences"])
    pd.DataFrame({"customer_key": ["a"], "converted": ["yes"]}).to_csv(tmp_path / "bad.csv", index=False)
    bad = invoke("measure", "--assignments", layout.activate.root, "--outcomes", tmp_path / "bad.csv",
                 "--out", tmp_path / "nothing")  # fmt: skip
    assert bad.exit_code == 2
    one_line_error(bad, "bad.csv: row 2: converted is 'yes'; it must be 0 or 1")
    assert not (tmp_path / "nothing").exists()


def test_lookalikes_leave_out_the_seed_and_the_suppressed(activated, tmp_path):
    config, layout, planted = activated
    mapping = pd.read_parquet(layout.ingest.identity_mapping)
    mapping["customer_id"] = mapping["customer_id"].astype(str)
    features = pd.read_parquet(layout.features.root, columns=["customer_key", "frequency"])
    # A seed of frequent buyers, by original id, with two ids the run has never seen.
    keys = features.nlargest(100, "frequency")["customer_key"]
    ids = mapping[mapping["customer_key"].isin(keys)].drop_duplicates("customer_key")["customer_id"]
    pd.DataFrame({"customer_id": [*ids, "nobody-1", "nobody-2"]}).to_csv(tmp_path / "seed.csv", index=False)
    result = invoke("lookalike", config, "--seed", tmp_path / "seed.csv", "--size", 150, "--out", tmp_path / "like",
                    "--workers", 1, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["seed_known"] == 100 and summary["seed_unknown"] == 2 and summary["lookalikes"] == 150
    found = pd.read_parquet(tmp_path / "like" / "lookalikes.parquet")
    assert found["similarity"].between(0, 1).all() and found["rank"].tolist() == list(range(1, 151))
    assert found["similarity"].is_monotonic_decreasing and not set(found["customer_key"]) & set(keys)
    suppressed = set(mapping.loc[mapping["customer_id"].isin(planted["suppressed"]), "customer_key"])
    assert not set(found["customer_key"]) & suppressed
    # The seed's kind is found again: the lookalikes buy more often than the customers outside
    # the seed at large (at random they would not), though the seed took the 100 most frequent.
    frequency = features.set_index("customer_key")["frequency"]
    rest = frequency.drop(keys)
    assert frequency.reindex(found["customer_key"]).mean() > 1.3 * rest.mean()


@pytest.mark.parametrize("rows, fragment", [("customer_key\n", "lists no customers"),
                                            ("customer_key\nk-unknown\n", "none of its 1 customer_keys")])
def test_an_empty_or_unknown_seed_is_one_line_and_exit_2(activated, tmp_path, rows, fragment):
    config, _, _ = activated
    (tmp_path / "seed.csv").write_text(rows)
    result = invoke("lookalike", config, "--seed", tmp_path / "seed.csv", "--size", 10, "--out", tmp_path / "like",
                    "--workers", 1)  # fmt: skip
    assert result.exit_code == 2
    one_line_error(result, "seed.csv", fragment, after_progress=True)
    assert not (tmp_path / "like").exists()


@pytest.mark.gpu
def test_activation_on_the_gpu_backend_writes_the_cpu_audiences(activated):
    """Same members, groups and counts on both backends: the stage's per-partition work is host
    code on either (the control draw is a keyed BLAKE2b hash), run by the backend's workers."""
    config, layout, _ = activated
    names = ("likely-buyers", "everyone-else")
    cpu = {name: pd.read_parquet(layout.activate.audience(name)).sort_values("customer_key", ignore_index=True)
           for name in names}  # fmt: skip
    cpu_summary = json.loads(layout.activate.summary.read_text())
    result = invoke("activate", config, "--backend", "gpu", "--force", "--workers", 1, "--json")
    assert result.exit_code == 0, result.stderr
    for name in names:
        gpu = pd.read_parquet(layout.activate.audience(name)).sort_values("customer_key", ignore_index=True)
        pd.testing.assert_frame_equal(gpu, cpu[name])
    gpu_summary = json.loads(layout.activate.summary.read_text())
    assert gpu_summary["audiences"] == cpu_summary["audiences"]
    assert gpu_summary["next_best_action"] == cpu_summary["next_best_action"]


@pytest.mark.gpu
def test_lookalikes_on_the_gpu_backend_agree_with_the_cpu(activated, tmp_path):
    """XGBoost on the GPU and histogram boosting on the CPU are different learners: the GPU's
    lookalikes obey the same exclusions and mostly match the CPU's."""
    config, layout, planted = activated
    features = pd.read_parquet(layout.features.root, columns=["customer_key", "frequency"])
    keys = features.nlargest(100, "frequency")["customer_key"]
    pd.DataFrame({"customer_key": keys}).to_csv(tmp_path / "seed.csv", index=False)
    found = {}
    for backend in ("cpu", "gpu"):
        result = invoke("lookalike", config, "--seed", tmp_path / "seed.csv", "--size", 150, "--out",
                        tmp_path / backend, "--backend", backend, "--workers", 1, "--json")  # fmt: skip
        assert result.exit_code == 0, result.stderr
        found[backend] = pd.read_parquet(tmp_path / backend / "lookalikes.parquet")
    mapping = pd.read_parquet(layout.ingest.identity_mapping)
    suppressed = set(mapping.loc[mapping["customer_id"].astype(str).isin(planted["suppressed"]), "customer_key"])
    gpu = set(found["gpu"]["customer_key"])
    assert len(gpu) == 150 and not gpu & set(keys) and not gpu & suppressed
    assert found["gpu"]["similarity"].between(0, 1).all()
    assert len(gpu & set(found["cpu"]["customer_key"])) >= 0.6 * 150
