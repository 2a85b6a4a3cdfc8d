"""Demo data: two networks of sites, their users, and orders standing at every stage.

Idempotent: sites, users and orders that exist already are left as they are. Tokens are shown
only once, so every run issues each demo user a fresh token named ``demo`` and revokes the last;
every run also sets each demo user's web password to ``DEMO_PASSWORD`` again.

The demo's past follows today's gates: each label is printed before it is checked (by its 2-D
code), each order records the patient's date of birth, the steps its sites sign (receipt at
manufacturing, QA release, infusion) carry the demo user's signature in the act, axi-cel is
owned by MFG-EAST, and the sites have contracted their courier.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlmodel import Session, select

from services.db import UnitOfWork
from services.db.models import Order, Product, Site, User
from services.domain.batches import BatchState
from services.domain.custody import Action, Actor, Role, SiteKind
from services.domain.identifiers import Coi, Din, label_payload
from services.operations import (
    admin,
    batches,
    contracts,
    deadlines,
    labels,
    orders,
    plans,
    products,
    scans,
    shipments,
    sites,
)
from services.operations import operator as command_line
from services.operations.signing import Signers

Transaction = Callable[[], AbstractContextManager[UnitOfWork]]

SITES = [
    ("APH-NORTH", SiteKind.COLLECTION, "Northgate Hospital Apheresis Unit", "W9901"),
    ("APH-SOUTH", SiteKind.COLLECTION, "Southbank Apheresis Centre", "W9902"),
    ("COLDCHAIN", SiteKind.COURIER, "ColdChain Cell Couriers", None),
    ("MFG-EAST", SiteKind.MANUFACTURING, "Eastfield Cell Therapy Manufacturing", "W9903"),
    ("MFG-WEST", SiteKind.MANUFACTURING, "Westmoor Cell Therapy Manufacturing", "W9904"),
    ("TRT-NORTH", SiteKind.TREATMENT, "Northgate Hospital Haematology", None),
    ("TRT-SOUTH", SiteKind.TREATMENT, "Southbank Cancer Centre", None),
]

# the demo's sites keep the wall clocks of two countries: a bag collected and infused in
# London is made on New York time, and each page says whose clock it reads
ZONES = {
    "APH-NORTH": "Europe/London",
    "COLDCHAIN": "Europe/London",
    "MFG-EAST": "America/New_York",
    "TRT-NORTH": "Europe/London",
    "APH-SOUTH": "America/New_York",
    "MFG-WEST": "America/New_York",
    "TRT-SOUTH": "America/New_York",
}

# the treatment sites' numbers for families (fictional: Ofcom's and NANP's drama ranges)
PHONES = {"TRT-NORTH": "+44 20 7946 0123", "TRT-SOUTH": "+1 212 555 0123"}

USERS = [
    ("apheresis@northgate.demo", "Alex Apheresis", Role.APHERESIS_STAFF, "APH-NORTH"),
    ("apheresis@southbank.demo", "Sam Southbank", Role.APHERESIS_STAFF, "APH-SOUTH"),
    ("courier@coldchain.demo", "Casey Courier", Role.COURIER, "COLDCHAIN"),
    ("operator@eastfield.demo", "Morgan Operator", Role.MANUFACTURING_OPERATOR, "MFG-EAST"),
    ("operator@westmoor.demo", "Wren Westmoor", Role.MANUFACTURING_OPERATOR, "MFG-WEST"),
    ("qa@eastfield.demo", "Quinn QA", Role.QA, "MFG-EAST"),
    ("care@northgate.demo", "Charlie Care", Role.CARE_TEAM, "TRT-NORTH"),
    ("admin@northgate.demo", "Ada Admin", Role.ADMIN, "TRT-NORTH"),
]

# Each demo order is scanned up to one of these steps. The bag of DEMO-0006 has been with the
# courier for four days: on a leg that should take two at most, it is late (and escalated).
OUTBOUND = [
    Action.VERIFY_LABEL,
    Action.CRYOPRESERVE,
    Action.PACK,
    Action.PICKUP,
    Action.DELIVER,
    Action.RECEIVE,
    Action.START_MANUFACTURING,
]
ORDERS = [(f"DEMO-{n:04d}", n - 2) for n in range(1, 10)]  # (patient_ref, steps; -1: enrolled)
# beyond the outbound leg: (patient_ref, how far, days since collection)
LATER = [
    ("DEMO-0010", "expansion", 6.0),  # a batch in manufacturing
    ("DEMO-0011", "in_transit", 16.8),  # the released product on its way back (since today)
    ("DEMO-0012", "infused", 23.0),  # the loop closed
]
LATE_ORDER = "DEMO-0006"
DEMO_PASSWORD = "vein2vein-demo"  # noqa: S105 - printed by the demo; refused in production
STEP_DAYS = 0.01  # about a quarter of an hour between a bag's scans
PRODUCT, OWNER = "axi-cel", "MFG-EAST"  # the demo's product and its owning site
CONTRACTS = [("APH-NORTH", "COLDCHAIN"), ("APH-SOUTH", "COLDCHAIN"), ("MFG-EAST", "COLDCHAIN")]
SIGNED = frozenset({Action.RECEIVE, Action.INFUSE})  # at MFG-EAST and TRT-NORTH by default


def birth_date(patient_ref: str) -> dt.date:
    """A demo patient's date of birth, the same on every run (the second identifier)."""
    return dt.date(1960, 1, 1) + dt.timedelta(days=401 * int(patient_ref[-4:]))


@dataclass(frozen=True)
class DemoClock:
    """Scans are spread over the past days so the record reads like a real journey."""

    now: dt.datetime

    def at(self, days_ago: float) -> dt.datetime:
        return self.now - dt.timedelta(days=days_ago)


def load_demo(transaction: Transaction, *, echo: Callable[[str], None]) -> None:
    now = dt.datetime.now(dt.UTC)
    with transaction() as uow:
        for code, kind, name, fin in SITES:
            found = uow.session.exec(select(Site).where(Site.code == code)).first()
            if not found:
                sites.add_site(
                    uow.session,
                    actor=None,
                    code=code,
                    kind=kind,
                    name=name,
                    fin=fin,
                    time_zone=ZONES[code],
                    now=now,
                )
            elif found.time_zone == "UTC":  # a demo from before sites kept their clocks
                found.time_zone = ZONES[code]
                uow.session.add(found)
            site = found or admin.site_by_code(uow.session, code)
            if code in PHONES and site.phone is None:  # what families call (status page)
                sites.change_site(uow.session, actor=None, code=code, phone=PHONES[code], now=now)
        for email, name, role, site_code in USERS:
            if not uow.session.exec(select(User).where(User.email == email)).first():
                command_line.add_user(
                    uow.session,
                    email=email,
                    role=role,
                    site_code=site_code,
                    name=name,
                    password=None,
                    now=now,
                )
        product = uow.session.get(Product, PRODUCT)
        if product is not None and product.owner_site_id is None:
            products.set_owner(uow.session, code=PRODUCT, owner=OWNER, now=now)
        for site_code, courier in CONTRACTS:
            site = admin.site_by_code(uow.session, site_code)
            if courier not in {
                s.code for s in contracts.contracted_couriers(uow.session, site.id or 0)
            }:
                contracts.set_contract(
                    uow.session, actor=None, site=site, courier=courier, active=True, now=now
                )
    for patient_ref, steps in ORDERS:
        with transaction() as uow:
            if uow.session.exec(select(Order).where(Order.patient_ref == patient_ref)).first():
                continue
            # the late one has been with the courier four days; the others move along today
            days = 4.0 if patient_ref == LATE_ORDER else 0.02 * (steps + 2)
            _build_order(uow.session, patient_ref, steps, DemoClock(now), days)
    for patient_ref, stage, days in LATER:
        with transaction() as uow:
            if uow.session.exec(select(Order).where(Order.patient_ref == patient_ref)).first():
                continue
            clock = DemoClock(now)
            _build_order(uow.session, patient_ref, OUTBOUND.index(Action.RECEIVE) + 1, clock, days)
            _manufacture_and_return(uow.session, patient_ref, stage, clock, days)
    _plans(transaction, now, echo)
    with transaction() as uow:
        result = deadlines.sweep(uow.session, now=now)
    echo(f"Deadline sweep: {result}.")
    echo(f"Demo data is loaded. Sign in with any demo e-mail and the password {DEMO_PASSWORD}")
    echo("Demo users and fresh API tokens (shown once):")
    with transaction() as uow:
        for email, _name, role, site_code in USERS:
            command_line.set_password(uow.session, email=email, password=DEMO_PASSWORD, now=now)
            admin.revoke_tokens(uow.session, by=None, email=email, name="demo", now=now)
            _row, secret = admin.issue_token(
                uow.session, by=None, email=email, name="demo", now=now
            )
            echo(f"  {email:28} {role.value:23} {site_code:10} {secret}")


# the vein-to-vein plan: four weeks of slots at the product's owning site, the treatment
# sites' jurisdictions, and plans for the orders not yet collected (one held, one confirmed)
SLOT_WEEKS, SLOTS_A_DAY = 4, 2
JURISDICTIONS = {"TRT-NORTH": "GB", "TRT-SOUTH": "US"}
PLANNED = {"DEMO-0001": "held", "DEMO-0002": "confirmed"}


def _plans(transaction: Transaction, now: dt.datetime, echo: Callable[[str], None]) -> None:
    with transaction() as uow:
        for code, place in JURISDICTIONS.items():
            sites.change_site(uow.session, actor=None, code=code, jurisdiction=place, now=now)
        operator = admin.actor_by_email(uow.session, "operator@eastfield.demo")
        today = now.date()
        for n in range(SLOT_WEEKS * 7):
            plans.publish_capacity(
                uow.session,
                actor=operator,
                site=OWNER,
                product=PRODUCT,
                day=today + dt.timedelta(days=n),
                slots=SLOTS_A_DAY,
                now=now,
            )
    for patient_ref, state in PLANNED.items():
        with transaction() as uow:
            order = uow.session.exec(select(Order).where(Order.patient_ref == patient_ref)).first()
            if order is None or order.has_plan:
                continue
            care = admin.actor_by_email(uow.session, "care@northgate.demo")
            plan = plans.book(
                uow.session,
                actor=care,
                coi=order.coi,
                apheresis_on=now.date() + dt.timedelta(days=2),
                now=now,
                hold_hours=48,
            )
            if state == "confirmed":
                plans.confirm(uow.session, actor=care, coi=order.coi, now=now)
            echo(
                f"Plan of {order.coi} ({patient_ref}): {state}, slot {plan.manufacturing_start_on}"
            )


def _manufacture_and_return(
    session: Session, patient_ref: str, stage: str, clock: DemoClock, days_ago: float
) -> None:
    """A received order through its batch and, as far as ``stage``, back to the bedside."""
    operator = admin.actor_by_email(session, "operator@eastfield.demo")
    qa = admin.actor_by_email(session, "qa@eastfield.demo")
    order = session.exec(select(Order).where(Order.patient_ref == patient_ref)).one()
    day = days_ago - 1.0  # the batch starts the day after collection

    def at(offset: float) -> dt.datetime:
        return clock.at(day - offset)

    batch = batches.open_batch(
        session, actor=operator, coi=order.coi, units=None, now=at(0), occurred_at=at(0)
    )
    assert batch.id is not None
    steps = [BatchState.TRANSDUCTION, BatchState.EXPANSION]
    if stage != "expansion":
        steps += [BatchState.HARVEST, BatchState.FORMULATION]
    for index, step in enumerate(steps, start=1):
        batches.change_status(
            session,
            actor=operator,
            number=batch.id,
            status=step,
            reason=None,
            now=at(index * 2.0),
            occurred_at=at(index * 2.0),
        )
    if stage == "expansion":
        return
    (product,) = batches.add_products(
        session,
        actor=operator,
        number=batch.id,
        count=1,
        volume_ml=68.0,
        now=at(8.5),
        filled_at=at(8.5),
    )
    for offset, step, actor in (
        (9.0, BatchState.CRYOPRESERVATION, operator),
        (10.0, BatchState.QC_TESTING, operator),
        (15.0, BatchState.RELEASED, qa),
    ):
        batches.change_status(
            session,
            actor=actor,
            number=batch.id,
            status=step,
            reason=None,
            now=at(offset),  # recorded then: the signed release precedes the packing
            occurred_at=at(offset),
            # QA's release is signed in the act (the demo signs for Quinn QA)
            signers=Signers(performer=qa) if step is BatchState.RELEASED else Signers(),
        )
    shipment = shipments.create_shipment(
        session,
        actor=operator,
        origin="MFG-EAST",
        destination="TRT-NORTH",
        shipper_id=f"LN2-R{patient_ref[-4:]}",
        units=[],
        carrier="COLDCHAIN",
        now=at(15.2),
    )
    legs: list[tuple[Action, str, str, float]] = [
        (Action.PACK, "operator@eastfield.demo", "MFG-EAST", 15.3),
        (Action.PICKUP, "courier@coldchain.demo", "MFG-EAST", 15.5),
    ]
    if stage == "infused":
        legs += [
            (Action.DELIVER, "courier@coldchain.demo", "TRT-NORTH", 16.5),
            (Action.RECEIVE, "care@northgate.demo", "TRT-NORTH", 16.6),
            (Action.STORE, "care@northgate.demo", "TRT-NORTH", 16.7),
            (Action.THAW, "care@northgate.demo", "TRT-NORTH", 20.99),
            (Action.INFUSE, "care@northgate.demo", "TRT-NORTH", 21.0),
        ]
    for action, email, site, offset in legs:
        _scan(
            session,
            admin.actor_by_email(session, email),
            scans.ScanInput(
                barcode=f"={product.din}00",
                action=action,
                site=site,
                event_id=_event_id(f"{patient_ref}:r:{action}"),
                occurred_at=at(offset),
                shipment=f"SHP-{shipment.id:08d}" if action is Action.PACK else None,
                patient_ref=patient_ref if action is Action.INFUSE else None,
                patient_birth_date=birth_date(patient_ref) if action is Action.INFUSE else None,
            ),
            clock,
        )


def _scan(session: Session, actor: Actor, scan: scans.ScanInput, clock: DemoClock) -> None:
    """A scan of the demo's past, recorded as if the server had heard of it then (a bedside
    check, for one, is made by the server's clock). The steps its sites sign carry the demo
    user's signature in the act, as that user would give it with their password."""
    scans.record_scan(
        session,
        actor=actor,
        scan=scan,
        now=scan.occurred_at or clock.now,
        max_clock_skew=dt.timedelta(minutes=5),
        signers=Signers(performer=actor) if scan.action in SIGNED else Signers(),
    )


def _event_id(key: str) -> str:
    """The same event id for the same demo scan, so that a second `demo` replays, not repeats."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"demo:{key}"))


def _build_order(
    session: Session, patient_ref: str, steps: int, clock: DemoClock, days_ago: float
) -> None:
    staff = admin.actor_by_email(session, "apheresis@northgate.demo")
    care = admin.actor_by_email(session, "care@northgate.demo")
    order = orders.enroll_order(
        session,
        actor=care,
        patient_ref=patient_ref,
        patient_birth_date=birth_date(patient_ref),
        product=PRODUCT,
        collection_site="APH-NORTH",
        manufacturing_site="MFG-EAST",
        treatment_site="TRT-NORTH",
        now=clock.at(days_ago + 1),
    )
    if steps < 0:
        return
    unit, _ = orders.register_collection(
        session,
        actor=staff,
        coi=order.coi,
        collected_at=clock.at(days_ago),
        volume_ml=250.0,
        now=clock.now,
        max_clock_skew=dt.timedelta(minutes=5),
    )
    shipment_code: str | None = None
    who = {
        Action.PICKUP: "courier@coldchain.demo",
        Action.DELIVER: "courier@coldchain.demo",
        Action.RECEIVE: "operator@eastfield.demo",
        Action.START_MANUFACTURING: "operator@eastfield.demo",
    }
    where = {
        Action.PICKUP: "APH-NORTH",
        Action.DELIVER: "MFG-EAST",
        Action.RECEIVE: "MFG-EAST",
        Action.START_MANUFACTURING: "MFG-EAST",
    }
    if steps > 0:  # the label is printed as the bag is registered, then checked by its scan
        labels.record_print(
            session,
            actor=staff,
            unit=unit,
            order=order,
            target="pdf",
            reason=None,
            now=clock.at(days_ago),
        )
    label = label_payload(Din.from_value(unit.din), Coi.from_value(order.coi))
    for index, action in enumerate(OUTBOUND[:steps]):
        actor = admin.actor_by_email(session, who.get(action, "apheresis@northgate.demo"))
        if action is Action.PACK:
            shipment = shipments.create_shipment(
                session,
                actor=actor,
                origin="APH-NORTH",
                destination="MFG-EAST",
                shipper_id=f"LN2-{patient_ref[-4:]}",
                units=[],
                carrier="COLDCHAIN",
                now=clock.at(days_ago - index * STEP_DAYS),
            )
            shipment_code = f"SHP-{shipment.id:08d}"
        _scan(
            session,
            actor,
            scans.ScanInput(
                barcode=label if action is Action.VERIFY_LABEL else f"={unit.din}00",
                action=action,
                site=where.get(action, "APH-NORTH"),
                event_id=_event_id(f"{patient_ref}:{action}"),
                occurred_at=clock.at(days_ago - (index + 1) * STEP_DAYS),
                shipment=shipment_code if action is Action.PACK else None,
            ),
            clock,
        )
