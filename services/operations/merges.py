"""Patient record merges from the treatment site: each of its orders for the merged reference
now follows the surviving one (orders.merged_patient_ref), through a patient_merge record in
the order's chain that seals both references as keyed digests and who recorded it. The COI
never changes; the bedside then accepts the new wristband and refuses the old one."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from services.db.models import Order, Site
from services.domain.audit import identity_digest, patient_digest
from services.domain.custody import PATIENT_MERGE, Actor, Role, SiteKind, same_patient
from services.domain.errors import Forbidden
from services.domain.patients import MergeMessage
from services.operations.orders import lock_order
from services.operations.record import append_event

MERGING_ROLES = frozenset({Role.ADMIN, Role.CARE_TEAM})  # the care team: its integration


def record_merges(
    session: Session, *, actor: Actor, message: MergeMessage, now: dt.datetime
) -> list[tuple[str, str, str]]:
    """Re-link the treatment site's orders: (COI, old, new) for each order re-linked. A merge
    whose old reference no order carries (any more) re-links nothing: sent twice, the second
    changes nothing."""
    if actor.role not in MERGING_ROLES or actor.site.kind is not SiteKind.TREATMENT:
        raise Forbidden(
            "patient records are merged by a treatment site's administrators or its "
            "integration (a care-team account)"
        )
    site = session.get(Site, actor.site_id)
    assert site is not None
    relinked = []
    for merge in message.merges:
        candidates = session.exec(
            select(Order.id, Order.patient_ref, Order.merged_patient_ref).where(
                Order.treatment_site_id == actor.site_id
            )
        ).all()
        for order_id, enrolled, merged in candidates:
            if not same_patient(merged or enrolled, merge.old_ref):
                continue
            order = lock_order(session, order_id)
            if not same_patient(order.current_patient_ref, merge.old_ref):
                continue  # merged by a concurrent request meanwhile
            old = order.current_patient_ref
            append_event(
                session,
                order=order,
                unit=None,
                action=PATIENT_MERGE,
                from_state=None,
                site=site,
                actor=actor,
                occurred_at=now,
                recorded_at=now,
                reason=f"patient record merge ({message.source} {message.control_id})".strip(),
                details={
                    "patient_from": _digest(order, old),
                    "patient_to": _digest(order, merge.new_ref),
                    "source": message.source,
                    "message_control_id": message.control_id,
                },
            )
            order.merged_patient_ref = merge.new_ref
            session.add(order)
            session.flush()
            relinked.append((order.coi, old, merge.new_ref))
    return relinked


def _digest(order: Order, reference: str) -> str:
    """A reference as the order's chain seals it (never the reference itself)."""
    if order.identity_salt:
        return identity_digest(order.identity_salt, reference)
    return patient_digest(order.coi, reference)
