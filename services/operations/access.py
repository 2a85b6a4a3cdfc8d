"""Who may see what. Every read and write of an order or bag goes through these checks."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import Order, Shipment, ShipmentUnit, Site, Subscription, Unit, User
from services.domain.custody import Actor, Role, ShipmentState, SiteRef
from services.domain.errors import NotFound
from services.domain.notifications import Channel


def order_site_ids(order: Order) -> tuple[int, int, int]:
    return (order.collection_site_id, order.manufacturing_site_id, order.treatment_site_id)


def can_view_order(session: Session, actor: Actor, order: Order) -> bool:
    """A user sees an order that names their site; a courier, one whose bags it holds, carries
    or is named to carry (or may claim, on a shipment that names no courier yet)."""
    if actor.site_id in order_site_ids(order):
        return True
    if actor.role is not Role.COURIER:
        return False
    held = select(Unit.id).where(Unit.order_id == order.id, Unit.custodian_site_id == actor.site_id)
    carried = (
        select(Unit.id)
        .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
        .join(Shipment, Shipment.id == ShipmentUnit.shipment_id)  # type: ignore[arg-type]
        .where(
            Unit.order_id == order.id,
            sa.or_(
                col(Shipment.carrier_site_id) == actor.site_id,
                # a shipment that names no courier waits for whichever courier picks it up
                sa.and_(
                    col(Shipment.carrier_site_id).is_(None),
                    col(Shipment.state) == ShipmentState.OPEN,
                ),
            ),
        )
    )
    return bool(session.scalar(select(sa.exists(held.union(carried).subquery()))))


def may_see_patient_ref(actor: Actor, order: Order) -> bool:
    """The patient reference is for the sites that meet the patient: collection and treatment."""
    return actor.role is not Role.COURIER and actor.site_id in (
        order.collection_site_id,
        order.treatment_site_id,
    )


def visible_order(session: Session, actor: Actor, order: Order | None, what: str) -> Order:
    """The order if the actor may see it; otherwise the same 404 as for one that does not exist."""
    if order is None or not can_view_order(session, actor, order):
        raise NotFound(f"no {what} you can see")
    return order


def order_by_coi(session: Session, actor: Actor, coi: str) -> Order:
    order = session.exec(select(Order).where(Order.coi == coi)).first()
    return visible_order(session, actor, order, f"order {coi}")


def visible_orders(session: Session, actor: Actor, *, limit: int = 200) -> list[Order]:
    """The orders the actor may see, newest first: the same rule as ``can_view_order``."""
    condition = sa.or_(
        col(Order.collection_site_id) == actor.site_id,
        col(Order.manufacturing_site_id) == actor.site_id,
        col(Order.treatment_site_id) == actor.site_id,
    )
    if actor.role is Role.COURIER:
        held = select(Unit.order_id).where(Unit.custodian_site_id == actor.site_id)
        carried = (
            select(Unit.order_id)
            .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
            .join(Shipment, Shipment.id == ShipmentUnit.shipment_id)  # type: ignore[arg-type]
            .where(
                sa.or_(
                    col(Shipment.carrier_site_id) == actor.site_id,
                    sa.and_(
                        col(Shipment.carrier_site_id).is_(None),
                        col(Shipment.state) == ShipmentState.OPEN,
                    ),
                )
            )
        )
        condition = sa.or_(condition, col(Order.id).in_(held), col(Order.id).in_(carried))
    query = select(Order).where(condition).order_by(col(Order.id).desc()).limit(limit)
    return list(session.exec(query))


def actor_for(user: User, site: Site) -> Actor:
    """The acting user as operations receive it: who, in which role, for which site."""
    assert user.id is not None
    assert site.id is not None
    return Actor(
        user_id=user.id,
        email=user.email,
        role=user.role,
        site=SiteRef(code=site.code, kind=site.kind),
        site_id=site.id,
    )


def may_receive(session: Session, subscription: Subscription, order_id: int | None) -> str | None:
    """Why a subscription's owner may no longer hear of an order (checked again at delivery,
    not only when they subscribed), or None when they may."""
    if subscription.channel is Channel.FEED:
        return None  # a site's own feed, read only by users of that site
    user = session.get(User, subscription.created_by_id)
    if user is None or not user.active:
        return "its subscriber's account is deactivated"
    site = session.get(Site, user.site_id)
    assert site is not None
    if subscription.site_id is not None and subscription.site_id != user.site_id:
        return f"its subscriber now acts for {site.code}, not for the site subscribed to"
    if order_id is None:
        return None
    order = session.get(Order, order_id)
    if order is None or not can_view_order(session, actor_for(user, site), order):
        return f"its subscriber {user.email} may no longer see this order"
    return None
