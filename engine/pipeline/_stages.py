"""The stages a run is made of, in order, and what each reads, writes and depends on.

Each stage is a thin adapter from the run config to one engine function, which writes its
own output atomically (``engine._tasks.staged_output``). A stage's ``settings`` are the parts
of the config its output depends on; with its upstream fingerprints and the code version
they make its fingerprint (``engine.pipeline._fingerprint``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ..config import RunConfig, config_to_dict
from ..exceptions import ConfigError, UsageError
from ..layout import RunLayout, SegmentsLayout
from ._fingerprint import input_fingerprint, key_check

__all__ = ["STAGE_NAMES", "STAGES", "Stage", "StageContext"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageContext:
    """What a stage runs with: the run's config (overrides applied, ``[run] as_of`` resolved)
    and its resolved values.

    ``as_of`` is the run's one as-of date, settled before the first stage that reads the
    store (ingest, which writes it, runs without one). ``progress(label)`` is a context
    manager yielding ``update(done, total)``.
    """

    config: RunConfig
    as_of: date | None
    client: object | None
    progress: Callable

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.config.run.output_dir)

    @property
    def backend(self) -> str:
        return self.config.run.backend


@dataclass(frozen=True)
class Stage:
    """One stage of a run.

    Attributes
    ----------
    name : str
    needs : tuple of str
        Stages whose outputs it reads (they run first).
    outputs : callable
        ``outputs(layout) -> tuple of Path``: the directories of the run it writes; all must
        exist for it to be skipped.
    settings : callable
        ``settings(config, as_of) -> dict``: what of the config its output depends on.
    run : callable
        ``run(context) -> dict``: does the work, returns its JSON-ready summary.
    applies : callable
        ``applies(config) -> bool``: whether the run has this stage at all.
    metrics : callable
        ``metrics(summary) -> dict or None``: the numbers of its summary a reader of the
        manifest looks for first (``metrics`` there).
    """

    name: str
    needs: tuple[str, ...]
    outputs: Callable[[RunLayout], tuple[Path, ...]]
    settings: Callable[[RunConfig, date | None], dict]
    run: Callable[[StageContext], dict]
    applies: Callable[[RunConfig], bool] = lambda config: True
    metrics: Callable[[dict], dict | None] = lambda summary: None


def _ingest_settings(config: RunConfig, as_of) -> dict:
    from ..ingest import pseudonym_key

    # The key itself never enters a document, digested or not: its keyed check stands in.
    options = dataclasses.replace(config.ingest, pseudonym_key=None)
    return {
        "ingest": config_to_dict(options),
        "inputs": {name: input_fingerprint(spec) for name, spec in sorted(config.inputs.items())},
        "key": key_check(pseudonym_key(config.ingest.pseudonym_key)),
    }


def _ingest(context: StageContext) -> dict:
    from ..ingest import ingest

    with context.progress("ingest tasks") as update:
        return ingest(context.config, client=context.client, progress=update).to_dict()


def _features(context: StageContext) -> dict:
    from ..features import build_features

    run = context.layout
    with context.progress("feature tasks") as update:
        return build_features(
            run.store.root, run.features.root, as_of=context.as_of, options=context.config.features,
            backend_name=context.backend, client=context.client, progress=update,
        ).to_dict()  # fmt: skip


def _segments(context: StageContext) -> dict:
    from ..segments import build_segments

    run = context.layout
    with context.progress("segment tasks") as update:
        return build_segments(
            run.features.root, run.segments.root, options=context.config.segments, seed=context.config.run.seed,
            backend_name=context.backend, client=context.client, progress=update,
        ).to_dict()  # fmt: skip


def _propensity(context: StageContext) -> dict:
    from ..propensity import score_propensity, train_propensity

    run, config = context.layout, context.config
    model = run.propensity_model.root
    with context.progress("propensity tasks") as update:
        trained = train_propensity(
            run.store.root, model, as_of=context.as_of, options=config.propensity,
            feature_options=config.features, seed=config.run.seed, backend_name=context.backend,
            client=context.client, progress=update,
        )  # fmt: skip
        scored = score_propensity(model, run.features.root, run.propensity_scores.root, client=context.client,
                                  progress=update)  # fmt: skip
    return {"train": trained.to_dict(), "scores": scored.to_dict()}


def _value(context: StageContext) -> dict:
    from ..value import estimate_value

    run, options = context.layout, context.config.value
    with context.progress("value tasks") as update:
        return estimate_value(
            run.store.root, run.value.root, as_of=context.as_of, horizon_days=options.horizon_days,
            discount_rate=options.discount_rate_yearly, model=options.model, grain=options.grain,
            calibration_end=options.calibration_end, time_unit=options.time_unit, min_repeat_customers=options.min_repeat_customers, sample=options.sample, backend_name=context.backend,
            client=context.client, progress=update,
        ).to_dict()  # fmt: skip


def _value_metrics(summary: dict) -> dict:
    purchase = summary["purchase_model"]
    return {
        "customers": summary["customers"], "purchase_model": purchase["name"], "forecast": summary["forecast"],
        "time_unit": summary["time_unit"], "params": purchase["params"], "converged": purchase["converged"],
        "holdout": summary["holdout"], "model_choice": summary["model_choice"],
        "degenerate": {name: (summary[f"{name}_model"] or {}).get("degenerate") or [] for name in ("purchase", "spend")},
    }  # fmt: skip


def _activate(context: StageContext) -> dict:
    from ..activate import activate

    with context.progress("activation tasks") as update:
        return activate(
            context.layout.root, context.config.activate, as_of=context.as_of, source=str(context.config.source),
            client=context.client, progress=update,
        ).to_dict()  # fmt: skip


def _activate_metrics(summary: dict) -> dict:
    return {
        audience["name"]: {key: audience[key] for key in ("candidates", "treated", "control", "removed", "imbalanced")}
        for audience in summary["audiences"]
    }


def _previous_segments(config: RunConfig) -> SegmentsLayout:
    previous = RunLayout(config.run.previous_run).segments
    if not previous.meta.exists():
        raise ConfigError(
            f"{config.source}: [run] previous_run: {config.run.previous_run} holds no segments "
            "(point it at an earlier run directory, or remove it)"
        )
    return previous


def _compare_settings(config: RunConfig, as_of) -> dict:
    marker = _previous_segments(config).meta
    return {"previous_run": str(config.run.previous_run), "previous_written_ns": marker.stat().st_mtime_ns}


def _compare(context: StageContext) -> dict:
    from ..measure import run_drift
    from ..segments import compare_runs

    run = context.layout
    previous = _previous_segments(context.config).root
    if previous.resolve() == run.segments.root.resolve():
        raise UsageError(f"{context.config.source}: [run] previous_run is this run's own directory")
    comparison = compare_runs(previous, run.segments.root, out=run.compare.root).to_dict()
    # Beside the segment shares' PSI: every feature's and score's, from the previous run's outputs.
    drift = run_drift(context.config.run.previous_run, run.root)
    shifted = [f"{row['source']}.{row['column']}" for row in drift if row["shifted"]]
    if shifted:
        logger.warning("compare: shifted since the previous run (PSI above 0.2): %s", ", ".join(shifted))
    return {**comparison, "feature_drift": drift}


def _propensity_metrics(summary: dict) -> dict:
    train = summary["train"]
    return {"target": train["target"], "model": train["model"], **train["metrics"], "bands": summary["scores"]["bands"]}


def _keys(*keys: str):
    """Metrics: these keys of the summary."""
    return lambda summary: {key: summary.get(key) for key in keys}


def _section(name: str, *run_values: str):
    """Settings: one config section, plus named values of the run (as_of, seed)."""

    def settings(config: RunConfig, as_of) -> dict:
        values = {"as_of": as_of.isoformat() if as_of else None, "seed": config.run.seed}
        return {name: config_to_dict(getattr(config, name)), **{v: values[v] for v in run_values}}

    return settings


def _propensity_settings(config: RunConfig, as_of) -> dict:
    return {**_section("propensity", "as_of", "seed")(config, as_of), "features": config_to_dict(config.features)}


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage("ingest", (), lambda run: (run.ingest.root,), _ingest_settings, _ingest),
        Stage("features", ("ingest",), lambda run: (run.features.root,), _section("features", "as_of"), _features),
        Stage(
            "segments", ("features",), lambda run: (run.segments.root,), _section("segments", "seed"), _segments,
            metrics=_keys("customers", "k", "k_chosen_by", "silhouette", "micro_segments", "outliers", "unstable_segments",
                          "against_rfm_grid"),
        ),  # fmt: skip
        Stage(
            "propensity", ("ingest", "features"), lambda run: (run.propensity_model.root, run.propensity_scores.root),
            _propensity_settings, _propensity, metrics=_propensity_metrics,
        ),  # fmt: skip
        Stage(
            "value", ("ingest",), lambda run: (run.value.root,), _section("value", "as_of"), _value,
            metrics=_value_metrics,
        ),  # fmt: skip
        Stage(
            "activate", ("ingest", "features", "segments", "propensity", "value"),
            lambda run: (run.activate.root,), _section("activate", "as_of"), _activate,
            applies=lambda config: bool(config.activate.audiences), metrics=_activate_metrics,
        ),  # fmt: skip
        Stage(
            "compare", ("segments", "propensity", "value"), lambda run: (run.compare.root,), _compare_settings, _compare,
            applies=lambda config: config.run.previous_run is not None,
            metrics=lambda summary: {**_keys("common", "adjusted_rand", "psi", "movers")(summary),
                                     "shifted": [f"{row['source']}.{row['column']}" for row in summary.get("feature_drift", [])
                                                 if row["shifted"]]},  # fmt: skip
        ),  # fmt: skip
    )
}
STAGE_NAMES = tuple(STAGES)
