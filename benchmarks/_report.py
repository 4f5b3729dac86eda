"""Presenting a benchmark document: the printed table and the plot."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rich import box
from rich.table import Table

__all__ = ["format_table", "write_plot"]

_MISSING = "-"


def _number(value, spec: str) -> str:
    if value is None:
        return _MISSING
    # A quality column may name something (the model a stage chose) rather than measure it,
    # or say yes or no (whether two cases' counts match), which format() would print as 1 or 0.
    if isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else format(value, spec)


def _subtitle(metadata: dict) -> str:
    run = metadata.get("run", {})
    workers = run.get("workers", "?")
    return (
        f"backend {run.get('backend', '?')}, {workers} worker{'' if workers == 1 else 's'}, "
        f"{metadata.get('cpu_model') or 'unknown CPU'}, {metadata.get('usable_cores', '?')} cores"
    )


def format_table(document: dict) -> Table:
    """One row per case and size: rows, median and min seconds, rows/s, peak RSS, time
    against the fastest peer, status; failure reasons and quality metrics under the table.

    Parameters
    ----------
    document : dict
        What :func:`benchmarks.run_benchmarks` returns (or its JSON file, loaded).
    """
    headers = ("case", "customers", "rows", "median s", "min s", "rows/s", "peak RSS GiB", "x fastest peer", "status")
    rows, notes = [], []
    for result in document["results"]:
        if result["status"] != "ok":  # reasons go below the table: they would crush its columns
            notes.append(f"{result['case']} at {result['size']:,}: {result['status']}, {result['reason']}")
        if result.get("quality"):
            metrics = ", ".join(f"{name} {_number(value, ',')}" for name, value in result["quality"].items())
            notes.append(f"{result['case']} at {result['size']:,}: {metrics}")
        ratio = result.get("time_vs_fastest_peer")
        versus = "-" if ratio is None else f"{ratio:.2f} ({result['fastest_peer'].removeprefix(result['stage'] + '-')})"
        rows.append(
            (
                result["case"],
                f"{result['size']:,}",
                _number(result["rows"], ","),
                _number(result["median_seconds"], ".2f"),
                _number(result["min_seconds"], ".2f"),
                _number(result["rows_per_second"], ",.0f"),
                _number(result["peak_rss_gib"], ".2f"),
                versus,
                result["status"],
            )
        )
    for curve in document.get("scaling", []):
        notes.append(_scaling_note(curve))
    table = Table(
        title=f"segscale bench ({_subtitle(document.get('metadata', {}))})",
        title_justify="left",
        caption="\n".join(notes) or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )
    for index, header in enumerate(headers):
        # On a narrow terminal headers wrap; the numbers themselves are never cut.
        widest = max([len(row[index]) for row in rows] + [len(word) for word in header.split()])
        table.add_column(header, justify="left" if index in (0, 8) else "right", min_width=widest)
    for row in rows:
        table.add_row(*row)
    return table


def _scaling_note(curve: dict) -> str:
    """One line per scale curve: time slope (and per part), peak RSS from the smallest size to the largest."""
    sizes = curve["sizes"]
    parts = ", ".join(f"{name} {_number(slope, '.2f')}" for name, slope in curve["part_time_slopes"].items())
    return (
        f"{curve['case']} from {_customers_label(sizes[0])} to {_customers_label(sizes[-1])} customers: "
        f"time slope {_number(curve['time_slope'], '.2f')} (log-log; 1 is linear)"
        + (f", by part: {parts}" if parts else "")
        + f"; peak RSS {curve['peak_rss_gib'][0]:.2f} -> {curve['peak_rss_gib'][-1]:.2f} GiB"
        f" (x{_number(curve['peak_rss_vs_smallest'][-1], '.2f')})"
    )


def _customers_label(size: int) -> str:
    for unit, scale in (("M", 10**6), ("k", 10**3)):
        if size >= scale:
            return f"{size / scale:g}{unit}"
    return str(size)


def _bars(time_axes, memory_axes, by_case: dict[str, list[dict]], size: int) -> None:
    """One size: a horizontal bar per case, labelled with its value; time on a log axis so
    cases an order of magnitude apart both stay readable."""
    names = list(by_case)[::-1]  # registry order, top to bottom
    seconds = [by_case[name][0]["median_seconds"] for name in names]
    memory = [by_case[name][0]["peak_rss_gib"] for name in names]
    colours = [f"C{i}" for i in range(len(names))][::-1]
    time_axes.barh(names, seconds, color=colours)
    memory_axes.barh(names, memory, color=colours)
    for axes, values, unit in ((time_axes, seconds, "s"), (memory_axes, memory, "GiB")):
        for index, value in enumerate(values):
            axes.annotate(f" {value:.3g} {unit}", (value, index), va="center", fontsize=9)
        axes.grid(True, axis="x", alpha=0.3)
    time_axes.set_xscale("log")
    time_axes.set_xlim(right=max(seconds) * 4)
    memory_axes.set_xlim(0, max(memory) * 1.25)
    memory_axes.set_yticks(range(len(names)), [""] * len(names))
    time_axes.set(xlabel="median wall seconds (log scale)", title=f"time at {_customers_label(size)} customers")
    memory_axes.set(xlabel="GiB", title="peak RSS, whole process tree")


def write_plot(document: dict, path: Path) -> Path | None:
    """Median seconds and peak RSS per case; None if nothing ran.

    Several sizes: one line per case against customers, time log-log, memory linear from zero.
    One size: one bar per case. Drawn on a bare Agg canvas, so the caller's pyplot backend and
    state are left alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    by_case: dict[str, list[dict]] = defaultdict(list)
    for result in document["results"]:
        if result["status"] == "ok":
            by_case[result["case"]].append(result)
    if not by_case:
        return None
    measured = sorted({result["size"] for results in by_case.values() for result in results})

    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    time_axes, memory_axes = figure.subplots(1, 2)
    figure.suptitle(f"segscale bench: {_subtitle(document.get('metadata', {}))}")
    if len(measured) == 1:
        _bars(time_axes, memory_axes, by_case, measured[0])
        figure.savefig(path, dpi=110)
        return Path(path)
    for name, results in by_case.items():
        results = sorted(results, key=lambda result: result["size"])
        sizes = [result["size"] for result in results]
        time_axes.plot(sizes, [r["median_seconds"] for r in results], marker="o", label=name)
        memory_axes.plot(sizes, [r["peak_rss_gib"] for r in results], marker="o", label=name)
    time_axes.set(xlabel="customers", ylabel="median wall seconds", title="time")
    memory_axes.set(xlabel="customers", ylabel="GiB", title="peak RSS, whole process tree")
    for axes in (time_axes, memory_axes):
        axes.set_xscale("log")
        axes.set_xticks(measured, [_customers_label(size) for size in measured])
        axes.minorticks_off()
        axes.grid(True, alpha=0.3)
        axes.legend()
    time_axes.set_yscale("log")  # a straight line of slope 1 is linear scaling
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    time_axes.yaxis.set_major_formatter(plain)
    time_axes.yaxis.set_minor_formatter(plain)
    memory_axes.set_ylim(bottom=0)  # linear from zero, so "flat in N" is visible at a glance
    figure.savefig(path, dpi=110)
    return Path(path)
