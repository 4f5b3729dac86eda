"""Choosing each audience's members: conditions, suppressions, consent, overlap, caps, control."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.activate import next_best_actions, select_audiences
from engine.config import Action, ActivateOptions, Audience, Cap, Condition


def _frame(n, rng):
    return pd.DataFrame({
        "customer_key": [f"k{i:015x}" for i in rng.permutation(10 * n)[:n]],
        "band": rng.choice(["high", "medium", "low"], n),
        "score": rng.uniform(0, 1, n),
        "segment": rng.integers(0, 4, n),
        "recency_days": rng.integers(0, 400, n).astype(float),
    })  # fmt: skip


def _no_suppressions():
    return pd.DataFrame({"customer_key": [], "reason": [], "channel": []})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), overlap=st.booleans(), share=st.floats(0, 0.5))
def test_suppressed_or_non_consenting_customers_never_enter_an_audience(seed, n, overlap, share):
    rng = np.random.default_rng(seed)
    frame = _frame(n, rng)
    keys = frame["customer_key"].to_numpy()
    consent = {"email": rng.uniform(size=n) < 0.7, "sms": rng.uniform(size=n) < 0.5}
    suppressed = rng.choice(keys, size=rng.integers(0, n + 1), replace=True)
    suppressions = pd.DataFrame({
        "customer_key": suppressed,
        "reason": rng.choice(["unsubscribed", "legal_hold", "complaint"], len(suppressed)),
        "channel": rng.choice(np.array(["email", "sms", None], dtype=object), len(suppressed)),
    })  # fmt: skip
    options = ActivateOptions(allow_overlap=overlap, holdout_share=share, audiences=(
        Audience("a", "email", {"band": Condition(values=("high", "medium"))}),
        Audience("b", "sms", {"score": Condition(min=0.3)}),
        Audience("c", "email", {}),
    ))  # fmt: skip
    chosen = select_audiences(frame, consent, suppressions, {}, options)
    seen = np.zeros(n, dtype=int)
    for audience, selected in zip(options.audiences, chosen):
        members = keys[selected.members]
        barred = suppressions[suppressions["channel"].isna() | (suppressions["channel"] == audience.channel)]
        assert not set(members) & set(barred["customer_key"])
        assert consent[audience.channel][selected.members].all()
        # Every candidate is a member or counted under one removal.
        assert selected.candidates == len(selected.members) + sum(selected.removed.values())
        seen[selected.members] += 1
    assert overlap or (seen <= 1).all()


def test_a_frequency_cap_holds_exactly_at_its_boundary():
    frame = pd.DataFrame({"customer_key": ["a", "b", "c"], "segment": [0, 0, 0]})
    consent = {"email": np.ones(3, dtype=bool)}
    # At most 2 contacts: a has had none, b one (this send makes two), c two (this would be three).
    sends = {"email": np.array([0, 1, 2])}
    options = ActivateOptions(holdout_share=0.0, caps={"email": Cap(contacts=2, days=7)}, allow_overlap=True,
                              audiences=(Audience("first", "email"), Audience("second", "email")))  # fmt: skip
    first, second = select_audiences(frame, consent, _no_suppressions(), sends, options)
    assert first.members.tolist() == [0, 1] and first.removed == {"frequency_cap": 1}
    # The first audience's sends count: b is now at 2 and leaves the second; a goes to 2.
    assert second.members.tolist() == [0] and second.removed == {"frequency_cap": 2}
    assert sends["email"].tolist() == [2, 2, 2]


def test_the_control_group_is_never_sent_and_so_never_counts_against_a_cap():
    rng = np.random.default_rng(0)
    frame = _frame(2_000, rng)
    sends = {"email": np.zeros(2_000, dtype=np.int64)}
    options = ActivateOptions(holdout_share=0.2, caps={"email": Cap(contacts=5, days=7)},
                              audiences=(Audience("all", "email"),))  # fmt: skip
    (chosen,) = select_audiences(frame, {"email": np.ones(2_000, dtype=bool)}, _no_suppressions(), sends, options)
    assert chosen.control.mean() == pytest.approx(0.2, abs=0.03)
    assert (sends["email"][chosen.members[chosen.control]] == 0).all()
    assert (sends["email"][chosen.members[~chosen.control]] == 1).all()


def test_removals_are_counted_under_the_first_reason_that_applies():
    frame = pd.DataFrame({"customer_key": list("abcdef"), "recency_days": [1.0, 50, 50, 50, 50, 50]})
    suppressions = pd.DataFrame({"customer_key": ["b", "b", "c"], "reason": ["unsubscribed", "complaint", "legal_hold"],
                                 "channel": ["email", None, "sms"]})  # fmt: skip
    consent = {"email": np.array([True, True, True, False, True, True])}
    options = ActivateOptions(holdout_share=0.0, recent_purchase_days=7, audiences=(
        Audience("first", "email", {"recency_days": Condition(max=50)}),
        Audience("again", "email", {}),
    ))  # fmt: skip
    first, again = select_audiences(frame, consent, suppressions, {}, options)
    # a bought yesterday; b is suppressed twice (counted once, under the first reason
    # alphabetically); c's suppression is for sms only; d did not consent.
    assert first.removed == {"recent_purchase": 1, "suppressed: complaint": 1, "no_consent": 1}
    assert sorted(frame["customer_key"].to_numpy()[first.members]) == ["c", "e", "f"]
    assert again.removed["in_an_earlier_audience"] == 3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), overlap=st.booleans())
def test_the_next_best_action_is_the_best_eligible_one_and_never_an_ineligible_one(seed, n, overlap):
    rng = np.random.default_rng(seed)
    frame = _frame(n, rng)
    frame["expected_spend"] = np.where(rng.uniform(size=n) < 0.1, np.nan, rng.uniform(5, 100, n))
    consent = {"email": rng.uniform(size=n) < 0.7, "sms": rng.uniform(size=n) < 0.7}
    options = ActivateOptions(allow_overlap=overlap, holdout_share=0.2, audiences=(
        Audience("a", "email", {"band": Condition(values=("high",))}),
        Audience("b", "sms", {"score": Condition(min=0.2)}),
    ), actions=(
        Action("a-coupon", "a", cost=3.0), Action("a-fixed", "a", value=20.0, cost=1.0),
        Action("b-coupon", "b", cost=2.0),
    ))  # fmt: skip
    selected = select_audiences(frame, consent, _no_suppressions(), {}, options)
    chosen = next_best_actions(frame, options.audiences, selected, options.actions)
    treated = {name: set(frame["customer_key"].to_numpy()[s.members[~s.control]])
               for name, s in zip(("a", "b"), selected)}  # fmt: skip
    by_key = frame.set_index("customer_key")
    for row in chosen.rows.itertuples():
        assert row.customer_key in treated[row.audience]  # eligible: a treated member of its audience
        customer = by_key.loc[row.customer_key]
        values = {
            action.name: customer["score"] * (action.value if action.value is not None else customer["expected_spend"])
            - action.cost
            for action in options.actions
            if row.customer_key in treated[action.audience]
        }
        best = max((v for v in values.values() if not np.isnan(v)))
        assert row.expected_value == pytest.approx(best) and row.expected_value > 0
    # Every customer is either given an action or counted once under why not.
    assert len(chosen.rows) + sum(chosen.no_action.values()) == n
    assert chosen.rows["customer_key"].is_unique


def test_why_a_customer_gets_no_action():
    frame = pd.DataFrame({"customer_key": list("abcde"), "score": [0.5, 0.5, 0.01, 0.5, 0.5],
                          "expected_spend": [40.0, 40.0, 40.0, np.nan, 40.0], "band": ["high"] * 4 + ["low"]})  # fmt: skip
    consent = {"email": np.array([True, False, True, True, True])}
    options = ActivateOptions(holdout_share=0.0, audiences=(Audience("a", "email", {"band": Condition(values=("high",))}),),
                              actions=(Action("coupon", "a", cost=1.0),))  # fmt: skip
    selected = select_audiences(frame, consent, _no_suppressions(), {}, options)
    chosen = next_best_actions(frame, options.audiences, selected, options.actions)
    assert chosen.rows["customer_key"].tolist() == ["a"]
    assert chosen.rows["reason"].tolist() == ["a: score 0.500 x value 40.00 - cost 1.00 = 19.00"]
    assert chosen.no_action == {"removed from its audience: no_consent": 1, "no action pays (expected value at most 0)": 1,
                                "no score or value": 1, "in no playbook audience": 1}  # fmt: skip
