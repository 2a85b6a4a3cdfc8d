"""The custody state machine, enumerated: every (state, action) pair, every role, every place."""

from __future__ import annotations

import itertools

import pytest

from services.domain.custody import (
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
    NotInShipment,
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
COI = "CHA999926000001"


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
    scan_site = SITE_BY_KIND[kind]
    if rule.place is Place.CUSTODIAN:
        custodian = scan_site.code
    elif rule.place is Place.SHIPMENT_ORIGIN:
        custodian = SHIPMENT.origin
    else:
        custodian = SHIPMENT.carrier or "K"
    acting_site = SITE_BY_KIND[SiteKind.COURIER] if rule.party is Party.CARRIER else scan_site
    bag = BagView(
        din="A99992600000",
        coi=COI,
        kind=UnitKind.APHERESIS,
        state=state,
        custodian=custodian,
        collection_site="C",
        manufacturing_site="M",
        treatment_site="T",
        shipment=SHIPMENT
        if rule.place is not Place.CUSTODIAN or state is UnitState.IN_TRANSIT
        else None,
    )
    return bag, ScanRequest(action=action, site=scan_site, actor=actor(role, acting_site))


ALL_PAIRS = list(itertools.product(UnitState, Action))
LEGAL = [
    (s, a, TRANSITIONS[(s, a)], k, r)
    for s, a in ALL_PAIRS
    if (s, a) in TRANSITIONS
    for k, r in sorted(TRANSITIONS[(s, a)].performers)
]


@pytest.mark.parametrize(
    ("state", "action", "rule", "kind", "role"),
    LEGAL,
    ids=[f"{s}-{a}-{k}-{r}" for s, a, _, k, r in LEGAL],
)
def test_every_legal_transition_is_accepted(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    bag, scan = legal_case(state, action, rule, kind, role)
    assert decide_scan(bag, scan).to_state is rule.to_state


@pytest.mark.parametrize(
    ("state", "action"),
    [p for p in ALL_PAIRS if p not in TRANSITIONS],
    ids=[f"{s}-{a}" for s, a in ALL_PAIRS if (s, a) not in TRANSITIONS],
)
def test_every_other_pair_is_an_illegal_transition(state: UnitState, action: Action) -> None:
    for kind, role in itertools.product(SiteKind, Role):
        site = SITE_BY_KIND[kind]
        bag = BagView(
            din="A99992600000",
            coi=COI,
            kind=UnitKind.APHERESIS,
            state=state,
            custodian=site.code,
            collection_site="C",
            manufacturing_site="M",
            treatment_site="T",
            shipment=SHIPMENT,
        )
        with pytest.raises(IllegalTransition):
            decide_scan(bag, ScanRequest(action=action, site=site, actor=actor(role, site)))


@pytest.mark.parametrize(
    ("state", "action", "rule", "kind", "role"),
    LEGAL,
    ids=[f"{s}-{a}-{k}-{r}" for s, a, _, k, r in LEGAL],
)
def test_roles_outside_the_rule_are_forbidden(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    allowed_roles = {r for _, r in rule.performers}
    bag, scan = legal_case(state, action, rule, kind, role)
    for other in set(Role) - allowed_roles:
        with pytest.raises(Forbidden):
            decide_scan(
                bag, ScanRequest(action=action, site=scan.site, actor=actor(other, scan.actor.site))
            )


@pytest.mark.parametrize(
    ("state", "action", "rule", "kind", "role"),
    LEGAL,
    ids=[f"{s}-{a}-{k}-{r}" for s, a, _, k, r in LEGAL],
)
def test_the_right_role_at_another_site_of_the_same_kind_is_refused(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    bag, scan = legal_case(state, action, rule, kind, role)
    elsewhere = OTHER_SITE_BY_KIND[kind]
    acting = scan.actor.site if rule.party is Party.CARRIER else elsewhere
    with pytest.raises(WrongSite):
        decide_scan(bag, ScanRequest(action=action, site=elsewhere, actor=actor(role, acting)))


@pytest.mark.parametrize(
    ("state", "action", "rule", "kind", "role"),
    LEGAL,
    ids=[f"{s}-{a}-{k}-{r}" for s, a, _, k, r in LEGAL],
)
def test_a_user_cannot_scan_for_another_site(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    bag, scan = legal_case(state, action, rule, kind, role)
    other_site = OTHER_SITE_BY_KIND[scan.actor.site.kind]
    with pytest.raises((Forbidden, WrongSite)):
        decide_scan(bag, ScanRequest(action=action, site=scan.site, actor=actor(role, other_site)))


@pytest.mark.parametrize(
    ("state", "action", "rule", "kind", "role"),
    LEGAL,
    ids=[f"{s}-{a}-{k}-{r}" for s, a, _, k, r in LEGAL],
)
def test_a_bag_of_another_chain_of_identity_is_refused_first(
    state: UnitState, action: Action, rule: Rule, kind: SiteKind, role: Role
) -> None:
    bag, scan = legal_case(state, action, rule, kind, role)
    with pytest.raises(CoiMismatch):
        decide_scan(
            bag,
            ScanRequest(
                action=action, site=scan.site, actor=scan.actor, scanned_coi="CHA999926000002"
            ),
        )


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
    assert {UnitState.DESTROYED, UnitState.LOST} == TERMINAL_STATES
    assert not [key for key in TRANSITIONS if key[0] in TERMINAL_STATES]
