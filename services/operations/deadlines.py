"""Deadlines as rows: written when a bag enters a leg, closed when it leaves, swept when due."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from services.db.models import (
    CustodyEvent,
    Deadline,
    Order,
    OrderEvent,
    Product,
    Site,
    SlaPolicy,
    Subscription,
    Unit,
)
from services.domain.custody import Actor
from services.domain.notifications import Channel
from services.domain.sla import (
    LEGS,
    Leg,
    Policy,
    Span,
    check_legs,
    check_policy,
    default_policy,
    spans,
)
from services.operations.notifications import enqueue

AT_RISK, LATE, ESCALATED = "deadline_at_risk", "deadline_late", "deadline_escalated"


# policies


def current_policy(session: Session, product: str) -> Policy:
    row = session.exec(
        select(SlaPolicy)
        .where(SlaPolicy.product == product)
        .order_by(col(SlaPolicy.version).desc())
        .limit(1)
    ).first()
    if row is None:
        return default_policy(product)
    return Policy(
        product=row.product,
        version=row.version,
        limits={Leg(leg): seconds for leg, seconds in row.limits.items()},
        typical={Leg(leg): seconds for leg, seconds in row.typical.items()},
        at_risk=row.at_risk,
        escalate_after=row.escalate_after_seconds,
        target_days=row.target_days,
    )


def products(session: Session) -> list[str]:
    """The products set up here (services.operations.products)."""
    return list(session.exec(select(Product.code).order_by(col(Product.code))).all())


def set_policy(
    session: Session,
    *,
    actor: Actor | None,
    product: str,
    limits: dict[str, float],
    at_risk: float | None,
    escalate_after: float | None,
    target_days: float | None,
    typical: dict[str, float] | None = None,
    signed: tuple[str, str, dt.datetime] | None = None,
) -> Policy:
    """A new version of a product's policy; legs already open keep the limits they had.
    Who may change it is services.operations.products' to check; ``signed``: the reason, the
    signer's printed name and when they signed."""
    current = current_policy(session, product)
    merged = check_policy(
        {**{leg.value: s for leg, s in current.limits.items()}, **limits},
        at_risk if at_risk is not None else current.at_risk,
        escalate_after if escalate_after is not None else current.escalate_after,
        target_days if target_days is not None else current.target_days,
    )
    typical_merged = {**current.typical, **check_legs(typical or {}, "typical duration")}
    row = SlaPolicy(
        product=product,
        version=current.version + 1,
        limits={leg.value: seconds for leg, seconds in merged.items()},
        typical={leg.value: seconds for leg, seconds in typical_merged.items()},
        at_risk=at_risk if at_risk is not None else current.at_risk,
        escalate_after_seconds=escalate_after
        if escalate_after is not None
        else current.escalate_after,
        target_days=target_days if target_days is not None else current.target_days,
        created_by_id=actor.user_id if actor else None,
        reason=signed[0] if signed else None,
        signer_name=signed[1] if signed else None,
        signed_at=signed[2] if signed else None,
    )
    session.add(row)
    session.flush()
    return current_policy(session, product)


# deadlines follow the events


def refresh_deadlines(session: Session, *, unit: Unit, order: Order) -> None:
    """Recompute the bag's legs from all its known events (by the scanners' clocks), so that a
    scan uploaded late, or out of order, moves the legs it belongs to."""
    events = session.exec(select(CustodyEvent).where(CustodyEvent.unit_id == unit.id)).all()
    opened_by = {(e.action, e.occurred_at): e for e in events}
    existing = {
        row.leg: row
        for row in session.exec(select(Deadline).where(Deadline.unit_id == unit.id)).all()
    }
    policy: Policy | None = None
    for span in spans(unit.kind, [(e.action, e.occurred_at) for e in events]):
        row = existing.get(span.leg)
        if row is None:
            policy = policy or current_policy(session, order.product)
            opener = opened_by[(_opening_action(unit, span), span.started_at)]
            row = Deadline(
                order_id=order.id,  # type: ignore[arg-type]
                unit_id=unit.id,  # type: ignore[arg-type]
                leg=span.leg,
                site_id=opener.custodian_site_id,
                policy_version=policy.version,
                limit_seconds=policy.limits[span.leg],
                at_risk_fraction=policy.at_risk,
                escalate_after_seconds=policy.escalate_after,
                started_at=span.started_at,
                at_risk_at=span.started_at,
                due_at=span.started_at,
                escalate_at=span.started_at,
            )
        _schedule(row, span)
        session.add(row)


def _opening_action(unit: Unit, span: Span) -> str:
    return LEGS[(unit.kind, span.leg)].opens


def _schedule(row: Deadline, span: Span) -> None:
    limit = dt.timedelta(seconds=row.limit_seconds)
    row.started_at = span.started_at
    row.at_risk_at = span.started_at + limit * row.at_risk_fraction
    row.due_at = span.started_at + limit
    row.escalate_at = row.due_at + dt.timedelta(seconds=row.escalate_after_seconds)
    row.closed_at = span.ended_at


# the sweep


@dataclass(frozen=True)
class SweepResult:
    at_risk: int = 0
    late: int = 0
    escalated: int = 0

    def __str__(self) -> str:
        return f"{self.at_risk} at risk, {self.late} late, {self.escalated} escalated"


def sweep(session: Session, *, now: dt.datetime, limit: int = 5000) -> SweepResult:
    """Flag legs that became at risk, late, or overdue for escalation: each flag once, each
    with an event on the order and notifications through the outbox. Reads only open,
    unflagged, due rows (partial indexes); concurrent sweeps skip each other's rows."""

    def due(column: Any, flag: Any, *extra: Any) -> list[Deadline]:
        return list(
            session.exec(
                select(Deadline)
                .where(
                    col(Deadline.closed_at).is_(None),
                    col(flag).is_(None),
                    col(column) <= now,
                    *extra,
                )
                .order_by(col(column))
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
        )

    at_risk_rows = due(Deadline.at_risk_at, Deadline.at_risk_flagged_at)
    context = _Context.load(session, at_risk_rows)
    at_risk = 0
    for row in at_risk_rows:
        row.at_risk_flagged_at = now
        if row.due_at > now:  # past due already: the late flag says it all
            _flag(session, context, row, AT_RISK, now)
            at_risk += 1
    late_rows = due(Deadline.due_at, Deadline.late_flagged_at)
    context = _Context.load(session, late_rows)
    for row in late_rows:
        row.late_flagged_at = now
        _flag(session, context, row, LATE, now)
    session.add_all([*at_risk_rows, *late_rows])
    session.flush()  # a leg found late may be overdue for escalation in this same sweep
    escalation_rows = due(
        Deadline.escalate_at, Deadline.escalated_at, col(Deadline.late_flagged_at).is_not(None)
    )
    context = _Context.load(session, escalation_rows)
    for row in escalation_rows:
        row.escalated_at = now
        _escalate_to(session, row)
        _flag(session, context, row, ESCALATED, now)
    session.add_all(escalation_rows)
    session.flush()
    return SweepResult(at_risk, len(late_rows), len(escalation_rows))


@dataclass
class _Context:
    """What the flags need, loaded once per sweep rather than once per row."""

    orders: dict[int, Order]
    units: dict[int, Unit]
    sites: dict[int, Site]

    @classmethod
    def load(cls, session: Session, rows: list[Deadline]) -> _Context:
        def by_id(model: Any, ids: set[int]) -> dict[int, Any]:
            if not ids:
                return {}
            found = session.exec(select(model).where(col(model.id).in_(ids))).all()
            return {item.id: item for item in found}

        return cls(
            orders=by_id(Order, {r.order_id for r in rows}),
            units=by_id(Unit, {r.unit_id for r in rows}),
            sites=by_id(Site, {r.site_id for r in rows}),
        )


def _flag(session: Session, context: _Context, row: Deadline, kind: str, now: dt.datetime) -> None:
    """An event on the order, and its news for the order's subscribers (an escalation also
    for the site holding the bag)."""
    order = context.orders[row.order_id]
    unit = context.units[row.unit_id]
    site = context.sites[row.site_id]
    assert order.id is not None
    assert row.id is not None
    detail = {
        "type": f"turnaround.{kind}",
        "kind": kind,
        "coi": order.coi,
        "din": unit.din,
        "leg": row.leg.value,
        "site": site.code,
        "started_at": row.started_at.isoformat(),
        "due_at": row.due_at.isoformat(),
        "recorded_at": now.isoformat(),
    }
    session.add(
        OrderEvent(order_id=order.id, kind=kind, deadline_id=row.id, detail=detail, recorded_at=now)
    )
    enqueue(
        session,
        order=order,
        source=kind,
        source_id=row.id,
        kind=kind,
        payload=detail,
        now=now,
        also_sites=(row.site_id,) if kind == ESCALATED else (),
    )


def _escalate_to(session: Session, row: Deadline) -> None:
    """Escalations reach the feed of the site holding the bag (its admin and QA read it)."""
    site = session.get(Site, row.site_id)
    assert site is not None
    exists = session.exec(
        select(Subscription).where(
            Subscription.site_id == row.site_id,
            col(Subscription.channel) == Channel.FEED,
            col(Subscription.active).is_(True),
        )
    ).first()
    if exists is None:
        session.add(
            Subscription(
                created_by_id=_system_user(session, row),
                site_id=row.site_id,
                channel=Channel.FEED,
                target=site.code,
                events=[ESCALATED],
            )
        )
        session.flush()  # the next INSERT ... SELECT of the outbox reads it


def _system_user(session: Session, row: Deadline) -> int:
    """Subscriptions record who made them; an automatic one is made by the order's enroller."""
    order = session.get(Order, row.order_id)
    assert order is not None
    return order.created_by_id
