"""Local time: each site's wall clock. Times are stored and exchanged in UTC (the API gives ISO
8601 with its offset); a person reads them in the time zone of a site, with the offset said,
so that 09:30 in London and 09:30 in New York are never taken for the same moment.

Zones are IANA names (``Europe/London``, ``America/New_York``) read by :mod:`zoneinfo` from the
system's zone database or, where the system has none, from the ``tzdata`` package.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from services.domain.errors import InvalidRequest

UTC_ZONE = "UTC"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}")
# the zones an admin is offered first (the rest are typed or chosen from the full list)
COMMON_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Amsterdam",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Toronto",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Australia/Sydney",
)


@functools.cache
def zone(name: str) -> dt.tzinfo:
    """The zone called ``name`` (checked by :func:`check_zone` before it is stored)."""
    if name == UTC_ZONE:
        return dt.UTC
    return ZoneInfo(name)


@functools.cache
def known_zones() -> tuple[str, ...]:
    """Every IANA zone this installation can read, sorted."""
    return tuple(sorted(available_timezones() | {UTC_ZONE}))


def check_zone(name: str) -> str:
    """``name`` as stored, or a refusal that says what a zone is."""
    name = name.strip()
    if not name:
        raise InvalidRequest("choose the site's time zone, such as Europe/London")
    if len(name) > 64 or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidRequest(
            f"{name[:64]!r} is not a time zone: give its IANA name, such as Europe/London or "
            "America/New_York"
        )
    if name != UTC_ZONE:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidRequest(
                f"{name!r} is not a time zone we know: give its IANA name, such as "
                "Europe/London or America/New_York"
            ) from None
    return name


def localize(moment: dt.datetime, name: str) -> dt.datetime:
    """``moment`` (aware, any offset) on the wall clock of zone ``name``."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: a moment needs its offset")
    return moment.astimezone(zone(name))


def offset_text(local: dt.datetime) -> str:
    """The offset from UTC of a localized moment: ``UTC+01:00``, ``UTC-05:00``, ``UTC``."""
    offset = local.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def abbreviation(local: dt.datetime) -> str | None:
    """The zone's own short name at that moment (GMT, BST, EST, EDT), when it has one: some
    zones name themselves by their offset (``+03``), which the offset says already."""
    name = local.tzname()
    if name and name.isalpha() and name != "UTC":
        return name
    return None


def wall_clock(moment: dt.datetime, name: str, *, seconds: bool = False, date: bool = True) -> str:
    """``moment`` as a person at a site of zone ``name`` reads it, with the offset:
    ``2026-03-29 02:30 BST (UTC+01:00)``."""
    local = localize(moment, name)
    shown = local.strftime(("%Y-%m-%d " if date else "") + ("%H:%M:%S" if seconds else "%H:%M"))
    short = abbreviation(local)
    return f"{shown} {short} ({offset_text(local)})" if short else f"{shown} {offset_text(local)}"


def local_day(moment: dt.datetime, name: str) -> dt.date:
    """The calendar day it is at a site of zone ``name`` at ``moment``."""
    return localize(moment, name).date()


def next_local_time(after: dt.datetime, name: str, *, hour: int) -> dt.datetime:
    """The first moment after ``after`` when a site's clock shows ``hour``:00, in UTC (a day
    with a daylight-saving change still has one such moment; a skipped hour moves on)."""
    local = localize(after, name)
    candidate = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if candidate <= local:
        candidate = (candidate + dt.timedelta(days=1)).replace(hour=hour)
    # wall-clock arithmetic: re-attach the zone so the offset of that day applies
    naive = candidate.replace(tzinfo=None)
    return naive.replace(tzinfo=zone(name)).astimezone(dt.UTC)
