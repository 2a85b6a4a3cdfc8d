"""Loading and locking bags, and describing them to the domain."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from services.db.cache import site_cache
from services.db.models import (
    Batch,
    ChainHead,
    CustodyEvent,
    LabelPrint,
    Order,
    Shipment,
    SignatureRule,
    Unit,
)
from services.domain.custody import BagView, ShipmentView, UnitKind
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
    """lock_bag_by_din's statement, built once (it runs with every scan). Besides the rows it
    locks it reads, as scalar subqueries of the same statement (no round trip of their own):
    the bag's latest scanner time, the scan site's signing rules for the step, whether the
    bag's label was ever printed, and whether its batch's release is signed."""
    latest = (
        select(func.max(CustodyEvent.occurred_at))
        .where(CustodyEvent.unit_id == Unit.id)
        .correlate(Unit)
        .scalar_subquery()
    )
    site_rules = (
        select(func.count())
        .select_from(SignatureRule)
        .where(SignatureRule.site_id == sa.bindparam("site_id"))
        .scalar_subquery()
    )
    step_rule = (
        select(col(SignatureRule.witness_required))
        .where(
            SignatureRule.site_id == sa.bindparam("site_id"),
            SignatureRule.step == sa.bindparam("step"),
        )
        .scalar_subquery()
    )
    printed = sa.exists(select(LabelPrint.id).where(LabelPrint.unit_id == Unit.id).correlate(Unit))
    release_signed = (
        select(Batch.release_signed_at)
        .where(Batch.id == Unit.batch_id)
        .correlate(Unit)
        .scalar_subquery()
    )
    head_key = sa.literal("order:") + sa.cast(Order.id, sa.String)
    return (
        select(  # type: ignore[call-overload]
            Order, Unit, ChainHead, latest, site_rules, step_rule, printed, release_signed
        )
        .join(Unit, col(Unit.order_id) == col(Order.id))
        .join(ChainHead, col(ChainHead.key) == head_key)
        .where(Unit.din == sa.bindparam("din"))
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


@dataclass(frozen=True)
class LockedBag:
    """A bag locked for a scan, with what the scan's decision needs besides its rows."""

    unit: Unit
    order: Order
    latest: dt.datetime | None  # the scanner's time of its latest event
    steps: dict[str, bool] | None  # the scan site's configured signing rules (None: none)
    label_printed: bool
    release_complete: bool
    rules_read: bool = True  # False: ``steps`` was not read with the bag (read them apart)


def lock_bag_by_din(session: Session, din: str, *, site_id: int, step: str) -> LockedBag | None:
    """The bag with ``din``, its order and its chain's head, locked in one statement (FOR NO
    KEY UPDATE, in the order lock_bags takes them: the order's row, then the bag's, then the
    head's), with what a scan at ``site_id`` for ``step`` decides on. None: no such bag."""
    found = session.exec(
        _lock_by_din_statement(), params={"din": din, "site_id": site_id, "step": step}
    ).first()
    if found is None:
        return None
    order, unit, head, previous, configured, witness, printed, signed = found
    heads_locked(session, [head])
    return LockedBag(
        unit=unit,
        order=order,
        latest=previous,
        # the one step the scan needs is enough: whether it is configured, and how
        steps=None if not configured else ({step: bool(witness)} if witness is not None else {}),
        label_printed=bool(printed),
        release_complete=unit.kind is not UnitKind.PRODUCT or signed is not None,
    )


def release_complete(session: Session, unit: Unit) -> bool:
    """A product bag may leave only once its batch's release is signed (an apheresis bag is
    not released at all)."""
    if unit.kind is not UnitKind.PRODUCT:
        return True
    batch = session.get(Batch, unit.batch_id) if unit.batch_id else None
    return batch is not None and batch.release_signed_at is not None


def label_printed(session: Session, unit: Unit) -> bool:
    """Whether the bag's label was ever printed or downloaded (every copy is on record)."""
    found = select(LabelPrint.id).where(LabelPrint.unit_id == unit.id)
    return bool(session.scalar(select(sa.exists(found.subquery()))))


def bag_view(
    unit: Unit,
    order: Order,
    shipment: Shipment | None,
    codes: dict[int, str],
    *,
    thawed_at: dt.datetime | None = None,
    thaw_limit: dt.timedelta | None = None,
    release_complete: bool = True,
    label_printed: bool = True,
    infusion_window: tuple[dt.date, dt.date] | None = None,
    infusion_day: dt.date | None = None,
    repeat_ld_after: int | None = None,
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
        patient_ref=order.current_patient_ref,
        thawed_at=thawed_at,
        thaw_limit=thaw_limit,
        patient_birth_date=order.patient_birth_date,
        release_complete=release_complete,
        label_printed=label_printed,
        infusion_window=infusion_window,
        infusion_day=infusion_day,
        repeat_ld_after=repeat_ld_after,
    )


def shipment_view(shipment: Shipment, codes: dict[int, str]) -> ShipmentView:
    assert shipment.id is not None
    return ShipmentView(
        code=shipment_code(shipment.id),
        origin=codes[shipment.origin_site_id],
        destination=codes[shipment.destination_site_id],
        carrier=codes[shipment.carrier_site_id] if shipment.carrier_site_id else None,
    )
