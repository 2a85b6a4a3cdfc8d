"""How many refused scans one user may have kept in a window.

Every refusal is a record sealed into a chain and a line on QA's review: kept, never deleted.
A user (or a partner's system capturing EPCIS events with a user's token) that is refused
again and again is answered 429 ``rate_limited`` once over its limits, and nothing more is
kept until the window has room: counted in the database (an index on the user and the time),
so every process counts together, and the count never costs more than the limit's rows.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col

from services.db.models import RefusedScan
from services.domain.custody import Actor
from services.domain.errors import RateLimited


@dataclass(frozen=True)
class RefusalLimit:
    count: int  # refusals kept at most ...
    per: dt.timedelta  # ... in any window this long

    def __str__(self) -> str:
        return f"{self.count} per {_span(self.per)}"


def _span(per: dt.timedelta) -> str:
    seconds = int(per.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"


def check_refusal_limits(
    session: Session, *, actor: Actor, limits: Sequence[RefusalLimit], now: dt.datetime
) -> None:
    """Raise RateLimited when the actor already has as many refusals kept as a limit allows
    within its window (one query, whatever the number of limits)."""
    if not limits:
        return
    starts = [now - limit.per for limit in limits]
    recorded = col(RefusedScan.recorded_at)
    counts = session.execute(
        sa.select(
            *(
                sa.func.coalesce(sa.func.sum(sa.case((recorded >= s, 1), else_=0)), 0)
                for s in starts
            )
        ).where(col(RefusedScan.actor_id) == actor.user_id, recorded >= min(starts))
    ).one()
    for limit, start, count in zip(limits, starts, counts, strict=True):
        if count >= limit.count:
            oldest = session.execute(
                sa.select(recorded)
                .where(col(RefusedScan.actor_id) == actor.user_id, recorded >= start)
                .order_by(recorded)
                .limit(1)
            ).scalar_one()
            retry = max(1, math.ceil((oldest + limit.per - now).total_seconds()))
            raise RateLimited(
                f"{count} of your scans were refused within {_span(limit.per)} (at most {limit} "
                f"are kept): nothing more is recorded for you for {retry} s. Check the scanner, "
                "the site and the step before scanning again",
                retry_after=retry,
            )
