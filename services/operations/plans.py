"""The vein-to-vein plan: manufacturing capacity, booking a slot under a lock, the plan's
events on the order's chain, lymphodepletion and its gate, re-planning after a slip.

The dates are computed by services.domain.plans from the product's profile, the milestones
recorded so far and the slot; here they are read and written. A slot is booked by locking its
capacity row (SELECT ... FOR UPDATE; SQLite serialises writers) and counting it booked in the
same transaction as the plan and its event, so the last slot goes to exactly one order. The
order's row is always locked before a capacity row.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import (
    Batch,
    CapacityDay,
    CustodyEvent,
    Order,
    OrderEvent,
    Plan,
    Product,
    Site,
    Unit,
    User,
)
from services.domain.batches import BatchState
from services.domain.custody import (
    BATCH_STATUS,
    LYMPHODEPLETION,
    NOT_INFUSED,
    PLAN_BOOK,
    PLAN_CANCEL,
    PLAN_CONFIRM,
    PLAN_EXPIRE,
    PLAN_MOVE,
    Action,
    Actor,
    Role,
    SiteKind,
    UnitKind,
)
from services.domain.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NoCapacity,
    NotFound,
    WrongSite,
)
from services.domain.local_time import local_day
from services.domain.plans import (
    ACTIVE_STATES,
    Actuals,
    Chain,
    Facts,
    PlanState,
    Slip,
    Window,
    check_apheresis_day,
    compute,
    facts,
    first_free,
    hold_until,
    ld_gate,
    slip,
)
from services.domain.signatures import NOT_REQUIRED, WITNESSED
from services.operations import signing
from services.operations.access import actor_for, order_by_coi, order_condition
from services.operations.admin import site_by_code
from services.operations.changelog import record_change
from services.operations.deadlines import current_policy
from services.operations.notifications import enqueue
from services.operations.orders import known_product, lock_order
from services.operations.profiles import current_profile, profile_values
from services.operations.record import append_event
from services.operations.signing import Signers

log = logging.getLogger(__name__)

CAPACITY_ROLES = frozenset({Role.MANUFACTURING_OPERATOR, Role.QA})
MAX_SLOTS = 1000
MAX_RANGE_DAYS = 366
SOURCE_PLAN = "plan"  # notifications about a plan name their order_events row
# notification kinds of plans that are not events on the chain
SLIPPED, PAST_WINDOW, REMANUFACTURE = "plan_slipped", "plan_past_window", "plan_remanufacture"
NO_SLOT = "plan_no_slot"  # the material missed its slot and no later one is free
LD_WINDOW_OPENS, INFUSION_DAY, MONITORING_ENDS = (
    "plan_ld_window_opens",
    "plan_infusion_day",
    "plan_monitoring_ends",
)


# capacity


@dataclass(frozen=True)
class CapacityView:
    day: dt.date
    slots: int
    booked: int
    free: int
    bookings: list[str]  # the COIs holding or confirmed on that day


def _manufacturing_site(session: Session, code: str) -> Site:
    site = site_by_code(session, code)
    if site.kind is not SiteKind.MANUFACTURING:
        raise WrongSite(
            f"{site.code} is a {site.kind.value} site: slots are a manufacturing site's"
        )
    return site


def publish_capacity(
    session: Session,
    *,
    actor: Actor,
    site: str,
    product: str,
    day: dt.date,
    slots: int,
    now: dt.datetime,
) -> CapacityView:
    """Set a manufacturing site's slots for a product on a day (its operators or QA). Fewer
    slots than are booked is refused, naming the bookings."""
    found = _manufacturing_site(session, site)
    if actor.site_id != found.id or actor.role not in CAPACITY_ROLES:
        raise Forbidden(
            f"{found.code}'s slots are published by its manufacturing operators or QA "
            f"(you act as {actor.role.value} of {actor.site.code})"
        )
    known_product(session, product)
    if not 0 <= slots <= MAX_SLOTS:
        raise InvalidRequest(f"slots is between 0 and {MAX_SLOTS}")
    if day < now.date() - dt.timedelta(days=1):
        raise InvalidRequest("slots are published for today or later")
    row = session.exec(
        select(CapacityDay)
        .where(
            CapacityDay.site_id == found.id,
            CapacityDay.product == product,
            CapacityDay.day == day,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    before = {"slots": row.slots, "booked": row.booked} if row else None
    if row is None:
        assert found.id is not None
        row = CapacityDay(
            site_id=found.id, product=product, day=day, slots=slots, booked=0, updated_at=now
        )
    elif slots < row.booked:
        bookings = _bookings(session, [row.id or 0]).get(row.id or 0, [])
        raise Conflict(
            f"{row.booked} slot(s) of {product} on {day.isoformat()} are booked ("
            f"{', '.join(bookings)}): move or cancel those plans before publishing fewer than "
            f"{row.booked}",
            bookings=bookings,
        )
    row.slots, row.updated_by_id, row.updated_at = slots, actor.user_id, now
    session.add(row)
    session.flush()
    record_change(
        session,
        actor=actor,
        action="capacity published",
        subject=f"{found.code} {product} {day.isoformat()}",
        before=before,
        after={"slots": slots, "booked": row.booked},
        now=now,
        site_id=found.id,
    )
    return CapacityView(day, row.slots, row.booked, row.slots - row.booked, [])


def capacity(
    session: Session,
    *,
    site: str,
    product: str | None,
    start: dt.date,
    end: dt.date,
    with_bookings: bool = False,
) -> dict[str, list[CapacityView]]:
    """A manufacturing site's days from ``start`` to ``end`` by product (one product, or all):
    slots, booked, free, and (for its own people) who booked."""
    found = _manufacturing_site(session, site)
    if end < start:
        raise InvalidRequest("'to' is before 'from'")
    if (end - start).days > MAX_RANGE_DAYS:
        raise InvalidRequest(f"at most {MAX_RANGE_DAYS} days at a time")
    query = select(CapacityDay).where(
        CapacityDay.site_id == found.id,
        col(CapacityDay.day) >= start,
        col(CapacityDay.day) <= end,
    )
    if product is not None:
        query = query.where(CapacityDay.product == product)
    rows = session.exec(query.order_by(col(CapacityDay.product), col(CapacityDay.day))).all()
    who = _bookings(session, [r.id for r in rows if r.id and r.booked]) if with_bookings else {}
    result: dict[str, list[CapacityView]] = {}
    for row in rows:
        result.setdefault(row.product, []).append(
            CapacityView(
                row.day, row.slots, row.booked, row.slots - row.booked, who.get(row.id or 0, [])
            )
        )
    return result


def _bookings(session: Session, day_ids: list[int]) -> dict[int, list[str]]:
    if not day_ids:
        return {}
    rows = session.exec(
        select(Plan.capacity_day_id, Order.coi, Plan.state)
        .join(Order, col(Order.id) == Plan.order_id)
        .where(
            col(Plan.capacity_day_id).in_(day_ids),
            col(Plan.state).in_([s.value for s in ACTIVE_STATES]),
        )
        .order_by(col(Order.coi))
    ).all()
    found: dict[int, list[str]] = {}
    for day_id, coi, state in rows:
        found.setdefault(day_id or 0, []).append(f"{coi} ({state})")
    return found


def _take_slot(
    session: Session, order: Order, on_or_after: dt.date, *, release: int | None = None
) -> CapacityDay:
    """The first free slot of the order's manufacturing site and product on or after the day,
    booked; ``release`` (the plan's old slot, moving) is freed in the same act. Every row
    touched is locked in one statement in (day, id) order, the order every booking locks in,
    so two moves that swap slots wait for each other instead of deadlocking. Raises
    NoCapacity (the caller's transaction, or savepoint, undoes the release)."""
    free = col(CapacityDay.booked) < col(CapacityDay.slots)
    candidates = list(
        session.exec(
            select(CapacityDay.id)
            .where(
                CapacityDay.site_id == order.manufacturing_site_id,
                CapacityDay.product == order.product,
                col(CapacityDay.day) >= on_or_after,
                free if release is None else sa.or_(free, col(CapacityDay.id) == release),
            )
            .order_by(col(CapacityDay.day))
            .limit(60)
        ).all()
    )
    wanted = {*candidates, *([release] if release is not None else [])}
    rows = {
        row.id: row
        for row in session.exec(
            select(CapacityDay)
            .where(col(CapacityDay.id).in_(wanted))
            .order_by(col(CapacityDay.day), col(CapacityDay.id))
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
    }
    if release is not None and release in rows:
        old = rows[release]
        old.booked = max(0, old.booked - 1)
        session.add(old)
    for day_id in candidates:
        row = rows[day_id]
        if row.booked < row.slots:  # another booking may have taken it while we waited
            row.booked += 1
            session.add(row)
            session.flush()
            return row
    site = session.get(Site, order.manufacturing_site_id)
    raise NoCapacity(
        f"no slot of {order.product} is free at {site.code if site else 'its site'} on or after "
        f"{on_or_after.isoformat()}: ask the manufacturing site to publish slots, or plan a "
        "later apheresis",
        on_or_after=on_or_after.isoformat(),
    )


def _free_slot(session: Session, plan: Plan) -> None:
    if plan.capacity_day_id is None:
        return
    row = session.exec(
        select(CapacityDay)
        .where(CapacityDay.id == plan.capacity_day_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    row.booked = max(0, row.booked - 1)
    session.add(row)
    plan.capacity_day_id = None


# the plan


def _facts(session: Session, product: str) -> tuple[Facts, int]:
    profile = current_profile(session, product)
    return facts(profile_values(profile), current_policy(session, product)), (
        profile.version if profile else 0
    )


def _jurisdiction(session: Session, order: Order) -> tuple[str | None, str]:
    site = session.get(Site, order.treatment_site_id)
    assert site is not None
    return site.jurisdiction, site.time_zone


def actuals(session: Session, order: Order, plan: Plan | None = None) -> Actuals:
    """The milestones of the order that happened, as local days of the sites they happened
    at, from its record."""
    rows = session.execute(
        sa.select(
            col(CustodyEvent.action),
            col(CustodyEvent.batch_state),
            col(CustodyEvent.occurred_at),
            col(Unit.kind),
            col(Site.time_zone),
        )
        .outerjoin(Unit, col(Unit.id) == CustodyEvent.unit_id)
        .outerjoin(Batch, col(Batch.id) == CustodyEvent.batch_id)
        .join(Site, col(Site.id) == CustodyEvent.site_id)
        .where(
            col(CustodyEvent.order_id) == order.id,
            col(CustodyEvent.action).in_(_MILESTONE_ACTIONS),
            _NOT_FAILED,
        )
        .order_by(col(CustodyEvent.sequence))
    ).all()
    first: dict[str, dt.date] = {}
    for action, batch_state, occurred_at, kind, zone in rows:
        key = _milestone(action, batch_state, kind)
        if key is not None:
            day = local_day(occurred_at, zone)
            # the latest attempt counts for a repeat (a remanufacture starts again)
            if key in ("started_on", "released_on") or key not in first:
                first[key] = day
    return Actuals(
        collected_on=first.get("collected_on"),
        picked_up_on=first.get("picked_up_on"),
        arrived_on=first.get("arrived_on"),
        started_on=first.get("started_on"),
        released_on=first.get("released_on"),
        shipped_on=first.get("shipped_on"),
        delivered_on=first.get("delivered_on"),
        ld_started_on=plan.ld_started_on if plan else None,
        ld_ended_on=plan.ld_ended_on if plan else None,
        infused_on=first.get("infused_on"),
        infusion_window=_fixed_window(order.infuse_from, order.infuse_to),
    )


def _fixed_window(start: dt.date | None, end: dt.date | None) -> Window | None:
    return Window(start, end) if start is not None and end is not None else None


# a failed batch's start and status are no milestones of the plan (its remanufacture's are)
_NOT_FAILED = sa.or_(
    col(CustodyEvent.batch_id).is_(None),
    col(Batch.state) != BatchState.FAILED,
)

_MILESTONE_ACTIONS = (
    "collect",
    Action.PICKUP.value,
    Action.RECEIVE.value,
    Action.START_MANUFACTURING.value,
    BATCH_STATUS,
    Action.INFUSE.value,
)
MILESTONE_SCANS = frozenset(
    {Action.PICKUP, Action.RECEIVE, Action.START_MANUFACTURING, Action.INFUSE}
)
"""Scans that can move a plan (record_scan re-plans an order with a plan after them)."""


def _milestone(action: str, batch_state: Any, kind: UnitKind | None) -> str | None:
    apheresis = kind is UnitKind.APHERESIS
    if action == "collect":
        return "collected_on"
    if action == Action.PICKUP.value:
        return "picked_up_on" if apheresis else "shipped_on"
    if action == Action.RECEIVE.value:
        return "arrived_on" if apheresis else "delivered_on"
    if action == Action.START_MANUFACTURING.value:
        return "started_on"
    if action == BATCH_STATUS and batch_state is BatchState.RELEASED:
        return "released_on"
    if action == Action.INFUSE.value:
        return "infused_on"
    return None


def plan_of(session: Session, order: Order, *, lock: bool = False) -> Plan | None:
    query = select(Plan).where(Plan.order_id == order.id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.exec(query).first()


def _check_planner(actor: Actor, order: Order) -> None:
    """The care team of the order's treatment site, or its collection site's apheresis
    staff, book and change its plan."""
    if (actor.role is Role.CARE_TEAM and actor.site_id == order.treatment_site_id) or (
        actor.role is Role.APHERESIS_STAFF and actor.site_id == order.collection_site_id
    ):
        return
    raise Forbidden(
        "an order's plan is booked by the care team of its treatment site or the apheresis "
        "staff of its collection site"
    )


def _chain(
    session: Session, order: Order, plan: Plan, fx: Facts, today: dt.date
) -> tuple[Chain, str]:
    jurisdiction, zone = _jurisdiction(session, order)
    assert plan.manufacturing_start_on is not None or plan.state not in ACTIVE_STATES
    chain = compute(
        fx,
        apheresis_on=plan.apheresis_on,
        slot_on=plan.manufacturing_start_on or plan.apheresis_on,
        actuals=actuals(session, order, plan),
        today=today,
        jurisdiction=jurisdiction,
    )
    return chain, zone


def _store(plan: Plan, chain: Chain) -> None:
    plan.expected = chain.public()
    plan.infusion_on = chain.infusion_on


def book(
    session: Session,
    *,
    actor: Actor,
    coi: str,
    apheresis_on: dt.date,
    now: dt.datetime,
    hold_hours: float,
) -> Plan:
    """Book the order's plan from an apheresis date: the first free slot on or after the
    material's expected arrival, held for ``hold_hours``; the chain of dates proposed."""
    order = order_by_coi(session, actor, coi)
    _check_planner(actor, order)
    order = lock_order(session, order.id)
    _site, zone = _jurisdiction(session, order)
    today = local_day(now, zone)
    check_apheresis_day(apheresis_on, today)
    fx, version = _facts(session, order.product)
    if fx.window is None:
        raise InvalidRequest(
            f"{order.product}'s profile has no infusion window after lymphodepletion: its "
            "owning site's QA sets it before plans are booked"
        )
    plan = plan_of(session, order, lock=True)
    if plan is not None and plan.state in ACTIVE_STATES:
        raise Conflict(
            f"order {order.coi} has a {plan.state} plan already: move or cancel it",
            state=plan.state,
        )
    done = actuals(session, order, plan)
    if done.started_on is not None or done.infused_on is not None:
        raise Conflict(
            f"order {order.coi}'s manufacturing has started: a slot would never be used "
            "(a remanufacture moves its plan)"
        )
    slot = _take_slot(session, order, _arrival(session, order, fx, apheresis_on, done, today))
    if plan is None:
        plan = Plan(
            order_id=order.id or 0,
            state=PlanState.HELD.value,
            apheresis_on=apheresis_on,
            booked_by_id=actor.user_id,
            booked_at=now,
            planned={},
            expected={},
            updated_at=now,
        )
    plan.state = PlanState.HELD.value
    plan.apheresis_on = apheresis_on
    plan.capacity_day_id, plan.manufacturing_start_on = slot.id, slot.day
    plan.held_until = hold_until(now, hold_hours)
    plan.booked_by_id, plan.booked_at = actor.user_id, now
    plan.confirmed_by_id = plan.confirmed_at = None
    plan.profile_version = version
    plan.reason = plan.proposal = None
    plan.past_window = plan.repeat_ld = False
    plan.ld_started_on, plan.ld_ended_on = None, None
    chain, _zone = _chain(session, order, plan, fx, today)
    plan.planned = chain.public()
    _store(plan, chain)
    plan.updated_at = now
    session.add(plan)
    order.has_plan = True
    session.add(order)
    session.flush()
    _event(
        session,
        order,
        actor,
        PLAN_BOOK,
        now,
        plan,
        reason=f"slot on {slot.day.isoformat()} held until {plan.held_until.isoformat()}",
    )
    return plan


def _arrival(
    session: Session,
    order: Order,
    fx: Facts,
    apheresis_on: dt.date,
    done: Actuals,
    today: dt.date,
) -> dt.date:
    """The day the apheresis material is expected at manufacturing, from its milestones and
    today (a past apheresis date's material is picked up today at the earliest): the first
    day a slot can be used."""
    jurisdiction, _zone = _jurisdiction(session, order)
    chain = compute(
        fx,
        apheresis_on=apheresis_on,
        slot_on=apheresis_on,
        actuals=done,
        today=today,
        jurisdiction=jurisdiction,
    )
    return max(chain.arrival_on, today)


def _event(
    session: Session,
    order: Order,
    actor: Actor,
    action: str,
    now: dt.datetime,
    plan: Plan,
    *,
    reason: str | None = None,
    signing_needed: str = NOT_REQUIRED,
    extra: dict[str, Any] | None = None,
) -> CustodyEvent:
    site = session.get(Site, actor.site_id)
    assert site is not None
    details = {
        "state": plan.state,
        "manufacturing_start_on": _iso(plan.manufacturing_start_on),
        "held_until": plan.held_until.isoformat() if plan.held_until else None,
        "infusion_window": (plan.expected or {}).get("infusion_window"),
        **(extra or {}),
    }
    return append_event(
        session,
        order=order,
        unit=None,
        action=action,
        from_state=None,
        site=site,
        actor=actor,
        occurred_at=now,
        recorded_at=now,
        reason=reason,
        details=details,
        signing=signing_needed,
    )


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _active_plan(session: Session, actor: Actor, coi: str) -> tuple[Order, Plan]:
    order = order_by_coi(session, actor, coi)
    _check_planner(actor, order)
    order = lock_order(session, order.id)
    plan = plan_of(session, order, lock=True)
    if plan is None:
        raise NotFound(f"order {order.coi} has no plan")
    if plan.state not in ACTIVE_STATES:
        raise Conflict(
            f"order {order.coi}'s plan is {plan.state.replace('_', ' ')}: book a new one",
            state=plan.state,
        )
    return order, plan


def confirm(session: Session, *, actor: Actor, coi: str, now: dt.datetime) -> Plan:
    """Make the held plan binding (before its hold runs out)."""
    order, plan = _active_plan(session, actor, coi)
    if plan.state == PlanState.CONFIRMED.value:
        return plan  # confirming twice is one confirmation
    if plan.held_until is not None and plan.held_until <= now:
        _expire(session, order, plan, now)
        raise Conflict(
            f"the hold on order {order.coi}'s slot ran out at {plan.held_until.isoformat()}: "
            "its slot is free again; book again",
            state=plan.state,
        )
    plan.state = PlanState.CONFIRMED.value
    plan.confirmed_by_id, plan.confirmed_at = actor.user_id, now
    plan.held_until = None
    plan.updated_at = now
    session.add(plan)
    session.flush()
    _event(session, order, actor, PLAN_CONFIRM, now, plan)
    return plan


def move(
    session: Session,
    *,
    actor: Actor,
    coi: str,
    now: dt.datetime,
    apheresis_on: dt.date | None = None,
    manufacturing_start_on: dt.date | None = None,
    reason: str | None = None,
) -> Plan:
    """Move the plan: a new apheresis date, or a later slot (the first free on or after the
    day asked, or after the material's arrival); the old slot is freed in the same act."""
    order, plan = _active_plan(session, actor, coi)
    _site, zone = _jurisdiction(session, order)
    today = local_day(now, zone)
    fx, version = _facts(session, order.product)
    if apheresis_on is not None:
        check_apheresis_day(apheresis_on, today)
        plan.apheresis_on = apheresis_on
    earliest = _arrival(session, order, fx, plan.apheresis_on, actuals(session, order, plan), today)
    if manufacturing_start_on is not None:
        earliest = max(earliest, manufacturing_start_on)
    before = plan.manufacturing_start_on
    slot = _take_slot(session, order, earliest, release=plan.capacity_day_id)
    plan.capacity_day_id, plan.manufacturing_start_on = slot.id, slot.day
    plan.profile_version = version
    plan.proposal = None
    chain, _zone = _chain(session, order, plan, fx, today)
    _store(plan, chain)
    plan.planned = chain.public()
    plan.past_window = False
    plan.moves += 1
    plan.updated_at = now
    session.add(plan)
    session.flush()
    _event(
        session,
        order,
        actor,
        PLAN_MOVE,
        now,
        plan,
        reason=" ".join((reason or "").split())[:500] or None,
        extra={"from": _iso(before)},
    )
    return plan


def cancel(session: Session, *, actor: Actor, coi: str, reason: str, now: dt.datetime) -> Plan:
    why = " ".join((reason or "").split())
    if not why:
        raise InvalidRequest("cancelling a plan needs its reason")
    order, plan = _active_plan(session, actor, coi)
    _free_slot(session, plan)
    plan.state = PlanState.CANCELLED.value
    plan.held_until = None
    plan.reason = why[:500]
    plan.updated_at = now
    session.add(plan)
    order.has_plan = False
    session.add(order)
    session.flush()
    _event(session, order, actor, PLAN_CANCEL, now, plan, reason=plan.reason)
    return plan


def _booker(session: Session, plan: Plan) -> Actor:
    user = session.get(User, plan.booked_by_id)
    assert user is not None
    site = session.get(Site, user.site_id)
    assert site is not None
    return actor_for(user, site)


def _expire(session: Session, order: Order, plan: Plan, now: dt.datetime) -> None:
    _free_slot(session, plan)
    day = plan.manufacturing_start_on
    plan.state = PlanState.EXPIRED.value
    held = plan.held_until
    plan.held_until = None
    plan.updated_at = now
    session.add(plan)
    order.has_plan = False
    session.add(order)
    session.flush()
    # recorded in the booker's name (every event names a person): the beat acted on their hold
    _event(
        session,
        order,
        _booker(session, plan),
        PLAN_EXPIRE,
        now,
        plan,
        reason=(
            f"the hold ran out at {held.isoformat() if held else 'its end'} unconfirmed: the "
            f"slot on {_iso(day)} is free again (freed automatically)"
        ),
        extra={"freed_slot": _iso(day)},
    )


def _confirm_started(session: Session, order: Order, plan: Plan, now: dt.datetime) -> None:
    """Manufacturing started on a held slot: the slot is in use, so the plan is binding (a
    hold running out must not free it), on record in the booker's name."""
    plan.state = PlanState.CONFIRMED.value
    plan.confirmed_by_id, plan.confirmed_at = plan.booked_by_id, now
    plan.held_until = None
    plan.updated_at = now
    session.add(plan)
    session.flush()
    _event(
        session,
        order,
        _booker(session, plan),
        PLAN_CONFIRM,
        now,
        plan,
        reason="manufacturing started on the held slot: confirmed automatically",
    )


def expire_holds(session: Session, *, now: dt.datetime, limit: int = 200) -> list[str]:
    """Free every hold that ran out unconfirmed (the beat): on record in its order's chain.
    Returns the COIs."""
    due = session.exec(
        select(Plan.id, Plan.order_id)
        .where(Plan.state == PlanState.HELD.value, col(Plan.held_until) <= now)
        .order_by(col(Plan.held_until))
        .limit(limit)
    ).all()
    expired = []
    for plan_id, order_id in due:
        order = lock_order(session, order_id)
        plan = session.exec(
            select(Plan)
            .where(Plan.id == plan_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if plan.state != PlanState.HELD.value or plan.held_until is None or plan.held_until > now:
            continue  # confirmed or moved meanwhile
        if actuals(session, order, plan).started_on is not None:
            _confirm_started(session, order, plan, now)  # its slot is in use: not freed
            continue
        _expire(session, order, plan, now)
        expired.append(order.coi)
    return expired


# lymphodepletion and its gate


def record_lymphodepletion(
    session: Session,
    *,
    actor: Actor,
    coi: str,
    started_on: dt.date,
    ended_on: dt.date | None,
    now: dt.datetime,
    signers: Signers,
    override_reason: str | None = None,
) -> tuple[Order, Plan | None, CustodyEvent]:
    """Lymphodepletion started, recorded by the treatment site's care team: refused before
    the product's QA release (where its profile says so) unless a second person of the site
    signs an override with a reason, in the same act. Fixes the infusion window the bedside
    checks; a repeat LD records a new start (and a new window)."""
    order = order_by_coi(session, actor, coi)
    if actor.role is not Role.CARE_TEAM or actor.site_id != order.treatment_site_id:
        raise Forbidden(
            "lymphodepletion is recorded by the care team of the order's treatment site"
        )
    _site, zone = _jurisdiction(session, order)
    today = local_day(now, zone)
    if not today - dt.timedelta(days=30) <= started_on <= today + dt.timedelta(days=1):
        raise InvalidRequest("lymphodepletion is recorded when it starts (within the last 30 days)")
    fx, _version = _facts(session, order.product)
    if ended_on is None:
        if "ld_days" in fx.assumed:
            raise InvalidRequest(
                f"the length of {order.product}'s lymphodepletion is not confirmed in its "
                "profile: give the day it ends (ended_on)"
            )
        ended_on = started_on + dt.timedelta(days=fx.ld_days - 1)
    if ended_on < started_on or (ended_on - started_on).days > 14:
        raise InvalidRequest("lymphodepletion ends on or after its start, within 14 days")
    order = lock_order(session, order.id)
    released = session.exec(
        select(Batch.id).where(
            Batch.order_id == order.id, col(Batch.release_signed_at).is_not(None)
        )
    ).first()
    signing_needed = NOT_REQUIRED
    why = " ".join((override_reason or "").split()) or None
    if ld_gate(
        coi=order.coi,
        product=order.product,
        released=released is not None,
        release_before_ld=fx.release_before_ld,
        override=why,
    ):
        signing_needed = WITNESSED
        signing.check_act(
            step=LYMPHODEPLETION, signing=signing_needed, actor=actor, signers=signers
        )
    plan = plan_of(session, order, lock=True) if order.has_plan else None
    window = None
    if fx.window is not None:
        low, high = fx.window
        window = Window(ended_on + dt.timedelta(days=low), ended_on + dt.timedelta(days=high))
        order.infuse_from, order.infuse_to = window.start, window.end
    session.add(order)
    if plan is not None:
        plan.ld_started_on, plan.ld_ended_on = started_on, ended_on
        plan.repeat_ld = False
        plan.past_window = False
        chain, _zone = _chain(session, order, plan, fx, today)
        _store(plan, chain)
        plan.updated_at = now
        session.add(plan)
    session.flush()
    site = session.get(Site, actor.site_id)
    assert site is not None
    event = append_event(
        session,
        order=order,
        unit=None,
        action=LYMPHODEPLETION,
        from_state=None,
        site=site,
        actor=actor,
        occurred_at=now,
        recorded_at=now,
        reason=f"override of the release gate: {why}" if signing_needed == WITNESSED else why,
        details={
            "started_on": started_on.isoformat(),
            "ended_on": ended_on.isoformat(),
            "infusion_window": window.public() if window else None,
            "released": released is not None,
            "override": signing_needed == WITNESSED,
        },
        signing=signing_needed,
    )
    signing.sign_in_act(session, event=event, signers=signers, step=LYMPHODEPLETION, now=now)
    return order, plan, event


def record_not_infused(
    session: Session, *, actor: Actor, coi: str, reason: str, fate: str, now: dt.datetime
) -> Plan | None:
    """The patient cannot be infused: recorded with its reason and what becomes of the
    product (destroyed or returned, by its own scans)."""
    why = " ".join((reason or "").split())
    if not why:
        raise InvalidRequest("recording that a patient cannot be infused needs the reason")
    if fate not in ("destroy", "return", "undecided"):
        raise InvalidRequest("the product's fate is destroy, return or undecided")
    order = order_by_coi(session, actor, coi)
    if actor.role is not Role.CARE_TEAM or actor.site_id != order.treatment_site_id:
        raise Forbidden("the care team of the order's treatment site records this")
    order = lock_order(session, order.id)
    if order.infused_at is not None:
        raise Conflict(f"order {order.coi}'s patient is infused: there is nothing to record")
    recorded = session.exec(
        select(CustodyEvent.id).where(
            CustodyEvent.order_id == order.id, CustodyEvent.action == NOT_INFUSED
        )
    ).first()
    if recorded is not None:
        raise Conflict(f"that order {order.coi}'s patient cannot be infused is on record already")
    plan = plan_of(session, order, lock=True)
    if plan is not None:
        started = "manufacturing_start_on" in ((plan.expected or {}).get("actual") or [])
        if plan.state in ACTIVE_STATES and not started:
            _free_slot(session, plan)  # the slot was not used: it is free for another order
        plan.state = PlanState.NOT_INFUSED.value
        plan.reason = why[:500]
        plan.held_until = None
        plan.updated_at = now
        session.add(plan)
    order.has_plan = False
    order.infuse_from = order.infuse_to = None
    session.add(order)
    session.flush()
    site = session.get(Site, actor.site_id)
    assert site is not None
    append_event(
        session,
        order=order,
        unit=None,
        action=NOT_INFUSED,
        from_state=None,
        site=site,
        actor=actor,
        occurred_at=now,
        recorded_at=now,
        reason=why[:1000],
        details={"fate": fate},
    )
    return plan


# re-planning


def replan(session: Session, order: Order, *, now: dt.datetime) -> Plan | None:
    """Recompute the order's plan after a milestone (the caller holds the order's lock): the
    expected dates move; a slot the material missed is rebooked; a slip is news, and past the
    window a critical alert (before LD: re-plan LD; after it: a repeat LD flagged)."""
    plan = plan_of(session, order, lock=True)
    if plan is None or plan.state not in ACTIVE_STATES:
        return None
    _site, zone = _jurisdiction(session, order)
    today = local_day(now, zone)
    fx, _version = _facts(session, order.product)
    before = _chain_of(plan.expected)
    chain, _zone = _chain(session, order, plan, fx, today)
    if plan.state == PlanState.HELD.value and "manufacturing_start_on" in chain.actual:
        _confirm_started(session, order, plan, now)
    missed = plan.manufacturing_start_on
    if (
        "manufacturing_start_on" not in chain.actual
        and missed is not None
        and (chain.arrival_on > missed or plan.capacity_day_id is None)
    ):
        # the material arrives after its slot (or has had none since it missed one): the
        # first free slot from its arrival instead. With none free the plan keeps its day,
        # holds no slot, and a critical alert asks for one (once: later looks try again)
        slot = None
        try:
            with session.begin_nested():
                slot = _take_slot(session, order, chain.arrival_on, release=plan.capacity_day_id)
        except NoCapacity:
            pass
        if slot is not None or plan.capacity_day_id is not None:
            if slot is None:
                _free_slot(session, plan)  # the missed slot is of no use to this material
            else:
                plan.capacity_day_id, plan.manufacturing_start_on = slot.id, slot.day
            plan.moves += 1
            chain, _zone = _chain(session, order, plan, fx, today)
            session.add(plan)
            session.flush()
            _event(
                session,
                order,
                _booker(session, plan),
                PLAN_MOVE,
                now,
                plan,
                reason=(
                    f"the apheresis material arrives {chain.arrival_on.isoformat()}, after its "
                    f"slot on {missed.isoformat()}: re-planned automatically"
                    + ("" if slot is not None else "; no later slot is free")
                ),
                extra={"from": missed.isoformat(), "no_slot": slot is None},
            )
            if slot is None:
                _news(
                    session,
                    order,
                    plan,
                    NO_SLOT,
                    now,
                    {"missed_slot": missed.isoformat(), "arrival_on": chain.arrival_on.isoformat()},
                )
    _store(plan, chain)
    plan.updated_at = now
    found = slip(before, chain)
    window = chain.infusion_window
    if (
        found is None
        and "ld_started_on" in chain.actual
        and "infusion_on" not in chain.actual
        and window is not None
        and today > window.end
        and not plan.past_window
    ):
        # the window closed with the patient not infused: a repeat LD, said once
        found = Slip(moved_days=0, past_window=True, after_ld=True)
    if found is not None:
        planned = _chain_of(plan.planned)
        past = found.past_window or (
            planned is not None
            and planned.infusion_window is not None
            and not found.after_ld
            and chain.treatment_arrival_on > planned.infusion_window.end
        )
        if past and found.after_ld:
            plan.repeat_ld = True
        kind = PAST_WINDOW if past and not plan.past_window else SLIPPED
        plan.past_window = plan.past_window or past
        _news(
            session,
            order,
            plan,
            kind,
            now,
            {
                "moved_days": found.moved_days,
                "after_ld": found.after_ld,
                "repeat_ld": plan.repeat_ld,
                "treatment_arrival_on": chain.treatment_arrival_on.isoformat(),
                "infusion_window": chain.infusion_window.public()
                if chain.infusion_window
                else None,
            },
        )
    session.add(plan)
    session.flush()
    return plan


def replan_after(session: Session, order: Order, *, now: dt.datetime) -> None:
    """Re-plan after a scan or a batch's status, in a savepoint: the milestone is on record
    whatever the plan makes of it (a re-plan that fails is logged, never refuses the act)."""
    try:
        with session.begin_nested():
            replan(session, order, now=now)
    except Exception:
        log.exception("re-planning order %s after its milestone failed", order.coi)


def _chain_of(stored: dict[str, Any] | None) -> Chain | None:
    if not stored:
        return None

    def day(name: str) -> dt.date:
        return dt.date.fromisoformat(stored[name])

    def window(name: str) -> Window | None:
        value = stored.get(name)
        return (
            Window(dt.date.fromisoformat(value["from"]), dt.date.fromisoformat(value["to"]))
            if value
            else None
        )

    return Chain(
        apheresis_on=day("apheresis_on"),
        pickup_on=day("pickup_on"),
        arrival_on=day("arrival_on"),
        manufacturing_start_on=day("manufacturing_start_on"),
        release_on=day("release_on"),
        return_pickup_on=day("return_pickup_on"),
        treatment_arrival_on=day("treatment_arrival_on"),
        ld_window=window("ld_window"),
        infusion_window=window("infusion_window"),
        infusion_on=dt.date.fromisoformat(stored["infusion_on"])
        if stored.get("infusion_on")
        else None,
        actual=frozenset(stored.get("actual") or ()),
    )


def _news(
    session: Session,
    order: Order,
    plan: Plan,
    kind: str,
    now: dt.datetime,
    detail: dict[str, Any],
) -> None:
    """A plan's news for the order's subscribers, through the outbox (an order event it
    names)."""
    assert order.id is not None
    payload = {
        "type": f"plan.{kind}",
        "kind": kind,
        "coi": order.coi,
        "site": _code(session, order.treatment_site_id),
        "recorded_at": now.isoformat(),
        **detail,
    }
    row = OrderEvent(order_id=order.id, kind=kind, detail=payload, recorded_at=now)
    session.add(row)
    session.flush()
    assert row.id is not None
    enqueue(
        session,
        order=order,
        source=SOURCE_PLAN,
        source_id=row.id,
        kind=kind,
        payload=payload,
        now=now,
    )


def _code(session: Session, site_id: int) -> str:
    site = session.get(Site, site_id)
    return site.code if site else "?"


def after_batch_failed(session: Session, order: Order, *, now: dt.datetime) -> Plan | None:
    """A failed batch: propose a remanufacture with the next free slot (from the remaining
    apheresis material, or a new collection); the care team moves the plan to it."""
    plan = plan_of(session, order, lock=True)
    if plan is None or plan.state not in ACTIVE_STATES:
        return None
    _site, zone = _jurisdiction(session, order)
    today = local_day(now, zone)
    fx, _version = _facts(session, order.product)
    free = session.execute(
        sa.select(col(CapacityDay.day), col(CapacityDay.slots) - col(CapacityDay.booked))
        .where(
            col(CapacityDay.site_id) == order.manufacturing_site_id,
            col(CapacityDay.product) == order.product,
            col(CapacityDay.day) > today,
            col(CapacityDay.booked) < col(CapacityDay.slots),
        )
        .order_by(col(CapacityDay.day))
        .limit(1)
    ).all()
    day = first_free([(d, int(n)) for d, n in free], today + dt.timedelta(days=1))
    proposal: dict[str, Any] = {
        "manufacturing_start_on": _iso(day),
        "material": "the remaining apheresis material, or a new collection",
        "proposed_at": now.isoformat(),
    }
    if day is not None:
        jurisdiction, _zone = _jurisdiction(session, order)
        proposed = compute(
            fx,
            apheresis_on=plan.apheresis_on,
            slot_on=day,
            actuals=Actuals(
                collected_on=plan.apheresis_on,
                picked_up_on=today,
                arrived_on=today,
            ),
            today=today,
            jurisdiction=jurisdiction,
        )
        proposal["chain"] = proposed.public()
    plan.proposal = proposal
    plan.updated_at = now
    session.add(plan)
    session.flush()
    _news(session, order, plan, REMANUFACTURE, now, {"proposal": proposal})
    return plan


# reminders (the beat)


def send_reminders(session: Session, *, now: dt.datetime, page: int = 500) -> int:
    """The plan's days as news, each kind once per plan (per LD, for a repeat LD): the LD
    window opens, infusion day (inside its window only), each monitoring period's end (the
    treatment site's day). Every plan in flight is read, ``page`` at a time."""
    sent, after = 0, 0
    while True:
        rows = session.exec(
            select(Plan, Order, Site.time_zone)
            .join(Order, col(Order.id) == Plan.order_id)
            .join(Site, col(Site.id) == Order.treatment_site_id)
            .where(col(Plan.state).in_([s.value for s in ACTIVE_STATES]), col(Plan.id) > after)
            .order_by(col(Plan.id))
            .limit(page)
        ).all()
        for plan, order, zone in rows:
            sent += _remind(session, plan, order, local_day(now, zone), now)
        session.flush()
        if len(rows) < page:
            return sent
        after = rows[-1][0].id or 0


def _remind(session: Session, plan: Plan, order: Order, today: dt.date, now: dt.datetime) -> int:
    expected = plan.expected or {}
    day = today.isoformat()
    ld_round = _iso(plan.ld_started_on) or "planned"
    due: list[tuple[str, str, dict[str, Any]]] = []
    ld = expected.get("ld_window")
    if ld and ld["from"] == day and plan.ld_started_on is None:
        due.append(("ld", LD_WINDOW_OPENS, {"ld_window": ld}))
    window = expected.get("infusion_window")
    if expected.get("infusion_on") == day and (not window or window["from"] <= day <= window["to"]):
        due.append((f"infusion:{ld_round}", INFUSION_DAY, {"infusion_on": day}))
    for period, last in (expected.get("monitoring") or {}).items():
        if last == day and "infusion_on" in (expected.get("actual") or []):
            due.append((f"monitoring:{period}", MONITORING_ENDS, {"period": period}))
    sent = 0
    for key, kind, detail in due:
        if key in (plan.reminders or []):
            continue
        plan.reminders = [*(plan.reminders or []), key]
        _news(session, order, plan, kind, now, detail)
        sent += 1
    if sent:
        session.add(plan)
    return sent


# the beat's re-plan: which plans moved is read in bulk (Core), each is re-planned alone


def replan_due(session: Session, *, now: dt.datetime, limit: int = 500) -> list[str]:
    """The beat's look at the calendar: a plan whose expected chain moved because a leg is
    running late (its milestone has not happened by its day) is re-planned one order at a
    time, under the order's lock, with its moves and alerts. Returns the COIs."""
    moved = []
    due = [change["b_order"] for change in _moved(session, now=now)]
    # and the plans that missed their slot with none later free: a slot may be free now
    slotless = session.exec(
        select(Plan.order_id).where(
            col(Plan.state).in_([s.value for s in ACTIVE_STATES]),
            col(Plan.capacity_day_id).is_(None),
        )
    ).all()
    due += sorted(set(slotless) - set(due))
    for order_id in due[:limit]:
        try:
            with session.begin_nested():  # one plan that fails rolls back itself, not all
                order = lock_order(session, order_id)
                if replan(session, order, now=now) is not None:
                    moved.append(order.coi)
        except Exception:
            log.exception("re-planning order %s failed; the others go on", order_id)
    return moved


def _moved(
    session: Session, *, now: dt.datetime, site_id: int | None = None
) -> list[dict[str, Any]]:
    """The plans in flight whose chain, computed again now, differs from the one stored."""
    plans_t = Plan.__table__  # type: ignore[attr-defined]
    orders_t = Order.__table__  # type: ignore[attr-defined]
    sites_t = Site.__table__  # type: ignore[attr-defined]
    query = (
        sa.select(
            plans_t.c.id,
            plans_t.c.order_id,
            plans_t.c.apheresis_on,
            plans_t.c.manufacturing_start_on,
            plans_t.c.ld_started_on,
            plans_t.c.ld_ended_on,
            plans_t.c.expected,
            orders_t.c.product,
            orders_t.c.infuse_from,
            orders_t.c.infuse_to,
            sites_t.c.jurisdiction,
            sites_t.c.time_zone,
        )
        .join(orders_t, orders_t.c.id == plans_t.c.order_id)
        .join(sites_t, sites_t.c.id == orders_t.c.treatment_site_id)
        .where(
            plans_t.c.state.in_([s.value for s in ACTIVE_STATES]),
            orders_t.c.infused_at.is_(None),
        )
        .order_by(plans_t.c.id)
    )
    if site_id is not None:
        query = query.where(orders_t.c.manufacturing_site_id == site_id)
    rows = session.execute(query).all()
    if not rows:
        return []
    by_product = {product: _facts(session, product)[0] for product in {r.product for r in rows}}
    milestones = _bulk_actuals(session, [row.order_id for row in rows])
    days: dict[str, dt.date] = {}
    changed = []
    for row in rows:
        if row.time_zone not in days:
            days[row.time_zone] = local_day(now, row.time_zone)
        chain = compute(
            by_product[row.product],
            apheresis_on=row.apheresis_on,
            slot_on=row.manufacturing_start_on or row.apheresis_on,
            actuals=Actuals(
                **milestones.get(row.order_id, {}),
                ld_started_on=row.ld_started_on,
                ld_ended_on=row.ld_ended_on,
                infusion_window=_fixed_window(row.infuse_from, row.infuse_to),
            ),
            today=days[row.time_zone],
            jurisdiction=row.jurisdiction,
        )
        public = chain.public()
        if public != row.expected:
            changed.append(
                {
                    "b_id": row.id,
                    "b_order": row.order_id,
                    "b_expected": public,
                    "b_infusion_on": chain.infusion_on,
                    "b_now": now,
                }
            )
    return changed


def _bulk_actuals(session: Session, order_ids: list[int]) -> dict[int, dict[str, dt.date]]:
    events_t = CustodyEvent.__table__  # type: ignore[attr-defined]
    units_t = Unit.__table__  # type: ignore[attr-defined]
    sites_t = Site.__table__  # type: ignore[attr-defined]
    found: dict[int, dict[str, dt.date]] = {}
    for chunk in range(0, len(order_ids), 5000):
        ids = order_ids[chunk : chunk + 5000]
        rows = session.execute(
            sa.select(
                events_t.c.order_id,
                events_t.c.action,
                events_t.c.batch_state,
                events_t.c.occurred_at,
                units_t.c.kind,
                sites_t.c.time_zone,
            )
            .select_from(events_t)
            .outerjoin(units_t, units_t.c.id == events_t.c.unit_id)
            .outerjoin(Batch, col(Batch.id) == events_t.c.batch_id)
            .join(sites_t, sites_t.c.id == events_t.c.site_id)
            .where(
                events_t.c.order_id.in_(ids),
                events_t.c.action.in_(_MILESTONE_ACTIONS),
                _NOT_FAILED,
            )
            .order_by(events_t.c.order_id, events_t.c.sequence)
        ).all()
        for order_id, action, batch_state, occurred_at, kind, zone in rows:
            key = _milestone(action, batch_state, kind)
            if key is None:
                continue
            days = found.setdefault(order_id, {})
            if key in ("started_on", "released_on") or key not in days:
                days[key] = local_day(occurred_at, zone)
    return found


# what the pages read


def order_of(session: Session, plan: Plan) -> Order:
    order = session.get(Order, plan.order_id)
    assert order is not None
    return order


def site_row(session: Session, site_id: int) -> Site:
    site = session.get(Site, site_id)
    assert site is not None
    return site


def manufacturing_sites(session: Session) -> list[Site]:
    return list(
        session.exec(
            select(Site).where(Site.kind == SiteKind.MANUFACTURING).order_by(col(Site.code))
        ).all()
    )


def product_codes(session: Session) -> list[str]:
    return list(session.exec(select(Product.code).order_by(col(Product.code))).all())


def site_week(session: Session, actor: Actor) -> list[tuple[Plan, Order]]:
    """The plans in flight of the orders the actor's (treatment) site treats."""
    rows = session.exec(
        select(Plan, Order)
        .join(Order, col(Order.id) == Plan.order_id)
        .where(
            Order.treatment_site_id == actor.site_id,
            order_condition(actor),
            col(Plan.state).in_([s.value for s in ACTIVE_STATES]),
        )
        .order_by(col(Order.coi))
    ).all()
    return [(plan, order) for plan, order in rows]
