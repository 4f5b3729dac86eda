"""The run report: one self-contained ``report.html`` with the run, data quality, segments,
models, value and audiences, charts inlined (DESIGN 2, "run dir")."""

from ._build import ReportSummary, build_measure_report, build_report
from ._data import audience_table, read_outputs

__all__ = ["build_report", "build_measure_report", "ReportSummary", "audience_table", "read_outputs"]
