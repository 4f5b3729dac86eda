"""``build_report``: the run directory's outputs as one self-contained ``report.html``.

Every section is always present: a stage that did not run says so in its section, with the
reason where one is known, instead of leaving a gap a reader could take for an oversight.
The charts are also written as PNG files under ``<run>/report/``.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._summary import Summary
from .._tasks import staged_output
from ..activate import IMBALANCED
from ..measure import SHIFTED
from ..layout import RunLayout
from ..segments import VERDICTS
from ..value import MODEL_LABELS, format_params
from . import _charts as charts
from ._data import BANDS, RunOutputs, audience_table, read_outputs, value_columns
from ._html import Section, card, facts, figure, note, page, paragraph, percent, table

__all__ = ["ReportSummary", "build_report"]

logger = logging.getLogger(__name__)

_GIB = 2**30


@dataclass
class ReportSummary(Summary):
    """Where the report went, which sections it has and the images it holds."""

    path: Path
    sections: list[str]
    images: list[Path]
    audiences: pd.DataFrame | None = field(default=None, repr=False)



class _Figures:
    """Collects the charts: each is inlined in the page and kept as a PNG file."""

    def __init__(self):
        self.images: list[tuple[str, bytes]] = []

    def add(self, name: str, chart, alt: str, caption: str | None = None) -> str:
        image = charts.png(chart)
        self.images.append((f"{len(self.images) + 1:02d}-{name}.png", image))
        return figure(image, alt, caption)


def _missing(outputs: RunOutputs, stage: str) -> str:
    status = outputs.manifest["stages"].get(stage, {}).get("status", "not part of this run")
    error = outputs.manifest["stages"].get(stage, {}).get("error")
    return note(f"The {stage} stage has no output in this run directory (status: {status}{'; ' + error if error else ''}).")


def _gib(value) -> str:
    return f"{value / _GIB:.2f}" if value else "–"


def _moment(iso: str | None) -> str:
    """An ISO timestamp to the second, UTC: ``2026-12-01 06:36:24Z``."""
    return iso[:19].replace("T", " ") + "Z" if iso else "–"


def _run_section(outputs: RunOutputs, figures: _Figures) -> Section:
    manifest = outputs.manifest
    environment = manifest["environment"]
    stages = manifest["stages"]
    rows = [
        (name, stage["status"], stage.get("seconds"), _gib(stage.get("peak_rss_bytes")), _moment(stage.get("finished_at")))
        for name, stage in stages.items()
    ]
    body = table(["stage", "status", "seconds", "peak memory (GiB)", "finished at"], rows)
    if any(stage.get("seconds") is not None for stage in stages.values()):
        body += figures.add("stages", charts.stage_times(stages), "seconds per stage")
    cpu = environment["cpu"]
    devices = environment["gpu"]["devices"]
    details = [
        ("config", manifest["config_path"]),
        ("status", f"{manifest['status']} (exit code {manifest['exit_code']})" + (f": {manifest['error']}" if manifest["error"] else "")),
        ("as of", manifest["as_of"]),
        ("seed", manifest["seed"]),
        ("backend", f"{manifest['backend']['requested']} (scheduler: {manifest['backend']['scheduler']})"),
        ("machine", f"{cpu['model']}, {cpu['usable_cores']} usable cores, {environment['memory_gib']} GiB"),
        ("GPUs", ", ".join(f"{d['name']} ({d['memory_gib']} GiB)" for d in devices) or "none"),
        ("segscale", manifest["code_version"]),
        ("packages", ", ".join(f"{k} {v}" for k, v in environment["packages"].items() if v)),
        ("started / finished", f"{_moment(manifest['started_at'])} / {_moment(manifest['finished_at'])}"),
    ]
    return Section("run", "Run", facts(details) + body)


def _quality_section(outputs: RunOutputs, figures: _Figures) -> Section:
    rows = outputs.manifest.get("rows") or {}
    if not rows:
        return Section("quality", "Data quality", _missing(outputs, "ingest"))
    accounting = [
        (name, r["read"], r["kept"], r["quarantined"], r["duplicates"], r["reconciled"]) for name, r in rows.items()
    ]
    body = paragraph("Every input row is kept, quarantined with its reason (under ingest/quarantine/), or dropped as an "
                     "exact duplicate of another source row: read = kept + quarantined + duplicates.")  # fmt: skip
    body += table(["input", "read", "kept", "quarantined", "duplicates", "reconciled"], accounting,
                  flagged=[not r["reconciled"] for r in rows.values()])  # fmt: skip
    if any(r["quarantine_reasons"] for r in rows.values()):
        body += figures.add("quarantine", charts.quarantine(rows), "quarantined rows by reason")
    identity = outputs.identity
    if identity:
        blocked = identity.get("blocked") or {}
        body += "<h3>Identity resolution</h3>" + table(
            ["accounts", "customers", "accounts merged into another", "largest customer (accounts)",
             "junk identifier rows blocked", "values over the cap"],
            [(identity.get("accounts"), identity.get("customers"), identity.get("customers_merged"),
              identity.get("largest_component"), sum(blocked.values()), len(identity.get("over_cap") or {}))],
        )  # fmt: skip
    return Section("quality", "Data quality", body)


def _segment_names(outputs: RunOutputs) -> dict[int, str]:
    return {s["segment"]: s["name"] for s in outputs.profiles or []}


def _segments_section(outputs: RunOutputs, figures: _Figures) -> Section:
    if not outputs.profiles:
        return Section("segments", "Segments", _missing(outputs, "segments"))
    summary = outputs.segments or {}
    chosen_by = {
        "stability": "the most segments that all came back on bootstrap resamples, none tiny",
        "silhouette": "silhouette",
    }.get(summary.get("k_chosen_by"), "configuration")
    body = paragraph(
        f"{summary.get('customers', 0):,} customers in {summary.get('k')} segments (k chosen by {chosen_by}; "
        f"silhouette {summary.get('silhouette', float('nan')):.3f}), {summary.get('micro_segments', 0)} "
        f"micro-segments, {summary.get('outliers', 0):,} outliers."
    )
    body += figures.add("segment-sizes", charts.segment_sizes(outputs.profiles), "segment sizes and value shares")
    rows = [
        (s["name"], s["customers"], percent(s["share_customers"]), percent(s["share_revenue"]),
         (s.get("stability") or {}).get("jaccard"))
        for s in outputs.profiles
    ]  # fmt: skip
    unstable = [(s.get("stability") or {}).get("stable") is False for s in outputs.profiles]
    body += table(["segment", "customers", "share of customers", "share of revenue", "stability (Jaccard)"], rows,
                  flagged=unstable)  # fmt: skip
    if any(unstable):
        body += note("Segments in red are unstable: bootstrap refits do not find them again reliably.")
    return Section("segments", "Segments", body)


def _profiles_section(outputs: RunOutputs, figures: _Figures) -> Section:
    profile = outputs.profile_table
    if profile is None or not outputs.profiles:
        return Section("profiles", "Profiles", _missing(outputs, "segments"))
    features = list(dict.fromkeys(t["feature"] for s in outputs.profiles for t in s["top_features"]))
    features = [f for f in features if f"z_{f}" in profile.columns][:18]
    z = profile[[f"z_{f}" for f in features]].to_numpy(dtype="float64")
    chart = charts.profile_heatmap(profile["segment_name"].tolist(), features, z)
    body = figures.add("profiles", chart, "z-score heatmap of segment profiles",
                       "The features that set the segments apart most; red is above the population mean, blue below.")
    return Section("profiles", "Profiles", body)  # fmt: skip


def _names_section(outputs: RunOutputs, figures: _Figures) -> Section:
    if not outputs.profiles:
        return Section("names", "Names and rules", _missing(outputs, "segments"))
    rows, weak = [], []
    for s in outputs.profiles:
        rules = s.get("rules") or {}
        rule = rules.get("rule") or "–"
        if rules.get("note"):
            rule = f"{rule} ({rules['note']})"
        rows.append((s["name"], s.get("sentence") or "–", rule, rules.get("recall"), rules.get("precision")))
        weak.append(rules.get("strength") == "weak")
    body = paragraph("Names come from behaviour only, each word earned by the segment's profile. Each segment's rule "
                     "has at most three conditions, to type into a CRM; recall is the share of the segment's customers "
                     "the rule catches, precision the share of those caught who belong to it (on the fitting sample).")  # fmt: skip
    body += table(["segment", "in plain words", "rule", "recall", "precision"], rows, flagged=weak)
    if any(weak):
        body += note("Rules in red are weak: under half the segment caught, or under half of those caught in it.")
    return Section("names", "Names and rules", body)


def _hierarchy_section(outputs: RunOutputs, figures: _Figures) -> Section:
    micro = (outputs.segment_model or {}).get("micro")
    if not micro:
        return Section("hierarchy", "Micro-segments", note("No micro-segments in this run ([segments] micro_k)."))
    names = [name for _, name in sorted(_segment_names(outputs).items())]
    hierarchy_path = outputs.layout.segments.hierarchy
    sizes = pd.read_parquet(hierarchy_path)["customers"].tolist() if hierarchy_path.exists() else micro["sizes"]
    chart = charts.hierarchy(np.asarray(micro["linkage"]), micro["parent"], names, sizes)
    body = figures.add("hierarchy", chart, "dendrogram of micro-segments",
                       "Ward tree of the micro-segment centres (customers per micro-segment in brackets); a campaign "
                       "can target a segment or any micro-segment in it (segments/hierarchy.parquet).")  # fmt: skip
    return Section("hierarchy", "Micro-segments", body)


def _stability_section(outputs: RunOutputs, figures: _Figures) -> Section:
    model = outputs.segment_model or {}
    body = ""
    if model.get("stability"):
        from ..segments import STABLE_JACCARD

        chart = charts.stability(model["stability"], _segment_names(outputs), STABLE_JACCARD)
        body += figures.add("stability", chart, "bootstrap stability per segment",
                            f"Refits on bootstrap samples; below {STABLE_JACCARD} a segment is flagged unstable.")  # fmt: skip
    else:
        body += _missing(outputs, "segments") if not outputs.profiles else note("Stability was not measured.")
    comparison = outputs.comparison
    if comparison is None:
        body += note("No earlier run to compare with: set [run] previous_run to see transitions, movers and drift.")
        return Section("stability", "Stability and transitions", body)
    body += paragraph(
        f"Against {comparison['run_a']}: {comparison['common']:,} customers in both runs, adjusted Rand index "
        f"{comparison['adjusted_rand']:.3f}, {comparison['movers']:,} moved to another segment "
        f"(compare/movers.parquet), size drift PSI {comparison['psi']:.3f}."
    )
    moves = comparison["transitions"]
    body += figures.add(
        "transitions", charts.transitions(np.asarray(moves["row_shares"]), [s["name"] for s in moves["segments_a"]],
                                          [s["name"] for s in moves["segments_b"]]),
        "transition matrix",
    )  # fmt: skip
    if comparison["drift"]:
        body += figures.add("drift", charts.drift(comparison["drift"]), "segment size drift")
    compared = (outputs.manifest.get("stages", {}).get("compare") or {}).get("summary") or {}
    if compared.get("feature_drift"):
        rows = compared["feature_drift"]
        body += "<h3>Drift of features and scores</h3>" + paragraph(
            f"Population stability index against the previous run (deciles of its values); above {SHIFTED} a column "
            "has shifted."
        ) + table(["output", "column", "PSI"], [(row["source"], row["column"], row["psi"]) for row in rows],
                  flagged=[row["shifted"] for row in rows])  # fmt: skip
    if comparison["suggestions"]:
        body += "<h3>Suggested changes</h3>" + table(
            ["suggestion", "basis", "detail"], [(s["kind"], s["basis"], s["message"]) for s in comparison["suggestions"]]
        )
    return Section("stability", "Stability and transitions", body)


def _baseline_section(outputs: RunOutputs, figures: _Figures) -> Section:
    evaluation = outputs.evaluation
    title = "Against the classic RFM grid"
    if evaluation is None:
        return Section("baseline", title, _missing(outputs, "segments"))
    if "skipped" in evaluation:
        return Section("baseline", title, note(f"Not measured: {evaluation['skipped']}."))
    sampled = ""
    if evaluation.get("customers", 0) < evaluation.get("of_customers", 0):
        sampled = (f" Measured on {evaluation['customers']:,} of the {evaluation['of_customers']:,} customers, drawn by key "
                   "([segments] outcome_customers).")  # fmt: skip
    body = paragraph(f"What customers did from {evaluation['window']['start'][:10]} to {evaluation['window']['end'][:10]}, "
                     f"after as-of, which the segments were fitted without.{sampled}")  # fmt: skip
    compared = evaluation.get("at_equal_groups")
    if compared:
        groups = compared["groups"]["segments"]
        body += paragraph(
            f"The segments against the RFM grid cut into as many groups ({groups}), in each standard way (Ward "
            "merges of the score cube's cells on R, F and M, or on R and FM as the named grid has it, or bands of "
            "the RFM score R + F + M); on each measure the cut that does best on it, so neither side wins by having "
            "more groups and a win is a win over every cut. Adjusted η² is the share of the variance the grouping "
            "explains beyond what as many random groups would; the churn-rate spread is the gap between the groups "
            f"that churn most and least. Intervals: {compared['confidence']:.0%} from {compared['resamples']} "
            "bootstrap resamples of the customers."
        )
        body += figures.add("baseline", charts.comparison_intervals(compared["measures"]),
                            "segments against the RFM grid at equal group count")  # fmt: skip

        def estimate(side: dict) -> str:
            if side["low"] is None:
                return f"{side['value']:.3f}"
            return f"{side['value']:.3f} ({side['low']:.3f} to {side['high']:.3f})"

        body += table(
            ["measure", "segments", f"RFM grid, {groups} groups", "best cut", "difference", "verdict"],
            [(m["label"], estimate(m["segments"]), estimate(m["rfm_grid"]), m["cut"], estimate(m["difference"]),
              VERDICTS[m["segments_win"]]) for m in compared["measures"]],
            flagged=[m["segments_win"] is False for m in compared["measures"]],
        )  # fmt: skip
    groupings = {"segments": evaluation["segments"], **({"named RFM grid": evaluation["rfm_grid"]} if "rfm_grid" in evaluation else {})}
    rows = [(name, len(g["groups"]), g.get("spend_eta_squared"), g.get("log_spend_eta_squared"),
             g.get("churn_rate_range"), g.get("churn_rate_std")) for name, g in groupings.items()]  # fmt: skip
    body += paragraph("Unadjusted, beside the named RFM grid (its eleven names and customers without purchases):")
    body += table(["grouping", "groups", "spend η²", "log spend η²", "churn rate range", "churn rate std"], rows)
    return Section("baseline", title, body)


def _propensity_section(outputs: RunOutputs, figures: _Figures) -> Section:
    metrics, model = outputs.propensity_metrics, outputs.propensity_model
    if metrics is None or model is None:
        return Section("propensity", "Propensity model", _missing(outputs, "propensity"))
    test = metrics["test"]
    window = model["source"].get("window", {})
    options = model["options"]
    body = paragraph(
        f"{model['model'].replace('_', ' ')} predicting {options['target']} within {options['horizon_days']} days; "
        f"features before {window.get('features_before', '?')}, labels until {window.get('labels_until', '?')}. "
        "Measured on test customers the model never saw."
    )
    splits = metrics["splits"]
    body += table(
        ["test customers", "positives", "ROC AUC", "PR AUC", "log loss", "Brier", "ECE", "train / validation / test"],
        [(test["customers"], test["positives"], test["roc_auc"], test["pr_auc"], test["log_loss"], test["brier"],
          test["ece"], f"{splits['train']:,} / {splits['validation']:,} / {splits['test']:,}")],
    )  # fmt: skip
    scores = outputs.test_scores
    if scores is not None and 0 < scores["label"].sum() < len(scores):
        body += figures.add("roc-pr", charts.roc_pr(scores["label"].to_numpy(), scores["score"].to_numpy()), "ROC and PR curves")
    body += '<div class="grid">'
    body += figures.add("calibration", charts.calibration(test["calibration"], test["ece"]), "calibration")
    body += figures.add("gains", charts.gains(test["lift"]), "cumulative gains and lift by decile")
    body += "</div>"
    body += note("Lift here is the model's, by decile of score on the test split. The lift of a campaign (treated "
                 "against a holdout) needs a measurement stage, which segscale does not have yet.")  # fmt: skip
    if metrics.get("importance"):
        body += "<h3>What drives the score</h3>"
        body += figures.add("importance", charts.importance(metrics["importance"]), "permutation importance")
    return Section("propensity", "Propensity model", body)


def _fairness_section(outputs: RunOutputs, figures: _Figures) -> Section:
    metrics = outputs.propensity_metrics
    if metrics is None:
        return Section("fairness", "Fairness audit", _missing(outputs, "propensity"))
    audit = metrics.get("fairness") or {}
    if not audit:
        return Section("fairness", "Fairness audit", note("No sensitive columns were declared ([ingest] sensitive)."))
    body = paragraph("Sensitive columns are never model inputs. Per group: AUC within it, share placed in the high band, "
                     "and that share over the best group's; under 0.8 (the four-fifths rule) is flagged.")  # fmt: skip
    for column, rows in audit.items():
        body += f"<h3>{column}</h3>" + table(
            ["group", "customers", "positives", "AUC", "high-band share", "selection ratio", "flagged"],
            [(r["group"], r["customers"], r["positives"], r["auc"], percent(r["high_share"]), r["selection_ratio"],
              r["flagged"]) for r in rows],
            flagged=[r["flagged"] for r in rows],
        )  # fmt: skip
    return Section("fairness", "Fairness audit", body)


def _model_choice(choice: dict | None) -> str:
    """How the purchase model was chosen: each candidate's error on the window held out before
    as-of, beside the naive forecast's."""
    if not choice:
        return ""
    if "skipped" in choice:
        return note(f"Purchase model not chosen on evidence ({choice['skipped']}): "
                    f"{MODEL_LABELS.get(choice['chosen'], choice['chosen'])} is used.")  # fmt: skip
    naive = choice["every_model_loses"]
    rows = [(MODEL_LABELS.get(name, name), score.get("mae"), score.get("mae_vs_naive"),
             score.get("failed") or ("best model" if name == choice["chosen"] else ""))
            for name, score in choice["scores"].items()]  # fmt: skip
    rows.append(("naive forecast", choice["naive_mae"], 1.0, "used" if naive else ""))
    body = "<h3>Choosing the purchase model</h3>" + paragraph(
        f"Each candidate fitted on the history up to {choice['window_days']} days before as-of and scored on those days "
        f"({choice['customers']:,} customers): per-customer error of expected purchases."
    )
    body += table(["model", "MAE per customer", "x naive", ""], rows,
                  flagged=[naive and name == "naive forecast" for name, *_ in rows])  # fmt: skip
    return body


def _value_section(outputs: RunOutputs, figures: _Figures) -> Section:
    value = outputs.value
    if value is None:
        return Section("value", "Lifetime value", _missing(outputs, "value"))
    purchase, spend = value["purchase_model"], value["spend_model"]
    label = MODEL_LABELS.get(purchase["name"], purchase["name"])
    if spend:
        body = paragraph(f"{label} purchases and Gamma-Gamma spend, fitted on {purchase['customers']:,} customers as of "
                         f"{value['as_of']}; CLV over {value['horizon_days']} days discounted at "
                         f"{value['discount_rate_yearly']:.0%} a year.")  # fmt: skip
    else:
        body = paragraph(f"{label} purchases, fitted on {purchase['customers']:,} customers as of {value['as_of']}. "
                         "The transactions carry no amounts, so there is no spend model and no CLV.")  # fmt: skip
    body += paragraph(f"Parameters in {value.get('time_unit', 'days')}; T runs to "
                      + ("the last calibration day." if value.get("calibration_end") == "last_day" else "as-of."))
    fits = (("purchases", purchase), ("spend", spend)) if spend else (("purchases", purchase),)
    body += table(
        ["model", "parameters", "converged", "log-likelihood", "degenerate"],
        [(name, format_params(fit), fit["converged"], fit["log_likelihood"], "yes" if fit.get("degenerate") else "no")
         for name, fit in fits],
        flagged=[bool(fit.get("degenerate")) for _, fit in fits],
    )  # fmt: skip
    for name, fit in fits:
        if fit.get("degenerate"):
            body += note(f"The {name} model's fit is degenerate, so its predictions are not to be trusted: "
                         + "; ".join(fit["degenerate"]) + ".")  # fmt: skip
    body += _model_choice(value.get("model_choice"))
    if value.get("forecast") == "naive":
        body += note("Every purchase model lost to the naive forecast on the days before as-of, so the naive forecast "
                     f"(each customer buying on at their calibration rate) makes the expected purchases and CLV; {label} "
                     "is shown for its diagnosis, and P(alive) is not given.")  # fmt: skip
    holdout = value.get("holdout")
    if holdout:
        rows = [(name, holdout[name]["predicted"], holdout[name]["actual"], holdout[name]["mae"], holdout[name]["rmse"])
                for name in ("purchases", "spend") if holdout.get(name)]  # fmt: skip
        naive = holdout.get("naive")
        if naive:
            rows.insert(1, ("purchases, naive forecast", naive["predicted"], holdout["purchases"]["actual"],
                            naive["mae"], None))  # fmt: skip
        body += "<h3>Holdout: predicted against what happened</h3>" + table(
            ["", "predicted", "actual", "MAE per customer", "RMSE per customer"], rows,
            flagged=[bool(naive) and index == 0 and naive["model_mae_ratio"] > 1 for index in range(len(rows))],
        )  # fmt: skip
        if value.get("tracking", {}).get("week_start_days"):
            body += figures.add("tracking", charts.tracking(value["tracking"], value["as_of"]),
                                "repeat purchases, actual against the model, by week")  # fmt: skip
        if holdout.get("by_calibration_purchases"):
            body += figures.add("conditional", charts.conditional_expectation(holdout["by_calibration_purchases"],
                                                                             value["horizon_days"]),
                                "holdout purchases by calibration purchases")  # fmt: skip
        if naive:
            verdict = "worse than" if naive["model_mae_ratio"] > 1 else "better than"
            body += paragraph(f"The naive forecast has each customer buy on at their calibration rate. The model's "
                              f"per-customer error is {naive['model_mae_ratio']:.3f}x its: {verdict} the naive forecast.")  # fmt: skip
        inside = holdout.get("next_purchase_inside_interval", {})
        if inside:
            body += paragraph("Next purchase inside its predicted interval: "
                              + ", ".join(f"{share:.1%} for the {level} interval" for level, share in inside.items()))
    else:
        body += note("No holdout: the data ends before as-of + the horizon.")
    columns = value_columns(outputs.run_dir) if "clv" in value.get("columns", ["clv"]) else None
    if columns is not None:
        chart = charts.clv_distribution(columns["clv"], columns["p_alive"], value["horizon_days"])
        body += figures.add("clv", chart, "CLV and P(alive) distributions")
    return Section("value", "Lifetime value", body)


def _audiences_section(outputs: RunOutputs, figures: _Figures, audiences: pd.DataFrame | None) -> Section:
    if audiences is None:
        written = {"segments": outputs.layout.segments.root, "propensity": outputs.layout.propensity_model.root}
        missing = [stage for stage, root in written.items() if not root.exists()]
        return Section("audiences", "Audiences", _missing(outputs, missing[0] if missing else "propensity"))
    names = audiences.drop_duplicates("segment").sort_values("segment")["segment_name"].tolist()
    counts = (
        audiences.pivot_table(index="segment_name", columns="band", values="customers", aggfunc="sum", observed=False)
        .reindex(index=names, columns=list(BANDS)).fillna(0).astype(int).to_numpy()
    )  # fmt: skip
    body = paragraph("Every customer falls in one segment and one propensity band; each pair is an audience.")
    body += figures.add("audiences", charts.audiences(counts, names, list(BANDS)), "audience sizes")
    top = audiences.sort_values("clv_total", ascending=False).head(10)
    body += "<h3>Largest audiences by expected value</h3>" + table(
        ["segment", "band", "customers", "CLV total", "CLV per customer"],
        [(r.segment_name, str(r.band), int(r.customers), r.clv_total, r.clv_mean) for r in top.itertuples()],
    )
    return Section("audiences", "Audiences", body)


def _updates_section(outputs: RunOutputs, figures: _Figures) -> Section | None:
    """The run's updates (``segscale update``), oldest first, and the latest one's changes."""
    entries = outputs.manifest.get("updates", [])
    documents = [json.loads(Path(entry["summary"]).read_text()) for entry in entries if Path(entry["summary"]).exists()]
    if not documents:
        return None
    body = paragraph("Since the run, these updates appended new rows, recomputed the features and placed and scored "
                     "every customer again with the run's models (no refit). Stale: the features or scores shifted "
                     "past the PSI limit, or a replaced scoring did worse once its outcomes came; segscale run refits.")  # fmt: skip
    rows = [(d["as_of"], d["previous_as_of"], sum(t["kept"] for t in d["tables"].values()),
             d.get("partitions_appended", d["partitions_rewritten"]), d["partitions_rewritten"],
             d["customers_with_rows"], d.get("merged_customers", 0),
             "; ".join(f"{name} {count:,}" for name, count in d["changes"].items()) or "none",
             "yes" if d["stale"] else "no") for d in documents]  # fmt: skip
    body += table(["as of", "from", "new rows kept", "partitions appended to", "rewritten", "customers with rows", "merged",
                   "changed", "stale"], rows, flagged=[d["stale"] for d in documents])  # fmt: skip
    latest = documents[-1]
    if latest.get("change_reasons"):
        body += figures.add("update-changes", charts.update_changes(latest["change_reasons"]),
                            "customers changed in the latest update by label and reason")  # fmt: skip
    return Section("updates", "Updates", body)


def _activation_section(run_dir: Path) -> Section | None:
    """The activated audiences (only in a run that has them): sizes, removals by reason, and
    treated against control on the balance columns."""
    path = RunLayout(run_dir).activate.summary
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    body = paragraph(f"Campaign {document['campaign']}, as of {document['as_of']}: each audience's candidates (its "
                     "conditions), the customers removed and why (each under the first reason that applies), and "
                     "the treated and control groups (a keyed hash holds the control share out).")  # fmt: skip
    audiences = document["audiences"]
    body += table(
        ["audience", "channel", "candidates", "removed", "treated", "control"],
        [(a["name"], a["channel"], a["candidates"],
          "; ".join(f"{reason} {count:,}" for reason, count in a["removed"].items()) or "none", a["treated"],
          a["control"]) for a in audiences],
        flagged=[bool(a["imbalanced"]) for a in audiences],
    )  # fmt: skip
    for audience in audiences:
        rows = [(row["column"], row["mean_treated"], row["mean_control"], row["standardised_difference"])
                for row in audience["balance"]]  # fmt: skip
        if not rows:
            continue
        body += f"<h3>Balance: {html.escape(audience['name'])}</h3>" + table(
            ["column", "mean, treated", "mean, control", "standardised difference"], rows,
            flagged=[row[3] is None or abs(row[3]) > IMBALANCED for row in rows],
        )  # fmt: skip
        if audience["imbalanced"]:
            body += note(f"Treated and control differ by more than {IMBALANCED} standardised difference on "
                         f"{', '.join(audience['imbalanced'])}: compare outcomes with that in mind.")  # fmt: skip
    actions = document.get("next_best_action")
    if actions:
        body += "<h3>Next best action</h3>" + paragraph(
            "Each treated customer gets the eligible action of highest expected value (propensity score x value of a "
            "conversion - cost), when it is above 0; the others are counted by why not."
        )
        body += table(["action, or why none", "customers"],
                      [*actions["per_action"].items(), *((f"none: {why}", count) for why, count in
                                                          actions["no_action"].items())])  # fmt: skip
    return Section("activation", "Activation", body)


def build_measure_report(document: dict, path: Path) -> Path:
    """``measure.html`` beside ``measure.json``: per audience the conversion lift with its
    interval (table and chart), revenue per customer and the guardrails."""
    audiences = document["audiences"]
    body = paragraph("Treated against control in each audience: absolute lift with its 95% interval, relative lift "
                     "and the p-value; a test is underpowered when its interval holds 0 and the observed lift is "
                     "below the smallest it can detect (80% power, 5% level).")  # fmt: skip
    rows = [(a["name"], a["conversion"]["treated"], a["conversion"]["control"], percent(a["conversion"]["treated_rate"], 2),
             percent(a["conversion"]["control_rate"], 2), a["conversion"]["absolute_lift"],
             f"[{a['conversion']['absolute_low']:.4f}, {a['conversion']['absolute_high']:.4f}]",
             a["conversion"]["p_value"], a["conversion"]["incremental"],
             "yes" if a["conversion"]["underpowered"] else "no") for a in audiences]  # fmt: skip
    body += table(["audience", "treated", "control", "rate, treated", "rate, control", "lift", "95% interval",
                   "p-value", "incremental conversions", "underpowered"], rows)  # fmt: skip
    body += figure(charts.png(charts.lift_intervals(audiences)), "conversion lift by audience")
    revenue = [(a["name"], a["revenue_per_customer"]["treated_mean"], a["revenue_per_customer"]["control_mean"],
                a["revenue_per_customer"]["absolute_lift"], a["revenue_per_customer"]["incremental"])
               for a in audiences if "revenue_per_customer" in a]  # fmt: skip
    if revenue:
        body += "<h3>Revenue per customer</h3>" + table(
            ["audience", "treated", "control", "lift", "incremental revenue"], revenue)
    guardrails = [(a["name"], name, percent(g["treated_rate"], 2), percent(g["control_rate"], 2), g["absolute_lift"],
                   "worse" if g["worse"] else "no worse") for a in audiences for name, g in a["guardrails"].items()]  # fmt: skip
    if guardrails:
        body += "<h3>Guardrails</h3>" + table(["audience", "outcome", "treated", "control", "lift", ""], guardrails,
                                              flagged=[row[-1] == "worse" for row in guardrails])  # fmt: skip
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(page("segscale measure", document["outcomes"], [], [Section("lift", "Lift", body)]),
                         encoding="utf-8")  # fmt: skip
    os.replace(temporary, path)
    return path


def _cards(outputs: RunOutputs) -> list[str]:
    manifest = outputs.manifest
    metrics = manifest.get("metrics", {})
    cards = [card("status", manifest["status"]), card("as of", manifest["as_of"] or "–")]
    if "segments" in metrics:
        cards += [card("customers", f"{metrics['segments']['customers']:,}"), card("segments", str(metrics["segments"]["k"]))]
    if "propensity" in metrics and metrics["propensity"].get("roc_auc") is not None:
        cards.append(card(f"{metrics['propensity']['target']} AUC (test)", f"{metrics['propensity']['roc_auc']:.3f}"))
    if outputs.value is not None and (outputs.value.get("holdout") or {}).get("spend"):
        cards.append(card("spend predicted / actual", f"{outputs.value['holdout']['spend']['predicted'] / max(outputs.value['holdout']['spend']['actual'], 1e-9):.2f}"))
    cards.append(card("wall time", f"{manifest['wall_seconds']:.0f} s"))
    return cards


def build_report(run_dir: str | os.PathLike) -> ReportSummary:
    """Write ``<run_dir>/report.html`` (and its charts under ``<run_dir>/report/``).

    Raises
    ------
    InputDataError
        ``run_dir`` is not a run directory (no ``manifest.json``).
    """
    outputs = read_outputs(run_dir)
    run_dir = outputs.run_dir
    figures = _Figures()
    audiences = audience_table(run_dir)
    sections = [
        _run_section(outputs, figures),
        _quality_section(outputs, figures),
        _segments_section(outputs, figures),
        _profiles_section(outputs, figures),
        _names_section(outputs, figures),
        _hierarchy_section(outputs, figures),
        _stability_section(outputs, figures),
        _baseline_section(outputs, figures),
        _propensity_section(outputs, figures),
        _fairness_section(outputs, figures),
        _value_section(outputs, figures),
        _audiences_section(outputs, figures, audiences),
    ]
    for extra in (_activation_section(run_dir), _updates_section(outputs, figures)):
        if extra is not None:
            sections.append(extra)
    title = f"segscale run: {run_dir.name}"
    subtitle = f"{run_dir} · as of {outputs.manifest['as_of']} · {outputs.manifest['status']}"
    document = page(title, subtitle, _cards(outputs), sections)
    layout = outputs.layout
    with staged_output(layout.report_images) as staging:
        for name, image in figures.images:
            (staging / name).write_bytes(image)
    path = layout.report
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(document, encoding="utf-8")
    os.replace(temporary, path)
    images = [layout.report_images / name for name, _ in figures.images]
    logger.info("report: %d sections, %d charts, %.1f MB in %s", len(sections), len(images),
                len(document) / 1e6, path)  # fmt: skip
    return ReportSummary(path, [re.sub(r"\s+", " ", s.title) for s in sections], images, audiences)
