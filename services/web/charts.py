"""Charts drawn by pygal: server-side SVG with axes, units and legends, no script. Each is
embedded as an image (so its own styles stay inside it, and the page's CSP stays strict); the
pages show the same data as a table beside it."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pygal
from pygal.style import Style

from services.operations.tower import Week
from services.operations.turnaround import LegSummary

STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#111111",
    foreground_strong="#111111",
    foreground_subtle="#4a4a4a",
    colors=("#0b3d91", "#7fa0d6", "#a4000f", "#8a5a00"),
    font_family="system-ui, sans-serif",
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=14,
    title_font_size=16,
    value_font_size=12,
    guide_stroke_color="#d0d0d0",
    major_guide_stroke_color="#b0b0b0",
)


def _common(**config: object) -> dict[str, object]:
    return {
        "style": STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "explicit_size": False,
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 3,
        "truncate_label": -1,
        "truncate_legend": -1,
        "show_minor_x_labels": True,
        "margin_bottom": 36,  # room for the legend under the axis title
        **config,
    }


def data_uri(chart: pygal.graph.graph.Graph) -> str:
    svg = chart.render(is_unicode=True)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def leg_chart(legs: Sequence[LegSummary]) -> str:
    """Median and 90th percentile hours per site and leg: horizontal bars on an hours axis."""
    chart = pygal.HorizontalBar(
        **_common(
            title="Turnaround per leg and site, last 90 days",
            x_title="hours",
            width=900,
            height=max(260, 90 + 46 * len(legs)),
            print_values=False,
        )
    )
    chart.x_labels = [f"{s.site} · {s.leg.value.replace('_', ' ')}" for s in legs]
    chart.add("median (h)", [round(s.median_hours, 1) for s in legs])
    chart.add("90th percentile (h)", [round(s.p90_hours, 1) for s in legs])
    return data_uri(chart)


def weeks_chart(weeks: Sequence[Week]) -> str:
    """Week by week: the median hours of the legs closed (bars, left axis) and how many of
    them were late (line, right axis)."""
    chart = pygal.Bar(
        **_common(
            title="Week by week",
            x_title="week starting",
            y_title="median hours per leg",
            width=900,
            height=360,
        )
    )
    chart.x_labels = [w.since.strftime("%d %b") for w in weeks]
    chart.add(
        "median hours per leg", [round(w.median_hours, 1) if w.median_hours else 0 for w in weeks]
    )
    chart.add("late legs (right axis)", [w.late for w in weeks], secondary=True)
    return data_uri(chart)
