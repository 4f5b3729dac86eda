"""The ``[value]`` section."""

from dataclasses import dataclass, field
from typing import Literal

from ._fields import _MINIMUM


@dataclass(frozen=True)
class ValueOptions:
    """The ``[value]`` section: customer lifetime value from purchase and spend models.

    Attributes
    ----------
    horizon_days : int, default 365
        Days after as-of the predictions (purchases, CLV) cover; when the store holds them, the
        same days are the holdout the predictions are checked against.
    discount_rate_yearly : float, default 0.1
        CLV discounts each 30-day slice of the horizon at this yearly rate.
    model : {"auto", "bgnbd", "mbgnbd", "pareto_nbd"}, default "auto"
        Purchase model: BG/NBD, MBG/NBD where customers may also drop out right after their
        first purchase, or Pareto/NBD where they may drop out at any time. Auto fits all three
        on the history up to the last min(horizon, 90 days, a third of the history) before
        as-of, scores them on those days beside the naive forecast (each customer buying on at
        their calibration rate), and uses the best; when every model loses to the naive
        forecast, the naive forecast makes the expected purchases and CLV (P(alive) is then
        not given) and the stage says so.
    grain : {"day", "order"}, default "day"
        A purchase is a calendar day with purchases (the BTYD convention), or each order at its
        own time.
    calibration_end : {"last_day", "as_of"}, default "last_day"
        What each customer's T (time since their first purchase) runs to: the start of the last
        calibration day, the day before as-of, as lifetimes, BTYD and the published fits have
        it (a purchase on day d sits at d); or the as-of midnight, one day more. With grain
        "order" T always runs to as-of.
    time_unit : {"weeks", "days"}, default "weeks"
        The unit the fitted parameters (alpha, beta) and the log-likelihood are reported in; the
        BTYD literature publishes weeks. Horizons, outputs and dates stay in days.
    min_repeat_customers : int, default 100
        Fitting refuses with fewer customers who bought again before as-of.
    sample : int, default 1000000
        The purchase and spend models are fitted on at most about this many customers (spread
        evenly through every partition, keys being hashes); every customer is scored.
        The fits' memory stays flat however many customers there are.
    """

    horizon_days: int = field(default=365, metadata={_MINIMUM: 1})
    discount_rate_yearly: float = field(default=0.1, metadata={_MINIMUM: 0})
    model: Literal["auto", "bgnbd", "mbgnbd", "pareto_nbd"] = "auto"
    grain: Literal["day", "order"] = "day"
    calibration_end: Literal["last_day", "as_of"] = "last_day"
    time_unit: Literal["weeks", "days"] = "weeks"
    min_repeat_customers: int = field(default=100, metadata={_MINIMUM: 1})
    sample: int = field(default=1_000_000, metadata={_MINIMUM: 1_000})
