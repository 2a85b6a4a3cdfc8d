"""The custody state machine, enumerated: every (kind, state, action), every role, every place."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace

import pytest

from services.domain.custody import (
    RELEASE_GATED,
    TERMINAL_STATES,
    TRANSITIONS,
    Action,
    Actor,
    BagView,
    Party,
    Place,
    Role,
    Rule,
    ScanRequest,
    ShipmentState,
    ShipmentView,
    SiteKind,
    SiteRef,
    UnitKind,
    UnitState,
    check_shipment_route,
    decide_scan,
    shipment_state_after,
)
from services.domain.errors import (
    CoiMismatch,
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    NotInShipment,
    NotReleased,
    ThawExpired,
    WrongSite,
)

SITE_BY_KIND = {
    SiteKind.COLLECTION: SiteRef("C", SiteKind.COLLECTION),
    SiteKind.COURIER: SiteRef("K", SiteKind.COURIER),
    SiteKind.MANUFACTURING: SiteRef("M", SiteKind.MANUFACTURING),
    SiteKind.TREATMENT: SiteRef("T", SiteKind.TREATMENT),
}
OTHER_SITE_BY_KIND = {kind: SiteRef(site.code + "2", kind) for kind, site in SITE_BY_KIND.items()}
SHIPMENT = ShipmentView(code="SHP-00000001", origin="C", destination="M", carrier="K")
RETURN_SHIPMENT = ShipmentView(code="SHP-00000002", origin="M", destination="T", carrier="K")
COI = "CHA999926000001"
PATIENT = "PAT-1"


def held(state: UnitState, custodian: str, shipment: ShipmentView | None) -> BagView:
    """An apheresis bag of order COI (collected at C, for M, treated at T), held by custodian."""
    return BagView(
        din="D",
        coi=COI,
        kind=UnitKind.APHERESIS,
        state=state,
        custodian=custodian,
        collection_site="C",
        manufacturing_site="M",
        treatment_site="T",
        shipment=shipment,
    )


def actor(role: Role, site: SiteRef) -> Actor:
    return Actor(user_id=1, email="x@example.org", role=role, site=site, site_id=1)


def legal_case(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> tuple[BagView, ScanRequest]:
    """A bag and a scan that satisfy the rule for this performer."""
    (unit_kind,) = {k for k, s, a in TRANSITIONS if TRANSITIONS[(k, s, a)] is rule}
    shipment = SHIPMENT if unit_kind is UnitKind.APHERESIS else RETURN_SHIPMENT
    scan_site = SITE_BY_KIND[kind]
    if rule.place is Place.CUSTODIAN:
        custodian = scan_site.code
    elif rule.place is Place.SHIPMENT_ORIGIN:
        custodian = shipment.origin
    else:
        custodian = shipment.carrier or "K"
    acting_site = SITE_BY_KIND[SiteKind.COURIER] if rule.party is Party.CARRIER else scan_site
    bag = BagView(
        din="A99992600000",
        coi=COI,
        kind=unit_kind,
        state=state,
        custodian=custodian,
        collection_site="C",
        manufacturing_site="M",
        treatment_site="T",
        shipment=shipment
        if rule.place is not Place.CUSTODIAN or state is UnitState.IN_TRANSIT
        else None,
        patient_ref=PATIENT,
    )
    return bag, ScanRequest(
        action=action,
        site=scan_site,
        actor=actor(role, acting_site),
        patient_ref=PATIENT,
        via_batch=not rule.by_scan,
        label_read=action is Action.VERIFY_LABEL,  # a label check reads the label's 2-D code
    )


ALL_TRIPLES = list(itertools.product(UnitKind, UnitState, Action))
LEGAL = [
    (s, a, TRANSITIONS[(u, s, a)], k, r)
    for u, s, a in ALL_TRIPLES
    if (u, s, a) in TRANSITIONS
    for k, r in sorted(TRANSITIONS[(u, s, a)].performers)
]
IDS = [
    f"{u}-{s}-{a}-{k}-{r}"
    for u, s, a in ALL_TRIPLES
    if (u, s, a) in TRANSITIONS
    for k, r in sorted(TRANSITIONS[(u, s, a)].performers)
]


@pytest.mark.parametrize(("state", "action", "rule", "kind", "role"), LEGAL, ids=IDS)
def test_every_legal_transition_is_accepted(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    bag, scan = legal_case(state, action, rule, kind, role)
    assert decide_scan(bag, scan).to_state is rule.to_state


@pytest.mark.parametrize(
    ("unit_kind", "state", "action"),
    [t for t in ALL_TRIPLES if t not in TRANSITIONS],
    ids=[f"{u}-{s}-{a}" for u, s, a in ALL_TRIPLES if (u, s, a) not in TRANSITIONS],
)
def test_every_other_triple_is_an_illegal_transition(
    unit_kind: UnitKind, state: UnitState, action: Action
) -> None:
    for kind, role in itertools.product(SiteKind, Role):
        site = SITE_BY_KIND[kind]
        bag = BagView(
            din="A99992600000",
            coi=COI,
            kind=unit_kind,
            state=state,
            custodian=site.code,
            collection_site="C",
            manufacturing_site="M",
            treatment_site="T",
            shipment=SHIPMENT,
            patient_ref=PATIENT,
        )
        scan = ScanRequest(action=action, site=site, actor=actor(role, site), patient_ref=PATIENT)
        bedside = role is Role.CARE_TEAM and site.code == bag.treatment_site
        if action is Action.INFUSE and not bedside:
            # authority before identity and state: only the order's own bedside hears more
            with pytest.raises((Forbidden, WrongSite)):
                decide_scan(bag, scan)
            continue
        awaiting_release = (
            unit_kind is UnitKind.PRODUCT
            and state is UnitState.PRODUCED
            and action in RELEASE_GATED
        )
        # a product awaiting QA's signed release is refused for that, before the state table
        with pytest.raises(NotReleased if awaiting_release else IllegalTransition):
            decide_scan(bag, scan)


@pytest.mark.parametrize(("state", "action", "rule", "kind", "role"), LEGAL, ids=IDS)
def test_roles_outside_the_rule_are_forbidden(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    allowed_roles = {r for _, r in rule.performers}
    bag, scan = legal_case(state, action, rule, kind, role)
    for other in set(Role) - allowed_roles:
        with pytest.raises(Forbidden):
            decide_scan(bag, replace(scan, actor=actor(other, scan.actor.site)))


@pytest.mark.parametrize(("state", "action", "rule", "kind", "role"), LEGAL, ids=IDS)
def test_the_right_role_at_another_site_of_the_same_kind_is_refused(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    bag, scan = legal_case(state, action, rule, kind, role)
    elsewhere = OTHER_SITE_BY_KIND[kind]
    acting = scan.actor.site if rule.party is Party.CARRIER else elsewhere
    with pytest.raises(WrongSite):
        decide_scan(bag, replace(scan, site=elsewhere, actor=actor(role, acting)))


@pytest.mark.parametrize(("state", "action", "rule", "kind", "role"), LEGAL, ids=IDS)
def test_a_user_cannot_scan_for_another_site(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    bag, scan = legal_case(state, action, rule, kind, role)
    other_site = OTHER_SITE_BY_KIND[scan.actor.site.kind]
    with pytest.raises((Forbidden, WrongSite)):
        decide_scan(bag, replace(scan, actor=actor(role, other_site)))


@pytest.mark.parametrize(("state", "action", "rule", "kind", "role"), LEGAL, ids=IDS)
def test_a_bag_of_another_chain_of_identity_is_refused_first(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    bag, scan = legal_case(state, action, rule, kind, role)
    with pytest.raises(CoiMismatch):
        decide_scan(bag, replace(scan, scanned_coi="CHA999926000002"))


def test_wrong_kind_of_site_is_wrong_site() -> None:
    bag = held(UnitState.COLLECTED, "M", None)
    site = SITE_BY_KIND[SiteKind.MANUFACTURING]
    with pytest.raises(WrongSite):
        decide_scan(
            bag,
            ScanRequest(
                action=Action.VERIFY_LABEL, site=site, actor=actor(Role.APHERESIS_STAFF, site)
            ),
        )


def test_pickup_needs_a_shipment() -> None:
    bag = held(UnitState.PACKED, "C", None)
    with pytest.raises(NotInShipment):
        decide_scan(
            bag,
            ScanRequest(
                action=Action.PICKUP,
                site=SITE_BY_KIND[SiteKind.COLLECTION],
                actor=actor(Role.COURIER, SITE_BY_KIND[SiteKind.COURIER]),
            ),
        )


def test_pickup_by_a_courier_other_than_the_one_named_is_forbidden() -> None:
    bag = held(UnitState.PACKED, "C", SHIPMENT)
    with pytest.raises(Forbidden):
        decide_scan(
            bag,
            ScanRequest(
                action=Action.PICKUP,
                site=SITE_BY_KIND[SiteKind.COLLECTION],
                actor=actor(Role.COURIER, OTHER_SITE_BY_KIND[SiteKind.COURIER]),
            ),
        )


def test_deliver_by_a_courier_not_holding_the_bag_is_forbidden() -> None:
    bag = held(UnitState.IN_TRANSIT, "K", SHIPMENT)
    with pytest.raises(Forbidden):
        decide_scan(
            bag,
            ScanRequest(
                action=Action.DELIVER,
                site=SITE_BY_KIND[SiteKind.MANUFACTURING],
                actor=actor(Role.COURIER, OTHER_SITE_BY_KIND[SiteKind.COURIER]),
            ),
        )


def test_receive_at_a_site_the_order_does_not_name_is_wrong_site() -> None:
    # delivered to M2 by mistake: M2's operator must not accept it
    bag = held(UnitState.DELIVERED, "M2", None)
    m2 = OTHER_SITE_BY_KIND[SiteKind.MANUFACTURING]
    with pytest.raises(WrongSite, match="its order does not name M2"):
        decide_scan(
            bag,
            ScanRequest(
                action=Action.RECEIVE, site=m2, actor=actor(Role.MANUFACTURING_OPERATOR, m2)
            ),
        )


def test_receive_against_another_shipment_is_refused() -> None:
    bag = held(UnitState.DELIVERED, "M", SHIPMENT)
    m = SITE_BY_KIND[SiteKind.MANUFACTURING]
    with pytest.raises(NotInShipment):
        decide_scan(
            bag,
            ScanRequest(
                action=Action.RECEIVE,
                site=m,
                shipment="SHP-00000009",
                actor=actor(Role.MANUFACTURING_OPERATOR, m),
            ),
        )


def test_shipment_route_follows_the_order() -> None:
    bag = held(UnitState.PACKED, "C", None)
    check_shipment_route(bag, origin="C", destination="M")
    with pytest.raises(WrongSite):
        check_shipment_route(bag, origin="C", destination="M2")
    with pytest.raises(WrongSite):
        check_shipment_route(bag, origin="C2", destination="M")


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], ShipmentState.OPEN),
        ([UnitState.PACKED], ShipmentState.OPEN),
        ([UnitState.IN_TRANSIT, UnitState.IN_TRANSIT], ShipmentState.IN_TRANSIT),
        ([UnitState.DELIVERED, UnitState.IN_TRANSIT], ShipmentState.IN_TRANSIT),
        ([UnitState.DELIVERED, UnitState.RECEIVED], ShipmentState.DELIVERED),
        ([UnitState.RECEIVED, UnitState.LOST], ShipmentState.RECEIVED),
    ],
)
def test_shipment_state_follows_its_least_advanced_bag(
    states: list[UnitState], expected: ShipmentState
) -> None:
    assert shipment_state_after(states) is expected


def test_no_transition_leaves_a_terminal_state() -> None:
    assert {UnitState.DESTROYED, UnitState.LOST, UnitState.INFUSED} == TERMINAL_STATES
    assert not [key for key in TRANSITIONS if key[1] in TERMINAL_STATES]


def product(state: UnitState, **extra: object) -> BagView:
    return BagView(
        din="M99992600000",
        coi=COI,
        kind=UnitKind.PRODUCT,
        state=state,
        custodian="T",
        collection_site="C",
        manufacturing_site="M",
        treatment_site="T",
        shipment=None,
        patient_ref=PATIENT,
        **extra,  # type: ignore[arg-type]
    )


def bedside(patient_ref: str | None, **extra: object) -> ScanRequest:
    t = SITE_BY_KIND[SiteKind.TREATMENT]
    return ScanRequest(
        action=Action.INFUSE,
        site=t,
        actor=actor(Role.CARE_TEAM, t),
        patient_ref=patient_ref,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("state", list(UnitState))
def test_another_patient_is_refused_whatever_the_bags_state(state: UnitState) -> None:
    with pytest.raises(CoiMismatch, match="NOT for this patient") as refused:
        decide_scan(product(state), bedside("PAT-2"))
    assert "PAT-1" not in refused.value.detail  # the other patient is never named


def test_the_patient_reference_is_required_and_compared_without_case_or_spaces() -> None:
    with pytest.raises(InvalidRequest):
        decide_scan(product(UnitState.THAWED), bedside(None))
    with pytest.raises(InvalidRequest):
        decide_scan(product(UnitState.THAWED), bedside("  "))
    assert decide_scan(product(UnitState.THAWED), bedside(" pat-1 ")).to_state is UnitState.INFUSED


def test_an_apheresis_bag_is_never_infused() -> None:
    bag = replace(held(UnitState.RECEIVED, "T", None), patient_ref=PATIENT)
    with pytest.raises(IllegalTransition, match="not a product"):
        decide_scan(bag, bedside(PATIENT))


def test_a_product_not_released_is_refused_at_the_bedside() -> None:
    with pytest.raises(NotReleased, match="not released"):
        decide_scan(product(UnitState.PRODUCED), bedside(PATIENT))


def test_a_thaw_older_than_the_limit_is_refused() -> None:
    thawed = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC)
    bag = product(UnitState.THAWED, thawed_at=thawed, thaw_limit=dt.timedelta(minutes=30))
    in_time = bedside(PATIENT, occurred_at=thawed + dt.timedelta(minutes=30))
    assert decide_scan(bag, in_time).to_state is UnitState.INFUSED
    with pytest.raises(ThawExpired, match="31 min ago"):
        decide_scan(bag, bedside(PATIENT, occurred_at=thawed + dt.timedelta(minutes=31)))


def test_a_product_is_released_with_its_batch_never_by_a_scan() -> None:
    m = SITE_BY_KIND[SiteKind.MANUFACTURING]
    bag = replace(product(UnitState.PRODUCED), custodian="M")
    scan = ScanRequest(action=Action.RELEASE, site=m, actor=actor(Role.QA, m))
    with pytest.raises(IllegalTransition, match="with its batch"):
        decide_scan(bag, scan)
    assert decide_scan(bag, replace(scan, via_batch=True)).to_state is UnitState.RELEASED


def test_the_canonical_form_is_the_one_every_stored_hash_was_made_with() -> None:
    """canonical() serializes timestamps and enums as it goes; the bytes must be those of the
    form the chains were sealed with: every value made plain first, then json.dumps."""
    import datetime as dt
    import json

    from services.domain.audit import canonical, plain
    from services.domain.custody import Action, UnitState

    record = {
        "table": "custody_events",
        "action": Action.VERIFY_LABEL,
        "to_state": UnitState.COLLECTED,
        "from_state": None,
        "occurred_at": dt.datetime(
            2026, 12, 2, 1, 2, 3, 456789, tzinfo=dt.timezone(dt.timedelta(hours=2))
        ),
        "site_id": 3,
        "needs_review": False,
        "reason": 'Ünïcode — quoted "text"',
        "identity": {"coi": "CHA100126000001", "din": None, "actor": "a@example.org"},
        "volume": 12.5,
    }
    sealed_with = json.dumps(
        plain(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert canonical(record) == sealed_with
    assert b'"occurred_at":"2026-12-01T23:02:03.456789Z"' in canonical(record)
