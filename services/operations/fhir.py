"""The order as FHIR R5 for the hospital (domain.fhir): its bags, their dispense after the
infusion and the chain record's provenance, for anyone who may see the order; the patient
reference only for those who may see it (the sites that meet the patient)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, col, select

from services.db.models import (
    BatchInput,
    ChainHead,
    CustodyEvent,
    Site,
    Unit,
    User,
)
from services.domain.custody import Action, Actor, UnitKind
from services.domain.fhir import BagFacts, DispenseFacts, OrderFacts, System, bundle
from services.operations.access import may_see_patient_ref, order_by_coi


def order_bundle(
    session: Session, *, actor: Actor, coi: str, system: System, now: dt.datetime
) -> dict[str, Any]:
    order = order_by_coi(session, actor, coi)
    sites = {site.id: site for site in session.exec(select(Site)).all()}
    units = list(
        session.exec(select(Unit).where(Unit.order_id == order.id).order_by(col(Unit.id))).all()
    )
    din_of = {unit.id: unit.din for unit in units}
    inputs: dict[int, list[str]] = {}
    batch_ids = {unit.batch_id for unit in units if unit.batch_id is not None}
    if batch_ids:
        for row in session.exec(
            select(BatchInput).where(col(BatchInput.batch_id).in_(batch_ids))
        ).all():
            inputs.setdefault(row.batch_id, []).append(din_of.get(row.unit_id, ""))
    bags = []
    for unit in units:
        apheresis = unit.kind is UnitKind.APHERESIS
        facility = sites[order.collection_site_id if apheresis else order.manufacturing_site_id]
        bags.append(
            BagFacts(
                din=unit.din,
                kind=unit.kind.value,
                state=unit.state.value,
                collected_at=unit.collected_at,
                facility=facility.code,
                facility_name=facility.name,
                parents=tuple(sorted(inputs.get(unit.batch_id, []))) if unit.batch_id else (),
                expires_at=unit.expires_at,
            )
        )
    events = session.exec(
        select(CustodyEvent)
        .where(
            CustodyEvent.order_id == order.id,
            col(CustodyEvent.action).in_([Action.THAW.value, Action.INFUSE.value]),
        )
        .order_by(col(CustodyEvent.sequence))
    ).all()
    thawed = {e.unit_id: e.occurred_at for e in events if e.action == Action.THAW.value}
    corrected = set(
        session.exec(
            select(CustodyEvent.corrects_id).where(
                CustodyEvent.order_id == order.id, col(CustodyEvent.corrects_id).is_not(None)
            )
        ).all()
    )
    patient = order.current_patient_ref if may_see_patient_ref(actor, order) else None
    dispenses = []
    for event in events:
        if event.action != Action.INFUSE.value or event.unit_id is None:
            continue
        performer = session.get(User, event.actor_id)
        ward = sites[event.site_id]
        assert performer is not None
        dispenses.append(
            DispenseFacts(
                din=din_of[event.unit_id],
                prepared_at=thawed.get(event.unit_id),
                handed_over_at=event.occurred_at,
                performer_email=performer.email,
                performer_name=performer.name,
                location=ward.code,
                location_name=ward.name,
                patient_ref=patient,
                corrected=event.id in corrected,
            )
        )
    head = session.get(ChainHead, f"order:{order.id}")
    return bundle(
        OrderFacts(
            coi=order.coi,
            product=order.product,
            bags=bags,
            dispenses=dispenses,
            chain_head=head.head if head is not None else "",
            chain_length=head.length if head is not None else 0,
            recorded_at=now,
        ),
        system,
    )
