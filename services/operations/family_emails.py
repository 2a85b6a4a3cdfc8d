"""The family's e-mails: opted in (and out) on their status page, written to the outbox when
the step they can read moves on, at most one a day and none at night at the treatment site,
each with a stop link signed with the installation's secret (nothing of it is stored).

They go through the outbox like every notification (services.operations.notifications: the
row, its retries, its dead letter), as a subscription of the order's own that wants only the
``family_stage`` kind, owned by the care team member who made the link.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, select

from services.db.models import Notification, Order, Site, StatusLink, Subscription
from services.db.uow import PENDING_FLAG
from services.domain import family_status as family
from services.domain.errors import NotFound
from services.domain.local_time import UTC_ZONE, zone
from services.domain.notifications import Channel, NotificationState
from services.domain.targets import check_email_address
from services.operations import family_status
from services.operations.changelog import record_change
from services.operations.family_status import stop_emails, subscribed

DEFAULT_PUBLIC_URL = "http://localhost:5000"  # PUBLIC_URL unset: the development server


def set_emails(session: Session, *, link: StatusLink, email: str | None, now: dt.datetime) -> None:
    """The family turns e-mails on (to ``email``) or off (None). Only the next stage change
    is sent: the stage they read now is the one they know."""
    order = session.get(Order, link.order_id)
    assert order is not None
    assert order.id is not None
    if email is None:
        if subscribed(session, link):
            stop_emails(session, link, "the family stopped the e-mails", now)
            _record_emails(session, link, order, on=False, now=now)
        return
    target = check_email_address(email)
    stop_emails(session, link, "the family gave another address", now)
    subscription = Subscription(
        created_by_id=link.created_by_id,
        order_id=order.id,
        channel=Channel.EMAIL,
        target=target,
        events=[family.FAMILY_KIND],  # no custody news: only what notify_families writes
    )
    session.add(subscription)
    session.flush()
    link.subscription_id = subscription.id
    link.notified_stage = (
        family_status.family_view(session, link=link, now=now).stage or ""
    ) or None
    link.notified_at = None
    session.add(link)
    _record_emails(session, link, order, on=True, now=now)


def _record_emails(
    session: Session, link: StatusLink, order: Order, *, on: bool, now: dt.datetime
) -> None:
    record_change(
        session,
        actor=family_status.FAMILY_PAGE,
        action="family e-mails " + ("on" if on else "off"),
        subject=f"{order.coi} status link {link.id}",
        after={"emails": on},
        now=now,
        site_id=order.treatment_site_id,
    )


def stop_by_signature(
    session: Session, *, subscription_id: int, signature: str, secret_key: str, now: dt.datetime
) -> bool:
    """The e-mail's unsubscribe link: True when that subscription's e-mails are off now."""
    if not family.check_stop_signature(secret_key, subscription_id, signature):
        raise NotFound("no such subscription")
    link = session.exec(
        select(StatusLink).where(StatusLink.subscription_id == subscription_id)
    ).first()
    if link is None:
        raise NotFound("no such subscription")
    if subscribed(session, link):
        order = session.get(Order, link.order_id)
        assert order is not None
        stop_emails(session, link, "the family unsubscribed", now)
        _record_emails(session, link, order, on=False, now=now)
    return True


def stop_url(public_url: str, secret_key: str, subscription_id: int) -> str:
    signature = family.stop_signature(secret_key, subscription_id)
    return f"{public_url.rstrip('/')}/status/stop/{subscription_id}/{signature}"


def notify_families(
    session: Session, *, now: dt.datetime, public_url: str, secret_key: str
) -> list[int]:
    """One outbox row per link whose family opted in and whose shown stage moved since their
    last e-mail: at most one a day, none at night at the treatment site."""
    links = session.exec(
        select(StatusLink)
        .join(Subscription, col(Subscription.id) == col(StatusLink.subscription_id))
        .where(
            col(Subscription.active).is_(True),
            col(StatusLink.revoked_at).is_(None),
            col(StatusLink.expires_at) > now,
        )
        .order_by(col(StatusLink.id))
        .with_for_update(of=StatusLink, skip_locked=True)
    ).all()
    written = []
    for link in links:
        order = session.get(Order, link.order_id)
        assert order is not None
        site = session.get(Site, order.treatment_site_id)
        assert site is not None
        tz = zone(site.time_zone or UTC_ZONE)
        if not family.may_email(now=now, last_sent=link.notified_at, tz=tz):
            continue
        view = family_status.family_view(session, link=link, now=now)
        if view.stage is None or view.stage.value == link.notified_stage:
            continue
        assert link.subscription_id is not None
        subscription = session.get(Subscription, link.subscription_id)
        assert subscription is not None
        link.notices += 1
        payload = {
            "type": "family.stage",
            "kind": family.FAMILY_KIND,
            "stage": view.stage.value,
            "title": family.TITLES[view.stage],
            "words": view.headline,
            "expected": [f"{what}: {when}" for what, when in view.expected],
            "site_name": view.site_name,
            "site_phone": view.site_phone,
            "stop_url": stop_url(public_url, secret_key, link.subscription_id),
            "recorded_at": now.isoformat(),
        }
        row = Notification(
            subscription_id=link.subscription_id,
            order_id=order.id,
            source=family.FAMILY_KIND,
            source_id=link.notices,
            kind=family.FAMILY_KIND,
            channel=Channel.EMAIL,
            target=subscription.target,
            payload=payload,
            state=NotificationState.PENDING,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(row)
        link.notified_stage = view.stage.value
        link.notified_at = now
        session.add(link)
        session.flush()
        assert row.id is not None
        written.append(row.id)
    if written:
        session.info[PENDING_FLAG] = True
    return written
