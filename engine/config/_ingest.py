"""The ``[ingest]`` section."""

from dataclasses import dataclass, field
from datetime import date

from ._fields import _MINIMUM, _SECRET


@dataclass(frozen=True)
class IngestOptions:
    """The ``[ingest]`` section: validation, identity resolution, privacy and the store.

    Attributes
    ----------
    partitions : int or None, default None
        Partitions of the customer-clustered store; None chooses from the data size.
    pseudonym_key : str or None, default None
        Key of the keyed hash that pseudonymises customer keys. None reads the environment
        variable ``SEGSCALE_PSEUDONYM_KEY``. Never written to any output.
    extracted_at : date or None, default None
        When the data was extracted: rows stamped later are clock skew
        (``future_timestamp``). None means the day ingest runs.
    identifier_cap : int, default 5
        An identifier value shared by more customers than this never links them.
    identifier_caps : dict of str to int
        Per identifier type overrides of ``identifier_cap``.
    blocked_identifiers : tuple of str
        Values that never link, on top of the built-in junk list ("", "null", "unknown", ...).
    identity_graph_memory_mib : float, default 1024
        While the shared identifiers, coded as a graph (about 210 bytes a link), fit in this
        many MiB, identity components are solved in one process at once; above it, by label
        propagation on the cluster. 0 always propagates.
    direct_identifiers : tuple of str
        Profile columns that identify a person directly; dropped at ingest.
    sensitive : tuple of str
        Profile columns kept apart for fairness audits only, never model inputs.
    max_abs_amount : float, default 1e9
        Transaction amounts larger than this in magnitude are quarantined
        (``amount_out_of_bounds``): a value such as 1e308 is a fault, and kept it would turn
        sums of spend into infinity.
    """

    partitions: int | None = field(default=None, metadata={_MINIMUM: 1})
    pseudonym_key: str | None = field(default=None, metadata={_SECRET: True})
    extracted_at: date | None = None
    identifier_cap: int = field(default=5, metadata={_MINIMUM: 1})
    identifier_caps: dict[str, int] = field(default_factory=dict)
    blocked_identifiers: tuple[str, ...] = ()
    identity_graph_memory_mib: float = field(default=1024.0, metadata={_MINIMUM: 0})
    direct_identifiers: tuple[str, ...] = (
        "email", "phone", "full_name", "name", "first_name", "last_name", "address", "street", "postcode",
    )  # fmt: skip
    sensitive: tuple[str, ...] = ("gender", "age_band")
    max_abs_amount: float = field(default=1e9, metadata={_MINIMUM: 0})
