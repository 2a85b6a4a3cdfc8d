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
            f"{what} {value.isoformat()} is ahead of the server clock ({now.isoformat()}): "
            "check the scanner's clock (or the clock of the device that sent it)"
        )
    return value
