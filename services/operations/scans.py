"""Recording a scan: the one way a bag changes hands or state."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, func, select

from services.db.cache import site_cache
from services.db.models import (
    CustodyEvent,
    Order,
    RefusedScan,
    Scan,
    Shipment,
    ShipmentUnit,
    Signature,
    Site,
    Unit,
)
from services.domain.clock import device_time
from services.domain.custody import (
    HELD_STATES,
    SHIPMENT_ACTIONS,
    Action,
    Actor,
    OrderState,
    ScanRequest,
    ShipmentState,
    SiteRef,
    UnitKind,
    UnitState,
    decide_scan,
    order_completed,
    shipment_state_after,
)
from services.domain.errors import (
    CoiMismatch,
    DomainError,
    EventIdReused,
    Forbidden,
    InvalidRequest,
    NotFound,
)
from services.domain.identifiers import coi_given, parse_scan, shipment_code, shipment_number
from services.domain.local_time import local_day
from services.domain.signatures import requirement, site_steps
from services.domain.sla import Leg
from services.operations import access, plans, shippers, signing
from services.operations.access import visible_order
from services.operations.admin import site_by_code
from services.operations.bags import (
    LockedBag,
    bag_view,
    label_printed,
    lock_bag_by_din,
    lock_bags,
    release_complete,
    site_codes,
)
from services.operations.deadlines import current_policy
from services.operations.profiles import current_profile
from services.operations.record import SiteLike, append_event, append_refusal
from services.operations.refusals import RefusalLimit, check_refusal_limits
from services.operations.shipments import add_to_shipment, lock_shipment, visible_shipment
from services.operations.signing import NO_SIGNERS, Signers


@dataclass(frozen=True)
class ScanInput:
    """A scan as the scanner sent it."""

    barcode: str
    action: Action
    site: str
    event_id: str
    occurred_at: dt.datetime | None = None
    shipment: str | int | None = None  # its code (SHP-00000012) or its number (12)
    coi: str | None = None
    patient_ref: str | None = None  # at the bedside: the patient's wristband, for infuse
    patient_birth_date: dt.date | None = None  # the wristband's second identifier

    def digest(self) -> str:
        """What the scan asked for, so a replay can be told from another scan reusing its id."""
        body = {
            "barcode": "".join(self.barcode.split()),
            "action": self.action.value,
            "site": self.site,
            "occurred_at": self.occurred_at.astimezone(dt.UTC).isoformat()
            if self.occurred_at
            else None,
            "shipment": self.shipment,
            "coi": self.coi,
            "patient_ref": self.patient_ref,
        }
        if self.patient_birth_date is not None:  # absent: the digest of a scan before it came
            body["patient_birth_date"] = self.patient_birth_date.isoformat()
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ScanOutcome:
    scan: Scan
    events: list[CustodyEvent]
    replayed: bool
    signatures: list[Signature] = field(default_factory=list)  # given with the act


def record_scan(
    session: Session,
    *,
    actor: Actor,
    scan: ScanInput,
    now: dt.datetime,
    max_clock_skew: dt.timedelta,
    signers: Signers = NO_SIGNERS,
) -> ScanOutcome:
    """Apply one scan to the bag (or every bag of the shipment) it names, or refuse it whole.

    The scan's row is written first, claiming its event_id (INSERT ... ON CONFLICT DO
    NOTHING): a replay finds the row there, and a concurrent request with the same id waits
    on it until this transaction ends. Then the bag, its order and its chain's head are read
    and locked in one statement, with the scan site's signing rule for the step; nothing is
    read twice. Where the site signs the step, ``signers`` (authenticated before, by
    signing.authenticate_signers) sign it in the same transaction, or the scan is refused."""
    digest = scan.digest()
    site = site_cache(session).by_code(session, scan.site)
    if site is None:
        raise NotFound(f"no site has code {scan.site!r}")
    occurred_at = device_time(
        scan.occurred_at, now=now, skew=max_clock_skew, what="the time of the scan"
    )
    scanned = parse_scan(scan.barcode)
    scanned_coi, label_read = _scanned_coi(scan, scanned)
    named_shipment = (
        visible_shipment(session, actor, scan.shipment) if scan.shipment is not None else None
    )
    shipment_scanned = None
    _check_names_a_bag(scan, scanned)
    if scanned.shipment_number is not None:
        shipment_scanned = visible_shipment(session, actor, scanned.shipment_number)
        named_shipment = named_shipment or shipment_scanned
        if named_shipment.id != shipment_scanned.id:
            raise InvalidRequest(
                f"the scanned shipment {shipment_code(shipment_scanned.id or 0)} is not the one "
                f"named, {shipment_code(named_shipment.id or 0)}"
            )

    row = _claim(session, scan, digest, site.id, actor, named_shipment, occurred_at, now)
    if row is None:
        replay = _replay(session, scan.event_id, digest)
        assert replay is not None  # the row that claimed the id is committed: DO NOTHING saw it
        return replay

    assert site.id is not None
    step = scan.action.value
    if shipment_scanned is not None:
        locked = [
            _locked(session, unit, order)
            for unit, order in lock_bags(session, _shipment_bags(session, actor, shipment_scanned))
        ]
    else:
        assert scanned.din is not None
        found = lock_bag_by_din(session, scanned.din.value, site_id=site.id, step=step)
        if found is None:  # no such bag, or (a chain from before heads were kept) no head yet
            bag = session.exec(select(Unit).where(Unit.din == scanned.din.value)).first()
            if bag is not None:
                ((unit, order),) = lock_bags(session, [bag])
                found = _locked(session, unit, order)
        visible_order(session, actor, found.order if found else None, f"bag {scanned.din.value}")
        assert found is not None
        locked = [found]
    if named_shipment is not None:
        named_shipment = lock_shipment(session, named_shipment.id)

    codes = site_codes(session)
    request = ScanRequest(
        action=scan.action,
        site=SiteRef(code=site.code, kind=site.kind),
        actor=actor,
        scanned_coi=scanned_coi,
        shipment=shipment_code(named_shipment.id)
        if named_shipment and named_shipment.id and scan.action is not Action.PACK
        else None,
        patient_ref=scan.patient_ref,
        patient_birth_date=scan.patient_birth_date,
        label_read=label_read,
        occurred_at=occurred_at,
        recorded_at=now,
    )
    # decide every bag before writing anything: a shipment scan moves all its bags or none
    decisions = []
    for held in locked:
        unit, order = held.unit, held.order
        current = session.get(Shipment, unit.shipment_id) if unit.shipment_id else None
        thawed_at, thaw_limit = _thaw(session, unit, order, scan.action)
        view = bag_view(
            unit,
            order,
            current,
            codes,
            thawed_at=thawed_at,
            thaw_limit=thaw_limit,
            release_complete=held.release_complete,
            label_printed=held.label_printed,
            **_window(session, order, scan.action, max(occurred_at, now)),
        )
        rule = decide_scan(view, request)
        decisions.append((unit, order, rule, current, held.latest))
    # what the step needs at this site now, fixed on its events: signed in this act, or refused
    if len(locked) == 1 and locked[0].rules_read:
        signing_needed = requirement(site_steps(site.kind, locked[0].steps), step)
    else:
        signing_needed = signing.signing_of(session, site, step)
    signing.check_act(step=step, signing=signing_needed, actor=actor, signers=signers)

    events = []
    signatures: list[Signature] = []
    touched_shipments: dict[int, Shipment] = {}
    for unit, order, rule, current, latest in decisions:
        from_state = _apply(unit, rule.to_state, scan.action, site, actor)
        _claim_carrier(session, current, scan.action, actor)
        if scan.action is Action.PACK and named_shipment is not None:
            add_to_shipment(
                session, unit=unit, order=order, shipment=named_shipment, codes=codes, now=now
            )
            current = named_shipment
        events.append(
            append_event(
                session,
                order=order,
                unit=unit,
                action=scan.action.value,
                from_state=from_state,
                site=site,
                actor=actor,
                occurred_at=occurred_at,
                recorded_at=now,
                scan_id=row.id,
                shipment_id=current.id if current else None,
                review_reason=_out_of_order(latest, occurred_at),
                signing=signing_needed,
            )
        )
        signatures += signing.sign_in_act(
            session, event=events[-1], signers=signers, step=step, now=now
        )
        if current is not None and current.id is not None:
            touched_shipments[current.id] = current
        session.add(unit)
    session.flush()
    for shipment in touched_shipments.values():
        update_shipment_state(session, shipment, now=now)
    if scan.action is Action.INFUSE:
        for order in {id(order): order for _u, order, _r, _s, _l in decisions}.values():
            close_if_infused(session, order)
    if scan.action in plans.MILESTONE_SCANS:
        # an order with a plan re-plans from its milestones (an order without reads nothing)
        for order in {id(order): order for _u, order, _r, _s, _l in decisions}.values():
            if order.has_plan:
                session.flush()
                plans.replan_after(session, order, now=now)
    session.flush()
    return ScanOutcome(scan=row, events=events, replayed=False, signatures=signatures)


def _locked(session: Session, unit: Unit, order: Order) -> LockedBag:
    """A bag locked by lock_bags (a shipment's bags, or a bag whose chain has no head yet),
    with what its scan decides on, read apart."""
    return LockedBag(
        unit=unit,
        order=order,
        latest=_latest(session, unit),
        steps=None,
        label_printed=label_printed(session, unit),
        release_complete=release_complete(session, unit),
        rules_read=False,
    )


def _thaw(
    session: Session, unit: Unit, order: Order, action: Action
) -> tuple[dt.datetime | None, dt.timedelta | None]:
    """For an infusion: when the bag was thawed (the earlier of the thaw scanner's clock and
    ours, so a thaw dated forward buys no time) and how long the product keeps after thaw."""
    if action is not Action.INFUSE:
        return None, None
    thaw = session.exec(
        select(CustodyEvent.occurred_at, CustodyEvent.recorded_at)
        .where(CustodyEvent.unit_id == unit.id, CustodyEvent.action == Action.THAW.value)
        .order_by(col(CustodyEvent.sequence).desc())
        .limit(1)
    ).first()
    thawed_at = min(thaw) if thaw else None
    return thawed_at, current_policy(session, order.product).limit(Leg.THAW_TO_INFUSION)


def _window(session: Session, order: Order, action: Action, moment: dt.datetime) -> dict[str, Any]:
    """For an infusion after a recorded lymphodepletion: the window, the bedside's day and the
    label's repeat-LD threshold. Nothing is read for any other scan, or without LD."""
    if action is not Action.INFUSE or order.infuse_from is None or order.infuse_to is None:
        return {}
    site = session.get(Site, order.treatment_site_id)
    assert site is not None
    profile = current_profile(session, order.product)
    return {
        "infusion_window": (order.infuse_from, order.infuse_to),
        "infusion_day": local_day(moment, site.time_zone),
        "repeat_ld_after": profile.repeat_ld_after_days if profile else None,
    }


def close_if_infused(session: Session, order: Order) -> None:
    """Infusion closes the order once no product bag is left on its way; the last infusion's
    time (by the bedside clock) ends its vein-to-vein time."""
    products = session.exec(
        select(Unit).where(Unit.order_id == order.id, Unit.kind == UnitKind.PRODUCT)
    ).all()
    if not order_completed([unit.state for unit in products]):
        return
    order.state = OrderState.COMPLETED
    order.infused_at = session.exec(
        select(func.max(CustodyEvent.occurred_at)).where(
            CustodyEvent.order_id == order.id, CustodyEvent.action == Action.INFUSE.value
        )
    ).one()
    session.add(order)


def _claim_carrier(
    session: Session, shipment: Shipment | None, action: Action, actor: Actor
) -> None:
    """A shipment that names no courier belongs, from pickup on, to the courier who took it:
    one its origin has contracted."""
    if action is Action.PICKUP and shipment is not None and shipment.carrier_site_id is None:
        if not access.may_claim(session, actor, shipment):
            raise Forbidden(
                f"shipment {shipment_code(shipment.id or 0)} names no courier, and its origin "
                f"has no contract with {actor.site.code}: only a contracted courier takes it"
            )
        shipment.carrier_site_id = actor.site_id


def _apply(
    unit: Unit, to_state: UnitState, action: Action, site: SiteLike, actor: Actor
) -> UnitState:
    """Move the bag to its new state and custodian; returns the state it left. A quarantined
    bag remembers the state it left, to which QA's release returns it."""
    from_state = unit.state
    unit.state = to_state
    if to_state is UnitState.QUARANTINED:
        unit.held_from = from_state
    elif from_state in HELD_STATES:
        unit.held_from = None
    if action is Action.PICKUP:
        unit.custodian_site_id = actor.site_id  # the courier holds it now
    elif action in (Action.DELIVER, Action.RECEIVE):
        assert site.id is not None
        unit.custodian_site_id = site.id
    if action is Action.RECEIVE:
        unit.shipment_id = None  # the journey is over; the manifest keeps the record
    return from_state


def _scanned_coi(scan: ScanInput, scanned: Any) -> tuple[str | None, bool]:
    """The COI the label's 2-D code carries, or the one the scanner says it works on; both
    given and different: the wrong patient's bag, refused before anything else. And whether
    the scan carried both of the label's identifiers: its 2-D code, or the DIN and the COI
    each keyed with its check character."""
    scanned_coi: str | None = scanned.coi.value if scanned.coi else None
    label_read = scanned.form == "label"
    if scan.coi is not None:
        given, keyed = coi_given(scan.coi)
        if scanned_coi is not None and scanned_coi != given.value:
            raise CoiMismatch(
                f"the label's 2-D code carries chain of identity {scanned_coi}, but you are "
                f"working on {given.value}: do not proceed; set the bag aside and call QA"
            )
        scanned_coi = given.value
        label_read = label_read or (
            keyed and scanned.din is not None and scanned.form == "keyboard"
        )
    return scanned_coi, label_read


def _check_names_a_bag(scan: ScanInput, scanned: Any) -> None:
    """A barcode names a bag, or a shipment for the actions that move whole shipments."""
    if scanned.shipment_number is not None:
        if scan.action not in SHIPMENT_ACTIONS:
            raise InvalidRequest(
                f"a shipment's barcode can be scanned for "
                f"{' or '.join(sorted(a.value for a in SHIPMENT_ACTIONS))}; for "
                f"{scan.action.value}, scan each bag"
            )
    elif scanned.din is None:
        raise InvalidRequest(
            "that is a chain of identity identifier, not a bag: scan the bag's DIN barcode"
        )


def _shipment_bags(session: Session, actor: Actor, shipment: Shipment) -> list[Unit]:
    units = list(
        session.exec(
            select(Unit).where(Unit.shipment_id == shipment.id).order_by(Unit.id)  # type: ignore[arg-type]
        ).all()
    )
    if not units:
        raise InvalidRequest(f"shipment {shipment_code(shipment.id or 0)} holds no bags")
    for unit in units:
        visible_order(session, actor, session.get(Order, unit.order_id), f"bag {unit.din}")
    return units


def _claim(
    session: Session,
    scan: ScanInput,
    digest: str,
    site_id: int,
    actor: Actor,
    shipment: Shipment | None,
    occurred_at: dt.datetime,
    now: dt.datetime,
) -> Scan | None:
    """Write the scan's row unless its event_id is taken (then None: a replay, or a reuse)."""
    values = {
        "event_id": scan.event_id,
        "request_digest": digest,
        "action": scan.action,
        "barcode": scan.barcode.strip()[:128],
        "site_id": site_id,
        "actor_id": actor.user_id,
        "shipment_id": shipment.id if shipment else None,
        "occurred_at": occurred_at,
        "recorded_at": now,
    }
    new_id = session.execute(
        _claim_statement(session.get_bind().dialect.name), values
    ).scalar_one_or_none()
    if new_id is None:
        return None
    return Scan(id=new_id, **values)  # type: ignore[arg-type]  # as written; never read back


@functools.cache
def _claim_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING id, the same statement in each
    dialect's words, built once (it runs with every scan)."""
    scans = Scan.__table__  # type: ignore[attr-defined]
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(scans)  # its columns: the keys of the values it is executed with
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(scans.c.id)
    )


def _latest(session: Session, unit: Unit) -> dt.datetime | None:
    """The scanner's time of the bag's latest event."""
    latest: dt.datetime | None = session.exec(
        select(func.max(CustodyEvent.occurred_at)).where(CustodyEvent.unit_id == unit.id)
    ).one()
    return latest


def _out_of_order(latest: dt.datetime | None, occurred_at: dt.datetime) -> str | None:
    """A scan that says it happened before the bag's latest recorded event is kept, for review."""
    if latest is not None and occurred_at < latest:
        return (
            f"scanned at {occurred_at.strftime('%Y-%m-%d %H:%M:%S UTC')} by the scanner's "
            f"clock, before the bag's previous event at "
            f"{latest.strftime('%Y-%m-%d %H:%M:%S UTC')}"
        )
    return None


def update_shipment_state(session: Session, shipment: Shipment, *, now: dt.datetime) -> None:
    """Derive the shipment's state from its bags, under its lock: two scans of different bags
    of one shipment (each holding only its own bag's lock) must not both read stale states. A
    bag on hold counts as the state it was held in. Once every bag is received, the shipper
    comes back into service."""
    shipment = lock_shipment(session, shipment.id)
    bags = session.exec(
        select(Unit)
        .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
        .where(ShipmentUnit.shipment_id == shipment.id)
    ).all()
    before = shipment.state
    shipment.state = shipment_state_after(
        [
            bag.held_from if bag.state is UnitState.ON_HOLD and bag.held_from else bag.state
            for bag in bags
        ]
    )
    session.add(shipment)
    if shipment.state is ShipmentState.RECEIVED and before is not ShipmentState.RECEIVED:
        shippers.shipment_arrived(session, shipment, now)


def _replay(session: Session, event_id: str, digest: str) -> ScanOutcome | None:
    existing = session.exec(select(Scan).where(Scan.event_id == event_id)).first()
    if existing is None:
        return None
    if existing.request_digest != digest:
        raise EventIdReused(
            f"event_id {event_id} was already used for a different scan; a scanner must make a "
            "new event_id for every scan"
        )
    events = list(
        session.exec(
            select(CustodyEvent)
            .where(CustodyEvent.scan_id == existing.id)
            .order_by(CustodyEvent.id)  # type: ignore[arg-type]
        ).all()
    )
    return ScanOutcome(scan=existing, events=events, replayed=True)


def record_refusal(
    session: Session,
    *,
    actor: Actor,
    scan: ScanInput,
    error: DomainError,
    now: dt.datetime,
    limits: Sequence[RefusalLimit] = (),
) -> RefusedScan:
    """Keep a refused scan for QA: who, where, what was scanned, and why it was refused.

    It joins the chain of the bag's order only when the scanner may see that order; a scan of a
    bag the user cannot see goes into the chain of the user's own site (``site:<id>``) and is
    news for none of that order's subscribers (it would otherwise tell them, and the refusal's
    answer would tell the scanner, that the bag exists). A user over one of ``limits`` is
    refused (RateLimited) and nothing is kept."""
    check_refusal_limits(session, actor=actor, limits=limits, now=now)
    site = session.exec(select(Site).where(Site.code == scan.site)).first()
    unit: Unit | None = None
    order: Order | None = None
    try:
        scanned = parse_scan(scan.barcode)
    except DomainError:
        scanned = None
    if scanned is not None and scanned.din is not None:
        unit = session.exec(select(Unit).where(Unit.din == scanned.din.value)).first()
        order = session.get(Order, unit.order_id) if unit else None
        if order is None or not access.can_view_order(session, actor, order):
            unit, order = None, None
    refusal = RefusedScan(
        event_id=scan.event_id,
        action=scan.action.value,
        barcode=scan.barcode[:256],
        site_code=scan.site[:32],
        site_id=site.id if site else None,
        actor_id=actor.user_id,
        unit_id=unit.id if unit else None,
        order_id=order.id if order else None,
        chain_site_id=None if order else actor.site_id,
        code=error.code,
        detail=error.detail[:1000],
        occurred_at=scan.occurred_at,
        recorded_at=now,
    )
    return append_refusal(
        session,
        refusal,
        coi=order.coi if order else None,
        unit=unit,
        actor=actor,
        site=site,
        shipment=_named_code(scan.shipment),
    )


def _named_code(shipment: str | int | None) -> str | None:
    """The shipment a scan named, as its code, when it names one at all."""
    if shipment is None:
        return None
    try:
        return shipment_code(shipment_number(shipment))
    except DomainError:
        return None


@dataclass(frozen=True)
class BedsideCheck:
    """A product at the bedside, checked against the patient before anything is recorded."""

    din: str
    coi: str
    product: str
    thawed_at: dt.datetime | None
    infuse_by: dt.datetime | None  # the thaw limit runs out then
    # the identifiers matched, for the nurse to read back: the wristband's reference and the
    # date of birth the order recorded (None: recorded before dates of birth were kept)
    patient_ref: str
    patient_birth_date: dt.date | None


def check_infusion(
    session: Session,
    *,
    actor: Actor,
    barcode: str,
    patient_ref: str,
    now: dt.datetime,
    patient_birth_date: dt.date | None = None,
) -> BedsideCheck:
    """Every check of an infusion scan (the bag, the bedside's authority, the patient, its
    state, the thaw limit), without recording anything: the bedside shows MATCH before the
    infusion is confirmed and recorded (record_scan then checks it all again, under its
    locks). A refusal raises, like the scan would."""
    scan = ScanInput(
        barcode=barcode,
        action=Action.INFUSE,
        site=actor.site.code,
        event_id="",
        patient_ref=patient_ref,
        patient_birth_date=patient_birth_date,
    )
    scanned = parse_scan(scan.barcode)
    scanned_coi, _label_read = _scanned_coi(scan, scanned)
    _check_names_a_bag(scan, scanned)
    if scanned.din is None:
        raise InvalidRequest("at the bedside, scan the product bag itself")
    unit = session.exec(select(Unit).where(Unit.din == scanned.din.value)).first()
    order = session.get(Order, unit.order_id) if unit else None
    visible_order(session, actor, order, f"bag {scanned.din.value}")
    assert unit is not None
    assert order is not None
    site = site_by_code(session, actor.site.code)
    thawed_at, thaw_limit = _thaw(session, unit, order, Action.INFUSE)
    current = session.get(Shipment, unit.shipment_id) if unit.shipment_id else None
    view = bag_view(
        unit,
        order,
        current,
        site_codes(session),
        thawed_at=thawed_at,
        thaw_limit=thaw_limit,
        release_complete=release_complete(session, unit),
        **_window(session, order, Action.INFUSE, now),
    )
    decide_scan(
        view,
        ScanRequest(
            action=Action.INFUSE,
            site=SiteRef(code=site.code, kind=site.kind),
            actor=actor,
            scanned_coi=scanned_coi,
            patient_ref=patient_ref,
            patient_birth_date=patient_birth_date,
            occurred_at=now,
            recorded_at=now,
        ),
    )
    return BedsideCheck(
        din=unit.din,
        coi=order.coi,
        product=order.product,
        thawed_at=thawed_at,
        infuse_by=thawed_at + thaw_limit if thawed_at and thaw_limit else None,
        patient_ref=order.current_patient_ref,
        patient_birth_date=order.patient_birth_date,
    )
