"""What the parser reads from a field's metadata: derived, minimum, allowed keys, secret."""

from dataclasses import dataclass

from ..contract import TABLES

# Field metadata keys. A derived field is filled by the parser, never read from the TOML,
# so it is not a user-facing key; a minimum bounds a number; keys restricts a mapping's keys.
_DERIVED = "segscale.derived"
_MINIMUM = "segscale.minimum"
_KEYS = "segscale.keys"
# A secret is never written out: config_to_dict says only whether it is set.
_SECRET = "segscale.secret"
REDACTED = "(set; not shown)"


@dataclass(frozen=True)
class _Keys:
    """The allowed and required keys of a ``dict[str, ...]`` field, and what to call them."""

    noun: str
    allowed: tuple[str, ...]
    required: tuple[str, ...] = ()


_INPUT_TABLES = _Keys(
    "table",
    allowed=tuple(TABLES),
    required=tuple(name for name, table in TABLES.items() if not table.optional_table),
)
