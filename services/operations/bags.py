"""Loading and locking bags, and describing them to the domain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlmodel import Session, select

from services.db.models import Order, Shipment, Site, Unit
from services.domain.custody import BagView, ShipmentView
from services.domain.identifiers import shipment_code


def site_codes(session: Session) -> dict[int, str]:
    return {site.id: site.code for site in session.exec(select(Site)).all()}  # type: ignore[misc]


def lock_bags(session: Session, units: Sequence[Unit]) -> list[tuple[Unit, Order]]:
    """Lock the bags' orders, then the bags, always in id order so two scans cannot deadlock.

    Returns each bag, re-read under its lock, with its order, in the order given.
    The locks are FOR NO KEY UPDATE (we never change keys): a plain FOR UPDATE would also block
    the FOR KEY SHARE locks that inserting rows referencing these takes, and deadlock two scans.
    """
    order_ids = sorted({unit.order_id for unit in units})
    unit_ids = sorted({unit.id for unit in units if unit.id is not None})
    orders = {
        order.id: order
        for order in session.exec(
            select(Order)
            .where(Order.id.in_(order_ids))  # type: ignore[union-attr]
            .order_by(Order.id)  # type: ignore[arg-type]
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        ).all()
    }
    locked = {
        unit.id: unit
        for unit in session.exec(
            select(Unit)
            .where(Unit.id.in_(unit_ids))  # type: ignore[union-attr]
            .order_by(Unit.id)  # type: ignore[arg-type]
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        ).all()
    }
    return [(locked[unit.id], orders[unit.order_id]) for unit in units]


def bag_view(
    unit: Unit,
    order: Order,
    shipment: Shipment | None,
    codes: dict[int, str],
    *,
    thawed_at: dt.datetime | None = None,
    thaw_limit: dt.timedelta | None = None,
) -> BagView:
    return BagView(
        din=unit.din,
        coi=order.coi,
        kind=unit.kind,
        state=unit.state,
        custodian=codes[unit.custodian_site_id],
        collection_site=codes[order.collection_site_id],
        manufacturing_site=codes[order.manufacturing_site_id],
        treatment_site=codes[order.treatment_site_id],
        shipment=shipment_view(shipment, codes) if shipment else None,
        patient_ref=order.patient_ref,
        thawed_at=thawed_at,
        thaw_limit=thaw_limit,
    )


def shipment_view(shipment: Shipment, codes: dict[int, str]) -> ShipmentView:
    assert shipment.id is not None
    return ShipmentView(
        code=shipment_code(shipment.id),
        origin=codes[shipment.origin_site_id],
        destination=codes[shipment.destination_site_id],
        carrier=codes[shipment.carrier_site_id] if shipment.carrier_site_id else None,
    )
