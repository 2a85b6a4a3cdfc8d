"""The chain of condition, the pure part: dry shippers and their qualification, temperature
readings (parsed and checked, in three units), alarm rules per product, and what a series of
readings says against a rule: excursions (instant, continuous, cumulative) and gaps.

Cryopreserved material stays at or below -150 °C in LN2 vapour; above about -135 °C (the glass
transition of the cryoprotectant) cells are damaged at once. A reading holds until the next
one; an interval longer than the rule's gap is a gap in the record, not time at the last value.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.domain.errors import DomainError, InvalidRequest

MAX_READINGS = 50_000
SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
DEVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class ShipperStatus(StrEnum):
    IN_SERVICE = "in_service"  # qualified, clean, ready to be packed
    IN_USE = "in_use"  # travelling with a shipment
    QUARANTINED = "quarantined"  # failed a check, or an excursion travelled in it
    RETIRED = "retired"


class ShipperUnavailable(DomainError):
    code = "shipper_unavailable"
    title = "Shipper unavailable"


def check_serial(text: str, what: str = "shipper serial") -> str:
    text = text.strip()
    if not SERIAL.fullmatch(text):
        raise InvalidRequest(f"{text[:64]!r} is not a {what} (letters, digits, . _ / -)")
    return text


def check_usable(
    serial: str, status: ShipperStatus, qualified_until: dt.datetime, *, now: dt.datetime
) -> None:
    """A shipper may be packed only when it is in service and its qualification still runs."""
    if status is not ShipperStatus.IN_SERVICE:
        raise ShipperUnavailable(
            f"shipper {serial} is {status.value.replace('_', ' ')}: pack into another one"
        )
    if qualified_until <= now:
        raise ShipperUnavailable(
            f"shipper {serial}'s qualification ran out on {qualified_until:%Y-%m-%d}: "
            "requalify it or pack into another one"
        )


def hold_time_warning(serial: str, hold_hours: float, leg: str, limit_hours: float) -> str | None:
    """A leg allowed longer than the shipper keeps its temperature is a warning to act on."""
    if limit_hours <= hold_hours:
        return None
    return (
        f"the {leg.replace('_', ' ')} leg may take {limit_hours:g} h, longer than shipper "
        f"{serial}'s qualified hold time of {hold_hours:g} h"
    )


# readings


UNITS = ("C", "F", "K")


def celsius(value: float, unit: str) -> float:
    if unit == "C":
        return value
    if unit == "F":
        return (value - 32.0) * 5.0 / 9.0
    if unit == "K":
        return value - 273.15
    raise InvalidRequest(f"a temperature unit is one of {', '.join(UNITS)}, not {unit!r}")


@dataclass(frozen=True, slots=True)
class Reading:
    device_id: str
    at: dt.datetime  # UTC
    value_c: float
    line: int = 0  # where it was read from: the CSV line, or the JSON reading's index (from 1)


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # the line of the CSV file, or the index of the JSON reading (from 1)
    reason: str


class BadReadings(DomainError):
    """An upload with bad rows: nothing of it is stored."""

    code = "invalid_readings"
    title = "Readings refused"

    def __init__(self, errors: Sequence[RowError], *, where: str) -> None:
        shown = "; ".join(f"{where} {e.line}: {e.reason}" for e in errors[:20])
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        super().__init__(
            f"{len(errors)} bad reading(s), nothing stored: {shown}{more}",
            errors=[{where: e.line, "reason": e.reason} for e in errors],
        )
        self.errors = list(errors)


@functools.lru_cache(maxsize=256)
def _good_device(device: str) -> bool:
    return DEVICE.fullmatch(device) is not None


def _reading(
    device: str | None, at: str, value: str | float, unit: str, *, now: dt.datetime, line: int
) -> Reading:
    if not device or not _good_device(device):
        raise ValueError(
            f"{device!r} is not a logger id (letters and digits, then . _ : / or -, at most 64)"
            if device
            else "no logger id: give one with the upload or in a device_id column"
        )
    try:
        moment = dt.datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"{at!r} is not a time such as 2026-12-01T10:30:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"{at!r} has no offset from UTC")
    try:
        moment = moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"{at!r} is outside the calendar we keep") from None
    if moment < EARLIEST or moment > now + dt.timedelta(minutes=5):
        raise ValueError(
            f"{at!r} is not a time the logger can have recorded (future or before 2000)"
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{value!r} is not a number")
    unit = (unit or "").strip().upper()
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r} is not C, F or K")
    value_c = round(celsius(number, unit), 4)
    if not -273.15 <= value_c <= 100.0:
        raise ValueError(f"{number:g} {unit} is not a temperature a shipper can be at")
    return Reading(device_id=device, at=moment, value_c=value_c, line=line)


def _dedupe(readings: list[tuple[int, Reading]], where: str) -> list[Reading]:
    """The same reading twice is one; one device and time with two values is an error."""
    seen: dict[tuple[str, dt.datetime], tuple[int, Reading]] = {}
    errors = []
    for line, reading in readings:
        key = (reading.device_id, reading.at)
        earlier = seen.get(key)
        if earlier is None:
            seen[key] = (line, reading)
        elif earlier[1].value_c != reading.value_c:
            errors.append(
                RowError(
                    line,
                    f"{reading.at.isoformat()} was read as {earlier[1].value_c:g} °C "
                    f"at {where} {earlier[0]} already",
                )
            )
    if errors:
        raise BadReadings(errors, where=where)
    unique = [reading for _, reading in seen.values()]
    keys = [(r.device_id, r.at) for r in unique]
    if any(a > b for a, b in itertools.pairwise(keys)):  # a logger writes in order
        unique.sort(key=lambda r: (r.device_id, r.at))
    return unique


def _limit(count: int) -> None:
    if count > MAX_READINGS:
        raise InvalidRequest(f"at most {MAX_READINGS} readings per upload; split the file")
    if count == 0:
        raise InvalidRequest("the upload holds no reading")


def parse_json(
    device_id: str, rows: Sequence[dict[str, object]], *, now: dt.datetime
) -> list[Reading]:
    """``{"device_id", "readings": [{"at", "value", "unit"}]}``: every reading checked; any
    bad one refuses the whole upload, naming each (by index, from 1)."""
    _limit(len(rows))
    parsed, errors = [], []
    for index, row in enumerate(rows, start=1):
        try:
            parsed.append(
                (
                    index,
                    _reading(
                        device_id,
                        str(row.get("at", "")),
                        row.get("value"),  # type: ignore[arg-type]
                        str(row.get("unit", "")),
                        now=now,
                        line=index,
                    ),
                )
            )
        except ValueError as error:
            errors.append(RowError(index, str(error)))
    if errors:
        raise BadReadings(errors, where="reading")
    return _dedupe(parsed, "reading")


CSV_COLUMNS = ("at", "value", "unit")


def parse_csv(text: str, *, device_id: str | None, now: dt.datetime) -> list[Reading]:
    """A logger's CSV export: a header row naming at, value, unit (and device_id, unless one
    device is named for the whole file), one reading per line, comma-separated. Any bad line
    refuses the whole file, naming each line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise InvalidRequest("the file is empty") from None
    except csv.Error as error:
        raise BadReadings([RowError(1, f"not CSV: {error}")], where="line") from None
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing:
        raise BadReadings(
            [
                RowError(
                    1,
                    f"the first line names the columns: it must name at, value and unit "
                    f"(missing: {', '.join(missing)}); it names {', '.join(header) or 'nothing'}",
                )
            ],
            where="line",
        )
    if device_id is None and "device_id" not in header:
        raise BadReadings(
            [
                RowError(
                    1,
                    "the file names no logger: give the logger's id with the upload (the "
                    "Logger id field), or add a device_id column",
                )
            ],
            where="line",
        )
    index = {name: header.index(name) for name in header}
    parsed, errors = [], []
    count = 0
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            count += 1
            if count > MAX_READINGS:
                raise InvalidRequest(f"at most {MAX_READINGS} readings per upload; split the file")
            try:
                if len(row) != len(header):
                    raise ValueError(f"{len(row)} fields where the header has {len(header)}")
                device = row[index["device_id"]].strip() if "device_id" in index else device_id
                parsed.append(
                    (
                        line,
                        _reading(
                            device,
                            row[index["at"]],
                            row[index["value"]].strip(),
                            row[index["unit"]],
                            now=now,
                            line=line,
                        ),
                    )
                )
            except ValueError as error:
                errors.append(RowError(line, str(error)))
    except csv.Error as error:
        errors.append(RowError(reader.line_num, f"not CSV: {error}"))
    if errors:
        raise BadReadings(errors, where="line")
    _limit(len(parsed))
    return _dedupe(parsed, "line")


def parse_csv_upload(data: bytes, *, device_id: str | None, now: dt.datetime) -> list[Reading]:
    """A CSV file as uploaded (bytes): UTF-8 (with or without a byte-order mark), or refused."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BadReadings([RowError(line, "not UTF-8 text")], where="line") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise BadReadings([RowError(line, "a NUL character: not a text file")], where="line")
    return parse_csv(text, device_id=device_id, now=now)


# alarm rules and what readings say against them


@dataclass(frozen=True, slots=True)
class AlarmRule:
    product: str
    version: int
    limit_c: float = -150.0  # beyond (warmer than) this, the time counts
    instant_limit_c: float = -135.0  # beyond this, one reading is an alarm at once
    continuous_minutes: float = 10.0  # this long beyond the limit without a break
    cumulative_minutes: float = 30.0  # this long beyond the limit in all, over the leg
    gap_minutes: float = 15.0  # no reading for longer than this is a gap in the record


def default_rule(product: str) -> AlarmRule:
    return AlarmRule(product=product, version=0)


# Clinical bounds of an alarm rule (a product's owner changes it within them, never beyond):
# cryopreserved cells stay at or below -150 °C in LN2 vapour, so no limit is warmer than
# -120 °C and no single reading warmer than -100 °C passes; an excursion or a gap in the data
# is judged within an hour, and time beyond the limit adds up over at most 4 hours.
LIMIT_BOUNDS_C = (-196.0, -120.0)
INSTANT_LIMIT_HIGHEST_C = -100.0
CONTINUOUS_BOUNDS_MINUTES = (1.0, 60.0)
CUMULATIVE_BOUNDS_MINUTES = (1.0, 240.0)
GAP_BOUNDS_MINUTES = (1.0, 60.0)


def check_rule(
    *,
    limit_c: float,
    instant_limit_c: float,
    continuous_minutes: float,
    cumulative_minutes: float,
    gap_minutes: float,
) -> None:
    """The clinical bounds a rule must keep, so that no change can make an alarm meaningless."""
    values = (limit_c, instant_limit_c, continuous_minutes, cumulative_minutes, gap_minutes)
    if not all(math.isfinite(v) for v in values):
        raise InvalidRequest("an alarm rule's values are numbers")
    low, high = LIMIT_BOUNDS_C
    if not low <= limit_c <= high:
        raise InvalidRequest(f"the limit is between {low:g} and {high:g} °C")
    if not limit_c <= instant_limit_c <= INSTANT_LIMIT_HIGHEST_C:
        raise InvalidRequest(
            "the instant limit is at or above the limit, and at most "
            f"{INSTANT_LIMIT_HIGHEST_C:g} °C"
        )
    for name, value, (low, high) in (
        ("continuous", continuous_minutes, CONTINUOUS_BOUNDS_MINUTES),
        ("cumulative", cumulative_minutes, CUMULATIVE_BOUNDS_MINUTES),
        ("gap", gap_minutes, GAP_BOUNDS_MINUTES),
    ):
        if not low <= value <= high:
            raise InvalidRequest(f"the {name} minutes are between {low:g} and {high:g}")
    if cumulative_minutes < continuous_minutes:
        raise InvalidRequest("the cumulative minutes are at least the continuous minutes")


class AlarmKind(StrEnum):
    INSTANT = "instant"
    CONTINUOUS = "continuous"
    CUMULATIVE = "cumulative"
    GAP = "gap"
    # readings of one logger that disagree: two files with different values for the same
    # moment (a carrier's file against the origin's or destination's, say)
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Alarm:
    kind: AlarmKind
    device_id: str
    started_at: dt.datetime
    ended_at: dt.datetime
    minutes: float
    peak_c: float | None

    def describe(self, rule: AlarmRule) -> str:
        span = f"{self.started_at:%Y-%m-%d %H:%M} to {self.ended_at:%H:%M} UTC"
        if self.kind is AlarmKind.CONFLICT:
            return (
                f"logger {self.device_id}'s files disagree about its readings ({span}): a "
                "discrepancy in the record of condition, for QA to resolve"
            )
        if self.kind is AlarmKind.GAP:
            return f"no reading for {self.minutes:.0f} min ({span}), over {rule.gap_minutes:g}"
        if self.kind is AlarmKind.INSTANT:
            at = f"{self.started_at:%Y-%m-%d %H:%M} UTC"
            return f"{self.peak_c:g} °C at {at}, above {rule.instant_limit_c:g} °C"
        what = "continuously" if self.kind is AlarmKind.CONTINUOUS else "in all"
        return (
            f"{self.minutes:.0f} min {what} above {rule.limit_c:g} °C ({span}), peak "
            f"{self.peak_c:g} °C"
        )


def _runs(series: Sequence[Reading], rule: AlarmRule) -> tuple[list[Alarm], list[Alarm]]:
    """Gaps, and the runs of time beyond the limit (each reading held until the next, a gap
    ending a run)."""
    gap = dt.timedelta(minutes=rule.gap_minutes)
    gaps: list[Alarm] = []
    runs: list[Alarm] = []
    start: dt.datetime | None = None
    length, peak, end = dt.timedelta(), -math.inf, None
    device = series[0].device_id
    for current, following in zip(series, [*series[1:], None], strict=True):
        held = following.at - current.at if following is not None else dt.timedelta()
        broken = held > gap
        if broken:
            assert following is not None
            gaps.append(
                Alarm(
                    AlarmKind.GAP, device, current.at, following.at, held.total_seconds() / 60, None
                )
            )
            held = dt.timedelta()  # a gap is no time at the last value: it is a gap
        if current.value_c > rule.limit_c:
            start = start or current.at
            length += held
            peak = max(peak, current.value_c)
            end = current.at + held
        if start is not None and (current.value_c <= rule.limit_c or broken or following is None):
            runs.append(
                Alarm(
                    AlarmKind.CONTINUOUS,
                    device,
                    start,
                    end or start,
                    length.total_seconds() / 60,
                    peak,
                )
            )
            start, length, peak, end = None, dt.timedelta(), -math.inf, None
    return gaps, runs


def evaluate(
    readings: Iterable[Reading],
    rule: AlarmRule,
    *,
    window: tuple[dt.datetime, dt.datetime | None],
) -> list[Alarm]:
    """The alarms the readings raise within the window (the leg: from packing to the last
    receipt, or to the last reading while the shipment travels), device by device."""
    start, end = window
    by_device: dict[str, list[Reading]] = {}
    for reading in readings:
        if reading.at >= start and (end is None or reading.at <= end):
            by_device.setdefault(reading.device_id, []).append(reading)
    alarms: list[Alarm] = []
    for device, series in sorted(by_device.items()):
        series.sort(key=lambda r: r.at)
        hottest = max(series, key=lambda r: r.value_c)
        if hottest.value_c > rule.instant_limit_c:
            first = next(r for r in series if r.value_c > rule.instant_limit_c)
            alarms.append(
                Alarm(AlarmKind.INSTANT, device, first.at, first.at, 0.0, hottest.value_c)
            )
        gaps, runs = _runs(series, rule)
        alarms += gaps
        alarms += [run for run in runs if run.minutes >= rule.continuous_minutes]
        beyond = sum(run.minutes for run in runs)
        if runs and beyond >= rule.cumulative_minutes:
            alarms.append(
                Alarm(
                    AlarmKind.CUMULATIVE,
                    device,
                    runs[0].started_at,
                    runs[-1].ended_at,
                    beyond,
                    max(run.peak_c or -math.inf for run in runs),
                )
            )
    return sorted(alarms, key=lambda a: (a.started_at, a.kind.value))


@dataclass(frozen=True, slots=True)
class Summary:
    device_id: str
    count: int
    first: dt.datetime
    last: dt.datetime
    min_c: float
    max_c: float
    mean_c: float


def summarise(
    readings: Iterable[Reading], *, window: tuple[dt.datetime, dt.datetime | None]
) -> list[Summary]:
    start, end = window
    by_device: dict[str, list[Reading]] = {}
    for reading in readings:
        if reading.at >= start and (end is None or reading.at <= end):
            by_device.setdefault(reading.device_id, []).append(reading)
    out = []
    for device, series in sorted(by_device.items()):
        values = [r.value_c for r in series]
        out.append(
            Summary(
                device,
                len(series),
                min(r.at for r in series),
                max(r.at for r in series),
                min(values),
                max(values),
                round(sum(values) / len(values), 2),
            )
        )
    return out


# readings of one logger from several files

CARRIER_SOURCE, SITE_SOURCE = 1, 2
"""How much a logger file's readings count (higher wins): the shipment's origin's or
destination's logger file over the carrier's."""
SAME_VALUE_C = 1e-6


def reconcile(
    readings: Iterable[tuple[Reading, int]],
    *,
    window: tuple[dt.datetime, dt.datetime | None],
) -> tuple[list[Reading], list[Alarm]]:
    """The readings to judge a leg by, and a ``conflict`` alarm per logger whose files disagree
    within the leg. ``readings``: each with its file's precedence. Per logger and moment the
    reading of the highest precedence counts; where files of the same precedence disagree,
    the warmest (the worst case) counts. A file never pre-empts another: whatever disagrees is
    a discrepancy, whoever came first."""
    start, end = window
    by_moment: dict[tuple[str, dt.datetime], list[tuple[int, float]]] = {}
    for reading, precedence in readings:
        by_moment.setdefault((reading.device_id, reading.at), []).append(
            (precedence, reading.value_c)
        )
    chosen: list[Reading] = []
    disputed: dict[str, list[tuple[dt.datetime, float]]] = {}
    for (device, at), values in by_moment.items():
        top = max(precedence for precedence, _ in values)
        value = max(v for precedence, v in values if precedence == top)
        chosen.append(Reading(device, at, value))
        low, high = min(v for _, v in values), max(v for _, v in values)
        if high - low > SAME_VALUE_C and at >= start and (end is None or at <= end):
            disputed.setdefault(device, []).append((at, high))
    alarms = []
    for device, moments in sorted(disputed.items()):
        first, last = min(at for at, _ in moments), max(at for at, _ in moments)
        alarms.append(
            Alarm(
                AlarmKind.CONFLICT,
                device,
                first,
                last,
                (last - first).total_seconds() / 60,
                max(value for _, value in moments),
            )
        )
    chosen.sort(key=lambda r: (r.device_id, r.at))
    return chosen, alarms
