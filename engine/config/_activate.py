"""The ``[activate]`` section: audiences for campaigns, with consent, suppression, frequency
caps and control groups (issue 27)."""

from dataclasses import dataclass, field
from typing import Literal

from ._fields import _MINIMUM


@dataclass(frozen=True)
class Condition:
    """One condition of an audience on one column of the run's outputs.

    Attributes
    ----------
    values : tuple of str
        The column's value is one of these (compared as text: ``values = ["3"]`` matches
        segment 3).
    min, max : float or None
        The column is at least / at most this (inclusive; numeric columns only).
    """

    values: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Audience:
    """One ``[[activate.audiences]]`` entry.

    Attributes
    ----------
    name : str
        Names its files (``activate/audiences/<name>.parquet`` and ``.csv``): letters, digits,
        ``-`` and ``_``.
    channel : str
        Where it is sent ("email", "sms", ...): consent, suppressions and caps are per channel.
    where : dict of str to Condition
        Conditions over the columns of the run's outputs, all of which must hold: features
        (``recency_days``, ``frequency``, ...), segments (``segment``, ``segment_name``,
        ``micro_segment``), propensity (``score``, ``percentile``, ``band``) and value
        (``p_alive``, ``expected_purchases``, ``clv``, ``clv_percentile``, ...). Empty: everyone.
    """

    name: str
    channel: str
    where: dict[str, Condition] = field(default_factory=dict)


@dataclass(frozen=True)
class Cap:
    """At most ``contacts`` contacts in any ``days`` days on one channel, the new send counted."""

    contacts: int = field(metadata={_MINIMUM: 1})
    days: int = field(metadata={_MINIMUM: 1})


@dataclass(frozen=True)
class Action:
    """One ``[[activate.actions]]`` entry of the playbook: what a treated member of an audience
    may be sent.

    Attributes
    ----------
    name : str
    audience : str
        The audience whose treated members it is for (consent, suppressions and caps are
        already applied there; the control group gets nothing).
    offer : str, default ""
        What is offered, as the campaign tool should show it.
    cost : float, default 0
        Cost of one send (the offer's expected cost included).
    value : float or None
        Value of a conversion. None: the customer's expected spend per purchase from the
        value stage.
    cadence : str, default ""
        How often it may be repeated, for the campaign tool (not enforced here: caps are).
    """

    name: str
    audience: str
    offer: str | None = None
    cost: float = field(default=0.0, metadata={_MINIMUM: 0})
    value: float | None = None
    cadence: str | None = None


@dataclass(frozen=True)
class ActivateOptions:
    """The ``[activate]`` section. Without audiences a run has no activate stage.

    Attributes
    ----------
    campaign : str, default "campaign"
        Names the campaign; with ``salt`` it keys the control-group draw, so another campaign
        gets other control customers.
    salt : str, optional
        Mixed into the control-group draw; change it to draw a fresh control group for the
        same campaign.
    holdout_share : float, default 0.1
        Share of each audience held out as its control group (never contacted), drawn per
        customer from a keyed hash: the same customers on every rerun, partition count and
        backend.
    allow_overlap : bool, default false
        Whether a customer may be in several audiences; if not, the first audience in the
        file that takes them keeps them.
    consent : {"required", "assumed"}, default "required"
        ``required``: a customer enters a channel's audience only with a true
        ``consent_<channel>`` column in the customers input (a missing column is an error).
        ``assumed``: customers without a consent value are taken to consent (false still
        excludes).
    recent_purchase_days : int, default 0
        Leave out customers who bought in this many days before as-of (0: none).
    export_ids : bool, default false
        Also write each customer's original id beside the pseudonymised key (from the
        private identity mapping). Off by default: the audience files hold keys only.
    caps : dict of str to Cap
        Frequency caps per channel, counted over the ``contacts`` input.
    audiences : tuple of Audience
        In priority order.
    actions : tuple of Action
        The playbook: each treated customer gets the eligible action of highest expected
        value, propensity score x value - cost, when it is above 0.
    """

    campaign: str = "campaign"
    salt: str | None = None
    holdout_share: float = field(default=0.1, metadata={_MINIMUM: 0})
    allow_overlap: bool = False
    consent: Literal["required", "assumed"] = "required"
    recent_purchase_days: int = field(default=0, metadata={_MINIMUM: 0})
    export_ids: bool = False
    caps: dict[str, Cap] = field(default_factory=dict)
    audiences: tuple[Audience, ...] = ()
    actions: tuple[Action, ...] = ()
