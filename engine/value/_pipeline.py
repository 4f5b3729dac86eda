"""The value stage: purchase and spend models fitted on the store, every customer scored.

Two passes over the store's partitions, one task per partition, none shuffling:

1. summarise each partition's customers as of as-of (``_summaries``), write the summaries
   to staging and return, for an even, deterministic spread of at most ``sample`` customers over
   all partitions, the distinct (frequency, recency, T) rows with their counts and, for as
   many repeat buyers, (frequency, monetary) pairs: the fits' memory does not grow with
   the customers (at 10M, fitting every customer's rows took the client from 2.4 to 4.0 GiB).
   With ``model="auto"`` also the same customers' summaries as of a window before as-of,
   on which the purchase model is chosen (``_choice``), and the counts behind the tracking
   chart;
2. with the models fitted on the client, score each partition and, when the store holds the
   horizon after as-of, add up how the predictions compare with what happened.

Output, written to a temporary directory and renamed into place:
``customers/part-NNNNN.parquet`` (the customers of store part N, sorted by key) and
``value.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa

from .._parts import write_part
from .._summary import FLATTEN, Summary
from .._tasks import compute_tasks, staged_output
from ..backend import resolve_backend
from ..exceptions import InputDataError, UsageError
from ..ingest import default_as_of, first_transaction, has_amounts, read_store_meta
from ..layout import ValueLayout, part_name
from ..outcomes import outcome_window
from ._choice import choice_window, choose_model
from ._fitting import TIME_UNITS, collapse_rows, degeneracies
from ._gamma_gamma import fit_gamma_gamma
from ._predict import FREQUENCY_BINS, INTERVALS, PREDICTION_COLUMNS, SPEND_COLUMNS, holdout_sums, predict
from ._purchase import MODELS, expected_repeat_purchases, fit_purchase_model
from ._summaries import CALIBRATION_ENDS, GRAINS, SUMMARY_COLUMNS, TRACKING_DAYS, origin_lag, partition_summaries

__all__ = ["ValueSummary", "estimate_value"]

logger = logging.getLogger(__name__)

# A median wait beyond this many days is no date anyone plans for: written as null.
_LONGEST_WAIT_DAYS = 36_525
# A purchase model that calls more than _MOSTLY_ALIVE of customers alive with probability above
# _SURELY_ALIVE has learnt no dropout: its P(alive) and its totals are not to be trusted.
_SURELY_ALIVE = 0.99
_MOSTLY_ALIVE = 0.95


@dataclass
class ValueSummary(Summary):
    """What ``estimate_value`` wrote, and the fits and evaluation in ``value.json``."""

    out_dir: Path
    as_of: str
    customers: int
    document: dict = field(metadata=FLATTEN)



def _evenly(rows: int, at_most: int) -> np.ndarray:
    """Positions of at most ``at_most`` of ``rows`` rows, evenly spread."""
    return np.arange(rows) if rows <= at_most else np.arange(at_most) * rows // at_most


def _summaries_task(
    store: str, number: int, staging: str, as_of_day: int, horizon_days, grain: str, sample: int, window_days: int,
    calibration_end: str, amounts: bool,
) -> dict:  # fmt: skip
    """Pass 1: summarise, write, and return what the fits need from at most ``sample`` of
    the partition's customers and (with ``amounts``) as many of its repeat buyers, evenly
    spread (keys are hashes, so in no order that matters)."""
    summaries, tracking, window = partition_summaries(
        store, number, as_of_day, horizon_days, grain, window_days, calibration_end
    )
    summaries.to_parquet(Path(staging) / part_name(number), index=False)
    fitted = summaries.iloc[_evenly(len(summaries), sample)]
    (x, tx, T), counts = collapse_rows(*(fitted[c].to_numpy() for c in ("frequency", "recency", "T")))
    # The spend model describes what purchases cost: repeat buyers whose purchases cost nothing
    # count as buyers (above) but not here.
    repeat = summaries[(summaries["frequency"] > 0) & (summaries["monetary"] > 0)] if amounts else summaries[:0]
    spend = repeat.iloc[_evenly(len(repeat), sample)][["frequency", "monetary"]].to_numpy(dtype="float64")
    choice_rows = None
    if window is not None:
        chosen = window.iloc[_evenly(len(window), sample)]
        columns, shared = collapse_rows(*(chosen[c].to_numpy() for c in ("frequency", "recency", "T", "holdout_purchases")))
        choice_rows = np.column_stack([*columns, shared])
    return {"purchase_rows": np.column_stack([x, tx, T, counts]), "spend_rows": spend, "customers": len(summaries),
            "tracking": tracking, "choice_rows": choice_rows}  # fmt: skip


def _tracking(counts: dict, params: dict, model: str, horizon_days: int | None, lag: int) -> dict:
    """The tracking chart's weeks: repeat purchases each week, actual and as the model expects
    them, from the week of the earliest first purchase through the holdout. Expected: every
    customer who first bought ``d`` days before as-of makes E[X(u + d - lag)] repeat purchases
    by day ``u`` from as-of (``lag``: the origin's days before as-of, ``_summaries``), summed
    over those days (one vectorised pass, no loop per customer)."""
    first, repeats = counts["first"], counts["repeats"]
    earliest = int(np.flatnonzero(first).max()) if first.any() else 0
    end = horizon_days or 0
    # Week boundaries, in days from as-of, laid so that one falls on as-of itself; the last
    # week of the holdout may be shorter.
    boundaries = np.append(np.arange(-(-earliest // 7) * -7, end, 7), end)
    cohorts = np.flatnonzero(first)
    cumulative = first[cohorts] @ expected_repeat_purchases(params, boundaries[None, :] + cohorts[:, None] - lag, model)
    actual = np.add.reduceat(repeats, boundaries[:-1] + TRACKING_DAYS) if len(boundaries) > 1 else np.zeros(0)
    return {
        "week_start_days": boundaries[:-1].tolist(),
        "actual": actual[: len(boundaries) - 1].astype(float).tolist(),
        "expected": np.diff(cumulative).tolist(),
    }


def _score_task(staging: str, number: int, out: str, fits: dict, settings: dict, backend_name: str, holdout: bool):
    """Pass 2: score the summaries pass 1 wrote for one partition (see :func:`_score_summaries`)."""
    path = Path(staging) / part_name(number)
    scored = _score_summaries(pd.read_parquet(path), number, out, fits, settings, backend_name, holdout)
    path.unlink()
    return scored


def _score_summaries(
    summaries: pd.DataFrame, number: int, out: str, fits: dict, settings: dict, backend_name: str, holdout: bool
) -> dict:
    """Predict one partition's summaries, write them; return its holdout sums (or None) and
    how many of its customers the purchase model calls almost surely alive."""
    xp = resolve_backend(backend_name).xp
    predicted, alive = predict(summaries, fits["purchase"], fits["spend"], xp=xp, **settings)
    days = predicted["next_purchase_date"]
    too_far = ~np.isfinite(days) | (days - settings["as_of_day"] > _LONGEST_WAIT_DAYS)
    next_date = pa.array(np.where(too_far, 0, days).astype("int32"), mask=too_far).cast(pa.date32())
    columns = {"customer_key": pa.array(summaries["customer_key"])}
    columns |= {c: pa.array(summaries[c].to_numpy(dtype="float64")) for c in SUMMARY_COLUMNS}
    columns |= {c: pa.array(predicted[c]) for c in PREDICTION_COLUMNS if c in predicted and c != "next_purchase_date"}
    columns["next_purchase_date"] = next_date
    write_part(pa.table(columns), Path(out) / part_name(number))
    sums = None
    if holdout:
        sums = holdout_sums(summaries, predicted, fits["purchase"], horizon_days=settings["horizon_days"], xp=xp,
                            naive=settings["naive"])  # fmt: skip
    return {"holdout": sums, "customers": len(summaries), "surely_alive": int((alive > _SURELY_ALIVE).sum())}


def _evaluation(parts: list[dict], horizon_days: int) -> dict:
    """Totals, per-customer errors and interval coverage over all partitions."""
    total = {key: sum(part[key] for part in parts) for key in parts[0]}
    n = max(total["customers"], 1)
    buyers = max(total["actual_buyers"], 1)
    return {
        "horizon_days": horizon_days,
        "customers": total["customers"],
        "purchases": {
            "predicted": total["predicted_purchases"],
            "actual": total["actual_purchases"],
            "mae": total["purchases_abs_error"] / n,
            "rmse": math.sqrt(total["purchases_sq_error"] / n),
        },
        # Each customer buying on at their calibration rate: what a model has to beat.
        "naive": {
            "predicted": total["naive_purchases"],
            "mae": total["naive_abs_error"] / n,
            "model_mae_ratio": total["purchases_abs_error"] / max(total["naive_abs_error"], 1e-12),
        },
        "spend": {
            "predicted": total["predicted_spend"],
            "actual": total["actual_spend"],
            "mae": total["spend_abs_error"] / n,
            "rmse": math.sqrt(total["spend_sq_error"] / n),
        }
        if "predicted_spend" in total
        else None,
        "buyers": {"predicted": total["predicted_buyers"], "actual": total["actual_buyers"]},
        "by_calibration_purchases": [
            {
                "repeat_purchases": f"{bin_}+" if bin_ == FREQUENCY_BINS - 1 else str(bin_),
                "customers": int(count),
                **{
                    f"{name}_mean": float(total[f"by_frequency_{name}"][bin_] / count)
                    for name in ("actual", "predicted", "naive")
                },
            }
            for bin_, count in enumerate(total["by_frequency_customers"])
            if count
        ],
        "next_purchase_inside_interval": {
            f"{round(level * 100)}%": total[f"inside_{round(level * 100)}"] / buyers for level in INTERVALS
        },
    }


def _chosen_model(
    parts: list[dict], window_days: int, min_repeat_customers: int, xp, unit_days: float
) -> tuple[dict, dict | None]:
    """The purchase model to fit, the forecast to use and the evidence (``_choice``), and the
    chosen model's parameters on the window to start its fit from; BG/NBD, saying why, when
    the history is too short to hold a window out or no candidate fits on what remains."""
    if not window_days:
        reason = "the history before as-of is too short to hold a window out"
        return {"chosen": "bgnbd", "forecast": "bgnbd", "skipped": reason}, None
    rows = np.concatenate([part["choice_rows"] for part in parts])
    try:
        choice, starts = choose_model(rows, window_days, min_repeat_customers=min_repeat_customers, xp=xp,
                                      unit_days=unit_days)  # fmt: skip
    except InputDataError as error:
        return {"chosen": "bgnbd", "forecast": "bgnbd", "skipped": str(error)}, None
    scores = ", ".join(f"{name} {score['mae']:.3f}" for name, score in choice["scores"].items() if "mae" in score)
    logger.info("value: %s chosen on the last %d days before as-of (per-customer error %s; naive %.3f)",
                choice["chosen"], window_days, scores, choice["naive_mae"])  # fmt: skip
    if choice["every_model_loses"]:
        logger.warning(
            "value: every purchase model predicts the last %d days before as-of worse than the naive forecast "
            "(each customer buying on at their calibration rate): %s against %.3f; the naive forecast makes the "
            "expected purchases and CLV, and P(alive) is not given (it has no dropout)",
            window_days, scores, choice["naive_mae"],
        )  # fmt: skip
    return choice, starts[choice["chosen"]]


def _as_of_day(store: Path, meta: dict, as_of) -> int:
    if as_of is None:
        as_of = default_as_of(store, meta)
    elif isinstance(as_of, datetime) or not isinstance(as_of, date):
        stamp = pd.Timestamp(as_of)
        if stamp != stamp.floor("D"):
            raise UsageError(f"as_of must be a date (a midnight), got {as_of}")
        as_of = stamp.date()
    return (as_of - date(1970, 1, 1)).days


def estimate_value(
    store: str | os.PathLike,
    out: str | os.PathLike,
    *,
    as_of: date | None = None,
    horizon_days: int = 365,
    discount_rate: float = 0.1,
    model: str = "auto",
    grain: str = "day",
    calibration_end: str = "last_day",
    time_unit: str = "weeks",
    min_repeat_customers: int = 100,
    sample: int = 1_000_000,
    backend_name: str = "auto",
    client=None,
    progress=None,
) -> ValueSummary:
    """Fit a purchase model and Gamma-Gamma as of ``as_of``; score every customer.

    Parameters
    ----------
    store : path
        The customer-clustered store written by ingest (``<run>/ingest/store``).
    out : path
        Output directory; replaced only when the stage succeeds.
    as_of : date, optional
        Midnight UTC of this date ends the calibration period. Default: the day after the
        store's last transaction.
    horizon_days : int, default 365
        Days the predictions cover; when the store holds them, also the holdout.
    discount_rate : float, default 0.1
        Yearly rate CLV is discounted at (per 30-day slice).
    model : {"auto", "bgnbd", "mbgnbd", "pareto_nbd"}, default "auto"
        Auto: the best of the three on the last days before as-of, or the naive forecast
        when every model loses to it (``_choice``), recorded in ``model_choice``.
    grain : {"day", "order"}, default "day"
        What counts as a purchase: a calendar day with purchases (the BTYD convention) or
        each order at its own time (see ``engine.value._summaries``).
    calibration_end : {"last_day", "as_of"}, default "last_day"
        What T runs to: the last calibration day (the BTYD convention) or the as-of midnight,
        a day later (``engine.value._summaries``).
    time_unit : {"weeks", "days"}, default "weeks"
        The unit the fitted parameters and log-likelihood are reported in (the published
        BTYD fits use weeks); horizons and outputs stay in days.
    min_repeat_customers : int, default 100
        Refuse to fit with fewer customers who bought again before as-of.
    sample : int, default 1000000
        Fit on at most about this many customers (and as many repeat buyers for the spend
        model), spread evenly through each partition; every customer is scored.
    backend_name : {"auto", "cpu", "gpu"}
    client : distributed.Client, optional
    progress : callable, optional
        ``progress(done, total)`` as the tasks of each pass finish.

    Raises
    ------
    UsageError
        A bad horizon, discount rate or model.
    InputDataError
        ``store`` is not a store, or the data cannot support a fit (the message says why).
    """
    started = time.perf_counter()
    if horizon_days < 1:
        raise UsageError(f"the value horizon must be at least 1 day, got {horizon_days}")
    if not discount_rate >= 0:
        raise UsageError(f"the discount rate must be 0 or more, got {discount_rate}")
    if model != "auto" and model not in MODELS:
        raise UsageError(f"unknown purchase model {model!r}; choose auto or one of {', '.join(MODELS)}")
    if grain not in GRAINS:
        raise UsageError(f"unknown purchase grain {grain!r}; choose one of {', '.join(GRAINS)}")
    if calibration_end not in CALIBRATION_ENDS:
        raise UsageError(f"unknown calibration end {calibration_end!r}; choose one of {', '.join(CALIBRATION_ENDS)}")
    if time_unit not in TIME_UNITS:
        raise UsageError(f"unknown time unit {time_unit!r}; choose one of {', '.join(TIME_UNITS)}")
    unit_days, lag = TIME_UNITS[time_unit], origin_lag(grain, calibration_end)
    backend = resolve_backend(backend_name)
    store, out = Path(store), Path(out)
    meta = read_store_meta(store)
    as_of_day = _as_of_day(store, meta, as_of)
    as_of_date = date(1970, 1, 1) + timedelta(days=as_of_day)
    window = outcome_window(store, as_of_date, horizon_days)
    holdout = window.covered
    if not holdout:
        logger.info(
            "value: the store's data end on %s, before as-of + %d days (%s): the predictions are not checked against "
            "a holdout (choose an earlier as-of to backtest)",
            "-" if window.data_end is None else window.data_end.date(), horizon_days, window.end.date(),
        )  # fmt: skip
    partitions = int(meta["partitions"])
    # A counts-only store (no amounts) gets the purchase model alone: no spend is made up.
    amounts = has_amounts(meta)

    with staged_output(out) as staging:
        # Pass 1's summaries wait here for pass 2, which writes the customers beside them.
        summaries, written = staging / "summaries", ValueLayout(staging)
        summaries.mkdir()
        written.customers.mkdir()
        per_partition = math.ceil(sample / partitions)
        first = first_transaction(meta)
        history_days = 0 if first is None else as_of_day - (first.date() - date(1970, 1, 1)).days
        window_days = choice_window(horizon_days, history_days) if model == "auto" else 0
        tasks = [
            dask.delayed(_summaries_task)(
                str(store), n, str(summaries), as_of_day, horizon_days if holdout else None, grain, per_partition,
                window_days, calibration_end, amounts,
            )
            for n in range(partitions)
        ]
        parts = compute_tasks(tasks, client, progress, "value summaries")
        choice = start = None
        if model == "auto":
            choice, start = _chosen_model(parts, window_days, min_repeat_customers, backend.xp, unit_days)
            model = choice["chosen"]
        naive = choice is not None and choice["forecast"] == "naive"
        rows = np.concatenate([p["purchase_rows"] for p in parts])
        purchase_fit = fit_purchase_model(
            rows[:, 0], rows[:, 1], rows[:, 2], weights=rows[:, 3], model=model, xp=backend.xp,
            min_repeat_customers=min_repeat_customers, start=start,
        )  # fmt: skip
        spend_rows = np.concatenate([p["spend_rows"] for p in parts])
        spend_fit = None
        if amounts:
            spend_fit = fit_gamma_gamma(
                spend_rows[:, 0], spend_rows[:, 1], xp=backend.xp, min_repeat_customers=min_repeat_customers
            )
        fitted = {"purchase": purchase_fit, "spend": spend_fit}
        for name, fit in fitted.items():
            if fit is not None and not fit.success:
                logger.warning("value: the %s model did not converge: %s", name, fit.message)
        fits = {name: None if fit is None else fit.params for name, fit in fitted.items()}
        settings = {
            "as_of_day": as_of_day, "horizon_days": horizon_days, "discount_rate_yearly": discount_rate, "model": model,
            "origin_lag": lag, "naive": naive,
        }  # fmt: skip
        tasks = [
            dask.delayed(_score_task)(
                str(summaries), n, str(written.customers), fits, settings, backend.name, holdout
            )
            for n in range(partitions)
        ]
        scored = compute_tasks(tasks, client, progress, "value scores")
        summaries.rmdir()
        customers = sum(p["customers"] for p in parts)
        degenerate = {name: degeneracies(fit) for name, fit in fitted.items() if fit is not None}
        surely_alive = sum(part["surely_alive"] for part in scored) / max(sum(part["customers"] for part in scored), 1)
        if surely_alive > _MOSTLY_ALIVE:
            degenerate["purchase"].append(
                f"P(alive) is above {_SURELY_ALIVE} for {surely_alive:.0%} of customers: the model sees almost no dropout"
            )
        for name, reasons in degenerate.items():
            if reasons:
                logger.warning("value: the %s model's fit is degenerate: %s", name, "; ".join(reasons))
        evaluation = _evaluation([part["holdout"] for part in scored], horizon_days) if holdout else None
        tracking = _tracking(
            {key: sum(part["tracking"][key] for part in parts) for key in ("first", "repeats")},
            purchase_fit.params, model, horizon_days if holdout else None, lag,
        )  # fmt: skip
        if evaluation and evaluation["naive"]["model_mae_ratio"] > 1 and not naive:
            logger.warning(
                "value: the %s model predicts the holdout's purchases worse than the naive forecast (each customer "
                "buying on at their calibration rate): per-customer error %.3f against %.3f",
                model, evaluation["purchases"]["mae"], evaluation["naive"]["mae"],
            )  # fmt: skip
        document = {
            "as_of": as_of_date.isoformat(),
            "time_unit": time_unit,
            "calibration_end": calibration_end,
            "purchase_grain": grain,
            "forecast": "naive" if naive else model,
            "horizon_days": horizon_days,
            "discount_rate_yearly": discount_rate,
            "customers": customers,
            "model_choice": choice,
            "purchase_model": {"name": model, **purchase_fit.to_dict(unit_days), "degenerate": degenerate["purchase"],
                               "share_almost_surely_alive": round(surely_alive, 4)},  # fmt: skip
            "spend_model": {
                "name": "gamma_gamma",
                **spend_fit.to_dict(unit_days),
                "degenerate": degenerate["spend"],
                "frequency_monetary_correlation": float(np.corrcoef(spend_rows[:, 0], spend_rows[:, 1])[0, 1]),
            }
            if spend_fit
            else None,
            # The fits as the models take them (per day), for scoring again without a refit
            # (``_rescore``): the reported ones, divided by the time unit, do not round-trip.
            "params_in_days": fits,
            "holdout": evaluation,
            "tracking": tracking,
            "columns": ["customer_key", *SUMMARY_COLUMNS,
                        *(c for c in PREDICTION_COLUMNS if amounts or c not in SPEND_COLUMNS)],  # fmt: skip
            "partitions": partitions,
            "backend": backend.name,
            "store": str(store),
            "seconds": round(time.perf_counter() - started, 3),
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
        written.summary.write_text(json.dumps(document, indent=2) + "\n")
    logger.info("value: %d customers as of %s in %.1f s", customers, as_of_date, document["seconds"])
    return ValueSummary(out_dir=out, as_of=as_of_date.isoformat(), customers=customers, document=document)
