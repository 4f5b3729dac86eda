"""Choosing each audience's members: conditions, suppressions, consent, overlap, caps, control."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.activate import select_audiences
from engine.config import ActivateOptions, Audience, Cap, Condition


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
