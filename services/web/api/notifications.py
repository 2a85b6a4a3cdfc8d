"""Subscriptions (e-mail, signed webhooks) and the in-app feed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response, jsonify
from flask_openapi3 import Tag
from sqlmodel import Session

if TYPE_CHECKING:
    from services.db.models import Subscription
from services.domain.notifications import Channel, summary
from services.domain.triage import severity
from services.operations import subscriptions as ops
from services.operations.directory import Directory
from services.operations.queries import coi_value
from services.web.api.blueprint import api
from services.web.api.schemas import (
    Feed,
    FeedItem,
    FeedQuery,
    NotificationPath,
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionPath,
    SubscriptionPublic,
)
from services.web.state import current_actor, state, unit_of_work, utcnow

tag = Tag(name="notifications", description="Subscriptions, deliveries and the in-app feed")


@api.post("/subscriptions", tags=[tag], responses={201: SubscriptionPublic})
def subscribe(body: SubscriptionCreate) -> tuple[Response, int]:
    """Subscribe an e-mail address or a webhook to one order or to your site's orders."""
    with unit_of_work() as uow:
        subscription, secret = ops.subscribe(
            uow.session,
            actor=current_actor(),
            coi=coi_value(body.coi) if body.coi else None,
            site=body.site,
            channel=Channel(body.channel),
            target=body.target,
            events=body.events,
            allow_private=bool(state().settings.webhook_allow_private_targets),
            secret_keys=state().settings.webhook_secret_keys,
            digest=body.digest,
        )
        uow.commit()
        result = _public(uow.session, subscription, secret)
    return jsonify(result.model_dump(mode="json")), 201


@api.get("/subscriptions", tags=[tag], responses={200: SubscriptionList})
def list_subscriptions() -> Response:
    """Your subscriptions."""
    with unit_of_work() as uow:
        rows = ops.subscriptions_of(uow.session, current_actor())
        result = SubscriptionList(subscriptions=[_public(uow.session, row) for row in rows])
    return jsonify(result.model_dump(mode="json"))


@api.delete("/subscriptions/<int:subscription_id>", tags=[tag], responses={200: SubscriptionPublic})
def unsubscribe(path: SubscriptionPath) -> Response:
    """Stop a subscription. Its past notifications stay on record."""
    with unit_of_work() as uow:
        row = ops.unsubscribe(
            uow.session, actor=current_actor(), subscription_id=path.subscription_id
        )
        uow.commit()
        result = _public(uow.session, row)
    return jsonify(result.model_dump(mode="json"))


@api.get("/notifications", tags=[tag], responses={200: Feed})
def read_feed(query: FeedQuery) -> Response:
    """Your site's feed: milestones and problems of the orders it treats, newest first."""
    actor = current_actor()
    with unit_of_work() as uow:
        rows = ops.feed(uow.session, actor=actor, unread_only=query.unread, limit=query.limit)
    items = [
        FeedItem(
            id=row.id,  # type: ignore[arg-type]
            kind=row.kind,
            severity=severity(row.kind, row.payload).value,
            summary=summary(row.payload),
            coi=row.payload["coi"],
            din=row.payload.get("din"),
            site=row.payload["site"],
            created_at=row.created_at,
            read_at=read_at,
            data=row.payload,
        )
        for row, read_at in rows
    ]
    return jsonify(Feed(site=actor.site.code, items=items).model_dump(mode="json"))


@api.post("/notifications/<int:notification_id>/read", tags=[tag], responses={204: None})
def mark_read(path: NotificationPath) -> tuple[str, int]:
    """Mark a feed item read (for you)."""
    with unit_of_work() as uow:
        ops.mark_read(
            uow.session, actor=current_actor(), notification_id=path.notification_id, now=utcnow()
        )
        uow.commit()
    return "", 204


def _public(session: Session, row: Subscription, secret: str | None = None) -> SubscriptionPublic:
    names = Directory(session)
    return SubscriptionPublic(
        id=row.id,  # type: ignore[arg-type]
        coi=names.order(row.order_id).coi if row.order_id else None,
        site=names.site_code(row.site_id),
        channel=row.channel.value,
        target=row.target,
        events=row.events,
        active=row.active,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        digest=row.digest,
        secret=secret,
    )
