"""Incremental refresh: new rows into a finished run, outputs re-scored with its saved models,
and the customers whose segment, band or audience changed (issue 28)."""

from ._pipeline import UpdateSummary, update_run

__all__ = ["UpdateSummary", "update_run"]
