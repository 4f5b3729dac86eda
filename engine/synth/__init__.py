"""The synthetic customer world: seeded, realistic raw tables with ground truth kept apart.

See DESIGN 4. ``generate_world(out_dir, WorldSpec(customers=...))`` writes raw
transactions, events, customer profiles and identities, a ``truth/`` directory with each
person's archetype, generating parameters, alive flag and purchase probabilities, and a
ready run config.
"""

from ._archetypes import ARCHETYPE_NAMES, ARCHETYPES, CATEGORIES, Archetype
from ._btyd import simulate_btyd_summaries
from ._dirt import FAULTS
from ._truth import truth_by_customer_key
from ._world import (
    CONFIG_NAME,
    DATA_TABLES,
    DEFAULT_END,
    DEFAULT_START,
    WorldSpec,
    WorldSummary,
    generate,
    generate_chunk,
    generate_world,
    write_backtest_config,
)

__all__ = [
    # generation
    "WorldSpec",
    "WorldSummary",
    "generate",
    "generate_world",
    "generate_chunk",
    "write_backtest_config",
    "simulate_btyd_summaries",
    "truth_by_customer_key",
    # what the world contains
    "Archetype",
    "ARCHETYPES",
    "ARCHETYPE_NAMES",
    "CATEGORIES",
    "DATA_TABLES",
    "FAULTS",
    "CONFIG_NAME",
    "DEFAULT_START",
    "DEFAULT_END",
]
