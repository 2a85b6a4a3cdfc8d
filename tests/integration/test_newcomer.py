"""A newcomer's first run and the pictures: `make tools` says what chromium and poppler-utils
are for and how to install them; the development server's access log is off unless
LOG_REQUESTS=1; charts tick at round values, the weekly chart's right axis in whole legs, and a
shipment's alarm is shaded from its start to its end and nowhere else."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.domain.condition import Reading
from services.domain.sla import Leg
from services.operations.tower import Week
from services.operations.turnaround import LegSummary
from services.web import charts

ROOT = Path(__file__).resolve().parents[2]
VEIN2VEIN = str(Path(sys.executable).with_name("vein2vein"))
UTC = dt.UTC


def test_make_tools_says_what_is_missing_what_needs_it_and_how_to_get_it() -> None:
    missing = subprocess.run(
        ["make", "--no-print-directory", "tools", "CHROMIUM=no-such-chromium", "PDFTOTEXT=no-such"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 0  # a note, not a failure: the app runs without them
    text = missing.stdout
    assert "Not installed: chromium" in text
    assert "browser tests" in text
    assert "sudo apt-get install chromium" in text
    assert "Not installed: poppler-utils" in text
    assert "report" in text
    assert "sudo apt-get install poppler-utils" in text
    present = subprocess.run(
        ["make", "--no-print-directory", "tools", "CHROMIUM=sh", "PDFTOTEXT=sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert present.stdout == ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(("flag", "logged"), [(None, False), ("1", True)])
def test_the_development_servers_access_log_is_off_unless_asked_for(
    tmp_path: Path, flag: str | None, logged: bool
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "APP_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}",
        "VAR_DIR": str(tmp_path / "var"),
    }
    env.pop("LOG_REQUESTS", None)
    if flag is not None:
        env["LOG_REQUESTS"] = flag
    server = subprocess.Popen(
        [VEIN2VEIN, "run", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert answer.status_code == 200
        httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert "Running on http://127.0.0.1" in output  # start-up still says where it is
    assert ('"GET /login HTTP/1.1" 200' in output) is logged, output[-2000:]


def _svg(uri: str) -> str:
    return base64.b64decode(uri.split(",", 1)[1]).decode()


def _week(since: dt.datetime, hours: float, late: int, count: int) -> Week:
    legs = [
        LegSummary(
            site="MFG-1", leg=leg, count=count, median_hours=hours, p90_hours=hours, late=late
        )
        for leg in list(Leg)[:1]
    ]
    return Week(since=since, until=since + dt.timedelta(days=7), legs=legs)


def _axis_labels(svg: str, axis: str) -> list[str]:
    part = svg[svg.index(f'<g class="axis {axis}') + 1 :]
    part = part.split('<g class="axis', 1)[0]
    return re.findall(r">([^<]+)</text>", part)


def test_the_weekly_charts_axes_tick_at_round_numbers() -> None:
    start = dt.datetime(2026, 11, 2, tzinfo=UTC)
    weeks = [
        _week(start + dt.timedelta(days=7 * n), hours, late, 7)
        for n, (hours, late) in enumerate([(13.7, 0), (22.4, 6), (8.1, 1), (17.0, 3)])
    ]
    svg = _svg(charts.weeks_chart(weeks))
    assert _axis_labels(svg, "y ") == ["0", "10", "20", "30", "40"]
    right = _axis_labels(svg, "y2")
    assert right == ["0", "2", "4", "6", "8"]  # whole legs, never 0.8571428571
    quiet = _svg(charts.weeks_chart([_week(start, 3.2, 1, 2), _week(start, 1.0, 0, 1)]))
    assert all(float(v).is_integer() for v in _axis_labels(quiet, "y2"))


def _x_ticks(svg: str) -> list[tuple[float, str]]:
    axis = svg[svg.index('<g class="axis x') :]
    axis = axis[: axis.index('<g class="axis y')] if '<g class="axis y' in axis else axis
    return [
        (float(x), label)
        for x, label in re.findall(r'<text x="([0-9.]+)"[^>]*>([^<]+)</text>', axis)
    ]


@pytest.mark.parametrize(
    ("span", "step"),
    [
        (dt.timedelta(seconds=90), dt.timedelta(seconds=15)),
        (dt.timedelta(minutes=10), dt.timedelta(minutes=2)),
        (dt.timedelta(hours=3), dt.timedelta(minutes=30)),
        (dt.timedelta(days=2), dt.timedelta(hours=12)),
    ],
)
def test_the_condition_charts_time_ticks_are_round_and_distinct(
    span: dt.timedelta, step: dt.timedelta
) -> None:
    first = dt.datetime(2026, 12, 1, 10, 3, 17, tzinfo=UTC)
    ticks, _shape = charts.time_ticks(first, first + span, "Europe/London")
    assert all(b - a == step for a, b in itertools.pairwise(ticks))
    assert all(int(t.timestamp()) % int(step.total_seconds()) == 0 for t in ticks)
    readings = [
        Reading(device_id="TAG", at=first + span * i / 40, value_c=-180.0) for i in range(41)
    ]
    chart = charts.temperature_chart(
        readings, limit_c=-150, alarms=[], title="t", zone_name="Europe/London"
    )
    labels = [label for _x, label in _x_ticks(_svg(chart))]
    assert len(labels) == len(set(labels)) >= 3, labels


def test_an_alarm_is_shaded_from_its_start_to_its_end_only() -> None:
    t0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    # warm before the leg began (packing at 10:20): not judged, not shaded
    readings = [
        Reading(
            device_id="TAG",
            at=t0 + dt.timedelta(minutes=m),
            value_c=-120.0 if m < 15 or 40 <= m <= 50 else -185.0,
        )
        for m in range(0, 90)
    ]
    alarm = (t0 + dt.timedelta(minutes=40), t0 + dt.timedelta(minutes=50))
    svg = _svg(
        charts.temperature_chart(
            readings,
            limit_c=-150,
            alarms=[alarm],
            title="t",
            window=(t0 + dt.timedelta(minutes=20), None),
            zone_name="UTC",
        )
    )
    ticks = _x_ticks(svg)
    (x0, l0), (x1, l1) = ticks[0], ticks[1]
    m0, m1 = (
        dt.datetime.strptime(f"2026-12-01 {label} +0000", "%Y-%m-%d %H:%M %z") for label in (l0, l1)
    )
    per_second = (x1 - x0) / (m1 - m0).total_seconds()

    def moment(x: float) -> dt.datetime:
        return m0 + dt.timedelta(seconds=(x - x0) / per_second)

    band = re.search(r'<g class="series serie-0 color-0"><path d="M([^"]+)"', svg)
    assert band, "no shaded band"
    xs = [
        float(pair.split(",")[0].split(" ")[0])
        for pair in re.findall(r"([0-9.]+ [0-9.]+)", band.group(1))
    ]
    began, ended = moment(min(xs)), moment(max(xs))
    assert abs((began - alarm[0]).total_seconds()) < 5
    assert abs((ended - alarm[1]).total_seconds()) < 5
