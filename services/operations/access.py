"""Who may see and do what: the one module the API, the pages, the workers and the CLI ask.

- A user acts for one site in one role (``Actor``).
- **Orders** are seen by users of the three sites an order names, and by the courier that holds
  its bags, carries them or is named to carry them (or may claim them: an open shipment that
  names no courier yet). Anything else answers 404, the same as something that does not exist.
- The **patient reference** is seen by the sites that meet the patient (collection, treatment),
  never by couriers or manufacturing.
- **Batches** are seen as their order is; **shipments** by their origin, destination and the
  courier named on them; **subscriptions** by the user who made them; **turnaround rows**
  (deadlines) by the sites their order names and by the site holding the bag on that leg.
- **A product's settings** (turnaround policy, alarm rule, thaw limit) are read by everyone
  and changed only by QA of its owning manufacturing site, signed (services.operations.products).
- **Shipments that name no courier** are seen and claimed only by the couriers their origin
  has contracted (``shipment_condition``).
- **Sites** are administered by their own admins and by the admins of the site that added
  them (``managed_site``): its name, time zone, FIN (once), signing rules, couriers and users.
- A subscriber is checked again at delivery (``may_receive``): losing sight of an order ends
  the news of it.
- **Shippers** are seen by their home site, by the sites that share an order with it (its
  network), and by a courier carrying a shipment in one; they are managed by their home site
  (any role but the care team). **Readings** are uploaded by the origin, the destination and the
  courier of their shipment. A bag **on hold** (or quarantined) is disposed of by QA of its
  order's manufacturing site, or of the site that holds it or is receiving it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import (
    Batch,
    CourierContract,
    Deadline,
    Order,
    Shipment,
    ShipmentUnit,
    Shipper,
    Site,
    Subscription,
    Unit,
    User,
)
from services.domain.custody import Actor, Role, ShipmentState, SiteRef
from services.domain.errors import Forbidden, NotFound
from services.domain.identifiers import batch_code, shipment_code
from services.domain.notifications import Channel


def order_site_ids(order: Order) -> tuple[int, int, int]:
    return (order.collection_site_id, order.manufacturing_site_id, order.treatment_site_id)


def _names_site(actor: Actor) -> sa.ColumnElement[bool]:
    return sa.or_(
        col(Order.collection_site_id) == actor.site_id,
        col(Order.manufacturing_site_id) == actor.site_id,
        col(Order.treatment_site_id) == actor.site_id,
    )


def order_condition(actor: Actor) -> sa.ColumnElement[bool]:
    """The orders the actor may see, as a condition on ``orders``: the rule, once, for every
    list and every single check."""
    if actor.role is not Role.COURIER:
        return _names_site(actor)
    held = select(Unit.order_id).where(Unit.custodian_site_id == actor.site_id)
    carried = (
        select(Unit.order_id)
        .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
        .join(Shipment, Shipment.id == ShipmentUnit.shipment_id)  # type: ignore[arg-type]
        .where(shipment_condition(actor))
    )
    return sa.or_(_names_site(actor), col(Order.id).in_(held), col(Order.id).in_(carried))


def contracting_sites(courier_site_id: int) -> Any:
    """The sites that have a contract with the courier now."""
    return select(CourierContract.site_id).where(
        CourierContract.courier_site_id == courier_site_id,
        col(CourierContract.ended_at).is_(None),
    )


def shipment_condition(actor: Actor) -> sa.ColumnElement[bool]:
    """The shipments a courier carries or may claim, as a condition on ``shipments``: those
    naming it, and those naming no courier while open, from a site that contracted it."""
    return sa.or_(
        col(Shipment.carrier_site_id) == actor.site_id,
        sa.and_(
            col(Shipment.carrier_site_id).is_(None),
            col(Shipment.state) == ShipmentState.OPEN,
            col(Shipment.origin_site_id).in_(contracting_sites(actor.site_id)),
        ),
    )


def can_view_order(session: Session, actor: Actor, order: Order) -> bool:
    if actor.site_id in order_site_ids(order):
        return True  # the common case, without a query
    if actor.role is not Role.COURIER:
        return False
    found = select(Order.id).where(Order.id == order.id, order_condition(actor))
    return bool(session.scalar(select(sa.exists(found.subquery()))))


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
    """The orders the actor may see, newest first."""
    query = select(Order).where(order_condition(actor)).order_by(col(Order.id).desc()).limit(limit)
    return list(session.exec(query))


def visible_batch(session: Session, actor: Actor, number: int) -> tuple[Batch, Order]:
    """A batch is seen as its order is."""
    batch = session.get(Batch, number)
    order = session.get(Order, batch.order_id) if batch else None
    if batch is None or order is None or not can_view_order(session, actor, order):
        raise NotFound(f"no batch {batch_code(number)} you can see")
    return batch, order


def can_view_shipment(session: Session, actor: Actor, shipment: Shipment) -> bool:
    """A shipment is seen by its origin, its destination and the courier named to carry it;
    while it is open and names no courier, by the couriers its origin has contracted
    (whichever picks it up claims it)."""
    if actor.site_id in (
        shipment.origin_site_id,
        shipment.destination_site_id,
        shipment.carrier_site_id,
    ):
        return True
    return may_claim(session, actor, shipment)


def may_claim(session: Session, actor: Actor, shipment: Shipment) -> bool:
    """Whether a courier may pick up a shipment that names no courier: it is open and its
    origin has contracted the courier."""
    if (
        actor.role is not Role.COURIER
        or shipment.carrier_site_id is not None
        or shipment.state is not ShipmentState.OPEN
    ):
        return False
    found = contracting_sites(actor.site_id).where(
        col(CourierContract.site_id) == shipment.origin_site_id
    )
    return bool(session.scalar(select(sa.exists(found.subquery()))))


def visible_shipment(
    session: Session, actor: Actor, shipment: Shipment | None, number: int
) -> Shipment:
    if shipment is None or not can_view_shipment(session, actor, shipment):
        raise NotFound(f"no shipment {shipment_code(number)} you can see")
    return shipment


def own_subscription(session: Session, actor: Actor, subscription_id: int) -> Subscription:
    """A subscription is its maker's alone."""
    subscription = session.get(Subscription, subscription_id)
    if subscription is None or subscription.created_by_id != actor.user_id:
        raise NotFound(f"no subscription {subscription_id} of yours")
    return subscription


def deadline_condition(actor: Actor) -> sa.ColumnElement[bool]:
    """Turnaround rows the actor may see, as a condition on ``deadlines`` joined to ``orders``."""
    return sa.or_(_names_site(actor), col(Deadline.site_id) == actor.site_id)


def managed_site_ids(session: Session, actor: Actor) -> list[int]:
    """The sites an admin administers: their own, and the sites their site added."""
    if actor.role is not Role.ADMIN:
        return []
    added = session.exec(select(Site.id).where(col(Site.managed_by_site_id) == actor.site_id))
    return [actor.site_id, *(site_id for site_id in added if site_id is not None)]


def managed_site(session: Session, actor: Actor, code: str) -> Site:
    """A site the admin administers, by its code; any other answers 404, like one that does
    not exist."""
    if actor.role is not Role.ADMIN:
        raise Forbidden("sites are administered by admins")
    site = session.exec(select(Site).where(Site.code == code)).first()
    if site is None or actor.site_id not in (site.id, site.managed_by_site_id):
        raise NotFound(f"no site {code[:32]} you administer")
    return site


def may_manage_site(actor: Actor, site: Site) -> bool:
    return actor.role is Role.ADMIN and actor.site_id in (site.id, site.managed_by_site_id)


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
        if (
            subscription.events
            and "checkpoint" in subscription.events
            and user.role
            not in (
                Role.QA,
                Role.ADMIN,
            )
        ):
            return f"its subscriber {user.email} is no longer QA or an admin"
        return None
    order = session.get(Order, order_id)
    if order is None or not can_view_order(session, actor_for(user, site), order):
        return f"its subscriber {user.email} may no longer see this order"
    return None


# the chain of condition


def shipper_condition(actor: Actor) -> sa.ColumnElement[bool]:
    """The shippers the actor may see, as a condition on ``shippers``."""
    named = _names_site(actor)
    partners = sa.union(
        select(Order.collection_site_id).where(named),
        select(Order.manufacturing_site_id).where(named),
        select(Order.treatment_site_id).where(named),
    )
    carried = select(Shipment.shipper_id).where(col(Shipment.carrier_site_id) == actor.site_id)
    return sa.or_(
        col(Shipper.site_id) == actor.site_id,
        col(Shipper.site_id).in_(partners),
        col(Shipper.serial).in_(carried),
    )


def can_view_shipper(session: Session, actor: Actor, shipper: Shipper) -> bool:
    if shipper.site_id == actor.site_id:
        return True
    found = select(Shipper.id).where(Shipper.id == shipper.id, shipper_condition(actor))
    return bool(session.scalar(select(sa.exists(found.subquery()))))


SHIPPER_ROLES = frozenset(
    {Role.ADMIN, Role.QA, Role.MANUFACTURING_OPERATOR, Role.APHERESIS_STAFF, Role.COURIER}
)


def check_shipper_change(actor: Actor, shipper_site_id: int) -> None:
    """A shipper is registered, requalified and put in or out of service by its home site."""
    if actor.role not in SHIPPER_ROLES:
        raise Forbidden(f"a user with role {actor.role.value} does not manage shippers")
    if actor.site_id != shipper_site_id:
        raise Forbidden("a shipper is managed by its home site")


def check_readings_upload(actor: Actor, shipment: Shipment) -> None:
    """A logger's readings come from the shipment's origin, its destination or its courier."""
    if actor.site_id not in (
        shipment.origin_site_id,
        shipment.destination_site_id,
        shipment.carrier_site_id,
    ):
        raise Forbidden("readings are uploaded by the shipment's origin, destination or courier")


def check_disposition(actor: Actor, order: Order, unit: Unit, shipment: Shipment | None) -> None:
    """QA disposes of a held bag: QA of the order's manufacturing site (the product's owner),
    or of a site the order names that holds the bag or is receiving it."""
    if actor.role is not Role.QA:
        raise Forbidden("a bag on hold is released or rejected by QA")
    sites = {order.manufacturing_site_id}
    named = set(order_site_ids(order))
    for site_id in (unit.custodian_site_id, shipment.destination_site_id if shipment else None):
        if site_id in named:
            sites.add(site_id)
    if actor.site_id not in sites:
        raise Forbidden(
            "QA of the order's manufacturing site, or of the site that holds the bag, disposes "
            "of it"
        )
