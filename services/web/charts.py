"""Charts drawn by pygal: server-side SVG with axes, units and legends, no script. Each is
embedded as an image (so its own styles stay inside it, and the page's CSP stays strict); the
pages show the same data as a table beside it."""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Sequence

import pygal
from pygal.style import Style

from services.domain.condition import Reading
from services.domain.local_time import localize, offset_text
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
    them were late (line, right axis). Both axes tick at round numbers: the right one counts
    legs, so its ticks are whole numbers."""
    medians = [round(w.median_hours, 1) if w.median_hours else 0 for w in weeks]
    late = [w.late for w in weeks]
    intervals = 4
    left = nice_ticks(max(medians, default=0), intervals)
    per_tick = max(1, math.ceil(max(late, default=0) / intervals))
    chart = pygal.Bar(
        **_common(
            title="Week by week",
            x_title="week starting",
            y_title="median hours per leg",
            width=900,
            height=360,
            y_labels=left,
            range=(0, left[-1]),
            secondary_range=(0, per_tick * intervals),
            value_formatter=lambda value: f"{value:g}",
        )
    )
    chart.x_labels = [w.since.strftime("%d %b") for w in weeks]
    chart.add("median hours per leg", medians)
    chart.add("late legs (right axis, count)", late, secondary=True)
    return data_uri(chart)


def nice_ticks(top: float, intervals: int) -> list[float]:
    """``intervals + 1`` ticks from 0 at a round step (1, 2, 2.5 or 5 times a power of ten)
    whose last is at least ``top``."""
    if top <= 0:
        return [float(i) for i in range(intervals + 1)]
    raw = top / intervals
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [round(step * i, 6) for i in range(intervals + 1)]


# a time axis ticks at one of these steps, the smallest that gives at most 7 ticks
TIME_STEPS = [
    dt.timedelta(seconds=n)
    for n in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
] + [dt.timedelta(days=n) for n in (1, 2, 7)]


def time_ticks(
    first: dt.datetime, last: dt.datetime, zone_name: str, most: int = 7
) -> tuple[list[dt.datetime], str]:
    """Ticks at a round step of the wall clock of ``zone_name`` across [first, last], and the
    format that tells them apart (seconds only when the step is under a minute, the date when
    the span crosses a day)."""
    span = max(last - first, dt.timedelta(seconds=10))
    step = next((s for s in TIME_STEPS if span / s <= most - 1), TIME_STEPS[-1])
    local = localize(first, zone_name)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    since = (local - midnight) // step * step
    ticks = []
    moment = (midnight + since).astimezone(dt.UTC)
    while moment <= last:
        if moment >= first:
            ticks.append(moment)
        moment += step
    if not ticks:
        ticks = [first]
    seconds = step < dt.timedelta(minutes=1)
    days = localize(first, zone_name).date() != localize(last, zone_name).date()
    shape = ("%d %b " if days or step >= dt.timedelta(days=1) else "") + (
        "%H:%M:%S" if seconds else "%H:%M"
    )
    return ticks, shape


POINTS = 720  # what a chart draws of a month of one-minute readings: the hottest per interval


_STYLE_NAMES = (
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
ALARM_COLOR, LIMIT_COLOR, OUTSIDE_COLOR = "#e07000", "#a4000f", "#8c8c8c"
LOGGER_COLORS = ("#0b3d91", "#2f6b00", "#6a2c91")
TEMPERATURE_STYLE = Style(
    **{
        **{name: getattr(STYLE, name) for name in _STYLE_NAMES},
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
    window: tuple[dt.datetime, dt.datetime | None] | None = None,
    zone_name: str = "UTC",
) -> str:
    """A shipment's temperature over time: per device the hottest reading of each interval (so
    no excursion is smoothed away), the rule's limit as a dashed line, each alarm shaded
    between the limit and the curve from its start to its end and nowhere else, and readings
    outside the leg (before packing, after receipt) drawn apart, in grey: the rule does not
    judge them. Times on the clock of ``zone_name``, at round ticks."""
    first, last = min(r.at for r in readings), max(r.at for r in readings)
    ticks, shape = time_ticks(first, last, zone_name)
    local = localize(first, zone_name)
    devices = sorted({reading.device_id for reading in readings})
    loggers = LOGGER_COLORS * (len(devices) // len(LOGGER_COLORS) + 1)
    style = Style(
        **{
            **{name: getattr(TEMPERATURE_STYLE, name) for name in _STYLE_NAMES},
            # the alarm's shading, the limit, each logger, then readings outside the leg
            "colors": (ALARM_COLOR, LIMIT_COLOR, *loggers[: len(devices)], OUTSIDE_COLOR),
        }
    )
    chart = pygal.DateTimeLine(
        **_common(
            style=style,
            title=title,
            x_title=f"time ({zone_name}, {offset_text(local)})",
            y_title="°C",
            width=900,
            height=360,
            show_dots=False,
            allow_interruptions=True,
            zero=limit_c,
            show_minor_x_labels=False,
            legend_at_bottom_columns=2,
            margin_right=48,  # room for the last time label
            x_value_formatter=lambda moment: _wall(moment, zone_name, shape),
            value_formatter=lambda value: f"{value:g} °C",
        )
    )
    chart.x_labels = ticks
    chart.x_labels_major = ticks
    start, end = window if window else (first, None)

    def within(at: dt.datetime) -> bool:
        return at >= start and (end is None or at <= end)

    by_device: dict[str, list[Reading]] = {}
    for reading in readings:
        by_device.setdefault(reading.device_id, []).append(reading)
    curves = {device: _hottest(series) for device, series in sorted(by_device.items())}
    shaded: list[tuple[dt.datetime, float | None] | None] = []
    for began, ended in sorted(alarms):
        inside = sorted(
            (at, max(value, limit_c))
            for points in curves.values()
            for at, value in points
            if began <= at <= ended and within(at)
        )
        if shaded:
            shaded.append(None)  # a break: nothing shaded between two alarms
        shaded += [(began, limit_c), *inside, (ended, limit_c)]
    chart.add("alarm: beyond the limit", shaded or [(first, None)], fill=True)
    chart.add(
        f"limit {limit_c:g} °C",
        [(first, limit_c), (last, limit_c)],
        stroke_style={"width": 2, "dasharray": "8, 5"},
    )
    for device, points in curves.items():
        chart.add(
            f"logger {device}: hottest per interval",
            [(at, value if within(at) else None) for at, value in points],
        )
    outside = [(at, value) for points in curves.values() for at, value in points if not within(at)]
    if outside:
        chart.add(
            "outside the leg (not judged)",
            [(at, value) for at, value in sorted(outside)],
            stroke_style={"width": 1, "dasharray": "2, 3"},
        )
    return data_uri(chart)


def _wall(moment: dt.datetime, zone_name: str, shape: str) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return localize(aware, zone_name).strftime(shape)


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
