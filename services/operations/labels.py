"""Label specs for bags: the identifiers verified by the domain, handed to the labels package."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session

from labels import LabelSpec
from services.db.models import Order, Site, Unit
from services.domain.custody import UnitKind
from services.domain.identifiers import Coi, Din, label_payload


def spec_for(
    din: Din,
    coi: Coi,
    *,
    product: str,
    collected_at: dt.datetime,
    site: str,
    time_caption: str = "Collected",
) -> LabelSpec:
    """A bag label from verified identifiers: their barcode, eye-readable and 2-D code forms."""
    return LabelSpec(
        din_barcode=din.barcode,
        din_eye_readable=din.eye_readable,
        din_check_character=din.check_character,
        coi=coi.value,
        coi_check_character=coi.check_character,
        qr_payload=label_payload(din, coi),
        product=product,
        collected_at=collected_at,
        site=site,
        time_caption=time_caption,
    )


def label_spec(session: Session, unit: Unit, order: Order) -> LabelSpec:
    """An apheresis bag's label names its collection; a product bag's, its filling."""
    product = unit.kind is UnitKind.PRODUCT
    site = session.get(Site, order.manufacturing_site_id if product else order.collection_site_id)
    assert site is not None
    return spec_for(
        Din.from_value(unit.din),
        Coi.from_value(order.coi),
        product=f"{order.product} CAR-T product" if product else order.product,
        collected_at=unit.collected_at,
        site=site.name,
        time_caption="Filled" if product else "Collected",
    )
