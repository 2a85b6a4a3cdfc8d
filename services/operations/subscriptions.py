"""Subscriptions (who hears what, on which channel) and each site's in-app feed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import Notification, NotificationRead, Order, Site, Subscription
from services.domain.custody import Actor, Role
from services.domain.errors import Forbidden, InvalidRequest, NotFound
from services.domain.notifications import CHECKPOINT, Channel, check_events, check_target
from services.domain.webhook_secrets import new_secret, reseal, seal
from services.operations.access import order_by_coi, own_subscription

WITNESS_ROLES = (Role.QA, Role.ADMIN)


def default_subscription(session: Session, *, order: Order, actor: Actor) -> Subscription:
    """Every order's treatment site hears about it in its feed, without asking."""
    site = session.get(Site, order.treatment_site_id)
    assert site is not None
    subscription = Subscription(
        created_by_id=actor.user_id, order_id=order.id, channel=Channel.FEED, target=site.code
    )
    session.add(subscription)
    return subscription


def subscribe(
    session: Session,
    *,
    actor: Actor,
    coi: str | None,
    site: str | None,
    channel: Channel,
    target: str,
    events: list[str] | None,
    allow_private: bool,
    secret_keys: Sequence[str] = (),
    digest: bool = False,
) -> tuple[Subscription, str | None]:
    """A new subscription; returns it and, for a webhook, its signing secret (shown once, and
    kept sealed under the first of ``secret_keys``: WEBHOOK_SECRET_KEY's). ``digest``: progress
    news comes folded into one message a day; warnings and critical news still come at once."""
    target = check_target(channel, target, allow_private=allow_private)
    events = check_events(events)
    order_id: int | None = None
    site_id: int | None = None
    if events and CHECKPOINT in events:
        # a witness: the installation's signed checkpoints, kept outside its database
        if events != [CHECKPOINT] or coi is not None:
            raise InvalidRequest(
                'a witness subscribes to checkpoints alone: events ["checkpoint"] and no coi'
            )
        if actor.role not in WITNESS_ROLES:
            raise Forbidden("only QA and admins subscribe witnesses to the audit checkpoints")
        site = site or actor.site.code  # kept by the subscriber's site, like a site's news
    elif (coi is None) == (site is None):
        raise InvalidRequest("subscribe to one order (coi) or to one site (site), not both")
    if coi is not None:
        order_id = order_by_coi(session, actor, coi).id
    elif site is not None:
        if site != actor.site.code:
            raise Forbidden(f"you act for site {actor.site.code}; subscribe to your own site")
        site_id = actor.site_id
    secret = None
    if channel is Channel.WEBHOOK:
        secret = new_secret()
    subscription = Subscription(
        created_by_id=actor.user_id,
        order_id=order_id,
        site_id=site_id,
        channel=channel,
        target=target,
        events=events,
        secret=seal(secret, secret_keys) if secret else None,
        digest=digest,
    )
    session.add(subscription)
    session.flush()
    return subscription, secret


def subscriptions_of(session: Session, actor: Actor) -> list[Subscription]:
    return list(
        session.exec(
            select(Subscription)
            .where(Subscription.created_by_id == actor.user_id, col(Subscription.channel) != "feed")
            .order_by(col(Subscription.id))
        ).all()
    )


def unsubscribe(session: Session, *, actor: Actor, subscription_id: int) -> Subscription:
    subscription = own_subscription(session, actor, subscription_id)
    subscription.active = False
    subscription.disabled_reason = "unsubscribed"
    session.add(subscription)
    return subscription


def feed(
    session: Session,
    *,
    actor: Actor,
    unread_only: bool,
    limit: int,
    coi: str | None = None,
    kind: str | None = None,
) -> list[tuple[Notification, dt.datetime | None]]:
    """The actor's site's feed, newest first, with when the actor read each item; only one
    order's (``coi``) or one kind's items when asked."""
    query = (
        select(Notification, col(NotificationRead.read_at))
        .outerjoin(
            NotificationRead,
            sa.and_(
                col(NotificationRead.notification_id) == col(Notification.id),
                col(NotificationRead.user_id) == actor.user_id,
            ),
        )
        .where(
            col(Notification.channel) == Channel.FEED, col(Notification.target) == actor.site.code
        )
        .order_by(col(Notification.id).desc())
        .limit(limit)
    )
    if unread_only:
        query = query.where(col(NotificationRead.read_at).is_(None))
    if coi is not None:
        order = session.exec(select(Order.id).where(Order.coi == coi)).first()
        query = query.where(col(Notification.order_id) == order)
    if kind is not None:
        query = query.where(col(Notification.kind) == kind)
    return [(row, read_at) for row, read_at in session.exec(query).all()]


def unread_count(session: Session, actor: Actor) -> int:
    """How many items of the actor's site's feed the actor has not read (every page's nav)."""
    read = select(NotificationRead.notification_id).where(NotificationRead.user_id == actor.user_id)
    return int(
        session.exec(
            select(sa.func.count())
            .select_from(Notification)
            .where(
                col(Notification.channel) == Channel.FEED,
                col(Notification.target) == actor.site.code,
                col(Notification.id).not_in(read),
            )
        ).one()
    )


def mark_all_read(session: Session, *, actor: Actor, now: dt.datetime) -> int:
    unread = feed(session, actor=actor, unread_only=True, limit=10_000)
    for row, _ in unread:
        assert row.id is not None
        session.add(NotificationRead(notification_id=row.id, user_id=actor.user_id, read_at=now))
    return len(unread)


def notify_me(session: Session, *, actor: Actor, coi: str) -> Subscription:
    """ "Notify me" on an order: its news by e-mail to the actor, once (a second click finds
    the subscription there already)."""
    order = order_by_coi(session, actor, coi)
    existing = session.exec(
        select(Subscription).where(
            Subscription.created_by_id == actor.user_id,
            Subscription.order_id == order.id,
            col(Subscription.channel) == Channel.EMAIL,
            col(Subscription.active).is_(True),
        )
    ).first()
    if existing is not None:
        return existing
    subscription, _secret = subscribe(
        session,
        actor=actor,
        coi=coi,
        site=None,
        channel=Channel.EMAIL,
        target=actor.email,
        events=None,
        allow_private=False,
    )
    return subscription


def mark_read(session: Session, *, actor: Actor, notification_id: int, now: dt.datetime) -> None:
    row = session.get(Notification, notification_id)
    if row is None or row.channel is not Channel.FEED or row.target != actor.site.code:
        raise NotFound(f"no notification {notification_id} in your feed")
    if session.get(NotificationRead, (notification_id, actor.user_id)) is None:
        session.add(
            NotificationRead(notification_id=notification_id, user_id=actor.user_id, read_at=now)
        )


def seal_secrets(session: Session, *, secret_keys: Sequence[str]) -> int:
    """Seal every webhook secret kept in clear (from before they were sealed) or under a key
    that is no longer the first; returns how many were sealed. A secret no key opens raises
    (SecretUnreadable), naming nothing sealed."""
    count = 0
    rows = session.exec(select(Subscription).where(col(Subscription.secret).is_not(None)))
    for row in rows.all():
        assert row.secret is not None
        sealed = reseal(row.secret, secret_keys)
        if sealed is not None:
            row.secret = sealed
            session.add(row)
            count += 1
    return count
