"""The data contract: the canonical input tables and their columns (DESIGN 2).

Config column mappings, the synthetic world and ingest all speak these names.
"""

from dataclasses import dataclass

__all__ = ["TableContract", "TABLES", "EVENT_TYPES"]


@dataclass(frozen=True)
class TableContract:
    """Canonical columns of one input table."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    # True where the table is optional in a run config.
    optional_table: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


TABLES = {
    table.name: table
    for table in (
        TableContract(
            "transactions",
            required=("customer_id", "ts"),
            # Without amount the table is counts-only: ingest stores it null (unknown).
            optional=("amount", "order_id", "quantity", "category", "channel", "discount"),
            optional_table=False,
        ),
        TableContract(
            "events",
            required=("customer_id", "ts", "event_type"),
            optional=("channel", "category"),
        ),
        TableContract(
            "customers",
            required=("customer_id",),
            optional=("signup_ts", "region"),
        ),
        TableContract(
            "identities",
            required=("customer_id", "id_type", "id_value"),
            optional=(),
        ),
        TableContract(
            "outcomes",
            required=("customer_id", "campaign", "treated", "converted"),
            optional=(),
        ),
    )
}

# Behavioural event types the engine understands; anything else is quarantined by ingest.
EVENT_TYPES = ("view", "add_to_cart", "search", "email_open", "email_click", "support_ticket")
