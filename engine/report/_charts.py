"""The report's charts: each function takes plain data and returns a matplotlib Figure.

Drawn with the Agg backend (no display needed, same pixels on every machine), one palette
and one type size, so the report reads as one document.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import io
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..segments import VERDICTS

__all__ = [
    "audiences",
    "calibration",
    "clv_distribution",
    "conditional_expectation",
    "tracking",
    "comparison_intervals",
    "drift",
    "gains",
    "hierarchy",
    "importance",
    "png",
    "profile_heatmap",
    "quarantine",
    "roc_pr",
    "segment_sizes",
    "stability",
    "stage_times",
    "transitions",
]

INK, MUTED, ACCENT, WARN = "#1f2937", "#9ca3af", "#2563eb", "#dc2626"
# Twelve colours: a dozen segments each keep their own.
PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16", "#f97316", "#64748b",
           "#92400e", "#0f766e"]  # fmt: skip
plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.edgecolor": MUTED,
        "axes.labelcolor": INK,
        "xtick.color": INK,
        "ytick.color": INK,
        "figure.dpi": 110,
    }
)


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (a long report must not hold them all)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


# Segment names run to four words (~45 characters): longer than these, a name is set on two
# lines, beside a row (y axis, legend) or under a column (x axis, where space is scarcer).
ROW_LABEL_CHARS, COLUMN_LABEL_CHARS = 28, 20


def _wrap(label: str, width: int = ROW_LABEL_CHARS) -> str:
    """``label`` as is up to ``width`` characters, else on two lines as even as its words allow."""
    if len(label) <= width:
        return label
    for line in range((len(label) + 1) // 2, len(label) + 1):
        lines = textwrap.wrap(label, line, break_long_words=False, break_on_hyphens=False)
        if len(lines) <= 2:
            return "\n".join(lines)
    return label


def _inches(labels, size: float = 9) -> float:
    """Width of the widest line among ``labels`` set at ``size`` points, a close upper estimate."""
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    return longest * size * 0.0074


def _barh(ax, labels, values, colors=None, fmt="{:,.0f}"):
    positions = np.arange(len(labels))
    bars = ax.barh(positions, values, color=colors or ACCENT)
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    top = max(values, default=0) or 1
    for bar, value in zip(bars, values):
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, fmt.format(value), va="center")
    ax.set_xlim(0, top * 1.15)
    return bars


def stage_times(stages: dict) -> Figure:
    """Wall seconds per stage; stages skipped as up to date in grey with their earlier time."""
    names = [name for name, stage in stages.items() if stage.get("seconds") is not None]
    seconds = [float(stages[name]["seconds"]) for name in names]
    colors = [ACCENT if stages[name]["status"] == "ran" else MUTED for name in names]
    figure, ax = plt.subplots(figsize=(6.5, 0.4 * len(names) + 0.8))
    _barh(ax, [f"{name} ({stages[name]['status']})" for name in names], seconds, colors, "{:,.1f} s")
    ax.set_xlabel("seconds")
    ax.set_title("Time per stage")
    return figure


def quarantine(rows: dict) -> Figure:
    """Rows quarantined per input and reason."""
    labels, counts = [], []
    for table, counts_of in rows.items():
        for reason, count in sorted(counts_of["quarantine_reasons"].items(), key=lambda item: -item[1]):
            labels.append(f"{table}: {reason}")
            counts.append(count)
    figure, ax = plt.subplots(figsize=(6.5, 0.3 * len(labels) + 0.8))
    tables = list(dict.fromkeys(label.split(":")[0] for label in labels))
    _barh(ax, labels, counts, [_color(tables.index(label.split(":")[0])) for label in labels])
    ax.set_xlabel("rows quarantined")
    ax.set_title("Quarantined rows by reason")
    return figure


def segment_sizes(segments: list[dict]) -> Figure:
    """Share of customers beside share of revenue, per segment."""
    names = [_wrap(s["name"]) for s in segments]
    positions = np.arange(len(names))
    figure, ax = plt.subplots(figsize=(6.5, 0.55 * len(names) + 0.9), layout="constrained")
    height = 0.38
    customers = [100 * s["share_customers"] for s in segments]
    revenue = [100 * s["share_revenue"] for s in segments]
    ax.barh(positions - height / 2, customers, height, color=ACCENT, label="customers")
    ax.barh(positions + height / 2, revenue, height, color="#f59e0b", label="revenue")
    for y, c, r in zip(positions, customers, revenue):
        ax.text(c + 0.5, y - height / 2, f"{c:.1f}%", va="center")
        ax.text(r + 0.5, y + height / 2, f"{r:.1f}%", va="center")
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(customers + revenue) * 1.2)
    ax.set_xlabel("% of all")
    # A row of its own above the title: beside it, long names leave too narrow an axes for both.
    figure.legend(loc="outside upper right", ncol=2, frameon=False)
    ax.set_title("Segment size and value share", loc="left")
    return figure


def profile_heatmap(names: list[str], features: list[str], z: np.ndarray) -> Figure:
    """z-scores of each segment's mean against the population, segments x features."""
    names = [_wrap(name) for name in names]
    # Room for the names beyond the ~1.3 inches short ones take.
    width = max(6.5, 0.42 * len(features) + 2.5 + max(0.0, _inches(names) - 1.3))
    # The feature names, slanted at 55 degrees, hang below the rows: room for them inside the figure.
    height = max(0.5 * len(names), 2.5) + 0.8 + _inches(features) * np.sin(np.radians(55))
    figure, ax = plt.subplots(figsize=(width, height), layout="constrained")
    image = ax.imshow(np.clip(z, -3, 3), cmap="RdBu_r", vmin=-3, vmax=3, aspect="auto")
    ax.set_xticks(np.arange(len(features)), features, rotation=55, ha="right")
    ax.set_yticks(np.arange(len(names)), names)
    for (row, column), value in np.ndenumerate(z):
        if np.isfinite(value):
            ax.text(column, row, f"{value:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(value) > 1.8 else INK)  # fmt: skip
    ax.spines[:].set_visible(False)
    figure.colorbar(image, ax=ax, shrink=0.8, label="z-score (clipped at ±3)")
    ax.set_title("Segment profiles: how far each segment's mean is from everyone's")
    return figure


def hierarchy(linkage: np.ndarray, parent: list[int], names: list[str], sizes: list[int]) -> Figure:
    """The Ward tree of micro-segments, leaves coloured by the macro segment they belong to."""
    from scipy.cluster.hierarchy import dendrogram

    tree_rows = np.array(linkage, dtype="float64")
    # The stored tree counts customers in its fourth column; SciPy draws from leaf counts.
    leaves = len(parent)
    counts = np.ones(leaves + len(tree_rows))
    for step, (a, b) in enumerate(tree_rows[:, :2].astype(int)):
        counts[leaves + step] = counts[a] + counts[b]
    tree_rows[:, 3] = counts[leaves:]
    labels = [_wrap(name) for name in names]
    width = max(6.5, 0.22 * leaves + 1.5)
    # The legend sits in rows above the tree, as many names to a row as the width holds.
    columns = max(1, min(len(labels), int((width - 0.2) / (_inches(labels, 8) + 0.55))))
    legend_rows = -(-len(labels) // columns)
    two_lines = any("\n" in label for label in labels)
    height = 3.8 + (legend_rows - 1) * (0.45 if two_lines else 0.25) + (0.2 if two_lines else 0.0)
    figure, ax = plt.subplots(figsize=(width, height), layout="constrained")
    tree = dendrogram(
        tree_rows, ax=ax, color_threshold=0, above_threshold_color=MUTED,
        labels=[f"m{i} ({sizes[i]:,})" for i in range(len(parent))], leaf_rotation=90, leaf_font_size=7,
    )  # fmt: skip
    for label in ax.get_xmajorticklabels():
        micro = int(label.get_text().split()[0][1:])
        label.set_color(_color(parent[micro]))
    handles = [plt.Line2D([], [], color=_color(i), lw=6) for i in range(len(names))]
    figure.legend(handles, labels, frameon=False, fontsize=8, loc="outside upper right", ncol=columns)
    ax.set_ylabel("Ward distance")
    ax.set_title(f"Micro-segments ({len(tree['leaves'])}) nested in the segments", loc="left")
    return figure


def stability(rows: list[dict], names: dict, threshold: float) -> Figure:
    """Mean bootstrap Jaccard per segment; under the threshold is unstable."""
    labels = [_wrap(names.get(row["segment"], str(row["segment"]))) for row in rows]
    values = [row["jaccard"] for row in rows]
    figure, ax = plt.subplots(figsize=(6.5, 0.4 * len(rows) + 0.9), layout="constrained")
    _barh(ax, labels, values, [ACCENT if v >= threshold else WARN for v in values], "{:.2f}")
    ax.axvline(threshold, color=WARN, ls="--", lw=1)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("mean Jaccard over bootstrap refits")
    ax.set_title("Segment stability")
    return figure


def transitions(row_shares: np.ndarray, before: list[str], after: list[str]) -> Figure:
    """Where the customers of each earlier segment went: row shares."""
    before = [_wrap(name) for name in before]
    after = [_wrap(name, COLUMN_LABEL_CHARS) for name in after]
    # Columns 0.65 inches apart keep two-line names slanted at 30 degrees clear of each other.
    width = max(6.5, 0.65 * len(after) + _inches(before) + 1.4)
    figure, ax = plt.subplots(figsize=(width, 0.5 * len(before) + 1.8), layout="constrained")
    ax.imshow(row_shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (row, column), value in np.ndenumerate(row_shares):
        ax.text(
            column, row, f"{value:.0%}", ha="center", va="center", fontsize=8, color="white" if value > 0.6 else INK
        )
    ax.set_xticks(np.arange(len(after)), after, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(len(before)), before)
    ax.set_xlabel("this run")
    ax.set_ylabel("previous run")
    ax.spines[:].set_visible(False)
    ax.set_title("Transitions between runs (share of each earlier segment)")
    return figure


def drift(rows: list[dict]) -> Figure:
    """Each matched segment's share of customers in the previous run and in this one."""
    labels = [_wrap(row.get("name_b") or row.get("name_a") or "?") for row in rows]
    positions = np.arange(len(rows))
    figure, ax = plt.subplots(figsize=(6.5, 0.5 * len(rows) + 0.9), layout="constrained")
    ax.barh(positions - 0.2, [100 * (row.get("share_a") or 0) for row in rows], 0.38, color=MUTED, label="previous")
    ax.barh(positions + 0.2, [100 * (row.get("share_b") or 0) for row in rows], 0.38, color=ACCENT, label="this run")
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    ax.set_xlabel("% of customers")
    # Above the title: inside the axes, with a dozen rows, it would cover some of the bars.
    figure.legend(loc="outside upper right", ncol=2, frameon=False)
    ax.set_title("Segment size drift", loc="left")
    return figure


def roc_pr(label: np.ndarray, score: np.ndarray) -> Figure:
    """ROC and precision-recall curves of the test split."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(label, score)
    precision, recall, _ = precision_recall_curve(label, score)
    figure, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.3))
    left.plot(fpr, tpr, color=ACCENT, lw=2, label=f"AUC {auc(fpr, tpr):.3f}")
    left.plot([0, 1], [0, 1], color=MUTED, ls="--", lw=1)
    left.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    left.legend(loc="lower right", frameon=False)
    right.plot(recall, precision, color=ACCENT, lw=2, label=f"AP {auc(recall, precision):.3f}")
    right.axhline(float(np.mean(label)), color=MUTED, ls="--", lw=1, label="base rate")
    right.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)", ylim=(0, 1.02))
    right.legend(loc="lower left", frameon=False)
    figure.tight_layout()
    return figure


def calibration(table: list[dict], ece: float) -> Figure:
    """Observed rate against mean predicted probability per bin, customers per bin below.

    Points are sized by their bin's customers and the line joins only bins holding at least 1%
    of them: isotonic calibration leaves a few customers in some bins, whose rates are noise.
    """
    filled = [row for row in table if row["customers"]]
    total = sum(row["customers"] for row in filled) or 1
    solid = [row for row in filled if row["customers"] >= 0.01 * total]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(3.6, 4.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color=MUTED, ls="--", lw=1)
    top.plot([r["mean_predicted"] for r in solid], [r["observed_rate"] for r in solid], "-", color=ACCENT)
    top.scatter([r["mean_predicted"] for r in filled], [r["observed_rate"] for r in filled],
                s=[12 + 300 * r["customers"] / total for r in filled], color=ACCENT, zorder=3)  # fmt: skip
    top.set(ylabel="observed rate", title=f"Calibration (ECE {ece:.3f})", xlim=(0, 1), ylim=(-0.02, 1.02))
    bottom.bar([(r["low"] + r["high"]) / 2 for r in table], [r["customers"] for r in table], width=0.09, color=MUTED)
    bottom.set(xlabel="predicted probability", ylabel="customers")
    figure.tight_layout()
    return figure


def gains(lift: list[dict]) -> Figure:
    """Cumulative gains and lift by decile of score."""
    deciles = [row["decile"] for row in lift]
    figure, (left, right) = plt.subplots(1, 2, figsize=(5.6, 3.0))
    share = [0] + [10 * d for d in deciles]
    left.plot(share, [0] + [100 * (row["cumulative_gain"] or 0) for row in lift], "o-", color=ACCENT, label="model")
    left.plot([0, 100], [0, 100], color=MUTED, ls="--", lw=1, label="random")
    left.set(xlabel="% targeted (by score)", ylabel="% of positives reached", title="Cumulative gains")
    left.legend(frameon=False)
    values = [row["lift"] or 0 for row in lift]
    right.bar(deciles, values, color=ACCENT)
    right.axhline(1, color=MUTED, ls="--", lw=1)
    right.set(xlabel="decile (1 = top scores)", ylabel="lift", title="Lift by decile", xticks=deciles)
    figure.tight_layout()
    return figure


def importance(rows: list[dict], top: int = 15) -> Figure:
    """Test AUC lost when each input is shuffled, with its spread over repeats."""
    rows = rows[:top]
    figure, ax = plt.subplots(figsize=(6.5, 0.32 * len(rows) + 0.9))
    positions = np.arange(len(rows))
    ax.barh(positions, [r["auc_drop"] for r in rows], xerr=[r.get("auc_drop_std", 0) for r in rows], color=ACCENT,
            ecolor=INK, capsize=2)  # fmt: skip
    ax.set_yticks(positions, [r["feature"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("test AUC lost when shuffled")
    ax.set_title("Permutation importance")
    return figure


def clv_distribution(clv: np.ndarray, p_alive: np.ndarray, horizon_days: int) -> Figure:
    """CLV over the horizon (log scale) and P(alive), across customers."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.0))
    positive = clv[np.isfinite(clv) & (clv > 0)]
    if positive.size:
        bins = np.logspace(np.log10(max(positive.min(), 0.01)), np.log10(positive.max()), 40)
        left.hist(positive, bins=bins, color=ACCENT)
        left.set_xscale("log")
        for q, style in ((0.5, "--"), (0.9, ":")):
            left.axvline(np.quantile(positive, q), color=INK, ls=style, lw=1, label=f"{q:.0%} quantile")
        left.legend(frameon=False)
    left.set(xlabel=f"CLV over {horizon_days} days", ylabel="customers", title="Lifetime value")
    right.hist(p_alive[np.isfinite(p_alive)], bins=20, range=(0, 1), color="#10b981")
    right.set(xlabel="P(alive)", ylabel="customers", title="Probability still active")
    figure.tight_layout()
    return figure


def tracking(tracking: dict, as_of: str) -> Figure:
    """The classic BTYD tracking chart: repeat purchases each week and in total, actual against
    what the model expects, across the calibration period and the holdout."""
    weeks = np.asarray(tracking["week_start_days"]) / 7
    actual, expected = np.asarray(tracking["actual"]), np.asarray(tracking["expected"])
    figure, (weekly, cumulative) = plt.subplots(2, 1, figsize=(7.5, 4.8), sharex=True, layout="constrained")
    for ax, (actual_values, expected_values, what) in zip(
        (weekly, cumulative), ((actual, expected, "each week"), (np.cumsum(actual), np.cumsum(expected), "in total"))
    ):
        ax.plot(weeks, actual_values, "-", color=INK, label="actual")
        ax.plot(weeks, expected_values, "--", color=ACCENT, label="model")
        ax.axvline(0, color=MUTED, lw=1)
        ax.set_ylabel(f"repeat purchases\n{what}")
    weekly.set_title(f"Tracking: calibration up to as-of ({as_of}, grey line), then the holdout", loc="left")
    cumulative.set_xlabel("weeks from as-of")
    figure.legend(*weekly.get_legend_handles_labels(), frameon=False, loc="outside upper right", ncols=2)
    return figure


def conditional_expectation(rows: list[dict], horizon_days: int) -> Figure:
    """Holdout purchases per customer by calibration repeat purchases: what happened, what the
    model expected and what the naive forecast (calibration rate) expected."""
    figure, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
    positions = np.arange(len(rows))
    for key, label, color, style in (("actual_mean", "actual", INK, "-"), ("predicted_mean", "model", ACCENT, "--"),
                                     ("naive_mean", "naive forecast", "#f59e0b", ":")):  # fmt: skip
        ax.plot(positions, [row[key] for row in rows], style, marker="o", color=color, label=label)
    ax.set_xticks(positions, [f"{row['repeat_purchases']}\n({row['customers']:,})" for row in rows])
    ax.set(xlabel="repeat purchases before as-of (customers)", ylabel=f"purchases in {horizon_days} days, per customer")
    ax.set_title("Conditional expectation: holdout purchases by calibration purchases", loc="left")
    figure.legend(frameon=False, loc="outside upper right", ncols=3)
    return figure


def audiences(counts: np.ndarray, segments: list[str], bands: list[str]) -> Figure:
    """Customers per segment x propensity band: the audiences a campaign picks from."""
    segments = [_wrap(name) for name in segments]
    figure, ax = plt.subplots(figsize=(5.5, 0.5 * len(segments) + 1.4), layout="constrained")
    ax.imshow(counts, cmap="Blues", aspect="auto")
    peak = counts.max() or 1
    for (row, column), value in np.ndenumerate(counts):
        ax.text(column, row, f"{value:,}", ha="center", va="center", color="white" if value > 0.6 * peak else INK)
    ax.set_xticks(np.arange(len(bands)), [f"{band} band" for band in bands])
    ax.set_yticks(np.arange(len(segments)), segments)
    ax.spines[:].set_visible(False)
    ax.set_title("Audiences: segment x propensity band")
    return figure


def _estimate(estimate: dict) -> str:
    if estimate["low"] is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"


def comparison_intervals(measures: list[dict]) -> Figure:
    """Segments against the RFM grid at the same number of groups: each measure's two estimates
    with their 95% bootstrap intervals, one panel per measure on its own scale.

    Parameters
    ----------
    measures : list of dict
        Each with ``label`` (the panel's name), ``segments``, ``rfm_grid`` and ``difference``
        (segments minus grid), each a dict of ``value``, ``low`` and ``high``, and
        ``segments_win`` (``engine.segments.compare_at_equal_groups``). Higher is better for
        every measure.

    Returns
    -------
    Figure
        One row per measure; its title ends with the verdict (``engine.segments.VERDICTS`` of
        ``segments_win``), and the winner's label is bold.
    """
    figure, axes = plt.subplots(len(measures), 1, figsize=(6.5, 1.45 * len(measures) + 0.5), layout="constrained",
                                squeeze=False)  # fmt: skip
    for ax, measure in zip(axes[:, 0], measures):
        sides = (("segments", measure["segments"]), ("RFM grid", measure["rfm_grid"]))
        for row, (_, estimate) in enumerate(sides):
            # A percentile interval need not hold the estimate (a spread's resamples run
            # high), so the interval is drawn as a line of its own rather than as error bars.
            if estimate["low"] is not None:
                ax.plot([estimate["low"], estimate["high"]], [row, row], color=_color(row), lw=1.5, marker="|", ms=10)
            ax.plot(estimate["value"], row, "o", color=_color(row))
        ax.set_yticks([0, 1], [f"{name}\n{_estimate(e)}" for name, e in sides])
        ax.set_ylim(1.6, -0.6)
        ax.margins(x=0.15)
        difference, winner = measure["difference"], measure["segments_win"]
        verdict = VERDICTS[winner]
        if winner is not None:
            ax.get_yticklabels()[0 if winner else 1].set_fontweight("bold")
        # About 56 bold characters fit beside the labels; past that the verdict goes on a line of its own.
        head = f"{measure.get('label') or measure['measure']}:"
        title = f"{head} {verdict}" if len(head) + len(verdict) < 56 else f"{textwrap.fill(head, 56)}\n{verdict}"
        ax.set_title(title, loc="left")
        interval = "" if difference["low"] is None else (
            f", 95% bootstrap interval {difference['low']:+.3f} to {difference['high']:+.3f}"
        )
        ax.set_xlabel(f"segments - grid: {difference['value']:+.3f}{interval}")
    figure.suptitle("Segments against the RFM grid at equal group count", fontweight="bold")
    return figure


def lift_intervals(audiences: list[dict]) -> Figure:
    """Each audience's absolute conversion lift (treated rate minus control rate) with its 95%
    interval; a dashed line at no lift. ``audiences``: ``engine.measure.measure_lift``'s."""
    names = [audience["name"] for audience in audiences]
    figure, ax = plt.subplots(figsize=(6.5, _inches(names, 0.45) + 1.0), layout="constrained")
    for row, audience in enumerate(audiences):
        lift = audience["conversion"]
        color = _color(0) if lift["absolute_low"] is not None and lift["absolute_low"] > 0 else _color(3)
        if lift["absolute_low"] is not None:
            ax.plot([lift["absolute_low"], lift["absolute_high"]], [row, row], color=color, lw=2, marker="|", ms=10)
        ax.plot(lift["absolute_lift"], row, "o", color=color)
    ax.axvline(0, color="#6b7280", ls="--", lw=1)
    ax.set_yticks(range(len(names)), [_wrap(name) for name in names])
    ax.invert_yaxis()
    ax.set_xlabel("conversion lift, treated minus control (95% interval)")
    return figure


def update_changes(reasons: dict) -> Figure:
    """Customers whose label changed in an update, per label, stacked by why."""
    labels = list(reasons)
    kinds = sorted({reason for counts in reasons.values() for reason in counts})
    figure, ax = plt.subplots(figsize=(6.5, 0.45 * len(labels) + 1.2))
    left = np.zeros(len(labels))
    for index, kind in enumerate(kinds):
        counts = np.array([reasons[label].get(kind, 0) for label in labels], dtype=float)
        ax.barh(np.arange(len(labels)), counts, left=left, color=_color(index), label=kind)
        left += counts
    ax.set_yticks(np.arange(len(labels)), [_wrap(label) for label in labels])
    ax.invert_yaxis()
    ax.set_xlabel("customers changed")
    ax.set_title("Changes in the latest update, by why")
    ax.legend(loc="lower right", frameon=False, fontsize=8)
    return figure
