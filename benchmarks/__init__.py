"""segscale benchmarks: a registry of cases and one runner (STYLE 12).

``run_benchmarks(stages=("generate",), sizes=(1_000_000,))`` measures every case of the
chosen stages and writes a JSON document and a plot; ``format_table`` renders the document
for the terminal. ``segscale bench`` is the command-line front end. See README.md here.
"""

from .cases import CASES, BenchmarkUsageError, Case
from .runner import format_table, run_benchmarks

__all__ = [
    # running
    "run_benchmarks",
    "format_table",
    # the registry
    "Case",
    "CASES",
    # errors
    "BenchmarkUsageError",
]
