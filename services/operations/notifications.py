"""Subscriptions and the notification outbox.

Custody operations call :func:`enqueue` in their own transaction, so an event and the news of it
commit together or not at all. The dispatcher claims due rows and hands each task an
``(id, claim_token)``; :func:`begin_attempt` lets exactly one task run use a claim, and
:func:`finish_attempt` records the outcome, the back-off, or the dead letter.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session, col, select

from services.db.cache import site_code
from services.db.models import (
    CustodyEvent,
    Notification,
    NotificationReplay,
    Order,
    OrderEvent,
    RefusedScan,
    Shipment,
    Site,
    Subscription,
    Unit,
    User,
)
from services.db.uow import PENDING_FLAG
from services.domain.errors import InvalidRequest, NotFound
from services.domain.identifiers import batch_code, shipment_code
from services.domain.local_time import UTC_ZONE, localize, zone
from services.domain.notifications import (
    CHECKPOINT,
    DIGEST,
    REFUSED_SCAN,
    SHIPMENT_DISCREPANCY,
    Channel,
    NotificationState,
    backoff,
    summary,
)
from services.domain.triage import Severity, severity
from services.operations import access
from services.operations.access import order_site_ids
from services.operations.admin import user_by_email

SOURCE_EVENT = "custody_event"
SOURCE_REFUSAL = "refused_scan"
SOURCE_DIGEST = "digest"
DIGEST_ITEMS = 500  # the items a digest lists (it counts them all)


# the outbox


def enqueue(
    session: Session,
    *,
    order: Order,
    source: str,
    source_id: int,
    kind: str,
    payload: dict[str, Any],
    now: dt.datetime,
    also_sites: tuple[int, ...] = (),
) -> int:
    """One notification per active subscription that wants this kind of event on this order
    (or on its sites, and ``also_sites``: the courier holding a bag, for its escalations), in
    one INSERT ... SELECT from the subscriptions. Returns how many were written."""
    channels = session.execute(
        _outbox_insert(session.get_bind().dialect.name),
        outbox_parameters(
            order, source=source, kind=kind, payload=payload, now=now, also_sites=also_sites
        )
        | {"n_source_id": source_id},
    ).all()
    if any(channel != Channel.FEED for (channel,) in channels):
        session.info[PENDING_FLAG] = True
    return len(channels)


def outbox_parameters(
    order: Order,
    *,
    source: str,
    kind: str,
    payload: dict[str, Any],
    now: dt.datetime,
    also_sites: tuple[int, ...] = (),
) -> dict[str, Any]:
    """The parameters of outbox_insert's statement (all but n_source_id). Named n_*: no
    column is called so, and Core would add a parameter named like a column to an INSERT or
    UPDATE sent with it."""
    return {
        "n_order_id": order.id,
        "n_site_ids": [*order_site_ids(order), *also_sites],
        "n_source": source,
        "n_kind": kind,
        "n_wanted": json.dumps([kind]),
        "n_payload": payload,
        "n_now": now,
        # progress news: held for the subscribers who take it as a daily digest
        "n_progress": severity(kind, payload) is Severity.INFORMATION,
    }


@functools.cache
def _outbox_insert(dialect: str) -> sa.Insert:
    """enqueue's statement, built once per dialect (it runs with every scan): only its
    parameters change."""
    outbox = Notification.__table__  # type: ignore[attr-defined]
    return outbox_insert(dialect, sa.bindparam("n_source_id", type_=outbox.c.source_id.type))


def outbox_insert(dialect: str, source_id: Any) -> sa.Insert:
    """INSERT INTO notifications ... SELECT from the subscriptions that want the news,
    RETURNING each one's channel; ``source_id``: a bound parameter, or (written in one
    statement with its event, services.operations.record) the event's new id."""
    subscriptions, outbox = Subscription.__table__, Notification.__table__  # type: ignore[attr-defined]
    feed = subscriptions.c.channel == Channel.FEED
    digested = sa.and_(
        subscriptions.c.digest.is_(True), sa.bindparam("n_progress", type_=sa.Boolean)
    )

    def value(name: str, column: str) -> Any:
        return sa.bindparam(f"n_{name}", type_=outbox.c[column].type)

    def constant(given: Any, column: str) -> Any:
        return sa.literal(given, outbox.c[column].type)

    chosen = (
        sa.select(
            subscriptions.c.id,
            value("order_id", "order_id"),
            value("source", "source"),
            source_id,
            value("kind", "kind"),
            subscriptions.c.channel,
            subscriptions.c.target,
            value("payload", "payload"),
            # the feed is this database: written is delivered
            sa.case(
                (feed, constant(NotificationState.DELIVERED, "state")),
                (digested, constant(NotificationState.HELD, "state")),
                else_=constant(NotificationState.PENDING, "state"),
            ),
            sa.case((feed, value("now", "delivered_at")), else_=sa.null()),
            value("now", "next_attempt_at"),
            value("now", "created_at"),
        )
        .where(
            subscriptions.c.active.is_(True),
            sa.or_(
                subscriptions.c.order_id == sa.bindparam("n_order_id"),
                subscriptions.c.site_id.in_(sa.bindparam("n_site_ids", expanding=True)),
            ),
            _wants(dialect, subscriptions.c.events),
        )
        .order_by(subscriptions.c.id)
    )
    columns = (
        "subscription_id", "order_id", "source", "source_id", "kind", "channel", "target",
        "payload", "state", "delivered_at", "next_attempt_at", "created_at",
    )  # fmt: skip
    return (
        sa.insert(outbox)
        .from_select([outbox.c[name] for name in columns], chosen)
        .returning(outbox.c.channel)
    )


def _wants(dialect: str, events: Any) -> Any:
    """``wants(events, kind)`` in SQL: no list (SQL or JSON null) is every kind."""
    if dialect == "postgresql":
        listed = sa.cast(events, JSONB)
        return sa.or_(
            events.is_(None),
            listed == sa.cast(sa.literal("null"), JSONB),
            listed.contains(sa.cast(sa.bindparam("n_wanted", type_=sa.String), JSONB)),
        )
    each = sa.func.json_each(events).table_valued("value")
    return sa.or_(
        events.is_(None),
        sa.func.json_type(events) == "null",
        sa.exists(
            sa.select(sa.literal(1))
            .select_from(each)
            .where(each.c.value == sa.bindparam("n_kind", type_=sa.String))
        ),
    )


def enqueue_for_event(
    session: Session, *, event: CustodyEvent, order: Order, unit: Unit | None
) -> int:
    assert event.id is not None
    return enqueue(
        session,
        order=order,
        source=SOURCE_EVENT,
        source_id=event.id,
        kind=event.action,
        payload=event_payload(session, event=event, order=order, unit=unit),
        now=event.recorded_at,
    )


def event_payload(
    session: Session, *, event: CustodyEvent, order: Order, unit: Unit | None
) -> dict[str, Any]:
    """A custody event's news, as subscribers receive it (it names no database id)."""
    return {
        "type": f"custody.{event.action}",
        "kind": event.action,
        "coi": order.coi,
        "din": unit.din if unit else None,
        "batch": batch_code(event.batch_id) if event.batch_id else None,
        "batch_status": event.batch_state.value if event.batch_state else None,
        "reason": event.reason,
        "sequence": event.sequence,
        "from_state": event.from_state.value if event.from_state else None,
        "to_state": event.to_state.value if event.to_state else None,
        "site": _code(session, event.site_id),
        "custodian": _code(session, event.custodian_site_id),
        "shipment": shipment_code(event.shipment_id) if event.shipment_id else None,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "needs_review": event.needs_review,
    }


def _code(session: Session, site_id: int) -> str:
    """A site's code (codes never change: kept per process, so this costs no query)."""
    return site_code(session, site_id)


def report_discrepancy(
    session: Session, *, order: Order, shipment: Shipment, missing: list[str], now: dt.datetime
) -> int:
    """Bags of a shipment's manifest that did not arrive: on the order's record, and notified."""
    assert shipment.id is not None
    detail = {
        "type": f"custody.{SHIPMENT_DISCREPANCY}",
        "kind": SHIPMENT_DISCREPANCY,
        "coi": order.coi,
        "shipment": shipment_code(shipment.id),
        "missing": missing,
        "site": _code(session, shipment.destination_site_id),
        "recorded_at": now.isoformat(),
    }
    row = OrderEvent(order_id=order.id, kind=SHIPMENT_DISCREPANCY, detail=detail, recorded_at=now)  # type: ignore[arg-type]
    session.add(row)
    session.flush()
    assert row.id is not None
    return enqueue(
        session,
        order=order,
        source=SHIPMENT_DISCREPANCY,
        source_id=row.id,
        kind=SHIPMENT_DISCREPANCY,
        payload=detail,
        now=now,
    )


def notify_witnesses(session: Session, row: Any) -> list[Notification]:
    """A checkpoint goes to every subscription that asked for checkpoints by name (a QA
    mailbox, an external witness's webhook): copies kept outside this database."""
    from services.operations.audit import checkpoint_document

    assert row.id is not None
    payload = {
        "kind": CHECKPOINT,
        "recorded_at": row.taken_at.isoformat(),
        **checkpoint_document(row),
    }
    written = []
    for subscription in session.exec(
        select(Subscription)
        .where(col(Subscription.active).is_(True))
        .order_by(col(Subscription.id))
    ).all():
        if not subscription.events or CHECKPOINT not in subscription.events:
            continue
        feed = subscription.channel is Channel.FEED
        notification = Notification(
            subscription_id=subscription.id,  # type: ignore[arg-type]
            order_id=None,
            source=CHECKPOINT,
            source_id=row.id,
            kind=CHECKPOINT,
            channel=subscription.channel,
            target=subscription.target,
            payload=payload,
            state=NotificationState.DELIVERED if feed else NotificationState.PENDING,
            delivered_at=row.taken_at if feed else None,
            next_attempt_at=row.taken_at,
            created_at=row.taken_at,
        )
        session.add(notification)
        written.append(notification)
        if not feed:
            session.info[PENDING_FLAG] = True
    return written


def enqueue_for_refusal(session: Session, *, refusal: RefusedScan) -> int:
    if refusal.order_id is None or refusal.id is None:
        return 0  # a scan of nothing we know: on record for QA, but no order to tell
    order = session.get(Order, refusal.order_id)
    unit = session.get(Unit, refusal.unit_id) if refusal.unit_id else None
    assert order is not None
    payload = {
        "type": f"custody.{REFUSED_SCAN}",
        "kind": REFUSED_SCAN,
        "coi": order.coi,
        "din": unit.din if unit else None,
        "action": refusal.action,
        "site": refusal.site_code,
        "code": refusal.code,
        "detail": refusal.detail,
        "occurred_at": refusal.occurred_at.isoformat() if refusal.occurred_at else None,
        "recorded_at": refusal.recorded_at.isoformat(),
    }
    return enqueue(
        session,
        order=order,
        source=SOURCE_REFUSAL,
        source_id=refusal.id,
        kind=REFUSED_SCAN,
        payload=payload,
        now=refusal.recorded_at,
    )


# the daily digest


def fold_digests(session: Session, *, now: dt.datetime, hour: int) -> list[int]:
    """Fold each digest subscriber's held progress news into one message a day: at the first
    run after ``hour``:00 on the clock of the subscriber's site, everything held from before
    that moment becomes one digest notification, which the outbox delivers like any other;
    the rows folded are delivered with it (``digest_id``). Items of orders the subscriber may
    no longer see are left out. Returns the new digests' ids; running it twice folds nothing
    twice (a row is folded once, and a digest is unique per subscription and last item)."""
    held = session.exec(
        select(Notification)
        .where(col(Notification.state) == NotificationState.HELD)
        .order_by(col(Notification.subscription_id), col(Notification.id))
        .with_for_update(skip_locked=True)
    ).all()
    by_subscription: dict[int, list[Notification]] = {}
    for row in held:
        by_subscription.setdefault(row.subscription_id, []).append(row)
    made = []
    for subscription_id, rows in by_subscription.items():
        subscription = session.get(Subscription, subscription_id)
        assert subscription is not None
        cutoff = _digest_cutoff(session, subscription, now=now, hour=hour)
        due = [row for row in rows if row.created_at < cutoff]
        if not due:
            continue
        made.append(_fold(session, subscription, due, cutoff=cutoff, now=now))
    if made:
        session.info[PENDING_FLAG] = True
    return made


def _digest_cutoff(
    session: Session, subscription: Subscription, *, now: dt.datetime, hour: int
) -> dt.datetime:
    """The latest ``hour``:00 at or before ``now`` on the clock of the subscriber's site."""
    user = session.get(User, subscription.created_by_id)
    site = session.get(Site, user.site_id) if user else None
    name = site.time_zone if site else UTC_ZONE
    local = localize(now, name).replace(minute=0, second=0, microsecond=0)
    if local.hour < hour:
        local -= dt.timedelta(days=1)
    wall = local.replace(hour=hour, tzinfo=None)
    return wall.replace(tzinfo=zone(name)).astimezone(dt.UTC)


def _fold(
    session: Session,
    subscription: Subscription,
    rows: list[Notification],
    *,
    cutoff: dt.datetime,
    now: dt.datetime,
) -> int:
    seeing: dict[int | None, bool] = {}
    items = []
    for row in rows:
        if row.order_id not in seeing:
            seeing[row.order_id] = access.may_receive(session, subscription, row.order_id) is None
        if seeing[row.order_id]:
            items.append(
                {
                    "kind": row.kind,
                    "coi": row.payload.get("coi"),
                    "din": row.payload.get("din"),
                    "summary": summary(row.payload),
                    "at": row.created_at.isoformat(),
                }
            )
    payload = {
        "type": "digest.daily",
        "kind": DIGEST,
        "count": len(items),
        "since": rows[0].created_at.isoformat(),
        "until": cutoff.isoformat(),
        "items": items[:DIGEST_ITEMS],
        "recorded_at": now.isoformat(),
    }
    last = rows[-1].id
    assert last is not None
    digest = Notification(
        subscription_id=subscription.id,  # type: ignore[arg-type]
        order_id=None,
        source=SOURCE_DIGEST,
        source_id=last,
        kind=DIGEST,
        channel=subscription.channel,
        target=subscription.target,
        payload=payload,
        state=NotificationState.PENDING if items else NotificationState.DELIVERED,
        delivered_at=None if items else now,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(digest)
    session.flush()
    for row in rows:
        row.state = NotificationState.DELIVERED
        row.delivered_at = now
        row.digest_id = digest.id
        session.add(row)
    assert digest.id is not None
    return digest.id


# dispatch and delivery


Stream = tuple[int, int | None]  # (subscription, order): what one subscriber hears in order


def claim_due(
    session: Session, *, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[tuple[int, str]]:
    """:func:`claim_streams`, one stream after the other."""
    return [
        claim
        for stream in claim_streams(session, now=now, lease=lease, limit=limit)
        for claim in stream
    ]


def claim_streams(
    session: Session,
    *,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int,
    only: set[Stream] | None = None,
) -> list[list[tuple[int, str]]]:
    """Claim up to ``limit`` due notifications: each gets a fresh token and is not due again
    until ``lease`` has passed. Concurrent dispatchers skip each other's rows.

    Each subscriber hears about an order in the order things happened. A (subscription, order)
    stream is claimed only from its oldest undelivered notification on, and only as far as
    this dispatcher holds every one of them; the claims come back grouped by stream, oldest
    first, for one task to deliver one after the other. ``only`` limits the claim to some
    streams: a delivery task continuing the streams it holds.
    """
    conditions = [
        col(Notification.state) == NotificationState.PENDING,
        col(Notification.next_attempt_at) <= now,
    ]
    if only is not None:
        if not only:
            return []
        conditions.append(
            sa.tuple_(col(Notification.subscription_id), col(Notification.order_id)).in_(only)
        )
    locked = session.exec(
        select(Notification)
        .where(*conditions)
        .order_by(col(Notification.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not locked:
        return []
    held = {row.id: row for row in locked}
    streams = {(row.subscription_id, row.order_id) for row in locked}
    # every undelivered notification of those streams, oldest first
    waiting = session.exec(
        select(col(Notification.id), col(Notification.subscription_id), col(Notification.order_id))
        .where(
            col(Notification.state) == NotificationState.PENDING,
            col(Notification.subscription_id).in_({s for s, _ in streams}),
        )
        .order_by(col(Notification.id))
    ).all()
    blocked: set[Stream] = set()
    claims: dict[Stream, list[tuple[int, str]]] = {}
    for notification_id, subscription_id, order_id in waiting:
        stream = (subscription_id, order_id)
        if stream not in streams or stream in blocked:
            continue
        row = held.get(notification_id)
        if row is None:  # in flight, backing off, or held by another dispatcher: wait for it
            blocked.add(stream)
            continue
        assert notification_id is not None
        token = str(uuid.uuid4())
        row.claim_token = token
        row.next_attempt_at = now + lease
        session.add(row)
        claims.setdefault(stream, []).append((notification_id, token))
    return list(claims.values())


def streams_of(session: Session, notification_ids: list[int]) -> set[Stream]:
    rows = session.exec(
        select(col(Notification.subscription_id), col(Notification.order_id)).where(
            col(Notification.id).in_(notification_ids)
        )
    ).all()
    return {(subscription_id, order_id) for subscription_id, order_id in rows}


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt needs, read in a short transaction before any I/O."""

    notification_id: int
    stream: Stream
    number: int
    channel: Channel
    target: str
    payload: dict[str, Any]
    secret: str | None
    created_at: dt.datetime


def begin_attempt(
    session: Session,
    *,
    notification_id: int,
    token: str,
    now: dt.datetime,
    lease: dt.timedelta,
    max_attempts: int,
) -> Attempt | None:
    """Spend the claim: only the first task run holding ``token`` gets to send.

    Two things end a row here instead of sending it: it has used up its attempts without ever
    reporting an outcome (every worker that took it died or timed out), or its subscriber may
    no longer see the order (deactivated, moved to another site): nothing is sent to them, and
    the subscription is disabled with the reason."""
    result = session.execute(
        sa.update(Notification)
        .where(
            col(Notification.id) == notification_id,
            col(Notification.claim_token) == token,
            col(Notification.state) == NotificationState.PENDING,
        )
        .values(claim_token=None, attempts=Notification.attempts + 1, next_attempt_at=now + lease)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None  # already sent, already being sent, or claimed again since
    row = session.get(Notification, notification_id, populate_existing=True)
    assert row is not None
    subscription = session.get(Subscription, row.subscription_id)
    assert subscription is not None
    if row.attempts > max_attempts:
        _give_up(
            row,
            f"gave up after {row.attempts - 1} attempts that never reported an outcome "
            "(the worker sending it died or was stopped each time)",
        )
        return None
    refusal = access.may_receive(session, subscription, row.order_id)
    if refusal is not None:
        _give_up(row, f"not sent: {refusal}")
        subscription.active = False
        subscription.disabled_reason = f"{refusal} ({now.isoformat()})"[:500]
        session.add(subscription)
        return None
    return Attempt(
        notification_id=notification_id,
        stream=(row.subscription_id, row.order_id),
        number=row.attempts,
        channel=row.channel,
        target=row.target,
        payload=row.payload,
        secret=subscription.secret,
        created_at=row.created_at,
    )


def _give_up(row: Notification, why: str) -> None:
    row.state = NotificationState.DEAD
    row.last_error = why[:1000]
    row.claim_token = None


@dataclass(frozen=True)
class Outcome:
    error: str | None = None
    permanent: bool = False  # no point retrying (refused target, malformed address)
    gone: bool = False  # the endpoint said 410 Gone: disable the subscription


def finish_attempt(
    session: Session,
    *,
    attempt: Attempt,
    outcome: Outcome,
    now: dt.datetime,
    max_attempts: int,
    backoff_base: float,
    backoff_cap: float,
) -> NotificationState:
    row = session.get(Notification, attempt.notification_id, with_for_update=True)
    assert row is not None
    if row.state is not NotificationState.PENDING:
        return row.state
    if outcome.error is None:
        row.state = NotificationState.DELIVERED
        row.delivered_at = now
        row.last_error = None
    else:
        row.last_error = outcome.error[:1000]
        if outcome.permanent or outcome.gone or row.attempts >= max_attempts:
            row.state = NotificationState.DEAD
        else:
            row.next_attempt_at = now + backoff(
                row.attempts,
                base=backoff_base,
                cap=backoff_cap,
                jitter=random.random(),  # noqa: S311 - spreading retries, not a secret
            )
        if outcome.gone:
            subscription = session.get(Subscription, row.subscription_id)
            assert subscription is not None
            subscription.active = False
            subscription.disabled_reason = f"endpoint answered 410 Gone at {now.isoformat()}"
            session.add(subscription)
    session.add(row)
    return row.state


def dead_letters(session: Session) -> list[Notification]:
    return list(
        session.exec(
            select(Notification)
            .where(col(Notification.state) == NotificationState.DEAD)
            .order_by(col(Notification.id))
        ).all()
    )


def release_attempt(session: Session, *, attempt: Attempt, now: dt.datetime) -> None:
    """Give back an attempt that was not made (an earlier notification of its stream failed):
    it does not count, and it is due again at once, behind that one."""
    session.execute(
        sa.update(Notification)
        .where(
            col(Notification.id) == attempt.notification_id,
            col(Notification.state) == NotificationState.PENDING,
        )
        .values(attempts=Notification.attempts - 1, next_attempt_at=now)
    )


def replay_dead(
    session: Session, *, ids: list[int] | None, email: str, reason: str, now: dt.datetime
) -> list[int]:
    """Send dead letters again, each replay on record (who, when, why, what it was)."""
    if not reason.strip():
        raise InvalidRequest("a replay needs a reason")
    user = user_by_email(session, email)
    query = select(Notification).where(col(Notification.state) == NotificationState.DEAD)
    if ids is not None:
        query = query.where(col(Notification.id).in_(ids))
    rows = session.exec(query.order_by(col(Notification.id)).with_for_update()).all()
    if ids is not None and len(rows) != len(set(ids)):
        missing = sorted(set(ids) - {row.id for row in rows if row.id is not None})
        raise NotFound(f"no dead notifications {missing}")
    assert user.id is not None
    for row in rows:
        assert row.id is not None
        session.add(
            NotificationReplay(
                notification_id=row.id,
                replayed_by_id=user.id,
                reason=reason.strip(),
                previous_state=row.state.value,
                previous_attempts=row.attempts,
                previous_error=row.last_error,
                replayed_at=now,
            )
        )
        row.state = NotificationState.PENDING
        row.attempts = 0
        row.next_attempt_at = now
        row.claim_token = None
        session.add(row)
    if rows:
        session.info[PENDING_FLAG] = True
    return [row.id for row in rows if row.id is not None]
