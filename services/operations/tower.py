"""The control tower, read: what is late or at risk, bags in flight by stage, turnaround per
leg and site over 90 days and week by week, for the orders the actor may see."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlmodel import Session, col, select

from services.db.models import Order, Site, Unit
from services.domain.custody import TERMINAL_STATES, Actor, UnitState
from services.operations import access, turnaround
from services.operations.condition import HeldBag, hold_queue
from services.operations.turnaround import LegSummary


@dataclass(frozen=True)
class Delay:
    coi: str
    din: str
    leg: str
    site: str
    late: bool  # past due by our clock now (else: at risk)
    due: dt.datetime
    overdue_hours: float


@dataclass(frozen=True)
class Week:
    since: dt.datetime
    until: dt.datetime
    legs: list[LegSummary]

    @property
    def closed(self) -> int:
        return sum(leg.count for leg in self.legs)

    @property
    def late(self) -> int:
        return sum(leg.late for leg in self.legs)

    @property
    def median_hours(self) -> float | None:
        """The mean of the legs' medians: one figure for the week's pace."""
        if not self.legs:
            return None
        return sum(leg.median_hours for leg in self.legs) / len(self.legs)


@dataclass(frozen=True)
class Tower:
    orders: list[Order]
    products: list[str]
    site_codes: list[str]
    stages: list[tuple[UnitState, int]]
    delays: list[Delay]
    legs: list[LegSummary]
    weeks: list[Week]
    holds: list[HeldBag]  # on hold or quarantined: shown first


def control_tower(
    session: Session,
    *,
    actor: Actor,
    now: dt.datetime,
    site: str | None = None,
    product: str | None = None,
) -> Tower:
    visible = access.visible_orders(session, actor, limit=500)
    products = sorted({order.product for order in visible})
    codes = {s.id: s.code for s in session.exec(select(Site)).all()}
    orders = [
        o
        for o in visible
        if (product is None or o.product == product)
        and (site is None or site in (codes[i] for i in access.order_site_ids(o)))
    ]
    ids = [o.id for o in orders]
    units = list(session.exec(select(Unit).where(col(Unit.order_id).in_(ids)))) if ids else []
    stages = Counter(unit.state for unit in units if unit.state not in TERMINAL_STATES)
    by_order = {o.id: o for o in orders}
    dins = {u.id: u.din for u in units}
    delays = [
        Delay(
            coi=by_order[row.order_id].coi,
            din=dins.get(row.unit_id, ""),
            leg=row.leg.value.replace("_", " "),
            site=codes[row.site_id],
            late=row.due_at <= now,
            due=row.due_at,
            overdue_hours=max(0.0, (now - row.due_at).total_seconds() / 3600),
        )
        for row in turnaround.delays(session, actor=actor, now=now)
        if row.order_id in by_order
    ]
    # late first (most overdue first), then at risk (soonest due first): as each is labelled
    delays.sort(key=lambda d: (not d.late, d.due))
    weeks = []
    for back in range(3, -1, -1):
        until = now - dt.timedelta(days=7 * back)
        since = until - dt.timedelta(days=7)
        summary = turnaround.turnaround(session, actor=actor, since=since, until=until, site=site)
        weeks.append(Week(since, until, summary))
    legs = turnaround.turnaround(
        session, actor=actor, since=now - dt.timedelta(days=90), until=now, site=site
    )
    return Tower(
        orders=orders,
        products=products,
        site_codes=sorted(codes.values()),
        stages=sorted(stages.items(), key=lambda kv: list(UnitState).index(kv[0])),
        delays=delays,
        legs=legs,
        weeks=weeks,
        holds=[bag for bag in hold_queue(session, actor) if bag.coi in {o.coi for o in orders}],
    )
