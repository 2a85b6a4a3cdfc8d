"""A site's alerts, triaged (services.domain.triage): critical news pinned above the rest until
someone of the site acknowledges it (who and when, kept), then warnings, with progress folded
away; each item says what to do and for which patient (the reference only for a reader who
may see it); the count in every page's navigation is what needs a look, not every milestone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import AlertAcknowledgement, Notification, NotificationRead, Order, User
from services.domain.custody import Actor, Role
from services.domain.errors import Forbidden, InvalidRequest, NotFound
from services.domain.notifications import Channel
from services.domain.triage import (
    MAYBE_CRITICAL_KINDS,
    RANK,
    Advice,
    Severity,
    advise,
    is_for,
    roles_for,
    severity,
)
from services.operations.access import may_see_patient_ref
from services.operations.subscriptions import feed

PINNED_LOOK_BACK = 500  # the newest items of a maybe-critical kind the pinned list reads
COUNTED_LOOK_BACK = 1000  # the unread items the navigation's count reads at most


@dataclass(frozen=True)
class Alert:
    notification: Notification
    advice: Advice
    read_at: dt.datetime | None
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None

    @property
    def severity(self) -> Severity:
        return self.advice.severity

    @property
    def pinned(self) -> bool:
        return self.severity is Severity.CRITICAL and self.acknowledged_at is None


@dataclass(frozen=True)
class AlertsView:
    pinned: list[Alert]  # critical, not acknowledged: first, whatever the filters say
    alerts: list[Alert]  # the rest that the filters keep, warnings and critical first
    progress: list[Alert]  # information, folded away


def _site_feed() -> sa.ColumnElement[bool]:
    return col(Notification.channel) == Channel.FEED


def _for_role(actor: Actor, kind: str) -> bool:
    return actor.role is Role.ADMIN or is_for(kind, actor.role)


def _patients(session: Session, actor: Actor, rows: Iterable[Notification]) -> dict[int, str]:
    """Patient references of the orders named, for the orders whose reference the actor may
    see (collection and treatment sites)."""
    ids = {row.order_id for row in rows if row.order_id is not None}
    if not ids:
        return {}
    orders = session.exec(select(Order).where(col(Order.id).in_(ids))).all()
    return {
        order.id: order.current_patient_ref
        for order in orders
        if order.id is not None and may_see_patient_ref(actor, order)
    }


def _acknowledgements(session: Session, ids: set[int]) -> dict[int, tuple[str, dt.datetime]]:
    if not ids:
        return {}
    rows = session.exec(
        select(AlertAcknowledgement, User.email)
        .join(User, col(User.id) == col(AlertAcknowledgement.user_id))
        .where(col(AlertAcknowledgement.notification_id).in_(ids))
    ).all()
    return {ack.notification_id: (email, ack.acknowledged_at) for ack, email in rows}


def _alerts(
    session: Session,
    actor: Actor,
    rows: list[tuple[Notification, dt.datetime | None]],
    clock: Callable[[dt.datetime], str],
) -> list[Alert]:
    patients = _patients(session, actor, (row for row, _ in rows))
    acks = _acknowledgements(session, {row.id for row, _ in rows if row.id is not None})
    alerts = []
    for row, read_at in rows:
        ack = acks.get(row.id or 0)
        alerts.append(
            Alert(
                notification=row,
                advice=advise(
                    row.payload,
                    patient_ref=patients.get(row.order_id) if row.order_id else None,
                    clock=clock,
                ),
                read_at=read_at,
                acknowledged_by=ack[0] if ack else None,
                acknowledged_at=ack[1] if ack else None,
            )
        )
    return alerts


def pinned(session: Session, actor: Actor, *, clock: Callable[[dt.datetime], str]) -> list[Alert]:
    """The site's critical alerts for the actor's role that nobody has acknowledged, newest
    first."""
    acknowledged = select(AlertAcknowledgement.notification_id)
    read_at = (
        select(NotificationRead.read_at)
        .where(
            col(NotificationRead.notification_id) == col(Notification.id),
            NotificationRead.user_id == actor.user_id,
        )
        .scalar_subquery()
    )
    rows = session.exec(
        select(Notification, read_at)
        .where(
            _site_feed(),
            col(Notification.target) == actor.site.code,
            col(Notification.kind).in_(MAYBE_CRITICAL_KINDS),
            col(Notification.id).not_in(acknowledged),
        )
        .order_by(col(Notification.id).desc())
        .limit(PINNED_LOOK_BACK)
    ).all()
    chosen = [
        (row, read)
        for row, read in rows
        # pinned for the roles it is for: they are the ones who acknowledge it
        if severity(row.kind, row.payload) is Severity.CRITICAL and is_for(row.kind, actor.role)
    ]
    return _alerts(session, actor, chosen, clock)


def site_alerts(
    session: Session,
    actor: Actor,
    *,
    clock: Callable[[dt.datetime], str],
    unread_only: bool = False,
    coi: str | None = None,
    kind: str | None = None,
    everything: bool = False,
    limit: int = 200,
) -> AlertsView:
    """The actor's site's feed, triaged. ``everything``: not only what is for the actor's
    role."""
    top = pinned(session, actor, clock=clock)
    pinned_ids = {alert.notification.id for alert in top}
    rows = feed(session, actor=actor, unread_only=unread_only, limit=limit, coi=coi, kind=kind)
    if not everything:
        rows = [(row, read) for row, read in rows if _for_role(actor, row.kind)]
    listed = [
        a for a in _alerts(session, actor, rows, clock) if a.notification.id not in pinned_ids
    ]
    urgent = sorted(
        (a for a in listed if a.severity is not Severity.INFORMATION),
        key=lambda a: (RANK[a.severity], -(a.notification.id or 0)),
    )
    progress = [a for a in listed if a.severity is Severity.INFORMATION]
    return AlertsView(pinned=top, alerts=urgent, progress=progress)


def needing_a_look(session: Session, actor: Actor) -> int:
    """What the navigation counts: critical alerts nobody acknowledged, and the actor's unread
    warnings, for the actor's role. Progress is not counted: it is news, not an alert."""
    read = select(NotificationRead.notification_id).where(NotificationRead.user_id == actor.user_id)
    acknowledged = select(AlertAcknowledgement.notification_id)
    rows = session.exec(
        select(Notification.kind, Notification.payload, col(Notification.id).in_(read))
        .where(
            _site_feed(),
            col(Notification.target) == actor.site.code,
            col(Notification.kind).not_in(_PROGRESS_ONLY),
            col(Notification.id).not_in(acknowledged),
        )
        .order_by(col(Notification.id).desc())
        .limit(COUNTED_LOOK_BACK)
    ).all()
    count = 0
    for kind, payload, was_read in rows:
        if not _for_role(actor, kind):
            continue
        level = severity(kind, payload)
        if level is Severity.CRITICAL or (level is Severity.WARNING and not was_read):
            count += 1
    return count


# kinds that are never more than progress: the count need not read them
_PROGRESS_ONLY = (
    "enroll",
    "collect",
    "verify_label",
    "cryopreserve",
    "pack",
    "unpack",
    "pickup",
    "deliver",
    "receive",
    "start_manufacturing",
    "produce",
    "release",
    "store",
    "thaw",
    "infuse",
    "release_hold",
    "readings",
    "correct",
    "patient_merge",
    "checkpoint",
)


def acknowledge(
    session: Session, *, actor: Actor, notification_id: int, now: dt.datetime
) -> AlertAcknowledgement:
    """A critical alert of the actor's site acknowledged: who and when, kept; it is read for
    the actor too. Acknowledged once: a second acknowledgement finds the first."""
    # locked: two people acknowledging at once find one acknowledgement, the first
    row = session.get(Notification, notification_id, with_for_update=True)
    if row is None or row.channel is not Channel.FEED or row.target != actor.site.code:
        raise NotFound(f"no alert {notification_id} in your site's feed")
    if severity(row.kind, row.payload) is not Severity.CRITICAL:
        raise InvalidRequest("only a critical alert is acknowledged; mark this one read")
    if not is_for(row.kind, actor.role):
        whom = ", ".join(sorted(role.value.replace("_", " ") for role in roles_for(row.kind)))
        raise Forbidden(f"this alert is for {whom}: one of them acknowledges it")
    found = session.get(AlertAcknowledgement, notification_id)
    if found is not None:
        return found
    ack = AlertAcknowledgement(
        notification_id=notification_id, user_id=actor.user_id, acknowledged_at=now
    )
    session.add(ack)
    if session.get(NotificationRead, (notification_id, actor.user_id)) is None:
        session.add(
            NotificationRead(notification_id=notification_id, user_id=actor.user_id, read_at=now)
        )
    session.flush()
    return ack
