"""Scoring with saved value models: the value half of ``segscale update``.

An update scores every customer at a new as-of with the purchase and spend models a value run
fitted and saved (``value.json``), without fitting again: one pass over the store's partitions,
each summarised at the new as-of exactly as ``estimate_value`` summarises it (same grain,
calibration end and horizon) and scored as its second pass scores it
(``_pipeline._score_summaries``), in the same task: with no fit to wait for, the summaries are
not written in between. So the customer parts have the same columns and, at the fit's own
as-of, the same values. Where the feature stage has just read every partition at the same
as-of (``segscale update``), it writes the summaries from that read (``summaries_writer``)
and this pass reads them instead of the transactions again.

The models take their parameters per day, as ``value.json`` keeps them beside the reported
ones (``params_in_days``; the reported ones are per time unit, and dividing by 7 does not
round-trip exactly).

Output, written to a temporary directory and renamed into place (``out`` may be the value
output read, which is read whole first): ``customers/part-NNNNN.parquet`` and ``value.json``,
the fitted document with the new as-of, customers and holdout, ``"refit": false`` and
``model_fitted_as_of``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import date, datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import dask
import pyarrow.parquet as pq

from .._tasks import compute_tasks, staged_output
from ..backend import resolve_backend
from ..exceptions import InputDataError
from ..ingest import read_store_meta
from ..layout import ValueLayout, part_name
from ..outcomes import outcome_window
from ._pipeline import ValueSummary, _as_of_day, _evaluation, _score_summaries
from ._summaries import origin_lag, partition_summaries, write_summaries

__all__ = ["rescore_value", "summaries_writer"]

logger = logging.getLogger(__name__)


def _read_saved(value_dir: Path) -> dict:
    """The value document of ``value_dir``, read before anything is written (it may be replaced)."""
    path = ValueLayout(value_dir).summary
    if not path.is_file():
        raise InputDataError(f"{value_dir}: not a segscale value output (no {path.name}); run segscale value first")
    saved = json.loads(path.read_text())
    if "params_in_days" not in saved:
        raise InputDataError(f"{path}: written by an older segscale without the fits per day; run segscale value again")
    return saved


def _rescore_task(store: str, number: int, out: str, fits: dict, settings: dict, backend_name: str, holdout: bool,
                  grain: str, calibration_end: str, made: str | None) -> dict:  # fmt: skip
    """Summarise store partition ``number`` at as-of, or read its summaries from ``made``
    (`write_summaries`), and score it. No choice window: the model is not chosen again."""
    if made is not None:
        summaries = pq.read_table(Path(made) / part_name(number)).to_pandas()
    else:
        horizon_days = settings["horizon_days"] if holdout else None
        summaries, _, _ = partition_summaries(store, number, settings["as_of_day"], horizon_days, grain, 0,
                                              calibration_end)  # fmt: skip
    return _score_summaries(summaries, number, out, fits, settings, backend_name, holdout)


def summaries_writer(value_dir: str | os.PathLike, directory: str | os.PathLike, as_of: date):
    """``write_summaries`` for the models saved in ``value_dir`` (their grain and calibration
    end) at ``as_of``, into ``directory`` (made here): a ``transactions_to`` for
    ``features.build_features``, whose read of each partition then serves
    ``rescore_value(..., summaries=directory)`` too."""
    saved = _read_saved(Path(value_dir))
    Path(directory).mkdir(parents=True, exist_ok=True)
    as_of_day = (as_of - date(1970, 1, 1)).days
    return partial(write_summaries, str(directory), as_of_day, saved["purchase_grain"], saved["calibration_end"])


def rescore_value(
    store: str | os.PathLike,
    value_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    as_of: date,
    backend_name: str = "auto",
    client=None,
    progress=None,
    summaries: str | os.PathLike | None = None,
) -> ValueSummary:
    """Score every customer of ``store`` as of ``as_of`` with the models saved in ``value_dir``;
    see the module docstring.

    Parameters
    ----------
    store : path
        The customer-clustered store (``<run>/ingest/store``), typically with events appended
        since the fit.
    value_dir : path
        A value output (``estimate_value``, or an earlier ``rescore_value``).
    out : path
        Output directory, replaced only when the scoring succeeds; may be ``value_dir``.
    as_of : date
        Midnight UTC of this date ends the calibration period.
    backend_name : {"auto", "cpu", "gpu"}
    client : distributed.Client, optional
    progress : callable, optional
        ``progress(done, total)`` as the tasks of each pass finish.
    summaries : path, optional
        A directory of every partition's summaries at ``as_of`` (:func:`summaries_writer`), read
        instead of the store's transactions when there is no holdout to read besides.

    Raises
    ------
    UsageError
        ``as_of`` is not a date.
    InputDataError
        ``store`` is not a store, or ``value_dir`` not a value output.
    """
    started = time.perf_counter()
    store, out = Path(store), Path(out)
    saved = _read_saved(Path(value_dir))
    fits = saved["params_in_days"]
    meta = read_store_meta(store)
    as_of_day = _as_of_day(store, meta, as_of)
    as_of_date = date(1970, 1, 1) + timedelta(days=as_of_day)
    horizon_days, grain, calibration_end = saved["horizon_days"], saved["purchase_grain"], saved["calibration_end"]
    # As estimate_value: the predictions are checked against what happened only where the store holds it all.
    holdout = outcome_window(store, as_of_date, horizon_days).covered
    backend = resolve_backend(backend_name)
    partitions = int(meta["partitions"])
    settings = {
        "as_of_day": as_of_day, "horizon_days": horizon_days, "discount_rate_yearly": saved["discount_rate_yearly"],
        "model": saved["purchase_model"]["name"], "origin_lag": origin_lag(grain, calibration_end),
        "naive": saved["forecast"] == "naive",
    }  # fmt: skip

    made = None
    if summaries is not None and not holdout:
        if all((Path(summaries) / part_name(n)).is_file() for n in range(partitions)):
            made = str(summaries)
        else:
            logger.info("value: %s lacks some partitions' summaries; reading the store's transactions", summaries)
    with staged_output(out) as staging:
        written = ValueLayout(staging)
        written.customers.mkdir()
        tasks = [
            dask.delayed(_rescore_task)(
                str(store), n, str(written.customers), fits, settings, backend.name, holdout, grain, calibration_end,
                made,
            )
            for n in range(partitions)
        ]  # fmt: skip
        scored = compute_tasks(tasks, client, progress, "value scores")
        customers = sum(part["customers"] for part in scored)
        document = {
            # model_choice, purchase_model, spend_model and tracking stay as fitted: they describe
            # the fit (its data, likelihood and choice), which this run does not redo.
            **saved,
            "as_of": as_of_date.isoformat(),
            "customers": customers,
            "holdout": _evaluation([part["holdout"] for part in scored], horizon_days) if holdout else None,
            "partitions": partitions,
            "backend": backend.name,
            "store": str(store),
            "seconds": round(time.perf_counter() - started, 3),
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "refit": False,
            # A rescore of a rescore keeps the as-of the models were fitted at, not the last scoring's.
            "model_fitted_as_of": saved.get("model_fitted_as_of", saved["as_of"]),
        }
        written.summary.write_text(json.dumps(document, indent=2) + "\n")
    logger.info(
        "value: %d customers scored as of %s with the models fitted as of %s, in %.1f s",
        customers, as_of_date, document["model_fitted_as_of"], document["seconds"],
    )  # fmt: skip
    return ValueSummary(out_dir=out, as_of=as_of_date.isoformat(), customers=customers, document=document)
