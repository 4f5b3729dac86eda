"""The run config: a TOML file parsed into typed, frozen dataclasses.

The parser is generic: it walks the fields and annotations of `RunConfig` and its nested
dataclasses, so a later stage adds its section by adding a dataclass field to `RunConfig`
(plus, where it needs checks that annotations cannot express, an entry in ``_FINISHERS``).
Every problem raises a one-line `ConfigError` naming the config file, the TOML location,
the problem and what to do.

Rooms: ``_run`` (``[run]``, ``[inputs.*]`` and `RunConfig`), one module per stage section
(``_ingest``, ``_features``, ``_segments``, ``_propensity``, ``_value``, ``_activate``, ``_update``), ``_fields`` (what the
parser reads from field metadata) and ``_parse`` (the parser and the writer).
"""

from ._activate import Action, ActivateOptions, Audience, Cap, Condition
from ._features import FeatureOptions
from ._ingest import IngestOptions
from ._parse import config_to_dict, load_config, parse_config, suffix_format
from ._propensity import PropensityOptions
from ._run import InputSpec, RunConfig, RunSection
from ._segments import SegmentOptions
from ._update import UpdateOptions
from ._value import ValueOptions

__all__ = [
    # sections
    "RunConfig",
    "RunSection",
    "InputSpec",
    "IngestOptions",
    "FeatureOptions",
    "SegmentOptions",
    "PropensityOptions",
    "ValueOptions",
    "ActivateOptions",
    "UpdateOptions",
    "Action",
    "Audience",
    "Cap",
    "Condition",
    # reading and writing
    "load_config",
    "parse_config",
    "config_to_dict",
    "suffix_format",
]
