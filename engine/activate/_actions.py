"""The playbook's next best action: for every customer, the eligible action of highest
expected value (issue 27).

An action is eligible for the treated members of its audience, so consent, suppressions,
caps and the control group are already applied (``_pipeline.select_audiences``). Its expected
value for a customer is their propensity score (the chance they convert) times the value of a
conversion (the action's own, or the customer's expected spend per purchase from the value
stage) less the action's cost; the best action is chosen when its expected value is above 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["NO_ACTION", "Chosen", "next_best_actions"]

# Why a customer gets no action, in the order they are tested.
NO_ACTION = (
    "control group", "no score or value", "no action pays (expected value at most 0)", "removed from its audience",
    "in no playbook audience",
)  # fmt: skip


@dataclass
class Chosen:
    """One partition's next best actions: the rows to write and the counts to add up."""

    rows: pd.DataFrame
    per_action: dict
    no_action: dict


def _money(values: np.ndarray) -> pd.Series:
    return pd.Series(values).map("{:,.2f}".format)


def next_best_actions(frame: pd.DataFrame, audiences, selected, actions) -> Chosen:
    """The best eligible action per customer of ``frame`` (``customer_key``, ``score`` and, for
    actions without a value, ``expected_spend``), given each audience's ``selected``.

    Customers without one are counted by the first reason of :data:`NO_ACTION` that applies
    (removed from its audience: counted under that removal, e.g. ``no_consent``).
    """
    n = len(frame)
    position = {audience.name: index for index, audience in enumerate(audiences)}
    score = frame["score"].to_numpy(dtype="float64", na_value=np.nan) if "score" in frame.columns else np.full(n, np.nan)
    spend = (frame["expected_spend"].to_numpy(dtype="float64", na_value=np.nan) if "expected_spend" in frame.columns
             else np.full(n, np.nan))  # fmt: skip
    best_value, best = np.full(n, -np.inf), np.full(n, -1)
    eligible, controlled, unknown = (np.zeros(n, dtype=bool) for _ in range(3))
    removal = np.full(n, None, dtype=object)
    for index, action in enumerate(actions):
        chosen = selected[position[action.audience]]
        treated = chosen.members[~chosen.control]
        controlled[chosen.members[chosen.control]] = True
        taken = chosen.why != None  # noqa: E711 (elementwise over an object array)
        removal[taken & (removal == None)] = chosen.why[taken & (removal == None)]  # noqa: E711
        worth = (action.value if action.value is not None else spend[treated])
        expected = score[treated] * worth - action.cost
        eligible[treated] = True
        unknown[treated[np.isnan(expected)]] = True
        better = expected > best_value[treated]
        best_value[treated[better]] = expected[better]
        best[treated[better]] = index
    picked = np.flatnonzero((best >= 0) & (best_value > 0))
    action_of = [actions[i] for i in best[picked]]
    value_of = np.array([a.value if a.value is not None else np.nan for a in action_of], dtype="float64")
    value_of = np.where(np.isnan(value_of), spend[picked], value_of)
    cost_of = np.array([a.cost for a in action_of], dtype="float64")
    audience_of = [a.audience for a in action_of]
    reason = (pd.Series(audience_of, dtype=object) + ": score " + pd.Series(score[picked]).map("{:.3f}".format)
              + " x value " + _money(value_of) + " - cost " + _money(cost_of) + " = "
              + _money(best_value[picked]))  # fmt: skip
    rows = pd.DataFrame({
        "customer_key": frame["customer_key"].to_numpy()[picked],
        "action": [a.name for a in action_of], "audience": audience_of,
        "channel": [audiences[position[a.audience]].channel for a in action_of],
        "offer": [a.offer or "" for a in action_of], "expected_value": best_value[picked],
        "reason": reason.to_numpy(dtype=object),
    })  # fmt: skip
    per_action = rows["action"].value_counts().to_dict()
    rest = np.ones(n, dtype=bool)
    rest[picked] = False
    no_action = {}
    for why, mask in zip(NO_ACTION, (controlled & ~eligible, eligible & unknown & (best < 0), eligible,
                                     removal != None, np.ones(n, dtype=bool))):  # noqa: E711
        hit = rest & mask
        if why == "removed from its audience":
            for removed_by, count in pd.Series(removal[hit]).value_counts().items():
                no_action[f"removed from its audience: {removed_by}"] = int(count)
        elif hit.any():
            no_action[why] = int(hit.sum())
        rest &= ~mask
    return Chosen(rows, {name: int(count) for name, count in per_action.items()}, no_action)
