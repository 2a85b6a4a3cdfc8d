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
from services.domain.errors import Conflict, Forbidden
from services.domain.patients import MergeMessage
from services.operations.orders import lock_order
from services.operations.record import append_event

# the treatment site's administrators; its integration runs as an account an admin provisioned
# with the admin role (a nurse's token must not re-link orders to another wristband)
MERGING_ROLES = frozenset({Role.ADMIN})


def record_merges(
    session: Session, *, actor: Actor, message: MergeMessage, now: dt.datetime
) -> list[tuple[str, str, str]]:
    """Re-link the treatment site's orders: (COI, old, new) for each order re-linked. A merge
    whose old reference no order carries (any more) re-links nothing: sent twice, the second
    changes nothing. Conflict, nothing re-linked, when the surviving reference is already
    another order's whose recorded date of birth or name differs: two patients, not one."""
    if actor.role not in MERGING_ROLES or actor.site.kind is not SiteKind.TREATMENT:
        raise Forbidden(
            "patient records are merged by a treatment site's administrators (its integration "
            "runs as an administrator's account)"
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
            _same_person(session, order, merge.new_ref, site)
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


def _same_person(session: Session, order: Order, new_ref: str, site: Site) -> None:
    """Refuse a merge onto a reference the site's other orders carry for someone whose
    recorded date of birth or name differs from this order's (a typo in the message would
    otherwise hand this order's bags to another patient's wristband)."""
    others = session.exec(
        select(Order).where(Order.treatment_site_id == site.id, Order.id != order.id)
    ).all()
    for other in others:
        if not same_patient(other.current_patient_ref, new_ref):
            continue
        if _differ(order.patient_birth_date, other.patient_birth_date) or _differ(
            _name(order.patient_name), _name(other.patient_name)
        ):
            raise Conflict(
                f"{new_ref} is already the reference of order {other.coi}, whose recorded date "
                f"of birth or name differs from order {order.coi}'s: not the same patient; "
                "nothing was re-linked"
            )


def _differ(a: object, b: object) -> bool:
    """Both recorded, and not the same (one not recorded compares with anything)."""
    return a is not None and b is not None and a != b


def _name(name: str | None) -> str | None:
    return " ".join(name.split()).upper() if name and name.strip() else None


def _digest(order: Order, reference: str) -> str:
    """A reference as the order's chain seals it (never the reference itself)."""
    if order.identity_salt:
        return identity_digest(order.identity_salt, reference)
    return patient_digest(order.coi, reference)
