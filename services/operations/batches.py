"""Manufacturing batches: opened from an order's received apheresis bags, moved step by step,
filled into product bags, released or failed by QA. Every change is an event on the order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from services.db.models import (
    Batch,
    BatchInput,
    CustodyEvent,
    Order,
    Product,
    RefusedScan,
    Site,
    Unit,
)
from services.domain.batches import (
    FINAL,
    OPENING_ROLES,
    RELEASE_ROLES,
    BatchState,
    check_filling,
    check_status_change,
)
from services.domain.clock import device_time
from services.domain.custody import (
    BATCH_STATUS,
    HOLD,
    PRODUCE,
    REJECT_HOLD,
    RELEASE_HOLD,
    Action,
    Actor,
    OrderState,
    ScanRequest,
    SiteRef,
    UnitKind,
    UnitState,
    decide_scan,
    rule_for,
)
from services.domain.errors import (
    CoiMismatch,
    Conflict,
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    NotFound,
)
from services.domain.identifiers import DIN_SEQUENCE_MAX, Din, batch_code, din_reference
from services.domain.signatures import NOT_REQUIRED
from services.operations import plans, signing
from services.operations.access import (
    can_view_order,
    order_by_coi,
    order_condition,
    visible_batch,
)
from services.operations.bags import bag_view, lock_bags, site_codes
from services.operations.orders import lock_order
from services.operations.queries import refusals_of_order
from services.operations.record import append_event
from services.operations.sequences import next_number
from services.operations.signing import NO_SIGNERS, Signers

DEFAULT_SKEW = dt.timedelta(minutes=5)
RELEASE_STEP = "release"  # the step a site signs when QA releases a batch


@dataclass(frozen=True)
class BatchRecord:
    batch: Batch
    order: Order
    inputs: list[Unit]
    products: list[Unit]
    history: list[CustodyEvent]


def open_batch(
    session: Session,
    *,
    actor: Actor,
    coi: str,
    units: list[str] | None,
    now: dt.datetime,
    occurred_at: dt.datetime | None = None,
    max_clock_skew: dt.timedelta = DEFAULT_SKEW,
) -> Batch:
    """Open a batch from the order's received apheresis bags (all of them, or those named):
    each is consumed by ``start_manufacturing``, in the same transaction as the batch."""
    order = order_by_coi(session, actor, coi)
    if actor.role not in OPENING_ROLES or actor.site_id != order.manufacturing_site_id:
        raise Forbidden(
            "batches are opened by manufacturing operators of the order's manufacturing site"
        )
    order = lock_order(session, order.id)
    if order.state is OrderState.COMPLETED:
        raise IllegalTransition(
            f"order {order.coi} is completed", state=order.state.value, action="open_batch"
        )
    running = session.exec(
        select(Batch).where(Batch.order_id == order.id, col(Batch.state).not_in(FINAL))
    ).first()
    if running is not None:
        raise Conflict(
            f"order {order.coi} has batch {batch_code(_id(running))} in progress; release or "
            "fail it first"
        )
    chosen = _inputs(session, actor, order, units)
    occurred = device_time(occurred_at, now=now, skew=max_clock_skew, what="the time of the step")
    site = session.get(Site, order.manufacturing_site_id)
    assert site is not None
    batch = Batch(
        order_id=_id(order),
        site_id=_id(site),
        state=BatchState.ACTIVATION,
        opened_by_id=actor.user_id,
        opened_at=occurred,
        updated_at=occurred,
        created_at=now,
    )
    session.add(batch)
    session.flush()
    codes = site_codes(session)
    step = _Step(order, batch, site, actor, occurred, now)
    request = ScanRequest(
        action=Action.START_MANUFACTURING, site=SiteRef(code=site.code, kind=site.kind), actor=actor
    )
    for unit, _order in lock_bags(session, chosen):
        if unit.state is UnitState.RECEIVED:
            rule = decide_scan(bag_view(unit, order, None, codes), request)
            from_state, unit.state = unit.state, rule.to_state
            session.add(unit)
            _event(
                session,
                step,
                unit=unit,
                action=Action.START_MANUFACTURING.value,
                from_state=from_state,
            )
        session.add(BatchInput(batch_id=_id(batch), unit_id=_id(unit)))
    _event(session, step, unit=None, action=BATCH_STATUS, from_state=None)
    if order.has_plan:
        session.flush()
        plans.replan_after(session, order, now=now)  # manufacturing started: the plan follows
    return batch


def _inputs(session: Session, actor: Actor, order: Order, units: list[str] | None) -> list[Unit]:
    """The apheresis bags a new batch consumes: received at the manufacturing site (or already
    started) and in no batch yet."""
    used = select(BatchInput.unit_id)
    candidates = {
        unit.din: unit
        for unit in session.exec(
            select(Unit)
            .where(
                Unit.order_id == order.id,
                Unit.kind == UnitKind.APHERESIS,
                Unit.custodian_site_id == order.manufacturing_site_id,
                col(Unit.state).in_([UnitState.RECEIVED, UnitState.IN_MANUFACTURING]),
                col(Unit.id).not_in(used),
            )
            .order_by(col(Unit.id))
        ).all()
    }
    if units is None:
        if not candidates:
            raise IllegalTransition(
                f"order {order.coi} has no received apheresis bag to manufacture from",
                state=order.state.value,
                action="open_batch",
            )
        return list(candidates.values())
    if not units:
        raise InvalidRequest("name at least one apheresis bag, or leave units out for all")
    chosen: list[Unit] = []
    for text in units:
        din = din_reference(text).value
        if din in candidates:
            if candidates[din] not in chosen:
                chosen.append(candidates[din])
            continue
        unit = session.exec(select(Unit).where(Unit.din == din)).first()
        other = session.get(Order, unit.order_id) if unit else None
        if unit is None or other is None or not can_view_order(session, actor, other):
            raise NotFound(f"no bag {din} you can see")
        if other.id != order.id:
            raise CoiMismatch(
                f"bag {din} belongs to chain of identity {other.coi}, not {order.coi}: it cannot "
                "go into this order's batch",
                din=din,
            )
        raise IllegalTransition(
            f"bag {din} is {unit.state.value.replace('_', ' ')}"
            + (" and already in a batch" if unit.state is UnitState.IN_MANUFACTURING else "")
            + "; a batch takes received apheresis bags",
            state=unit.state.value,
            action="open_batch",
        )
    return chosen


def change_status(
    session: Session,
    *,
    actor: Actor,
    number: int,
    status: BatchState,
    reason: str | None,
    now: dt.datetime,
    occurred_at: dt.datetime | None = None,
    max_clock_skew: dt.timedelta = DEFAULT_SKEW,
    signers: Signers = NO_SIGNERS,
) -> Batch:
    """Move a batch to its next step, release it (QA, after QC) or fail it (with a reason).
    A release is one signed act: where the site signs releases (the default), QA's signature
    (and a witness's, where required) comes with it, and one signature covers the batch and
    all its product bags, which may leave from then on. A failure rejects the bags not yet
    shipped."""
    batch, order = visible_batch(session, actor, number)
    if actor.site_id != batch.site_id:
        raise Forbidden(f"batch {batch_code(number)} is worked on at its manufacturing site")
    order = lock_order(session, order.id)
    batch = _lock_batch(session, number)
    products = _products(session, batch)
    check_status_change(
        batch.state,
        status,
        role=actor.role,
        reason=reason,
        products=sum(1 for unit in products if unit.state is UnitState.PRODUCED),
    )
    site = session.get(Site, batch.site_id)
    assert site is not None
    needed = NOT_REQUIRED
    if status is BatchState.RELEASED:
        needed = signing.signing_of(session, site, RELEASE_STEP)
        signing.check_act(step=RELEASE_STEP, signing=needed, actor=actor, signers=signers)
    occurred = _after_last_step(
        batch, device_time(occurred_at, now=now, skew=max_clock_skew, what="the time of the step")
    )
    batch.state = status
    batch.updated_at = occurred
    if status is BatchState.FAILED:
        batch.failure_reason = (reason or "").strip()
    session.add(batch)
    step = _Step(order, batch, site, actor, occurred, now)
    event = _event(
        session,
        step,
        unit=None,
        action=BATCH_STATUS,
        from_state=None,
        reason=reason.strip() if reason else None,
        signing=needed,
    )
    if status in FINAL:
        released = _dispose(session, step, products)
        if status is BatchState.RELEASED:
            signing.sign_in_act(
                session, event=event, signers=signers, step=RELEASE_STEP, now=now, covers=released
            )
            batch.release_signed_at = now
            session.add(batch)
    if order.has_plan and status in FINAL:
        # the plan follows: a release moves the expected dates, a failure proposes a
        # remanufacture with the next free slot
        if status is BatchState.FAILED:
            plans.after_batch_failed(session, order, now=now)
        else:
            session.flush()
            plans.replan_after(session, order, now=now)
    return batch


def _dispose(session: Session, step: _Step, products: list[Unit]) -> list[str]:
    """Release (or, for a failed batch, reject) its product bags; returns their DINs."""
    codes = site_codes(session)
    release = step.batch.state is BatchState.RELEASED
    action = Action.RELEASE if release else Action.REJECT
    site = step.site
    request = ScanRequest(
        action=action,
        site=SiteRef(code=site.code, kind=site.kind),
        actor=step.actor,
        via_batch=True,
    )
    moved: list[str] = []
    for unit, _order in lock_bags(session, products):
        if unit.state not in (UnitState.PRODUCED, UnitState.RELEASED):
            continue  # already shipped, quarantined or otherwise accounted for
        if release:
            rule = decide_scan(bag_view(unit, step.order, None, codes), request)
        else:
            # the batch's failure is QA's or the operator's disposition of all its bags
            rule = rule_for(unit.kind, unit.state, Action.REJECT)
        from_state, unit.state = unit.state, rule.to_state
        session.add(unit)
        _event(
            session,
            step,
            unit=unit,
            action=action.value,
            from_state=from_state,
            reason=step.batch.failure_reason,
        )
        moved.append(unit.din)
    return moved


def add_products(
    session: Session,
    *,
    actor: Actor,
    number: int,
    count: int,
    volume_ml: float | None,
    now: dt.datetime,
    filled_at: dt.datetime | None = None,
    max_clock_skew: dt.timedelta = DEFAULT_SKEW,
    expires_at: dt.datetime | None = None,
) -> list[Unit]:
    """Register the product bags filled from a batch: new DINs from the manufacturing site's
    FIN, on the order's COI, each with its own record from its filling on, and its expiry
    (given, or the product's shelf life from filling)."""
    batch, order = visible_batch(session, actor, number)
    if actor.site_id != batch.site_id:
        raise Forbidden(f"batch {batch_code(number)} is worked on at its manufacturing site")
    order = lock_order(session, order.id)
    batch = _lock_batch(session, number)
    existing = len(_products(session, batch))
    check_filling(batch.state, role=actor.role, existing=existing, adding=count)
    site = session.get(Site, batch.site_id)
    assert site is not None
    assert site.fin is not None  # manufacturing sites assign DINs
    filled = _after_last_step(
        batch, device_time(filled_at, now=now, skew=max_clock_skew, what="the filling time")
    )
    step = _Step(order, batch, site, actor, filled, now)
    product = session.get(Product, order.product)
    if expires_at is None and product is not None and product.shelf_life_days is not None:
        expires_at = filled + dt.timedelta(days=product.shelf_life_days)
    if expires_at is not None and expires_at <= filled:
        raise InvalidRequest("a product bag expires after it is filled")
    made = []
    for _ in range(count):
        sequence = next_number(
            session, kind="din", fin=site.fin, year=now.year % 100, maximum=DIN_SEQUENCE_MAX
        )
        unit = Unit(
            din=Din.generate(fin=site.fin, year=now.year, sequence=sequence).value,
            kind=UnitKind.PRODUCT,
            order_id=_id(order),
            state=UnitState.PRODUCED,
            custodian_site_id=_id(site),
            collected_at=filled,
            volume_ml=volume_ml,
            batch_id=_id(batch),
            created_at=now,
            expires_at=expires_at,
        )
        session.add(unit)
        session.flush()
        _event(session, step, unit=unit, action=PRODUCE, from_state=None)
        made.append(unit)
    return made


def batch_record(session: Session, actor: Actor, number: int) -> BatchRecord:
    batch, order = visible_batch(session, actor, number)
    return _record(session, batch, order)


@dataclass(frozen=True)
class ReleaseReview:
    """What QA reviews before releasing a batch in one signed act: the batch record (its steps
    with their times, its product bags with DIN, volume and expiry), the order's holds,
    quarantines and their dispositions, and its refused scans; and what the release needs."""

    record: BatchRecord
    holds: list[CustodyEvent]
    refusals: list[tuple[RefusedScan, str]]
    signing: str  # none | signed | witnessed, at the batch's site now
    problems: list[str]  # why it cannot be released now (empty: it can)


HOLD_ACTIONS = (HOLD, RELEASE_HOLD, REJECT_HOLD, Action.QUARANTINE.value)


def release_review(session: Session, actor: Actor, number: int) -> ReleaseReview:
    batch, order = visible_batch(session, actor, number)
    record = _record(session, batch, order)
    holds = session.exec(
        select(CustodyEvent)
        .where(CustodyEvent.order_id == order.id, col(CustodyEvent.action).in_(HOLD_ACTIONS))
        .order_by(col(CustodyEvent.sequence))
    ).all()
    site = session.get(Site, batch.site_id)
    assert site is not None
    problems = []
    if actor.role not in RELEASE_ROLES or actor.site_id != batch.site_id:
        problems.append(f"only QA of {site.code} releases this batch")
    if batch.state is not BatchState.QC_TESTING:
        problems.append(f"the batch is {batch.state.value.replace('_', ' ')}, not in QC testing")
    if not any(unit.state is UnitState.PRODUCED for unit in record.products):
        problems.append("the batch has no product bag to release: register them first")
    return ReleaseReview(
        record=record,
        holds=list(holds),
        refusals=refusals_of_order(session, order),
        signing=signing.signing_of(session, site, RELEASE_STEP),
        problems=problems,
    )


def batches_of_order(session: Session, order: Order) -> list[BatchRecord]:
    rows = session.exec(
        select(Batch).where(Batch.order_id == order.id).order_by(col(Batch.id))
    ).all()
    return [_record(session, batch, order) for batch in rows]


def visible_batches(
    session: Session, actor: Actor, *, state: BatchState | None = None, limit: int = 500
) -> list[BatchRecord]:
    """The batches of the orders the actor may see, newest first (the batch board)."""
    query = (
        select(Batch, Order)
        .join(Order, Order.id == Batch.order_id)  # type: ignore[arg-type]
        .where(order_condition(actor))
    )
    if state is not None:
        query = query.where(Batch.state == state)
    rows = session.exec(query.order_by(col(Batch.id).desc()).limit(limit)).all()
    return [_record(session, batch, order) for batch, order in rows]


def _record(session: Session, batch: Batch, order: Order) -> BatchRecord:
    inputs = session.exec(
        select(Unit)
        .join(BatchInput, BatchInput.unit_id == Unit.id)  # type: ignore[arg-type]
        .where(BatchInput.batch_id == batch.id)
        .order_by(col(Unit.id))
    ).all()
    history = session.exec(
        select(CustodyEvent)
        .where(CustodyEvent.batch_id == batch.id, col(CustodyEvent.unit_id).is_(None))
        .order_by(col(CustodyEvent.sequence))
    ).all()
    return BatchRecord(
        batch=batch,
        order=order,
        inputs=list(inputs),
        products=_products(session, batch),
        history=list(history),
    )


def _products(session: Session, batch: Batch) -> list[Unit]:
    return list(
        session.exec(select(Unit).where(Unit.batch_id == batch.id).order_by(col(Unit.id))).all()
    )


@dataclass(frozen=True)
class _Step:
    """Who records a batch's event, where, when: the same for all the events of one change."""

    order: Order
    batch: Batch
    site: Site
    actor: Actor
    occurred: dt.datetime
    now: dt.datetime


def _event(
    session: Session,
    step: _Step,
    *,
    unit: Unit | None,
    action: str,
    from_state: UnitState | None,
    reason: str | None = None,
    signing: str = NOT_REQUIRED,
) -> CustodyEvent:
    return append_event(
        session,
        order=step.order,
        unit=unit,
        action=action,
        from_state=from_state,
        site=step.site,
        actor=step.actor,
        occurred_at=step.occurred,
        recorded_at=step.now,
        batch=step.batch,
        reason=reason,
        signing=signing,
    )


def _after_last_step(batch: Batch, occurred: dt.datetime) -> dt.datetime:
    """A batch's steps follow one another on its own clock too."""
    if occurred < batch.updated_at:
        raise InvalidRequest(
            f"the time given ({occurred.strftime('%Y-%m-%d %H:%M UTC')}) is before the batch's "
            f"last step ({batch.updated_at.strftime('%Y-%m-%d %H:%M UTC')}): a step cannot come "
            "before the one it follows"
        )
    return occurred


def _lock_batch(session: Session, number: int) -> Batch:
    return session.exec(
        select(Batch)
        .where(Batch.id == number)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()


def _id(row: Batch | Order | Site | Unit) -> int:
    assert row.id is not None
    return row.id
