"""A small synthetic world shared by the propensity tests: store, features at the end, truth."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from engine.config import load_config
from engine.features import build_features
from engine.ingest import ingest
from engine.synth import WorldSpec, generate_world, truth_by_customer_key


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """3,000 people over 2024-2025, their next 90 days in truth/, ingested into 2 parts."""
    out = tmp_path_factory.mktemp("propensity-world")
    generate_world(out, WorldSpec(customers=3_000, seed=11, chunk_size=1_500, simulate_future=True))
    config = load_config(out / "segscale.toml")
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, partitions=2))
    ingest(config)
    build_features(out / "run" / "ingest" / "store", out / "run" / "features", as_of=config.run.as_of,
                   backend_name="cpu")  # fmt: skip
    return out, config


def truth_by_key(world_dir) -> pd.DataFrame:
    """customer_key -> the person's true p_purchase_90d and purchased_next_90d (keys of one person only)."""
    mapping = world_dir / "run" / "ingest" / "identity" / "mapping"
    return truth_by_customer_key(world_dir, mapping, ["p_purchase_90d", "purchased_next_90d"])


@pytest.fixture
def customers():
    """A customer-level frame where the label follows x and the region (true probability p_true),
    plus noise columns."""
    rng = np.random.default_rng(0)
    n = 3_000
    x = rng.normal(size=n)
    region = rng.choice(["north", "south", "east"], size=n)
    logit = 1.5 * x + np.where(region == "north", 1.0, 0.0) - 0.8
    p_true = 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "customer_key": [f"c{i:05d}" for i in range(n)],
            "x": x,
            "noise": rng.normal(size=n),
            "gappy": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
            "region": pd.Series(region, dtype="string"),
            "label": (rng.random(n) < p_true).astype("int8"),
            "p_true": p_true,
        }
    )
    return frame
