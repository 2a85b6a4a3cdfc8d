"""Shipments as the people who handle them see them: a courier's to pick up and in transit,
a site's incoming and outgoing, one receipt's expected against received."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from services.db.models import Order, RefusedScan, Shipment, ShipmentUnit, Site, Unit
from services.domain.custody import Action, Actor, Role, ShipmentState
from services.domain.errors import DomainError, IllegalTransition
from services.domain.identifiers import parse_scan, shipment_code
from services.operations import access
from services.operations.shipments import received_from, visible_shipment


@dataclass(frozen=True)
class ShipmentLine:
    code: str
    id: int
    state: ShipmentState
    origin: str
    destination: str
    carrier: str | None
    shipper: str
    bags: int
    cois: tuple[str, ...]
    created_at: dt.datetime
    reconciled: bool


def _lines(session: Session, shipments: list[Shipment]) -> list[ShipmentLine]:
    if not shipments:
        return []
    codes = {site.id: site.code for site in session.exec(select(Site)).all()}
    ids = [s.id for s in shipments]
    bags: dict[int, list[str]] = {}
    for shipment_id, coi in session.exec(
        select(ShipmentUnit.shipment_id, Order.coi)
        .join(Unit, col(Unit.id) == col(ShipmentUnit.unit_id))
        .join(Order, col(Order.id) == col(Unit.order_id))
        .where(col(ShipmentUnit.shipment_id).in_(ids))
    ).all():
        bags.setdefault(shipment_id, []).append(coi)
    lines = []
    for shipment in shipments:
        assert shipment.id is not None
        held = bags.get(shipment.id, [])
        lines.append(
            ShipmentLine(
                code=shipment_code(shipment.id),
                id=shipment.id,
                state=shipment.state,
                origin=codes[shipment.origin_site_id],
                destination=codes[shipment.destination_site_id],
                carrier=codes.get(shipment.carrier_site_id) if shipment.carrier_site_id else None,
                shipper=shipment.shipper_id,
                bags=len(held),
                cois=tuple(sorted(set(held))),
                created_at=shipment.created_at,
                reconciled=shipment.reconciled_at is not None,
            )
        )
    return lines


@dataclass(frozen=True)
class Board:
    """What a site's or a courier's shipments page lists."""

    to_pick_up: list[ShipmentLine]
    in_transit: list[ShipmentLine]
    incoming: list[ShipmentLine]
    outgoing: list[ShipmentLine]


def board(session: Session, actor: Actor, *, limit: int = 100) -> Board:
    if actor.role is Role.COURIER:
        waiting = session.exec(
            select(Shipment)
            .where(col(Shipment.state) == ShipmentState.OPEN, access.shipment_condition(actor))
            .order_by(col(Shipment.id).desc())
            .limit(limit)
        ).all()
        carrying = session.exec(
            select(Shipment)
            .where(
                col(Shipment.state) == ShipmentState.IN_TRANSIT,
                col(Shipment.carrier_site_id) == actor.site_id,
            )
            .order_by(col(Shipment.id).desc())
            .limit(limit)
        ).all()
        pick = [line for line in _lines(session, list(waiting)) if line.bags]
        return Board(pick, _lines(session, list(carrying)), [], [])
    incoming = session.exec(
        select(Shipment)
        .where(
            col(Shipment.destination_site_id) == actor.site_id,
            col(Shipment.reconciled_at).is_(None),
            col(Shipment.state).in_(
                [ShipmentState.IN_TRANSIT, ShipmentState.DELIVERED, ShipmentState.RECEIVED]
            ),
        )
        .order_by(col(Shipment.id).desc())
        .limit(limit)
    ).all()
    outgoing = session.exec(
        select(Shipment)
        .where(col(Shipment.origin_site_id) == actor.site_id)
        .order_by(col(Shipment.id).desc())
        .limit(limit)
    ).all()
    return Board([], [], _lines(session, list(incoming)), _lines(session, list(outgoing)))


def courier_step(session: Session, actor: Actor, code: str) -> tuple[Action, str]:
    """The one scan a courier makes of a shipper: pick it up at its origin while it is open,
    deliver it at its destination while it travels with them."""
    shipment = visible_shipment(session, actor, code)
    codes = {site.id: site.code for site in session.exec(select(Site)).all()}
    if shipment.state is ShipmentState.OPEN:
        return Action.PICKUP, codes[shipment.origin_site_id]
    if shipment.state is ShipmentState.IN_TRANSIT:
        return Action.DELIVER, codes[shipment.destination_site_id]
    raise IllegalTransition(
        f"shipment {shipment_code(shipment.id or 0)} is {shipment.state.value}; "
        "a courier picks up open shipments and delivers those in transit",
        state=shipment.state.value,
        action="courier scan",
    )


@dataclass(frozen=True)
class BagLine:
    din: str
    coi: str
    state: str
    received: bool


@dataclass(frozen=True)
class Receipt:
    """One receipt at the destination: what the manifest says, what has been scanned in, what
    is still missing, and the bags refused because they were not on it."""

    shipment: ShipmentLine
    expected: list[BagLine]
    refused: list[tuple[str, str, dt.datetime]]  # barcode, why, when

    @property
    def missing(self) -> list[BagLine]:
        return [bag for bag in self.expected if not bag.received]


def receipt(session: Session, actor: Actor, code: str) -> Receipt:
    shipment = visible_shipment(session, actor, code)
    if shipment.destination_site_id != actor.site_id:
        raise IllegalTransition(
            f"shipment {shipment_code(shipment.id or 0)} is received at its destination",
            state=shipment.state.value,
            action="receive",
        )
    (line,) = _lines(session, [shipment])
    arrived = received_from(session, shipment)
    expected = [
        BagLine(din=unit.din, coi=coi, state=unit.state.value, received=unit.din in arrived)
        for unit, coi in session.exec(
            select(Unit, Order.coi)
            .join(ShipmentUnit, col(ShipmentUnit.unit_id) == col(Unit.id))
            .join(Order, col(Order.id) == col(Unit.order_id))
            .where(ShipmentUnit.shipment_id == shipment.id)
            .order_by(col(Unit.id))
        ).all()
    ]
    refused = [
        (row.barcode, row.detail, row.recorded_at)
        for row in session.exec(
            select(RefusedScan)
            .where(
                RefusedScan.action == Action.RECEIVE.value,
                RefusedScan.site_id == actor.site_id,
                RefusedScan.recorded_at >= shipment.created_at,
            )
            .order_by(col(RefusedScan.id).desc())
            .limit(200)
        ).all()
        if (row.identity or {}).get("shipment") == line.code
    ]
    return Receipt(shipment=line, expected=expected, refused=refused)


def shipment_line(session: Session, actor: Actor, code: str) -> ShipmentLine:
    (line,) = _lines(session, [visible_shipment(session, actor, code)])
    return line


@dataclass(frozen=True)
class ManifestBag:
    din: str
    coi: str
    order_id: int
    state: str


def manifest(session: Session, actor: Actor, code: str) -> list[ManifestBag]:
    shipment = visible_shipment(session, actor, code)
    return [
        ManifestBag(din=unit.din, coi=coi, order_id=unit.order_id, state=unit.state.value)
        for unit, coi in session.exec(
            select(Unit, Order.coi)
            .join(ShipmentUnit, col(ShipmentUnit.unit_id) == col(Unit.id))
            .join(Order, col(Order.id) == col(Unit.order_id))
            .where(ShipmentUnit.shipment_id == shipment.id)
            .order_by(col(ShipmentUnit.added_at), col(Unit.id))
        ).all()
    ]


def bag_scanned(session: Session, actor: Actor, barcode: str) -> ManifestBag | None:
    """The bag a barcode names, if the actor may see it and it is on no shipment; None lets
    the scan itself say what is wrong."""
    try:
        scanned = parse_scan(barcode)
    except DomainError:
        return None
    if scanned.din is None:
        return None
    unit = session.exec(select(Unit).where(Unit.din == scanned.din.value)).first()
    order = session.get(Order, unit.order_id) if unit else None
    if unit is None or order is None or unit.shipment_id is not None:
        return None
    if not access.can_view_order(session, actor, order):
        return None
    return ManifestBag(din=unit.din, coi=order.coi, order_id=unit.order_id, state=unit.state.value)
