"""What a series of readings says against an alarm rule, and how uploads are checked. Pure."""

from __future__ import annotations

import datetime as dt

import pytest

from services.domain.condition import (
    AlarmKind,
    AlarmRule,
    BadReadings,
    Reading,
    ShipperStatus,
    ShipperUnavailable,
    celsius,
    check_rule,
    check_usable,
    evaluate,
    hold_time_warning,
    parse_csv,
    parse_json,
    summarise,
)
from services.domain.errors import InvalidRequest

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
RULE = AlarmRule(product="axi-cel", version=1)
WINDOW = (T0, None)


def series(values: list[float], step: float = 1.0, device: str = "L1") -> list[Reading]:
    return [
        Reading(device, T0 + dt.timedelta(minutes=i * step), value)
        for i, value in enumerate(values)
    ]


def kinds(readings: list[Reading], rule: AlarmRule = RULE) -> list[AlarmKind]:
    return [alarm.kind for alarm in evaluate(readings, rule, window=WINDOW)]


def test_cold_all_along_raises_nothing() -> None:
    assert kinds(series([-190.0] * 1000)) == []


def test_nine_minutes_above_is_no_alarm_ten_is_one() -> None:
    assert kinds(series([-190.0] * 5 + [-149.0] * 9 + [-190.0] * 5)) == []
    (alarm,) = evaluate(series([-190.0] * 5 + [-149.0] * 10 + [-190.0] * 5), RULE, window=WINDOW)
    assert alarm.kind is AlarmKind.CONTINUOUS
    assert alarm.minutes == 10
    assert alarm.started_at == T0 + dt.timedelta(minutes=5)
    assert alarm.peak_c == -149.0


def test_short_excursions_add_up_to_a_cumulative_alarm() -> None:
    values = ([-190.0] * 5 + [-149.0] * 8) * 4  # 32 minutes above, never 10 on end
    assert kinds(series(values)) == [AlarmKind.CUMULATIVE]


def test_one_reading_above_the_instant_limit_is_an_alarm_at_once() -> None:
    assert kinds(series([-190.0, -120.0, -190.0])) == [AlarmKind.INSTANT]


def test_a_gap_is_flagged_and_is_no_time_at_the_last_value() -> None:
    readings = series([-149.0] * 5)
    readings.append(Reading("L1", readings[-1].at + dt.timedelta(minutes=40), -190.0))
    alarms = evaluate(readings, RULE, window=WINDOW)
    assert [a.kind for a in alarms] == [AlarmKind.GAP]
    assert alarms[0].minutes == 40


def test_readings_outside_the_leg_do_not_count() -> None:
    readings = series([-140.0] * 30 + [-190.0] * 30)
    assert kinds(readings) == [AlarmKind.CONTINUOUS, AlarmKind.CUMULATIVE]
    later = (T0 + dt.timedelta(minutes=30), None)
    assert evaluate(readings, RULE, window=later) == []


def test_each_device_is_its_own_series() -> None:
    readings = series([-190.0] * 20, device="A") + series([-149.0] * 12, device="B")
    alarms = evaluate(readings, RULE, window=WINDOW)
    assert [(a.device_id, a.kind) for a in alarms] == [("B", AlarmKind.CONTINUOUS)]


def test_units_convert_to_celsius() -> None:
    assert celsius(-301.0, "F") == pytest.approx(-185.0)
    assert celsius(88.15, "K") == pytest.approx(-185.0)
    with pytest.raises(InvalidRequest):
        celsius(1.0, "R")


def test_a_csv_names_every_bad_line_and_stores_nothing() -> None:
    text = "at,value,unit\n" + "\n".join(
        [
            "2026-11-30T10:00:00Z,-185,C",
            "2026-11-30T10:01:00Z,-185,X",
            "2026-11-30T10:02:00,-185,C",
            "2026-11-30T10:03:00Z,cold,C",
            "2026-11-30T10:04:00Z,-185",
            "2027-11-30T10:05:00Z,-185,C",
        ]
    )
    with pytest.raises(BadReadings) as refused:
        parse_csv(text, device_id="L1", now=NOW)
    assert [e.line for e in refused.value.errors] == [3, 4, 5, 6, 7]


def test_a_csv_needs_its_columns_and_a_device() -> None:
    with pytest.raises(BadReadings):
        parse_csv("time,temp\n2026-11-30T10:00:00Z,-185\n", device_id="L1", now=NOW)
    with pytest.raises(BadReadings):
        parse_csv("at,value,unit\n2026-11-30T10:00:00Z,-185,C\n", device_id=None, now=NOW)
    parsed = parse_csv(
        "\ufeffdevice_id,at,value,unit\r\nL2,2026-11-30T10:00:00+01:00,-185,C\r\n",
        device_id=None,
        now=NOW,
    )
    assert parsed == [Reading("L2", dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC), -185.0, 2)]


def test_the_same_reading_twice_is_one_and_two_values_at_once_are_refused() -> None:
    row = {"at": "2026-11-30T10:00:00Z", "value": -185, "unit": "C"}
    assert len(parse_json("L1", [row, dict(row)], now=NOW)) == 1
    with pytest.raises(BadReadings) as refused:
        parse_json("L1", [row, {**row, "value": -150}], now=NOW)
    assert [e.line for e in refused.value.errors] == [2]


def test_rules_keep_their_bounds() -> None:
    values = {
        "limit_c": -150.0,
        "instant_limit_c": -135.0,
        "continuous_minutes": 10.0,
        "cumulative_minutes": 30.0,
        "gap_minutes": 15.0,
    }
    check_rule(**values)
    for change in (
        {"limit_c": 0.0},
        {"instant_limit_c": -160.0},
        {"continuous_minutes": 0.0},
        {"cumulative_minutes": 5.0},
        {"gap_minutes": float("nan")},
    ):
        with pytest.raises(InvalidRequest):
            check_rule(**{**values, **change})


def test_only_an_in_service_qualified_shipper_is_packed() -> None:
    check_usable("S", ShipperStatus.IN_SERVICE, NOW + dt.timedelta(days=1), now=NOW)
    for status in (ShipperStatus.IN_USE, ShipperStatus.QUARANTINED, ShipperStatus.RETIRED):
        with pytest.raises(ShipperUnavailable):
            check_usable("S", status, NOW + dt.timedelta(days=1), now=NOW)
    with pytest.raises(ShipperUnavailable, match="ran out"):
        check_usable("S", ShipperStatus.IN_SERVICE, NOW, now=NOW)
    assert hold_time_warning("S", 240, "pickup_to_delivery", 48) is None
    assert "longer than" in (hold_time_warning("S", 24, "pickup_to_delivery", 48) or "")


def test_summaries_per_device() -> None:
    (summary,) = summarise(series([-190.0, -180.0, -170.0]), window=WINDOW)
    assert (summary.count, summary.min_c, summary.max_c, summary.mean_c) == (3, -190, -170, -180)
