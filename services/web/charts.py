"""Charts drawn by pygal: server-side SVG with axes, units and legends, no script. Each is
embedded as an image (so its own styles stay inside it, and the page's CSP stays strict); the
pages show the same data as a table beside it."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence

import pygal
from pygal.style import Style

from services.domain.condition import Reading
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


POINTS = 720  # what a chart draws of a month of one-minute readings: the hottest per interval


TEMPERATURE_STYLE = Style(
    **{
        **{
            name: getattr(STYLE, name)
            for name in (
                "background",
                "plot_background",
                "foreground",
                "foreground_strong",
                "foreground_subtle",
                "font_family",
                "label_font_size",
                "major_label_font_size",
                "legend_font_size",
                "title_font_size",
                "value_font_size",
                "guide_stroke_color",
                "major_guide_stroke_color",
            )
        },
        # the alarm's shading, the limit (drawn over it), then each logger
        "colors": ("#e07000", "#a4000f", "#0b3d91", "#2f6b00", "#6a2c91"),
    }
)


def temperature_chart(
    readings: Sequence[Reading],
    *,
    limit_c: float,
    alarms: Sequence[tuple[dt.datetime, dt.datetime]],
    title: str,
) -> str:
    """A shipment's temperature over time: per device the hottest reading of each interval (so
    no excursion is smoothed away), the rule's limit as a dashed line, and the time of each
    alarm shaded between the limit and the curve."""
    first, last = min(r.at for r in readings), max(r.at for r in readings)
    step = (last - first) / 5 if last > first else dt.timedelta(minutes=1)
    chart = pygal.DateTimeLine(
        **_common(
            style=TEMPERATURE_STYLE,
            title=title,
            x_title="time (UTC)",
            y_title="°C",
            width=900,
            height=360,
            show_dots=False,
            allow_interruptions=True,
            zero=limit_c,
            show_minor_x_labels=False,
            legend_at_bottom_columns=2,
            margin_right=48,  # room for the last time label
            x_value_formatter=lambda moment: moment.strftime("%d %b %H:%M"),
        )
    )
    chart.x_labels = [first + step * i for i in range(6)]
    chart.x_labels_major = chart.x_labels
    by_device: dict[str, list[Reading]] = {}
    for reading in readings:
        by_device.setdefault(reading.device_id, []).append(reading)
    curves = {device: _hottest(series) for device, series in sorted(by_device.items())}
    # at the limit where there is no alarm: filled from the limit, it shades only the alarms
    beyond = sorted(
        (
            (at, value if value > limit_c and any(s <= at <= e for s, e in alarms) else limit_c)
            for points in curves.values()
            for at, value in points
        ),
        key=lambda point: point[0],
    )
    chart.add("alarm: beyond the limit", beyond, fill=True)
    chart.add(
        f"limit {limit_c:g} °C",
        [(first, limit_c), (last, limit_c)],
        stroke_style={"width": 2, "dasharray": "8, 5"},
    )
    for device, points in curves.items():
        chart.add(f"logger {device}: hottest per interval", points)
    return data_uri(chart)


def _hottest(series: Sequence[Reading]) -> list[tuple[dt.datetime, float]]:
    ordered = sorted(series, key=lambda r: r.at)
    size = max(1, -(-len(ordered) // POINTS))
    return [
        (chunk[0].at, max(r.value_c for r in chunk))
        for chunk in (ordered[i : i + size] for i in range(0, len(ordered), size))
    ]


def temperature_limit(rules: Sequence[float]) -> float:
    """The strictest limit among the products a shipment carries."""
    return min(rules) if rules else -150.0
