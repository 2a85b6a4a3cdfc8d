"""Shipments: a shipper travelling from one site to another with a manifest of bags."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from services.db.models import CustodyEvent, Order, Shipment, ShipmentUnit, Site, Unit
from services.domain.custody import (
    UNPACK,
    Action,
    Actor,
    Role,
    ShipmentState,
    SiteKind,
    UnitKind,
    UnitState,
    check_shipment_route,
)
from services.domain.errors import (
    Conflict,
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    NotReleased,
    WrongSite,
)
from services.domain.identifiers import din_reference, shipment_code, shipment_number
from services.operations import access, shippers
from services.operations.access import visible_order
from services.operations.admin import site_by_code
from services.operations.bags import bag_view, lock_bags, release_complete, site_codes
from services.operations.notifications import report_discrepancy
from services.operations.record import append_event

SHIPPING_ROLES = frozenset({Role.APHERESIS_STAFF, Role.MANUFACTURING_OPERATOR})
RECEIVING_ROLES = frozenset({Role.MANUFACTURING_OPERATOR, Role.CARE_TEAM, Role.QA})


def create_shipment(
    session: Session,
    *,
    actor: Actor,
    origin: str,
    destination: str,
    shipper_id: str,
    units: list[str],
    carrier: str | None,
    now: dt.datetime,
    require_registered_shipper: bool = False,
) -> Shipment:
    """Open a shipment at the actor's site, with the packed bags listed on its manifest, in a
    shipper that is in service and qualified (services.operations.shippers)."""
    if actor.role not in SHIPPING_ROLES:
        raise Forbidden(f"a user with role {actor.role.value} may not create shipments")
    origin_site = site_by_code(session, origin)
    destination_site = site_by_code(session, destination)
    if origin_site.id != actor.site_id:
        raise Forbidden(f"you act for site {actor.site.code}; shipments leave from your own site")
    if destination_site.id == origin_site.id:
        raise InvalidRequest("a shipment's destination must differ from its origin")
    carrier_site: Site | None = None
    if carrier is not None:
        carrier_site = site_by_code(session, carrier)
        if carrier_site.kind is not SiteKind.COURIER:
            raise WrongSite(f"site {carrier} is a {carrier_site.kind.value} site, not a courier")

    dins = [_din_of(text) for text in units]
    if len(set(dins)) != len(dins):
        raise InvalidRequest("a bag is listed twice on the manifest")
    found = session.exec(select(Unit).where(Unit.din.in_(dins))).all()  # type: ignore[attr-defined]
    by_din = {unit.din: unit for unit in found}
    for din in dins:
        unit = by_din.get(din)
        order = session.get(Order, unit.order_id) if unit else None
        visible_order(session, actor, order, f"bag {din}")
    locked = lock_bags(session, [by_din[din] for din in dins])
    shipper = shippers.claim_shipper(
        session,
        actor=actor,
        serial=shipper_id,
        require_registered=require_registered_shipper,
        now=now,
    )

    shipment = Shipment(
        shipper_id=shipper_id,
        origin_site_id=origin_site.id,
        destination_site_id=destination_site.id,  # type: ignore[arg-type]
        carrier_site_id=carrier_site.id if carrier_site else None,
        state=ShipmentState.OPEN,
        created_by_id=actor.user_id,
        created_at=now,
    )
    session.add(shipment)
    session.flush()
    if shipper is not None:
        shippers.shipper_packed(session, shipper, shipment, now)
    codes = site_codes(session)
    for unit, order in locked:
        add_to_shipment(session, unit=unit, order=order, shipment=shipment, codes=codes, now=now)
    session.flush()
    return shipment


def add_to_shipment(
    session: Session,
    *,
    unit: Unit,
    order: Order,
    shipment: Shipment,
    codes: dict[int, str],
    now: dt.datetime,
) -> None:
    """Put a packed bag on a shipment's manifest; the caller holds the bag's lock."""
    if shipment.state is not ShipmentState.OPEN:
        raise IllegalTransition(
            f"shipment {shipment_label(shipment)} is {shipment.state.value}; bags are added only "
            "while it is open"
        )
    if not release_complete(session, unit):  # before its state: a product awaiting release
        raise NotReleased(
            f"product {unit.din}'s batch release is not signed by QA: it does not go on a "
            "shipment until QA signs the release",
            din=unit.din,
        )
    if unit.state is not UnitState.PACKED:
        raise IllegalTransition(
            f"bag {unit.din} is {unit.state.value.replace('_', ' ')}; only packed bags go on a "
            "shipment"
        )
    if unit.shipment_id is not None:
        raise IllegalTransition(
            f"bag {unit.din} is already on shipment {shipment_label(unit.shipment_id)}"
        )
    check_shipment_route(
        bag_view(unit, order, None, codes),
        origin=codes[shipment.origin_site_id],
        destination=codes[shipment.destination_site_id],
    )
    unit.shipment_id = shipment.id
    session.add(unit)
    session.add(ShipmentUnit(shipment_id=shipment.id, unit_id=unit.id, added_at=now))  # type: ignore[arg-type]


def shipment_label(shipment: Shipment | int | None) -> str:
    number = shipment.id if isinstance(shipment, Shipment) else shipment
    assert number is not None
    return shipment_code(number)


def lock_shipment(session: Session, shipment_id: int | None) -> Shipment:
    """Lock a shipment row; taken after the orders' and the bags' locks, never before."""
    return session.exec(
        select(Shipment)
        .where(Shipment.id == shipment_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()


def shipment_by_code(session: Session, code: str | int) -> Shipment:
    """A shipment by its barcode (``SHP-00000012``) or its number (``12``)."""
    number = shipment_number(code)
    shipment = session.get(Shipment, number)
    if shipment is None:
        raise NotFound(f"no shipment {shipment_label(number)}")
    return shipment


def visible_shipment(session: Session, actor: Actor, code: str | int) -> Shipment:
    """A shipment by its code or number, if the actor may see it (access.can_view_shipment);
    the same 404 whether it does not exist or is not theirs to see."""
    number = shipment_number(code)
    return access.visible_shipment(session, actor, session.get(Shipment, number), number)


def _din_of(text: str) -> str:
    return din_reference(text).value


def received_from(session: Session, shipment: Shipment) -> set[str]:
    """The DINs of the manifest that were received at the destination out of this shipment."""
    rows = session.exec(
        select(Unit.din)
        .join(CustodyEvent, CustodyEvent.unit_id == Unit.id)  # type: ignore[arg-type]
        .where(
            CustodyEvent.shipment_id == shipment.id,
            CustodyEvent.action == Action.RECEIVE.value,
        )
    ).all()
    return set(rows)


def reconcile(session: Session, *, actor: Actor, code: str, now: dt.datetime) -> Shipment:
    """The receiving site closes its bag-by-bag check of a shipment against its manifest.

    Every bag was scanned for ``receive`` with the shipment named (a bag not on the manifest is
    refused there, ``not_in_shipment``, and kept on record). Bags of the manifest that were not
    received are reported missing: recorded on the shipment and notified to each order's
    subscribers. Nothing is silently accepted."""
    shipment = visible_shipment(session, actor, code)
    if actor.site_id != shipment.destination_site_id or actor.role not in RECEIVING_ROLES:
        raise Forbidden(
            f"shipment {shipment_label(shipment)} is reconciled by the receiving staff of its "
            "destination"
        )
    shipment = lock_shipment(session, shipment.id)
    if shipment.state in (ShipmentState.OPEN, ShipmentState.IN_TRANSIT):
        raise IllegalTransition(
            f"shipment {shipment_label(shipment)} is {shipment.state.value.replace('_', ' ')}; "
            "it is reconciled once the courier has delivered it",
            state=shipment.state.value,
            action="reconcile",
        )
    if shipment.reconciled_at is not None:
        raise Conflict(
            f"shipment {shipment_label(shipment)} was reconciled at "
            f"{shipment.reconciled_at.isoformat()}"
        )
    manifest = session.exec(
        select(Unit)
        .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
        .where(ShipmentUnit.shipment_id == shipment.id)
        .order_by(Unit.id)  # type: ignore[arg-type]
    ).all()
    arrived = received_from(session, shipment)
    missing = [unit for unit in manifest if unit.din not in arrived]
    shipment.reconciled_at = now
    shipment.reconciled_by_id = actor.user_id
    shipment.missing = [unit.din for unit in missing]
    session.add(shipment)
    session.flush()
    by_order: dict[int, list[str]] = {}
    for unit in missing:
        by_order.setdefault(unit.order_id, []).append(unit.din)
    for order_id, dins in sorted(by_order.items()):
        order = session.get(Order, order_id)
        assert order is not None
        report_discrepancy(session, order=order, shipment=shipment, missing=dins, now=now)
    shippers.shipment_arrived(session, shipment, now)  # what came is in; the shipper is back
    return shipment


def add_packed(
    session: Session, *, actor: Actor, code: str | int, din: str, now: dt.datetime
) -> Unit:
    """Put a bag that was packed already, on no shipment, onto an open shipment's manifest."""
    shipment = visible_shipment(session, actor, code)
    if actor.role not in SHIPPING_ROLES or actor.site_id != shipment.origin_site_id:
        raise Forbidden("a shipment's manifest is made at its origin, by its shipping staff")
    unit = session.exec(select(Unit).where(Unit.din == din_reference(din).value)).first()
    order = session.get(Order, unit.order_id) if unit else None
    visible_order(session, actor, order, f"bag {din}")
    assert unit is not None
    ((unit, order),) = lock_bags(session, [unit])
    shipment = lock_shipment(session, shipment.id)
    add_to_shipment(
        session, unit=unit, order=order, shipment=shipment, codes=site_codes(session), now=now
    )
    session.flush()
    return unit


def cancel_shipment(
    session: Session, *, actor: Actor, code: str | int, reason: str, now: dt.datetime
) -> Shipment:
    """A shipment opened by mistake, cancelled by its origin's shipping staff before pickup,
    with a reason: each bag on it goes back to the state it had before packing (an ``unpack``
    event on each), and its shipper is free again. Nothing of its record is removed."""
    shipment = visible_shipment(session, actor, code)
    if actor.role not in SHIPPING_ROLES or actor.site_id != shipment.origin_site_id:
        raise Forbidden("a shipment is cancelled at its origin, by its shipping staff")
    why = " ".join((reason or "").split())
    if not why:
        raise InvalidRequest("cancelling a shipment needs a reason")
    bags = session.exec(
        select(Unit).where(Unit.shipment_id == shipment.id).order_by(Unit.id)  # type: ignore[arg-type]
    ).all()
    locked = lock_bags(session, list(bags))
    shipment = lock_shipment(session, shipment.id)
    if shipment.state is not ShipmentState.OPEN:
        raise IllegalTransition(
            f"shipment {shipment_label(shipment)} is {shipment.state.value.replace('_', ' ')}: "
            "only a shipment not yet picked up can be cancelled",
            state=shipment.state.value,
            action="cancel",
        )
    site = session.get(Site, actor.site_id)
    assert site is not None
    for unit, order in locked:
        if unit.shipment_id != shipment.id:
            continue  # moved meanwhile
        from_state = unit.state
        if unit.state is UnitState.PACKED:
            unit.state = _before_packing(session, unit)
        unit.shipment_id = None
        session.add(unit)
        append_event(
            session,
            order=order,
            unit=unit,
            action=UNPACK,
            from_state=from_state,
            site=site,
            actor=actor,
            occurred_at=now,
            recorded_at=now,
            shipment_id=shipment.id,
            reason=f"shipment {shipment_label(shipment)} cancelled before pickup: {why}"[:1000],
        )
    shipment.state = ShipmentState.CANCELLED
    shipment.cancelled_at = now
    shipment.cancelled_by_id = actor.user_id
    shipment.cancel_reason = why[:500]
    session.add(shipment)
    session.flush()
    shippers.shipment_arrived(session, shipment, now)  # the shipper never left: free again
    return shipment


def _before_packing(session: Session, unit: Unit) -> UnitState:
    """The state a packed bag had before its packing, from its record."""
    packed_from = session.exec(
        select(CustodyEvent.from_state)
        .where(CustodyEvent.unit_id == unit.id, CustodyEvent.action == Action.PACK.value)
        .order_by(CustodyEvent.sequence.desc())  # type: ignore[attr-defined]
        .limit(1)
    ).first()
    if packed_from is not None:
        return UnitState(packed_from)
    return UnitState.RELEASED if unit.kind is UnitKind.PRODUCT else UnitState.CRYOPRESERVED
