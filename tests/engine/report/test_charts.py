"""The charts stay readable with a dozen segments of four-word names: no text over another
text, none cut off at the figure's edge, no legend over the data."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

from engine.report import _charts as charts
from engine.segments import ward_linkage

NAMES = [
    "Declining loyal high-value buyers",
    "Lapsed occasional discount-driven browsers",
    "Rising frequent full-price category explorers",
    "New one-time low-value email responders",
    "Steady mid-value multi-category regulars",
    "Dormant early-tenure cart abandoners",
    "Loyal high-frequency premium repeat buyers",
    "Occasional seasonal gift-driven shoppers",
    "Churning low-engagement support-heavy customers",
    "Recent high-spend single-category buyers",
    "Engaged email-first bargain hunters",
    "Long-tenure slowing mid-value returners",
]
SHORT = ["Champions", "At risk", "New customers"]
FEATURES = ["recency_days", "frequency", "monetary_total", "aov", "tenure_days", "orders_90d", "spend_90d",
            "orders_365d", "spend_365d", "gap_median_days", "spend_trend_90d", "order_slope_12m", "return_rate",
            "discount_share", "distinct_categories", "email_engagement_rate", "days_since_last_event",
            "support_ticket_count"]  # fmt: skip
TOLERANCE = 1.0  # pixels


def _shares(rng, count):
    return rng.dirichlet(np.ones(count))


# One builder per chart that names segments, fed what engine/report/_build.py passes it.
def _segment_sizes(names, rng):
    customers, revenue = _shares(rng, len(names)), _shares(rng, len(names))
    return charts.segment_sizes(
        [{"name": name, "share_customers": c, "share_revenue": r} for name, c, r in zip(names, customers, revenue)]
    )


def _profile_heatmap(names, rng):
    return charts.profile_heatmap(names, FEATURES, rng.normal(0, 1.5, size=(len(names), len(FEATURES))))


def _hierarchy(names, rng):
    micro = 40 if len(names) > 4 else 12
    parent = [i % len(names) for i in range(micro)]
    centres = rng.normal(size=(micro, 5)) + 3 * np.array(parent)[:, None]
    sizes = rng.integers(50, 5000, size=micro)
    return charts.hierarchy(ward_linkage(centres, sizes, parent), parent, names, sizes.tolist())


def _stability(names, rng):
    rows = [{"segment": i, "jaccard": float(v)} for i, v in enumerate(rng.uniform(0.4, 1.0, len(names)))]
    rows[0]["jaccard"] = 1.0
    return charts.stability(rows, dict(enumerate(names)), 0.75)


def _transitions(names, rng):
    shares = rng.dirichlet(np.ones(len(names)) * 0.3, size=len(names))
    return charts.transitions(shares, names, names[::-1])


def _drift(names, rng):
    before, after = _shares(rng, len(names)), _shares(rng, len(names))
    return charts.drift(
        [{"segment_a": i, "name_a": name, "segment_b": i, "name_b": name, "share_a": a, "share_b": b}
         for i, (name, a, b) in enumerate(zip(names, before, after))]
    )  # fmt: skip


def _audiences(names, rng):
    return charts.audiences(rng.integers(0, 250_000, size=(len(names), 3)), names, ["high", "medium", "low"])


BUILDERS = {
    "segment_sizes": _segment_sizes,
    "profile_heatmap": _profile_heatmap,
    "hierarchy": _hierarchy,
    "stability": _stability,
    "transitions": _transitions,
    "drift": _drift,
    "audiences": _audiences,
}


def _measure(label, segments, grid, difference):
    def interval(value, half):
        return {"value": value, "low": value - half, "high": value + half}

    gap = interval(difference, 0.02 if abs(difference) > 0.02 else 0.05)
    return {
        "measure": label.replace(" ", "_"),
        "label": label,
        "segments": interval(segments, 0.02),
        "rfm_grid": interval(grid, 0.02),
        "difference": gap,
        # As compare_at_equal_groups sets it: which side of 0 the difference's interval lies on.
        "segments_win": None if gap["low"] <= 0 <= gap["high"] else gap["low"] > 0,
    }


MEASURES = [
    _measure("next-period log spend (adjusted η²)", 0.52, 0.45, 0.07),
    _measure("churn-rate spread between groups (max - min)", 0.31, 0.38, -0.07),
    _measure("next-period orders (adjusted η²)", 0.40, 0.40, 0.0),
]


def _drawn_texts(figure):
    """The text artists a draw actually renders (not ticks left outside the view), once each."""
    drawn = {}
    original = Text.draw

    def record(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn[id(self)] = self
        return original(self, renderer)

    Text.draw = record
    try:
        figure.canvas.draw()
    finally:
        Text.draw = original
    return list(drawn.values())


def _corners(text, renderer):
    """The four corners of a text's box in pixels: rotated text is a tilted rectangle inside
    its window extent, which is only the box around that rectangle."""
    box = text.get_window_extent(renderer)
    rotation = text.get_rotation()
    if rotation % 90 == 0:
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    text.set_rotation(0)
    flat = text.get_window_extent(renderer)
    text.set_rotation(rotation)
    theta = np.radians(rotation)
    turn = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    corners = np.array([[0, 0], [flat.width, 0], [flat.width, flat.height], [0, flat.height]]) @ turn
    return corners + np.array([box.x0, box.y0]) - corners.min(axis=0)


def _overlap(a, b):
    """Whether two convex quadrilaterals overlap by more than the tolerance (separating axes)."""
    for shape in (a, b):
        for edge in np.diff(np.vstack([shape, shape[:1]]), axis=0):
            normal = np.array([-edge[1], edge[0]]) / np.hypot(*edge)
            pa, pb = a @ normal, b @ normal
            if pa.max() <= pb.min() + TOLERANCE or pb.max() <= pa.min() + TOLERANCE:
                return False
    return True


def _box_overlap(a, b):
    return min(a.x1, b.x1) - max(a.x0, b.x0) > TOLERANCE and min(a.y1, b.y1) - max(a.y0, b.y0) > TOLERANCE


def _assert_readable(figure):
    texts = _drawn_texts(figure)
    renderer = figure.canvas.get_renderer()
    shapes = [(text.get_text(), _corners(text, renderer)) for text in texts]
    width, height = figure.bbox.width, figure.bbox.height
    for label, corners in shapes:
        assert corners.min() >= -TOLERANCE, f"{label!r} is cut off at the figure's left or bottom edge"
        assert corners[:, 0].max() <= width + TOLERANCE, f"{label!r} is cut off at the figure's right edge"
        assert corners[:, 1].max() <= height + TOLERANCE, f"{label!r} is cut off at the figure's top edge"
    for i, (label, corners) in enumerate(shapes):
        for other, other_corners in shapes[i + 1 :]:
            assert not _overlap(corners, other_corners), f"{label!r} overlaps {other!r}"
    legends = list(figure.legends) + [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    data = [artist for ax in figure.axes for artist in (*ax.patches, *ax.images, *ax.collections, *ax.lines)]
    for legend in legends:
        frame = legend.get_window_extent(renderer)
        for artist in data:
            assert not _box_overlap(frame, artist.get_window_extent(renderer)), f"the legend covers {artist}"
        for text in set(texts) - set(legend.get_texts()):
            box = text.get_window_extent(renderer)
            assert not _box_overlap(frame, box), f"the legend runs into {text.get_text()!r}"
    return texts


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("chart", BUILDERS)
@pytest.mark.parametrize("names", [NAMES, SHORT], ids=["12-long-names", "3-short-names"])
def test_charts_with_segment_names_stay_readable(chart, names, rng):
    figure = BUILDERS[chart](names, rng)
    try:
        texts = _assert_readable(figure)
        shown = "\n".join(text.get_text() for text in texts).replace("\n", " ")
        assert all(name in shown for name in names), "every segment is named"
    finally:
        plt.close(figure)


def test_a_dozen_segments_keep_a_colour_each(rng):
    figure = _hierarchy(NAMES, rng)
    try:
        colours = [handle.get_color() for handle in figure.legends[0].legend_handles]
        assert len(set(colours)) == len(NAMES)
    finally:
        plt.close(figure)


def test_comparison_intervals_draws_one_panel_per_measure_and_names_the_winner():
    figure = charts.comparison_intervals(MEASURES)
    try:
        _assert_readable(figure)
        assert len(figure.axes) == len(MEASURES)
        verdicts = ["segments ahead", "RFM grid ahead", "no clear winner"]
        for ax, measure, verdict in zip(figure.axes, MEASURES, verdicts):
            title = " ".join(ax.get_title(loc="left").split())
            assert title.startswith(measure["label"]) and title.endswith(verdict)
            # Each side: its interval as a line from low to high, then its estimate as a point.
            lines = ax.get_lines()
            assert len(lines) == 4
            for row, side in enumerate(("segments", "rfm_grid")):
                interval, point = lines[2 * row].get_data(), lines[2 * row + 1].get_data()
                assert list(interval[0]) == pytest.approx([measure[side]["low"], measure[side]["high"]])
                assert list(point[0]) == pytest.approx([measure[side]["value"]]) and list(point[1]) == [row]
            bold = [
                label.get_text().split("\n")[0] for label in ax.get_yticklabels() if label.get_fontweight() == "bold"
            ]
            assert bold == {"segments ahead": ["segments"], "RFM grid ahead": ["RFM grid"]}.get(verdict, [])
    finally:
        plt.close(figure)


@pytest.mark.parametrize("count", [2, 4])
def test_comparison_intervals_fits_two_to_four_measures(count):
    measures = (MEASURES + [_measure("next-period spend (adjusted η²)", 0.2, 0.1, 0.1)])[:count]
    figure = charts.comparison_intervals(measures)
    try:
        _assert_readable(figure)
        assert len(figure.axes) == count
    finally:
        plt.close(figure)


def test_the_conditional_expectation_chart_draws_three_lines_over_the_bins():
    rows = [{"repeat_purchases": label, "customers": 1000 - 100 * i, "actual_mean": 0.5 * i, "predicted_mean": 0.45 * i,
             "naive_mean": 0.4 * i} for i, label in enumerate(["0", "1", "2", "3", "4", "5", "6", "7+"])]  # fmt: skip
    figure = charts.conditional_expectation(rows, 90)
    try:
        _assert_readable(figure)
        (ax,) = figure.axes
        assert [list(line.get_ydata()) for line in ax.get_lines()] == [
            [row[key] for row in rows] for key in ("actual_mean", "predicted_mean", "naive_mean")
        ]
        assert [label.get_text() for label in ax.get_xticklabels()][-1] == "7+\n(300)"
    finally:
        plt.close(figure)


def test_the_tracking_chart_shows_weekly_and_total_repeat_purchases():
    weeks = list(range(-280, 90, 7))
    actual = [float(50 + (w % 3)) for w in weeks]
    figure = charts.tracking({"week_start_days": weeks, "actual": actual, "expected": [50.0] * len(weeks)},
                             "2011-09-09")  # fmt: skip
    try:
        _assert_readable(figure)
        weekly, cumulative = figure.axes
        assert list(weekly.get_lines()[0].get_ydata()) == actual
        assert cumulative.get_lines()[1].get_ydata()[-1] == 50.0 * len(weeks)
    finally:
        plt.close(figure)
