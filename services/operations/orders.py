"""Enrolling orders and registering collections: where a chain of identity begins."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import CustodyEvent, Order, Product, Site, Unit
from services.domain.clock import device_time
from services.domain.custody import (
    COLLECT,
    Actor,
    OrderState,
    Role,
    SiteKind,
    UnitKind,
    UnitState,
    same_patient,
)
from services.domain.errors import (
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    UnknownProduct,
    WrongSite,
)
from services.domain.identifiers import COI_SERIAL_MAX, DIN_SEQUENCE_MAX, Coi, Din
from services.operations import access
from services.operations.access import order_by_coi
from services.operations.admin import site_by_code
from services.operations.record import append_event, new_identity_salt, open_order
from services.operations.sequences import next_number
from services.operations.subscriptions import default_subscription

ENROLLING_ROLES = frozenset({Role.CARE_TEAM, Role.APHERESIS_STAFF, Role.ADMIN})


def enroll_order(
    session: Session,
    *,
    actor: Actor,
    patient_ref: str,
    product: str,
    collection_site: str,
    manufacturing_site: str,
    treatment_site: str,
    now: dt.datetime,
    patient_birth_date: dt.date | None = None,
    patient_name: str | None = None,
) -> Order:
    """A new order with a new chain of identity (COI) from the collection site's FIN, for a
    product that is set up, with the patient's two identifiers (reference and date of birth)
    and, where given, name."""
    if actor.role not in ENROLLING_ROLES:
        raise Forbidden(f"a user with role {actor.role.value} may not enroll orders")
    known_product(session, product)
    if patient_birth_date is not None:
        check_birth_date(patient_birth_date, today=now.date())
    if patient_name is not None:
        patient_name = " ".join(patient_name.split()) or None
    sites = {
        SiteKind.COLLECTION: site_by_code(session, collection_site),
        SiteKind.MANUFACTURING: site_by_code(session, manufacturing_site),
        SiteKind.TREATMENT: site_by_code(session, treatment_site),
    }
    for kind, site in sites.items():
        if site.kind is not kind:
            raise WrongSite(
                f"site {site.code} is a {site.kind.value} site, not a {kind.value} site"
            )
    if actor.site_id not in (sites[SiteKind.COLLECTION].id, sites[SiteKind.TREATMENT].id):
        raise Forbidden(
            f"you act for site {actor.site.code}; an order is enrolled by its treatment or "
            "collection site"
        )
    collection = sites[SiteKind.COLLECTION]
    assert collection.fin is not None  # site kinds that assign identifiers always have a FIN
    number = next_number(
        session, kind="coi", fin=collection.fin, year=now.year % 100, maximum=COI_SERIAL_MAX
    )
    coi = Coi.generate(fin=collection.fin, year=now.year, number=number)
    order = Order(
        coi=coi.value,
        patient_ref=patient_ref,
        patient_birth_date=patient_birth_date,
        patient_name=patient_name,
        product=product,
        collection_site_id=_id(collection),
        manufacturing_site_id=_id(sites[SiteKind.MANUFACTURING]),
        treatment_site_id=_id(sites[SiteKind.TREATMENT]),
        state=OrderState.ENROLLED,
        created_by_id=actor.user_id,
        created_at=now,
        identity_salt=new_identity_salt(),
    )
    session.add(order)
    session.flush()
    default_subscription(session, order=order, actor=actor)
    enrolling_site = session.get(Site, actor.site_id)
    assert enrolling_site is not None
    open_order(session, order=order, actor=actor, site=enrolling_site, now=now)
    return order


def enrolled_before(
    session: Session, actor: Actor, patient_ref: str, *, excluding: int | None = None
) -> list[Order]:
    """Orders the actor may see whose patient reference is this one (without case or
    spacing, as the bedside compares them; the current one, after a patient merge), newest
    first: the same patient enrolled twice is worth a warning, not a refusal (a new
    collection, a second therapy)."""
    wanted = "".join(patient_ref.split()).upper()
    if not wanted:
        return []
    current = sa.func.coalesce(col(Order.merged_patient_ref), col(Order.patient_ref))
    normalized = sa.func.upper(sa.func.replace(current, " ", ""))
    rows = session.exec(
        select(Order)
        .where(normalized == wanted, access.order_condition(actor))
        .order_by(col(Order.id).desc())
        .limit(20)
    ).all()
    return [
        order
        for order in rows
        if order.id != excluding
        and access.may_see_patient_ref(actor, order)
        and same_patient(order.current_patient_ref, patient_ref)
    ]


def known_product(session: Session, product: str) -> Product:
    row = session.get(Product, product)
    if row is None:
        names = ", ".join(session.exec(select(Product.code).order_by(col(Product.code))).all())
        raise UnknownProduct(f"{product!r} is not a product set up here; the products are {names}")
    return row


def check_birth_date(born: dt.date, *, today: dt.date) -> None:
    if born > today:
        raise InvalidRequest("the date of birth is in the future")
    if born.year < 1900:
        raise InvalidRequest("the date of birth is before 1900")


def register_collection(
    session: Session,
    *,
    actor: Actor,
    coi: str,
    collected_at: dt.datetime | None,
    volume_ml: float | None,
    now: dt.datetime,
    max_clock_skew: dt.timedelta,
) -> tuple[Unit, CustodyEvent]:
    """A collected apheresis bag: a new DIN on the order's COI and the first event of its record."""
    order = order_by_coi(session, actor, coi)
    if actor.role is not Role.APHERESIS_STAFF or actor.site_id != order.collection_site_id:
        raise Forbidden(
            "collections are registered by apheresis staff of the order's collection site"
        )
    if order.state is OrderState.COMPLETED:
        raise IllegalTransition(
            f"order {order.coi} is completed (the product was infused); a new therapy is a new "
            "order",
            state=order.state.value,
            action=COLLECT,
        )
    collected_at = device_time(
        collected_at, now=now, skew=max_clock_skew, what="the collection time"
    )
    order = lock_order(session, order.id)
    site = session.get(Site, order.collection_site_id)
    assert site is not None
    assert site.fin is not None
    number = next_number(
        session, kind="din", fin=site.fin, year=now.year % 100, maximum=DIN_SEQUENCE_MAX
    )
    din = Din.generate(fin=site.fin, year=now.year, sequence=number)
    unit = Unit(
        din=din.value,
        kind=UnitKind.APHERESIS,
        order_id=_id(order),
        state=UnitState.COLLECTED,
        custodian_site_id=_id(site),
        collected_at=collected_at,
        volume_ml=volume_ml,
        created_at=now,
    )
    session.add(unit)
    session.flush()
    event = append_event(
        session,
        order=order,
        unit=unit,
        action=COLLECT,
        from_state=None,
        site=site,
        actor=actor,
        occurred_at=collected_at,
        recorded_at=now,
    )
    order.state = OrderState.IN_PROGRESS
    session.add(order)
    session.flush()
    return unit, event


def lock_order(session: Session, order_id: int | None) -> Order:
    """Lock the order row: every change to an order's bags is serialised on it."""
    return session.exec(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()


def _id(row: Site | Order | Unit) -> int:
    assert row.id is not None
    return row.id
