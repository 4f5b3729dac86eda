"""The ``[propensity]`` section."""

from dataclasses import dataclass, field
from typing import Literal

from ._fields import _MINIMUM


@dataclass(frozen=True)
class PropensityOptions:
    """The ``[propensity]`` section: what to predict, with which model, scored how.

    The model trains on features as of T = ``[run] as_of`` - ``horizon_days`` with labels from
    [T, T + horizon_days), the latest window the store holds; the seed is ``[run] seed``.

    Attributes
    ----------
    target : {"purchase", "churn", "event", "response"}, default "purchase"
        purchase: at least one order in the horizon. churn: no order in the horizon, among
        customers with an order in the ``churn_lookback_days`` before T. event: at least one
        event of type ``event_type`` in the horizon. response: converted, among the
        customers treated in ``campaign`` (the outcomes table); set as_of so that T is when
        the campaign went out.
    event_type : str or None
        The event type an ``event`` target looks for.
    campaign : str or None
        The outcomes table's campaign a ``response`` target models.
    horizon_days : int, default 90
    churn_lookback_days : int, default 90
    origins : int, default 1
        Training origins: T, T - ``origin_step_days``, ... Every origin adds a row per
        customer (features as of it, labels of its horizon), so the model sees more windows;
        calibration and the test metrics use the latest origin only, the one scores resemble.
    origin_step_days : int or None
        Days between origins; None means ``horizon_days`` (label windows end to end).
    out_of_time_test : bool, default False
        With two or more origins: fit and calibrate on the earlier origins only, and measure
        on the latest window's test customers, later than anything the model learned from.
    model : {"auto", "gradient_boosting", "random_forest", "logistic"}, default "auto"
        ``auto``: scikit-learn's histogram gradient boosting on the CPU (10x faster to fit
        than the forest at the same AUC, measured), cuML's random forest on the GPU; either
        is fitted beside a logistic regression, and the one with the higher validation AUC
        is kept.
    n_estimators : int, default 100
        Trees (random forest) or boosting rounds (gradient boosting). scikit-learn's and
        cuML's default too: on a 100k world 300 trees took 2.5x the time for +0.0003 AUC.
    max_depth : int or None, default 12
    max_features : float, default 0.33
        Share of input columns considered at each split.
    min_samples_leaf : int, default 20
    calibration : {"isotonic", "sigmoid"}, default "isotonic"
        Fitted on the validation split.
    band_by : {"quantile", "probability"}, default "quantile"
    bands : tuple of two floats, default (0.6, 0.9)
        Where medium and high start: shares of the scored reference population (quantile), or
        calibrated probabilities (probability).
    min_class_count : int, default 100
        Training refuses with fewer positives or negatives than this in its training split.
    validation_share, test_share : float, default 0.2 each
        Customers (by a salted hash of the key) held out to calibrate and to measure.
    sample : int, default 1000000
        Most training rows (customers, times origins), a deterministic subset of customers
        above that.
    features : tuple of str or None
        Input feature columns; None uses every feature column.
    """

    target: Literal["purchase", "churn", "event", "response"] = "purchase"
    event_type: str | None = None
    campaign: str | None = None
    horizon_days: int = field(default=90, metadata={_MINIMUM: 1})
    churn_lookback_days: int = field(default=90, metadata={_MINIMUM: 1})
    origins: int = field(default=1, metadata={_MINIMUM: 1})
    origin_step_days: int | None = field(default=None, metadata={_MINIMUM: 1})
    out_of_time_test: bool = False
    model: Literal["auto", "gradient_boosting", "random_forest", "logistic"] = "auto"
    n_estimators: int = field(default=100, metadata={_MINIMUM: 1})
    max_depth: int | None = field(default=12, metadata={_MINIMUM: 1})
    max_features: float = field(default=0.33, metadata={_MINIMUM: 0})
    min_samples_leaf: int = field(default=20, metadata={_MINIMUM: 1})
    calibration: Literal["isotonic", "sigmoid"] = "isotonic"
    band_by: Literal["quantile", "probability"] = "quantile"
    bands: tuple[float, ...] = (0.6, 0.9)
    min_class_count: int = field(default=100, metadata={_MINIMUM: 1})
    validation_share: float = field(default=0.2, metadata={_MINIMUM: 0})
    test_share: float = field(default=0.2, metadata={_MINIMUM: 0})
    sample: int = field(default=1_000_000, metadata={_MINIMUM: 100})
    features: tuple[str, ...] | None = None
