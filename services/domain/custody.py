"""The custody state machine of a bag (a *unit*), as data.

``TRANSITIONS`` maps ``(kind, state, action)`` to the state the bag enters, who may perform the
action (site kind and role of the scan) and where the scan must happen. :func:`decide_scan` is
the one function that reads it, together with the identity checks every handoff needs and, for
an infusion, the bedside check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.domain.errors import (
    CoiMismatch,
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    LabelNotPrinted,
    LabelNotVerified,
    NotInShipment,
    NotReleased,
    OnHold,
    ThawExpired,
    WindowViolation,
    WrongSite,
)


class SiteKind(StrEnum):
    COLLECTION = "collection"
    COURIER = "courier"
    MANUFACTURING = "manufacturing"
    TREATMENT = "treatment"


class Role(StrEnum):
    ADMIN = "admin"
    APHERESIS_STAFF = "apheresis_staff"
    COURIER = "courier"
    MANUFACTURING_OPERATOR = "manufacturing_operator"
    CARE_TEAM = "care_team"
    QA = "qa"


class UnitKind(StrEnum):
    APHERESIS = "apheresis"
    PRODUCT = "product"


class UnitState(StrEnum):
    COLLECTED = "collected"
    LABEL_VERIFIED = "label_verified"
    CRYOPRESERVED = "cryopreserved"
    PACKED = "packed"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    RECEIVED = "received"
    IN_MANUFACTURING = "in_manufacturing"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"
    DESTROYED = "destroyed"
    LOST = "lost"
    # the product's own states (its packing, shipping and receipt reuse the ones above)
    PRODUCED = "produced"  # filled and labelled at manufacturing, awaiting its batch's QA release
    RELEASED = "released"
    STORED = "stored"  # in the treatment site's liquid-nitrogen storage
    THAWED = "thawed"
    INFUSED = "infused"
    # QA's hold after a temperature alarm: every scan is refused until QA disposes of the bag
    # (back to the state it left, or rejected)
    ON_HOLD = "on_hold"


class Action(StrEnum):
    """The scan actions of the public contract (CONTRACT.md)."""

    VERIFY_LABEL = "verify_label"
    CRYOPRESERVE = "cryopreserve"
    PACK = "pack"
    PICKUP = "pickup"
    DELIVER = "deliver"
    RECEIVE = "receive"
    START_MANUFACTURING = "start_manufacturing"
    RELEASE = "release"
    STORE = "store"
    THAW = "thaw"
    INFUSE = "infuse"
    QUARANTINE = "quarantine"
    REJECT = "reject"
    DESTROY = "destroy"
    REPORT_LOST = "report_lost"


SHIPMENT_ACTIONS = frozenset({Action.PICKUP, Action.DELIVER})
"""Actions that also accept a shipment's own barcode and then move every bag in it."""

TERMINAL_STATES = frozenset({UnitState.DESTROYED, UnitState.LOST, UnitState.INFUSED})
HELD_STATES = frozenset({UnitState.ON_HOLD, UnitState.QUARANTINED})
"""States QA disposes of: release (back to the state the bag left) or reject."""


class Place(StrEnum):
    """Where the scan must happen, relative to the bag."""

    CUSTODIAN = "custodian"  # the site that holds the bag now
    SHIPMENT_ORIGIN = "shipment_origin"  # the origin of the shipment the bag is packed in
    SHIPMENT_DESTINATION = "shipment_destination"


class Party(StrEnum):
    """Whose user may perform the scan, relative to the scan's site."""

    SCAN_SITE = "scan_site"  # a user of the site where the scan happens
    CARRIER = "carrier"  # the courier that carries the shipment (its users scan at other sites)


Performer = tuple[SiteKind, Role]


@dataclass(frozen=True, slots=True)
class Rule:
    to_state: UnitState
    performers: frozenset[Performer]
    place: Place = Place.CUSTODIAN
    party: Party = Party.SCAN_SITE
    # False: done through the batch (a QA release of its products), never by a bag's own scan
    by_scan: bool = True
    bedside: bool = False  # the patient check and the thaw limit (infusion)


def _at(*performers: Performer) -> frozenset[Performer]:
    return frozenset(performers)


_COLLECTION_STAFF = (SiteKind.COLLECTION, Role.APHERESIS_STAFF)
_COLLECTION_QA = (SiteKind.COLLECTION, Role.QA)
_MANUFACTURING_OPERATOR = (SiteKind.MANUFACTURING, Role.MANUFACTURING_OPERATOR)
_MANUFACTURING_QA = (SiteKind.MANUFACTURING, Role.QA)
_TREATMENT_CARE = (SiteKind.TREATMENT, Role.CARE_TEAM)
_TREATMENT_QA = (SiteKind.TREATMENT, Role.QA)
_COURIER = (SiteKind.COURIER, Role.COURIER)
_A = UnitKind.APHERESIS
_P = UnitKind.PRODUCT

_HELD_AT_COLLECTION = (
    UnitState.COLLECTED,
    UnitState.LABEL_VERIFIED,
    UnitState.CRYOPRESERVED,
    UnitState.PACKED,
)
_HELD_AT_MANUFACTURING = (UnitState.DELIVERED, UnitState.RECEIVED)
_PRODUCT_AT_MANUFACTURING = (UnitState.PRODUCED, UnitState.RELEASED)
_PRODUCT_AT_TREATMENT = (
    UnitState.DELIVERED,
    UnitState.RECEIVED,
    UnitState.STORED,
    UnitState.THAWED,
)

_table: dict[tuple[UnitKind, UnitState, Action], Rule] = {
    # the outbound leg: apheresis centre -> courier -> manufacturing site
    (_A, UnitState.COLLECTED, Action.VERIFY_LABEL): Rule(
        UnitState.LABEL_VERIFIED, _at(_COLLECTION_STAFF)
    ),
    (_A, UnitState.LABEL_VERIFIED, Action.CRYOPRESERVE): Rule(
        UnitState.CRYOPRESERVED, _at(_COLLECTION_STAFF)
    ),
    (_A, UnitState.CRYOPRESERVED, Action.PACK): Rule(UnitState.PACKED, _at(_COLLECTION_STAFF)),
    (_A, UnitState.PACKED, Action.PICKUP): Rule(
        UnitState.IN_TRANSIT,
        _at((SiteKind.COLLECTION, Role.COURIER)),
        place=Place.SHIPMENT_ORIGIN,
        party=Party.CARRIER,
    ),
    (_A, UnitState.IN_TRANSIT, Action.DELIVER): Rule(
        UnitState.DELIVERED,
        _at((SiteKind.MANUFACTURING, Role.COURIER)),
        place=Place.SHIPMENT_DESTINATION,
        party=Party.CARRIER,
    ),
    (_A, UnitState.DELIVERED, Action.RECEIVE): Rule(
        UnitState.RECEIVED, _at(_MANUFACTURING_OPERATOR)
    ),
    (_A, UnitState.RECEIVED, Action.START_MANUFACTURING): Rule(
        UnitState.IN_MANUFACTURING, _at(_MANUFACTURING_OPERATOR)
    ),
    # the product: QA release with its batch, then manufacturing -> courier -> treatment site,
    # then storage, thaw and infusion at the bedside
    (_P, UnitState.PRODUCED, Action.RELEASE): Rule(
        UnitState.RELEASED, _at(_MANUFACTURING_QA), by_scan=False
    ),
    (_P, UnitState.RELEASED, Action.PACK): Rule(UnitState.PACKED, _at(_MANUFACTURING_OPERATOR)),
    (_P, UnitState.PACKED, Action.PICKUP): Rule(
        UnitState.IN_TRANSIT,
        _at((SiteKind.MANUFACTURING, Role.COURIER)),
        place=Place.SHIPMENT_ORIGIN,
        party=Party.CARRIER,
    ),
    (_P, UnitState.IN_TRANSIT, Action.DELIVER): Rule(
        UnitState.DELIVERED,
        _at((SiteKind.TREATMENT, Role.COURIER)),
        place=Place.SHIPMENT_DESTINATION,
        party=Party.CARRIER,
    ),
    (_P, UnitState.DELIVERED, Action.RECEIVE): Rule(UnitState.RECEIVED, _at(_TREATMENT_CARE)),
    (_P, UnitState.RECEIVED, Action.STORE): Rule(UnitState.STORED, _at(_TREATMENT_CARE)),
    (_P, UnitState.STORED, Action.THAW): Rule(UnitState.THAWED, _at(_TREATMENT_CARE)),
    (_P, UnitState.THAWED, Action.INFUSE): Rule(
        UnitState.INFUSED, _at(_TREATMENT_CARE), bedside=True
    ),
    # exceptions: a bag in doubt is quarantined where it is; QA rejects or destroys it
    **{
        (_A, state, Action.QUARANTINE): Rule(
            UnitState.QUARANTINED, _at(_COLLECTION_STAFF, _COLLECTION_QA)
        )
        for state in _HELD_AT_COLLECTION
    },
    **{
        (_A, state, Action.QUARANTINE): Rule(
            UnitState.QUARANTINED, _at(_MANUFACTURING_OPERATOR, _MANUFACTURING_QA)
        )
        for state in _HELD_AT_MANUFACTURING
    },
    **{
        (_A, state, Action.REJECT): Rule(
            UnitState.REJECTED, _at(_MANUFACTURING_OPERATOR, _MANUFACTURING_QA)
        )
        for state in _HELD_AT_MANUFACTURING
    },
    (_A, UnitState.QUARANTINED, Action.REJECT): Rule(
        UnitState.REJECTED, _at(_COLLECTION_QA, _MANUFACTURING_QA)
    ),
    (_A, UnitState.QUARANTINED, Action.DESTROY): Rule(
        UnitState.DESTROYED, _at(_COLLECTION_QA, _MANUFACTURING_QA)
    ),
    (_A, UnitState.REJECTED, Action.DESTROY): Rule(
        UnitState.DESTROYED, _at(_COLLECTION_QA, _MANUFACTURING_QA)
    ),
    **{
        (_P, state, Action.QUARANTINE): Rule(
            UnitState.QUARANTINED, _at(_MANUFACTURING_OPERATOR, _MANUFACTURING_QA)
        )
        for state in _PRODUCT_AT_MANUFACTURING
    },
    **{
        (_P, state, Action.REJECT): Rule(UnitState.REJECTED, _at(_MANUFACTURING_QA))
        for state in _PRODUCT_AT_MANUFACTURING
    },
    **{
        (_P, state, Action.QUARANTINE): Rule(
            UnitState.QUARANTINED, _at(_TREATMENT_CARE, _TREATMENT_QA)
        )
        for state in _PRODUCT_AT_TREATMENT
    },
    (_P, UnitState.QUARANTINED, Action.REJECT): Rule(
        UnitState.REJECTED, _at(_MANUFACTURING_QA, _TREATMENT_QA)
    ),
    # a treatment site often has no QA of its own: its care team disposes of a product in doubt
    **{
        (_P, state, Action.DESTROY): Rule(
            UnitState.DESTROYED, _at(_MANUFACTURING_QA, _TREATMENT_QA, _TREATMENT_CARE)
        )
        for state in (UnitState.QUARANTINED, UnitState.REJECTED)
    },
    # a courier that cannot find a bag it carries says so; the bag is then lost, not in transit
    **{
        (kind, UnitState.IN_TRANSIT, Action.REPORT_LOST): Rule(UnitState.LOST, _at(_COURIER))
        for kind in UnitKind
    },
}

TRANSITIONS: Mapping[tuple[UnitKind, UnitState, Action], Rule] = _table


def rule_for(kind: UnitKind, state: UnitState, action: Action) -> Rule:
    if state is UnitState.ON_HOLD:
        raise OnHold(
            "this bag is on hold after a temperature alarm: do not move or use it. Only QA's "
            "disposition (release or reject) moves it",
            state=state.value,
            action=action.value,
        )
    try:
        return TRANSITIONS[(kind, state, action)]
    except KeyError:
        raise IllegalTransition(
            _why_not(kind, state, action), state=state.value, action=action.value
        ) from None


# actions that move a bag on its way, before those that stop it (quarantine, reject, ...)
_EXCEPTIONS = (Action.QUARANTINE, Action.REJECT, Action.DESTROY, Action.REPORT_LOST)


def likely_actions(
    kind: UnitKind, state: UnitState, *, role: Role, site_kind: SiteKind
) -> list[Action]:
    """What a user of ``role`` may scan a bag in ``state`` for at a site of ``site_kind``:
    the step that moves it on first, the exceptions last (the scan station preselects the
    first; the person can choose another)."""
    allowed = [
        action
        for action in Action
        if (rule := TRANSITIONS.get((kind, state, action))) is not None
        and rule.by_scan
        and (site_kind, role) in rule.performers
    ]
    return sorted(allowed, key=lambda action: action in _EXCEPTIONS)


def _why_not(kind: UnitKind, state: UnitState, action: Action) -> str:
    bag = "an apheresis bag" if kind is UnitKind.APHERESIS else "a product bag"
    if action in (Action.STORE, Action.THAW, Action.INFUSE) and kind is UnitKind.APHERESIS:
        return f"this is {bag}, not a product: it is never {action.value}d"
    if action is Action.INFUSE and state in (UnitState.PRODUCED, UnitState.QUARANTINED):
        return "this product has not been released by QA: do not infuse it"
    if action is Action.INFUSE and state is UnitState.STORED:
        return "this product is still frozen: scan it for thaw first"
    if action is Action.INFUSE and state is UnitState.INFUSED:
        return "this product has been infused already"
    return (
        f"{bag} that is {state.value.replace('_', ' ')} cannot be scanned for "
        f"{action.value.replace('_', ' ')}"
    )


@dataclass(frozen=True, slots=True)
class SiteRef:
    code: str
    kind: SiteKind


@dataclass(frozen=True, slots=True)
class Actor:
    """The acting user, as the operations receive it: who, in which role, for which site."""

    user_id: int
    email: str
    role: Role
    site: SiteRef
    site_id: int


@dataclass(frozen=True, slots=True)
class ShipmentView:
    code: str
    origin: str
    destination: str
    carrier: str | None  # the courier site code named on the shipment, if any


@dataclass(frozen=True, slots=True)
class BagView:
    """What the domain needs to know of a bag to decide a scan."""

    din: str
    coi: str
    kind: UnitKind
    state: UnitState
    custodian: str
    collection_site: str
    manufacturing_site: str
    treatment_site: str
    shipment: ShipmentView | None
    # for the bedside check: the order's patient, when the bag was thawed, how long it keeps
    patient_ref: str | None = None
    thawed_at: dt.datetime | None = None
    thaw_limit: dt.timedelta | None = None
    # the order's second patient identifier, when it was recorded at enrolment
    patient_birth_date: dt.date | None = None
    # a product bag: whether its batch's QA release is signed (complete)
    release_complete: bool = True
    # whether the bag's label was ever printed (or downloaded), for verify_label
    label_printed: bool = True
    # at an infusion after a recorded lymphodepletion: the window (first and last day), the
    # bedside's day, and the label's repeat-LD threshold (days late), if any
    infusion_window: tuple[dt.date, dt.date] | None = None
    infusion_day: dt.date | None = None
    repeat_ld_after: int | None = None


@dataclass(frozen=True, slots=True)
class ScanRequest:
    action: Action
    site: SiteRef
    actor: Actor
    scanned_coi: str | None = None  # a COI read from the bag's own 2-D code, or asked for
    shipment: str | None = None  # the shipment the scan names (its code), if any
    patient_ref: str | None = None  # scanned from the patient's wristband or typed, at infusion
    patient_birth_date: dt.date | None = None  # the wristband's second identifier, at infusion
    # the scan carried both of the label's identifiers: its 2-D code, or the DIN and the COI
    # keyed with their check characters (what verify_label checks)
    label_read: bool = False
    occurred_at: dt.datetime | None = None
    recorded_at: dt.datetime | None = None  # our clock, when we hear of the scan
    via_batch: bool = False  # the batch's QA release, not a scan of the bag


def decide_scan(bag: BagView, scan: ScanRequest) -> Rule:
    """Decide one scan of one bag: the rule it follows, or the refusal it deserves.

    Checks, in order: identity (the COI the scanner read is the bag's, and at an infusion the
    patient is the order's, once the scanner is known to be its bedside), the transition table,
    who may perform it, where it must happen, and at an infusion the time since thaw.
    """
    if scan.scanned_coi is not None and scan.scanned_coi != bag.coi:
        raise CoiMismatch(
            f"bag {bag.din} belongs to chain of identity {bag.coi}, not {scan.scanned_coi}: "
            "do not proceed; set the bag aside and call QA",
            din=bag.din,
        )
    if scan.action is Action.INFUSE:
        # authority before identity: the patient is compared only for the care team at the
        # order's own bedside, so nobody else can learn from the answer whether a patient
        # reference they typed is this order's
        check_bedside(bag, scan)
        check_patient(bag, scan)
    if (
        bag.kind is UnitKind.PRODUCT
        and scan.action in RELEASE_GATED
        and (bag.state is UnitState.PRODUCED or not bag.release_complete)
    ):
        # the release gate before the state table: a product awaiting QA's signed release is
        # refused for what it is (not released), not as a step out of sequence
        raise NotReleased(
            f"product {bag.din}'s batch release is not signed by QA: it is not released. Do not "
            f"{scan.action.value.replace('_', ' ')} it until QA signs the release",
            din=bag.din,
        )
    rule = rule_for(bag.kind, bag.state, scan.action)
    if not rule.by_scan and not scan.via_batch:
        raise IllegalTransition(
            f"bag {bag.din} is {scan.action.value}d with its batch, by QA (Review and release "
            "on the batch's page), not by a scan",
            state=bag.state.value,
            action=scan.action.value,
        )
    _check_performer(rule, scan)
    _check_place(rule, bag, scan)
    _check_route(bag, scan)
    if scan.action is Action.VERIFY_LABEL:
        check_label(bag, scan)
    if rule.bedside:
        _check_thaw(bag, scan)
        check_window(bag)
    return rule


def check_window(bag: BagView) -> None:
    """An infusion outside the product's window after lymphodepletion is refused, naming the
    window and the way forward (a repeat lymphodepletion, and its new window)."""
    if bag.infusion_window is None or bag.infusion_day is None:
        return
    start, end = bag.infusion_window
    day = bag.infusion_day
    window = {"from": start.isoformat(), "to": end.isoformat()}
    if start <= day <= end:
        return
    if day < start:
        raise WindowViolation(
            f"product {bag.din} may be infused from {start.isoformat()} to {end.isoformat()} "
            f"(its window after lymphodepletion): not before. Do not infuse today",
            din=bag.din,
            window=window,
        )
    threshold = (
        f"; its label asks for a repeat lymphodepletion when infusion is more than "
        f"{bag.repeat_ld_after} days late"
        if bag.repeat_ld_after is not None
        else ""
    )
    raise WindowViolation(
        f"product {bag.din} was to be infused from {start.isoformat()} to {end.isoformat()} "
        f"(its window after lymphodepletion); today is {(day - end).days} day(s) past it. Do "
        "not infuse: the physician plans a repeat lymphodepletion, recorded on the order "
        f"(POST /api/v1/orders/{bag.coi}/lymphodepletion), and the product is infused in its "
        f"new window{threshold}",
        din=bag.din,
        window=window,
        repeat_ld=True,
    )


RELEASE_GATED = frozenset(
    {
        Action.PACK,
        Action.PICKUP,
        Action.DELIVER,
        Action.RECEIVE,
        Action.STORE,
        Action.THAW,
        Action.INFUSE,
    }
)
"""What a product bag may do only once its batch's release is signed: leave, travel, arrive,
be stored, thawed or infused."""


def check_label(bag: BagView, scan: ScanRequest) -> None:
    """A label check reads the printed label: both identifiers (its 2-D code, or both keyed
    with their check characters) of a label that was printed. The COI was compared first."""
    if not scan.label_read:
        raise LabelNotVerified(
            f"checking bag {bag.din}'s label needs both its identifiers: scan the label's 2-D "
            "code (it carries the DIN and the chain of identity). If the scanner cannot read it, "
            "type the DIN and the COI, each with its check character. The linear DIN barcode "
            "alone does not check the label",
            din=bag.din,
        )
    if not bag.label_printed:
        raise LabelNotPrinted(
            f"no label of bag {bag.din} was ever printed: print it from the order's page (or "
            "download it), apply it, then scan it",
            din=bag.din,
        )


def check_bedside(bag: BagView, scan: ScanRequest) -> None:
    """Only the care team of the order's treatment site, scanning there, infuses."""
    actor = scan.actor
    if actor.role is not Role.CARE_TEAM:
        raise Forbidden(f"a user with role {actor.role.value} may not scan for infuse")
    if actor.site.code != scan.site.code:
        raise Forbidden(
            f"you act for site {actor.site.code} and cannot scan at site {scan.site.code}"
        )
    if scan.site.code != bag.treatment_site:
        raise WrongSite(
            f"product {bag.din} is infused at its order's treatment site, not at {scan.site.code}",
            din=bag.din,
        )


def same_patient(a: str, b: str) -> bool:
    """Patient references compare without case or spacing: a typed one may differ in those."""
    return "".join(a.split()).upper() == "".join(b.split()).upper()


def check_patient(bag: BagView, scan: ScanRequest) -> None:
    """The bedside check: the product is for the patient in the bed, whatever else is scanned."""
    if not scan.patient_ref or not scan.patient_ref.strip():
        raise InvalidRequest(
            "an infusion needs the patient's reference, scanned from the wristband or typed "
            "(patient_ref)"
        )
    if bag.kind is not UnitKind.PRODUCT:
        raise IllegalTransition(
            f"bag {bag.din} is an apheresis bag, not a product: it is never infused",
            state=bag.state.value,
            action=Action.INFUSE.value,
        )
    if bag.patient_birth_date is not None and scan.patient_birth_date is None:
        raise InvalidRequest(
            "an infusion checks two identifiers: the wristband's patient reference and the "
            "patient's date of birth (patient_birth_date)"
        )
    if (
        bag.patient_ref is None
        or not same_patient(bag.patient_ref, scan.patient_ref)
        or (
            bag.patient_birth_date is not None and scan.patient_birth_date != bag.patient_birth_date
        )
    ):
        # the message names the product and its COI, never the other patient's identifiers
        raise CoiMismatch(
            f"product {bag.din} of chain of identity {bag.coi} is NOT for this patient: "
            "DO NOT INFUSE. Set the bag aside and call QA",
            din=bag.din,
        )


def _check_thaw(bag: BagView, scan: ScanRequest) -> None:
    """Time since thaw runs to the later of the scanner's clock and ours: an infusion dated
    back to just after the thaw does not pass a limit that has run out."""
    if bag.thawed_at is None or bag.thaw_limit is None or scan.occurred_at is None:
        return
    infused = max(scan.occurred_at, scan.recorded_at or scan.occurred_at)
    if infused - bag.thawed_at > bag.thaw_limit:
        minutes = int((infused - bag.thawed_at).total_seconds() // 60)
        limit = int(bag.thaw_limit.total_seconds() // 60)
        raise ThawExpired(
            f"product {bag.din} was thawed {minutes} min ago; it must be infused within "
            f"{limit} min of thaw. Do not infuse it; quarantine it and call QA",
            din=bag.din,
        )


def _check_performer(rule: Rule, scan: ScanRequest) -> None:
    actor = scan.actor
    roles = {role for _, role in rule.performers}
    if actor.role not in roles:
        raise Forbidden(
            f"a user with role {actor.role.value} may not scan for {scan.action.value}",
        )
    if rule.party is Party.SCAN_SITE and actor.site.code != scan.site.code:
        raise Forbidden(
            f"you act for site {actor.site.code} and cannot scan at site {scan.site.code}",
        )
    if (scan.site.kind, actor.role) not in rule.performers:
        kinds = sorted(kind.value for kind, role in rule.performers if role == actor.role)
        raise WrongSite(
            f"{scan.action.value.replace('_', ' ')} happens at a {' or '.join(kinds)} site, "
            f"not at {scan.site.code} ({scan.site.kind.value})",
        )


def _check_place(rule: Rule, bag: BagView, scan: ScanRequest) -> None:
    if rule.place is Place.CUSTODIAN:
        expected, what = bag.custodian, "where the bag is held"
    else:
        if bag.shipment is None:
            raise NotInShipment(
                f"bag {bag.din} is not packed in a shipment; add it to one before "
                f"{scan.action.value.replace('_', ' ')}",
                din=bag.din,
            )
        if scan.shipment is not None and scan.shipment != bag.shipment.code:
            raise NotInShipment(
                f"bag {bag.din} travels in shipment {bag.shipment.code}, not {scan.shipment}",
                din=bag.din,
            )
        if rule.place is Place.SHIPMENT_ORIGIN:
            expected, what = bag.shipment.origin, f"the origin of shipment {bag.shipment.code}"
        else:
            expected = bag.shipment.destination
            what = f"the destination of shipment {bag.shipment.code}"
    if scan.site.code != expected:
        raise WrongSite(
            f"bag {bag.din} must be scanned at {expected} ({what}), not at {scan.site.code}",
            din=bag.din,
        )
    if rule.party is Party.CARRIER:
        _check_carrier(bag, scan)


def _check_carrier(bag: BagView, scan: ScanRequest) -> None:
    assert bag.shipment is not None
    actor_site = scan.actor.site.code
    if scan.action is Action.PICKUP:
        carrier = bag.shipment.carrier
        if carrier is not None and carrier != actor_site:
            raise Forbidden(
                f"shipment {bag.shipment.code} is assigned to courier {carrier}, not {actor_site}",
            )
    elif bag.custodian != actor_site:
        raise Forbidden(f"bag {bag.din} is held by courier {bag.custodian}, not {actor_site}")


def _check_route(bag: BagView, scan: ScanRequest) -> None:
    """A bag goes only where its order sends it: apheresis to manufacturing, product to the
    treatment site."""
    if scan.action is Action.RECEIVE:
        expected = expected_destination(bag)
        if scan.site.code != expected:
            raise WrongSite(
                f"bag {bag.din} of {bag.coi} is for site {expected}; its order does not name "
                f"{scan.site.code}. Do not accept it",
                din=bag.din,
            )
        if scan.shipment is not None and (
            bag.shipment is None or bag.shipment.code != scan.shipment
        ):
            raise NotInShipment(
                f"bag {bag.din} is not on the manifest of shipment {scan.shipment}",
                din=bag.din,
            )


def expected_destination(bag: BagView) -> str:
    if bag.kind is UnitKind.APHERESIS:
        return bag.manufacturing_site
    return bag.treatment_site


def check_shipment_route(bag: BagView, *, origin: str, destination: str) -> None:
    """A bag may join a shipment only where it is held and only towards its order's next site."""
    if bag.custodian != origin:
        raise WrongSite(
            f"bag {bag.din} is held at {bag.custodian}; a shipment from {origin} cannot take it",
            din=bag.din,
        )
    expected = expected_destination(bag)
    if destination != expected:
        raise WrongSite(
            f"bag {bag.din} of {bag.coi} must go to {expected}, not {destination}",
            din=bag.din,
        )


ENROLL = "enroll"
"""The record that opens an order's chain (sequence 0): it seals who the order is for (a keyed
digest of the patient reference), the product and the three sites."""
COLLECT = "collect"
"""The event that opens a bag's record: its collection was registered (EPCIS commissioning)."""
PRODUCE = "produce"
"""The event that opens a product bag's record: filled and labelled from its batch."""
BATCH_STATUS = "batch_status"
"""A manufacturing batch moved to a new status (no bag changes state)."""
CORRECT = "correct"
"""A correction of an earlier event: a new event pointing at it, with a reason."""
UNPACK = "unpack"
"""A shipment cancelled before pickup: the bag is taken out of it, back to its state before
packing (EPCIS unpacking)."""

READINGS = "readings"
"""A logger's temperature readings of a shipment were imported: the order-level record that
seals the original file's SHA-256."""
HOLD = "hold"
"""A temperature alarm during the bag's leg put it on hold."""
RELEASE_HOLD = "release_hold"
"""QA's disposition: the bag goes back to the state it left when it was held or quarantined."""
REJECT_HOLD = "reject_hold"
"""QA's disposition: the held or quarantined bag is rejected."""
DISPOSITIONS = (RELEASE_HOLD, REJECT_HOLD)
PATIENT_MERGE = "patient_merge"
"""The hospital merged the patient's medical records (HL7 v2 ADT^A40): the order now follows
the surviving reference. The record seals both references as keyed digests (never the
references themselves), and who recorded it; the COI never changes."""

# the vein-to-vein plan (services.domain.plans): events on the order's chain, naming no bag
PLAN_BOOK = "plan_book"
"""A plan booked: a manufacturing slot held for the order."""
PLAN_CONFIRM = "plan_confirm"
"""The held plan confirmed: binding."""
PLAN_MOVE = "plan_move"
"""The plan moved to another slot (by the care team, or by a re-plan after a slip)."""
PLAN_CANCEL = "plan_cancel"
"""The plan cancelled: its slot freed."""
PLAN_EXPIRE = "plan_expire"
"""The hold ran out before it was confirmed: its slot freed (by the beat)."""
LYMPHODEPLETION = "lymphodepletion"
"""Lymphodepleting chemotherapy started (and when it ends), recorded by the treatment site."""
NOT_INFUSED = "not_infused"
"""The patient cannot be infused: recorded with its reason."""
PLAN_ACTIONS = (PLAN_BOOK, PLAN_CONFIRM, PLAN_MOVE, PLAN_CANCEL, PLAN_EXPIRE)

EVENT_ACTIONS: tuple[str, ...] = (
    ENROLL,
    COLLECT,
    *(action.value for action in Action),
    PRODUCE,
    BATCH_STATUS,
    CORRECT,
    UNPACK,
    READINGS,
    HOLD,
    RELEASE_HOLD,
    REJECT_HOLD,
    *PLAN_ACTIONS,
    LYMPHODEPLETION,
    NOT_INFUSED,
    PATIENT_MERGE,
)
ORDER_LEVEL_ACTIONS = (
    ENROLL,
    READINGS,
    *PLAN_ACTIONS,
    LYMPHODEPLETION,
    NOT_INFUSED,
    PATIENT_MERGE,
)
"""Records that name the order (and a shipment) but no bag and no batch."""


class OrderState(StrEnum):
    ENROLLED = "enrolled"  # ordered, nothing collected yet
    IN_PROGRESS = "in_progress"  # at least one bag collected
    COMPLETED = "completed"  # the product is infused: the vein-to-vein loop is closed


def order_completed(product_states: list[UnitState]) -> bool:
    """The loop closes when some product was infused and none is still on its way."""
    settled = TERMINAL_STATES | {UnitState.REJECTED}
    return UnitState.INFUSED in product_states and all(s in settled for s in product_states)


class ShipmentState(StrEnum):
    OPEN = "open"  # being packed at the origin
    IN_TRANSIT = "in_transit"  # the courier has picked up its bags
    DELIVERED = "delivered"  # handed over at the destination
    RECEIVED = "received"  # every bag received, or otherwise accounted for
    CANCELLED = "cancelled"  # opened by mistake and cancelled before pickup; its bags went back


def shipment_state_after(bag_states: list[UnitState]) -> ShipmentState:
    """A shipment's state follows its bags: the least advanced bag decides (a held bag counts
    as the state it was held in: pass that)."""
    if not bag_states:
        return ShipmentState.OPEN
    if any(
        state in (UnitState.PACKED, UnitState.CRYOPRESERVED, UnitState.RELEASED)
        for state in bag_states
    ):
        return ShipmentState.OPEN
    if any(state is UnitState.IN_TRANSIT for state in bag_states):
        return ShipmentState.IN_TRANSIT
    if any(state is UnitState.DELIVERED for state in bag_states):
        return ShipmentState.DELIVERED
    return ShipmentState.RECEIVED
