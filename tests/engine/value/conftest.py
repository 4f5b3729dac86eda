"""The value tests' store: a generated world of 3,000 customers in three partitions, ingested
once for every module that reads it."""

import dataclasses

import pytest

from engine.config import load_config
from engine.ingest import ingest
from engine.synth import WorldSpec, generate_world


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_world(out, WorldSpec(customers=3_000, seed=4, chunk_size=1_000))
    config = load_config(out / "segscale.toml")
    ingest(dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, partitions=3)))
    return out / "run" / "ingest" / "store"
