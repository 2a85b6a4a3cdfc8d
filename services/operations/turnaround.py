"""Turnaround, read: delays, deadlines and projections of orders, the summary per site and leg."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import Deadline, Order, Site
from services.domain.custody import Actor
from services.domain.sla import Leg, Span, percentile, projected_infusion
from services.operations.access import deadline_condition
from services.operations.deadlines import current_policy

MIN_HISTORY = 20  # closed legs needed before our own median replaces the policy's typical time


def delays(session: Session, *, actor: Actor, now: dt.datetime) -> list[Deadline]:
    """Open legs at risk or late, for orders naming the actor's site, most overdue first."""
    rows = session.exec(
        select(Deadline)
        .join(Order, col(Order.id) == col(Deadline.order_id))
        .where(
            col(Deadline.closed_at).is_(None),
            col(Deadline.at_risk_at) <= now,
            deadline_condition(actor),
        )
        .order_by(col(Deadline.due_at))
    ).all()
    return list(rows)


def deadlines_of(session: Session, order: Order) -> list[Deadline]:
    return list(
        session.exec(
            select(Deadline).where(Deadline.order_id == order.id).order_by(col(Deadline.started_at))
        ).all()
    )


@dataclass(frozen=True)
class Projection:
    started_at: dt.datetime | None
    elapsed_days: float
    projected_infusion_at: dt.datetime | None
    target_days: float
    projected_days: float | None
    over_target: bool
    infused_at: dt.datetime | None = None
    vein_to_vein_days: float | None = None  # first collection to infusion, once infused


def projection(
    session: Session, *, order: Order, now: dt.datetime, deadlines: list[Deadline] | None = None
) -> Projection:
    """Elapsed vein-to-vein time, and when infusion is likely from the remaining legs' typical
    durations: our own medians where we have enough history, the policy's limits otherwise.
    ``deadlines``: the order's, when the caller has just read them."""
    policy = current_policy(session, order.product)
    rows = deadlines_of(session, order) if deadlines is None else deadlines
    if not rows:
        return Projection(None, 0.0, None, policy.target_days, None, False)
    started = min(row.started_at for row in rows)
    if order.infused_at is not None:
        days = (order.infused_at - started).total_seconds() / 86400
        return Projection(
            started_at=started,
            elapsed_days=days,
            projected_infusion_at=order.infused_at,
            target_days=policy.target_days,
            projected_days=days,
            over_target=days > policy.target_days,
            infused_at=order.infused_at,
            vein_to_vein_days=days,
        )
    done = {row.leg for row in rows if row.closed_at is not None}
    open_rows = sorted((r for r in rows if r.closed_at is None), key=lambda r: r.started_at)
    current = Span(open_rows[-1].leg, open_rows[-1].started_at, None) if open_rows else None
    typical = {**policy.typical, **typical_durations(session, order.product)}
    infusion = projected_infusion(now=now, current=current, done=done, typical=typical)
    projected_days = (infusion - started).total_seconds() / 86400
    return Projection(
        started_at=started,
        elapsed_days=(now - started).total_seconds() / 86400,
        projected_infusion_at=infusion,
        target_days=policy.target_days,
        projected_days=projected_days,
        over_target=projected_days > policy.target_days,
    )


def typical_durations(session: Session, product: str) -> dict[Leg, float]:
    """Median durations of closed legs of this product, where there are enough of them."""
    rows = session.exec(
        select(col(Deadline.leg), col(Deadline.started_at), col(Deadline.closed_at))
        .join(Order, col(Order.id) == col(Deadline.order_id))
        .where(col(Order.product) == product, col(Deadline.closed_at).is_not(None))
        .order_by(col(Deadline.closed_at).desc())
        .limit(5000)
    ).all()
    durations: dict[Leg, list[float]] = defaultdict(list)
    for leg, started, closed in rows:
        if closed is not None:
            durations[Leg(leg)].append((closed - started).total_seconds())
    return {
        leg: percentile(values, 0.5)
        for leg, values in durations.items()
        if len(values) >= MIN_HISTORY
    }


@dataclass(frozen=True)
class LegSummary:
    site: str
    leg: Leg
    count: int
    median_hours: float
    p90_hours: float
    late: int


def turnaround(
    session: Session,
    *,
    actor: Actor,
    since: dt.datetime,
    until: dt.datetime,
    site: str | None = None,
) -> list[LegSummary]:
    """Per site and leg: legs closed in [since, until) on orders the actor may see. Counted,
    and their median and 90th percentile taken, in the database (the inclusive method:
    linear between the two nearest ranks, as ``percentile_cont`` does)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    closed, started = col(Deadline.closed_at), col(Deadline.started_at)
    if postgres:
        hours = sa.extract("epoch", closed - started) / 3600.0
    else:
        hours = (sa.func.julianday(closed) - sa.func.julianday(started)) * 24.0
    legs = (
        sa.select(
            col(Site.code).label("site"),
            col(Deadline.leg).label("leg"),
            hours.label("hours"),
            sa.case((closed > col(Deadline.due_at), 1), else_=0).label("late"),
        )
        .join(Order, col(Order.id) == col(Deadline.order_id))
        .join(Site, col(Site.id) == col(Deadline.site_id))
        .where(
            closed.is_not(None),
            closed >= since,
            closed < until,
            deadline_condition(actor),
        )
    )
    if site is not None:
        legs = legs.where(col(Site.code) == site)
    if postgres:
        rows = legs.subquery()
        query = (
            sa.select(
                rows.c.site,
                rows.c.leg,
                sa.func.count(),
                sa.func.percentile_cont(0.5).within_group(rows.c.hours),
                sa.func.percentile_cont(0.9).within_group(rows.c.hours),
                sa.func.sum(rows.c.late),
            )
            .group_by(rows.c.site, rows.c.leg)
            .order_by(rows.c.site, rows.c.leg)
        )
    else:
        query = _percentiles_by_rank(legs.subquery())
    summary = [
        LegSummary(
            site=code,
            leg=Leg(leg),
            count=int(count),
            median_hours=float(median),
            p90_hours=float(p90),
            late=int(late or 0),
        )
        for code, leg, count, median, p90, late in session.execute(query).all()
    ]
    return sorted(summary, key=lambda row: (row.site, row.leg.value))


def _percentiles_by_rank(legs: Any) -> Any:
    """percentile_cont for a database without it (SQLite): rank the values in each group,
    then interpolate between the ranks around (n - 1) x fraction."""
    group = (legs.c.site, legs.c.leg)
    ranked = sa.select(
        legs,
        sa.func.row_number().over(partition_by=group, order_by=legs.c.hours).label("rank"),
        sa.func.count().over(partition_by=group).label("n"),
    ).subquery()

    def cont(fraction: float) -> Any:
        position = (ranked.c.n - 1) * fraction
        low = sa.cast(position, sa.Integer)  # floor: the position is never negative
        at = lambda offset: sa.func.max(  # noqa: E731
            sa.case((ranked.c.rank == low + 1 + offset, ranked.c.hours))
        )
        # the value at rank low+1, moved towards the next by the fraction between them
        return at(0) + (sa.func.max(position) - sa.func.max(low)) * (
            sa.func.coalesce(at(1), at(0)) - at(0)
        )

    return (
        sa.select(
            ranked.c.site,
            ranked.c.leg,
            sa.func.count(),
            cont(0.5),
            cont(0.9),
            sa.func.sum(ranked.c.late),
        )
        .group_by(ranked.c.site, ranked.c.leg)
        .order_by(ranked.c.site, ranked.c.leg)
    )
