"""The data contract: the canonical input tables and their columns (DESIGN 2).

Config column mappings, the synthetic world and ingest all speak these names.
"""

from dataclasses import dataclass

__all__ = ["TableContract", "TABLES", "EVENT_TYPES", "CONSENT_PREFIX"]


@dataclass(frozen=True)
class TableContract:
    """Canonical columns of one input table."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    # True where the table is optional in a run config.
    optional_table: bool = True
    # True where an input with no rows is a state of the world (nobody suppressed yet), not a mistake.
    may_be_empty: bool = False

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
        # The contact history a frequency cap counts: who was contacted when, on which channel.
        TableContract(
            "contacts",
            required=("customer_id", "ts", "channel"),
            optional=("campaign",),
            may_be_empty=True,
        ),
        # Customers who must never be contacted, on one channel or (channel missing) on every one;
        # ts, when the suppression was recorded, may be unknown.
        TableContract(
            "suppressions",
            required=("customer_id", "reason"),
            optional=("channel", "ts"),
            may_be_empty=True,
        ),
    )
}

# Customers' per-channel consent flags (consent_email, consent_sms, ...): stored for activation,
# never model inputs.
CONSENT_PREFIX = "consent_"

# Behavioural event types the engine understands; anything else is quarantined by ingest.
EVENT_TYPES = ("view", "add_to_cart", "search", "email_open", "email_click", "support_ticket")
