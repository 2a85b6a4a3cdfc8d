"""The scan station's read model: where a user scans (their own site; a courier also at the
origins and destinations of the shipments it carries or may claim), and what most likely
comes next for a bag just scanned, for the user's role (the custody table's
:func:`services.domain.custody.likely_actions`), so the station can preselect it."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from services.db.models import Shipment, Site
from services.domain.custody import Action, Actor, Role, ShipmentState, likely_actions
from services.domain.identifiers import Din, parse_scan, shipment_code
from services.operations import access
from services.operations.queries import unit_by_din

OPEN_LEGS = (ShipmentState.OPEN, ShipmentState.IN_TRANSIT)


@dataclass(frozen=True)
class Suggestion:
    """What the station proposes for a scanned barcode: an action (None: nothing the user
    can scan it for here) at a site, and why, in words."""

    action: Action | None
    site: str
    detail: str
    actions: list[Action] = field(default_factory=list)
    din: str | None = None
    state: str | None = None


def scan_sites(session: Session, actor: Actor) -> list[Site]:
    """The sites the user may scan at: their own; for a courier also the origins and
    destinations of the open and travelling shipments it carries or may claim."""
    ids = {actor.site_id}
    if actor.role is Role.COURIER:
        legs = session.exec(
            select(Shipment.origin_site_id, Shipment.destination_site_id).where(
                access.shipment_condition(actor), col(Shipment.state).in_(OPEN_LEGS)
            )
        ).all()
        ids |= {site_id for pair in legs for site_id in pair}
    rows = session.exec(select(Site).where(col(Site.id).in_(ids))).all()
    return sorted(rows, key=lambda site: (site.id != actor.site_id, site.code))


def suggest(session: Session, actor: Actor, barcode: str) -> Suggestion:
    """The likely action for what was scanned. Refusals (a barcode that is no identifier, a
    bag or shipment the user cannot see) are raised as the scan itself would raise them."""
    scanned = parse_scan(barcode)
    if scanned.shipment_number is not None:
        return _for_shipment(session, actor, scanned.shipment_number)
    assert scanned.din is not None
    return _for_bag(session, actor, scanned.din)


def _for_shipment(session: Session, actor: Actor, number: int) -> Suggestion:
    shipment = access.visible_shipment(session, actor, session.get(Shipment, number), number)
    code = shipment_code(number)
    origin, destination = (
        _site(session, shipment.origin_site_id),
        _site(session, shipment.destination_site_id),
    )
    if actor.role is not Role.COURIER:
        return Suggestion(
            action=None,
            site=actor.site.code,
            detail=f"{code} is a shipment's label: its courier scans it; receive its bags one "
            "by one (Receive)",
        )
    if shipment.state is ShipmentState.OPEN:
        return Suggestion(
            action=Action.PICKUP,
            actions=[Action.PICKUP],
            site=origin.code,
            detail=f"{code}: pick it up at {origin.code}",
        )
    if shipment.state is ShipmentState.IN_TRANSIT:
        return Suggestion(
            action=Action.DELIVER,
            actions=[Action.DELIVER],
            site=destination.code,
            detail=f"{code}: deliver it at {destination.code}",
        )
    return Suggestion(
        action=None,
        site=actor.site.code,
        detail=f"{code} is {shipment.state.value.replace('_', ' ')}: nothing for a courier to scan",
    )


def _for_bag(session: Session, actor: Actor, din: Din) -> Suggestion:
    unit, _order = unit_by_din(session, actor, din.value)
    bag = f"bag {din.eye_readable}"
    state = unit.state.value.replace("_", " ")
    site = _site(session, actor.site_id)
    if actor.role is Role.COURIER and unit.shipment_id is not None:
        shipment = session.get(Shipment, unit.shipment_id)
        assert shipment is not None
        place = (
            shipment.origin_site_id
            if shipment.state is ShipmentState.OPEN
            else (shipment.destination_site_id)
        )
        site = _site(session, place)
    elif actor.role is not Role.COURIER and unit.custodian_site_id != actor.site_id:
        holder = _site(session, unit.custodian_site_id)
        return Suggestion(
            action=None,
            site=actor.site.code,
            detail=f"{bag} is {state}, held by {holder.code}: nothing to scan it for here",
            din=unit.din,
            state=unit.state.value,
        )
    actions = likely_actions(unit.kind, unit.state, role=actor.role, site_kind=site.kind)
    if actor.role is Role.COURIER and Action.REPORT_LOST in actions and site.id != actor.site_id:
        actions.remove(Action.REPORT_LOST)  # a courier reports a loss at its own site
    if not actions:
        return Suggestion(
            action=None,
            site=site.code,
            detail=f"{bag} is {state}: nothing for a {actor.role.value.replace('_', ' ')} to "
            "scan it for now",
            din=unit.din,
            state=unit.state.value,
        )
    return Suggestion(
        action=actions[0],
        actions=actions,
        site=site.code,
        detail=f"{bag} is {state}: next, {actions[0].value.replace('_', ' ')} at {site.code}",
        din=unit.din,
        state=unit.state.value,
    )


def _site(session: Session, site_id: int) -> Site:
    site = session.get(Site, site_id)
    assert site is not None
    return site
