"""Loading and locking bags, and describing them to the domain."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from services.db.cache import site_cache
from services.db.models import ChainHead, CustodyEvent, Order, Shipment, Unit
from services.domain.custody import BagView, ShipmentView
from services.domain.identifiers import shipment_code
from services.operations.record import heads_locked


def site_codes(session: Session) -> dict[int, str]:
    """Every site's code by id (codes never change: kept per process, services.db.cache)."""
    return site_cache(session).codes(session)


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


@functools.cache
def _lock_by_din_statement() -> Any:
    """lock_bag_by_din's statement, built once (it runs with every scan)."""
    latest = (
        select(func.max(CustodyEvent.occurred_at))
        .where(CustodyEvent.unit_id == Unit.id)
        .correlate(Unit)
        .scalar_subquery()
    )
    head_key = sa.literal("order:") + sa.cast(Order.id, sa.String)
    return (
        select(Order, Unit, ChainHead, latest)
        .join(Unit, col(Unit.order_id) == col(Order.id))
        .join(ChainHead, col(ChainHead.key) == head_key)
        .where(Unit.din == sa.bindparam("din"))
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def lock_bag_by_din(session: Session, din: str) -> tuple[Unit, Order, dt.datetime | None] | None:
    """The bag with ``din``, its order and its chain's head, locked in one statement (FOR NO
    KEY UPDATE, in the order lock_bags takes them: the order's row, then the bag's, then the
    head's), with the scanner's time of the bag's latest event. None: no such bag."""
    found = session.exec(_lock_by_din_statement(), params={"din": din}).first()
    if found is None:
        return None
    order, unit, head, previous = found
    heads_locked(session, [head])
    return unit, order, previous


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
