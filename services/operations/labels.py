"""Label specs for bags: the identifiers verified by the domain, handed to the labels package."""

from __future__ import annotations

from sqlmodel import Session

from labels import LabelSpec
from services.db.models import Order, Site, Unit
from services.domain.identifiers import Coi, Din, label_payload


def label_spec(session: Session, unit: Unit, order: Order) -> LabelSpec:
    din = Din.from_value(unit.din)
    coi = Coi.from_value(order.coi)
    site = session.get(Site, order.collection_site_id)
    assert site is not None
    return LabelSpec(
        din_barcode=din.barcode,
        din_eye_readable=din.eye_readable,
        din_check_character=din.check_character,
        coi=coi.value,
        coi_check_character=coi.check_character,
        qr_payload=label_payload(din, coi),
        product=order.product,
        collected_at=unit.collected_at,
        site=site.name,
    )
