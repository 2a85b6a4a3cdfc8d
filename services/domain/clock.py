"""Two clocks: a device's (when something happened) and ours (when it was recorded).

A device's time is taken as it says, late or offline, but never ahead of ours by more than the
allowed skew: a scanner or a batch record dated in the future is a clock to fix, not a time to
believe.
"""

from __future__ import annotations

import datetime as dt

from services.domain.errors import InvalidRequest


def device_time(
    value: dt.datetime | None, *, now: dt.datetime, skew: dt.timedelta, what: str
) -> dt.datetime:
    """``value`` in UTC (``now`` when not given), or a refusal when it is ahead of ``now``."""
    if value is None:
        return now
    try:
        value = value.astimezone(dt.UTC)
    except OverflowError:
        raise InvalidRequest(f"{what} is outside the calendar we keep") from None
    if value > now + skew:
        raise InvalidRequest(
            f"{what} ({_shown(value)}) is ahead of the server clock ({_shown(now)}): a time "
            "in the future cannot be recorded; check the time given, or the scanner's clock "
            "(or the clock of the device that sent it)"
        )
    return value


def _shown(moment: dt.datetime) -> str:
    """A moment as a person reads it in a refusal: to the minute, in UTC, no microseconds."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
