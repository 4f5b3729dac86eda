"""RunLayout: the paths it names are the ones a run writes, and a run writes nothing else."""

import json

from engine.layout import RunLayout, SegmentsLayout, part_files, part_name, staging_path
from engine.pipeline import STAGE_NAMES


def _named_files(run: RunLayout) -> set:
    segments, model = run.segments, run.propensity_model
    # Leaf tables are written for a boosted model only.
    boosted = json.loads(model.model.read_text())["model"] == "gradient_boosting"
    return {*([model.leaf_tables] if boosted else []),
        run.manifest, run.report, run.ingest.summary, run.ingest.identity_report, run.store.meta, run.features.meta,
        run.features.drift_sample,
        segments.meta, segments.profiles, segments.profile_table, segments.model, segments.evaluation,
        segments.hierarchy, model.estimator, model.model, model.metrics, model.test_scores, run.propensity_scores.meta,
        run.value.summary, *(run.record(stage) for stage in STAGE_NAMES if stage not in ("compare", "activate")),
    }  # fmt: skip


def _part_directories(run: RunLayout) -> set:
    tables = json.loads(run.store.meta.read_text())["tables"]
    return {
        *(run.store.table(table) for table in tables), run.ingest.sensitive.table("customers"),
        *(run.ingest.quarantine(table) for table in (*tables, "identities")), run.ingest.identity_mapping,
        run.features.root, run.features.event_summaries, run.segments.assignments, run.propensity_scores.root,
        run.value.customers,
    }  # fmt: skip


def test_every_file_a_run_writes_is_a_path_of_its_layout(full_run):
    run = RunLayout(full_run)
    named, partitioned = _named_files(run), _part_directories(run)
    missing = sorted(str(path) for path in named if not path.is_file())
    assert not missing
    unnamed = []
    for path in run.root.rglob("*"):
        if not path.is_file() or path in named:
            continue
        if path.parent in partitioned and path.name.startswith("part-") and path.suffix == ".parquet":
            continue
        if path.parent == run.report_images and path.suffix == ".png":
            continue
        if path.parent == run.ingest.merged_accounts and path.name.startswith("merged-") and path.suffix == ".arrow":
            continue
        unnamed.append(str(path.relative_to(run.root)))
    assert unnamed == []
    # Every table, the mapping and every per-customer output are split into parts alike.
    partitions = json.loads(run.store.meta.read_text())["partitions"]
    for directory in (run.features.root, run.segments.assignments, run.propensity_scores.root, run.value.customers):
        assert [path.name for path in part_files(directory)] == [part_name(n) for n in range(partitions)]


def test_a_staging_directory_is_laid_out_like_the_output_it_becomes(tmp_path):
    out = RunLayout(tmp_path).segments.root
    staging = staging_path(out, 1234)
    assert staging.parent == out.parent and staging.name == ".segments-staging-1234"
    assert SegmentsLayout(staging).profiles.relative_to(staging) == RunLayout(tmp_path).segments.profiles.relative_to(out)
    assert part_files(tmp_path / "absent") == []
