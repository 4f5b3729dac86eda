"""assign_segments: every customer of a feature table placed with a saved segment model."""

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import SegmentOptions, load_config
from engine.exceptions import InputDataError
from engine.features import build_features
from engine.ingest import ingest
from engine.layout import FeaturesLayout, SegmentsLayout
from engine.segments import SegmentFit, assign_segments, build_segments
from engine.synth import WorldSpec, generate_world

# Light settings that still fit micro-segments and niches, so every file a build writes is there.
OPTIONS = SegmentOptions(sample=3000, k_max=5, stability_resamples=2, micro_k=12, niche_points=2_000)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 2,000-customer world's features in 3 parts, and their segments."""
    out = tmp_path_factory.mktemp("assign-world")
    generate_world(out, WorldSpec(customers=2_000, seed=11, chunk_size=1_000))
    config = load_config(out / "segscale.toml")
    ingest(dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, partitions=3)))
    features = out / "run" / "features"
    build_features(out / "run" / "ingest" / "store", features, as_of=config.run.as_of, backend_name="cpu")
    summary = build_segments(features, out / "run" / "segments", options=OPTIONS, backend_name="cpu")
    return summary, features, out / "run" / "segments"


def _assignments(out):
    return pq.read_table(SegmentsLayout(out).assignments).to_pandas().sort_values("customer_key", ignore_index=True)


def _json(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("in_place", [False, True], ids=["elsewhere", "in-place"])
def test_the_same_features_are_placed_as_the_build_placed_them(built, tmp_path, in_place):
    summary, features, segments = built
    built_layout = SegmentsLayout(segments)
    if in_place:  # a copy, so that the module's build stays as it was
        out = tmp_path / "segments"
        shutil.copytree(segments, out)
    else:
        out = tmp_path / "assigned"
    placed = assign_segments(features, out if in_place else segments, out, backend_name="cpu")
    layout = SegmentsLayout(out)
    assert sorted(p.name for p in layout.assignments.iterdir()) == sorted(p.name for p in built_layout.assignments.iterdir())
    pd.testing.assert_frame_equal(_assignments(out), _assignments(segments))
    assert [s["customers"] for s in _json(layout.profiles)] == [s["customers"] for s in summary.segments]
    assert _json(layout.profiles) == _json(built_layout.profiles)  # names, rules, stability as fitted, sizes the same
    # The same sums and the same sample: the profile table is the build's (medians included).
    pd.testing.assert_frame_equal(pq.read_table(layout.profile_table).to_pandas(),
                                  pq.read_table(built_layout.profile_table).to_pandas())  # fmt: skip
    pd.testing.assert_frame_equal(pq.read_table(layout.hierarchy).to_pandas(),
                                  pq.read_table(built_layout.hierarchy).to_pandas())  # fmt: skip
    assert layout.model.read_text() == built_layout.model.read_text()
    assert layout.evaluation.read_text() == built_layout.evaluation.read_text()
    meta, built_meta = _json(layout.meta), _json(built_layout.meta)
    assert meta["refit"] is False and meta["model_fitted_as_of"] == built_meta["as_of"] == meta["as_of"]
    changed = {"seconds", "finished_at", "out_dir", "refit", "model_fitted_as_of"}
    assert {key: value for key, value in meta.items() if key not in changed} == {
        key: value for key, value in built_meta.items() if key not in changed
    }
    assert (placed.customers, placed.k, placed.outliers, placed.niche_customers, placed.segments) == (
        summary.customers, summary.k, summary.outliers, summary.niche_customers, summary.segments,
    )  # fmt: skip
    assert not list(tmp_path.glob(".*-staging-*"))


def _with_one_customer_changed(features, segments, out) -> tuple[str, int]:
    """A copy of the feature table in which one customer's features (those the model places by)
    are another's, of another segment; returns the changed customer's key and that segment."""
    shutil.copytree(features, out)
    columns = _json(SegmentsLayout(segments).model)["preparation"]["columns_"]
    part = FeaturesLayout(out).part(1)
    table = pq.read_table(part)
    frame = table.to_pandas()
    segment = pq.read_table(SegmentsLayout(segments).assignments / part.name).to_pandas().set_index("customer_key")
    segment = segment["segment"].reindex(frame["customer_key"]).to_numpy()
    changed = 0
    donor = int(np.flatnonzero(segment != segment[changed])[0])
    frame.loc[changed, columns] = frame.loc[donor, columns].to_numpy()
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)
    return frame.loc[changed, "customer_key"], int(segment[donor])


def test_changed_features_move_only_the_changed_customer(built, tmp_path):
    _, features, segments = built
    key, donor_segment = _with_one_customer_changed(features, segments, tmp_path / "features")
    assign_segments(tmp_path / "features", segments, tmp_path / "assigned", backend_name="cpu")
    before, after = _assignments(segments), _assignments(tmp_path / "assigned")
    assert before["customer_key"].equals(after["customer_key"])
    changed = (before["customer_key"] == key).to_numpy()
    pd.testing.assert_frame_equal(after[~changed], before[~changed])
    # The changed customer now has another segment's customer's features: the same model
    # places them where it placed that customer, and where it places their new features.
    assert after.loc[changed, "segment"].tolist() == [donor_segment] != before.loc[changed, "segment"].tolist()
    model = SegmentFit.from_dict(_json(SegmentsLayout(segments).model))
    frame = pq.read_table(tmp_path / "features").to_pandas()
    placed = model.place(frame[frame["customer_key"] == key])
    for column in ("segment", "micro_segment", "niche", "outlier"):
        assert after.loc[changed, column].tolist() == placed[column].tolist(), column
    # Sizes follow the new placement; names and rules stay as fitted.
    profiles, fitted = _json(SegmentsLayout(tmp_path / "assigned").profiles), _json(SegmentsLayout(segments).profiles)
    assert [s["customers"] for s in profiles] == np.bincount(after["segment"], minlength=len(fitted)).tolist()
    assert [s["customers"] for s in profiles] != [s["customers"] for s in fitted]
    assert [(s["name"], s["rules"]) for s in profiles] == [(s["name"], s["rules"]) for s in fitted]


def test_a_feature_table_without_the_model_columns_is_refused(built, tmp_path):
    _, features, segments = built
    shutil.copytree(features, tmp_path / "features")
    meta = _json(FeaturesLayout(tmp_path / "features").meta)
    model = _json(SegmentsLayout(segments).model)
    dropped = model["preparation"]["columns_"][0]
    del meta["columns"][dropped]
    FeaturesLayout(tmp_path / "features").meta.write_text(json.dumps(meta))
    with pytest.raises(InputDataError, match=f"lacks the columns .*{dropped}"):
        assign_segments(tmp_path / "features", segments, tmp_path / "out", backend_name="cpu")
    with pytest.raises(InputDataError, match="not a segscale segment output"):
        assign_segments(features, tmp_path, tmp_path / "out", backend_name="cpu")
    assert not (tmp_path / "out").exists()
