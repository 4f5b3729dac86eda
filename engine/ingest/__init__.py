"""Ingest: validated, deduplicated, identity-resolved, customer-partitioned store (DESIGN 2).

Every input row is kept, written to quarantine with a reason, or dropped as an exact
duplicate, and the manifest reconciles the three with the rows read.
"""
