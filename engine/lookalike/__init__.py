"""Lookalikes: the customers most like a seed audience (DESIGN 2, issue 32)."""

from ._pipeline import LookalikeSummary, find_lookalikes, read_seed

__all__ = ["find_lookalikes", "LookalikeSummary", "read_seed"]
