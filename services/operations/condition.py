"""The chain of condition: dry shippers, loggers' readings, alarms, holds and QA's disposition.

- **Shippers** are things with a qualification (services.operations.shippers).
- **Readings** arrive as a logger's file (JSON through the API, CSV from a page or the command
  line). The original file is kept; each order on the manifest gets a ``readings`` record that
  seals its SHA-256. The same file twice is one import; the same reading twice is one reading;
  one bad reading refuses the whole file and nothing of it is stored. A file that disagrees
  with readings stored before (the same logger, the same moment, another value) is kept too:
  one file never pre-empts another. The disagreement is a ``conflict`` alarm that holds the
  bags like an excursion, and the origin's or destination's file outranks the carrier's.
- Every import evaluates the shipment's readings during its leg (from its first handoff to the
  last receipt, by the scanners' clocks) against each product's **alarm rule**. A new
  excursion, gap or conflict puts every bag of that product on the manifest **on hold** (a
  ``hold`` record each, notified through the outbox like any other).
- QA **disposes** of a held or quarantined bag with a reason and a signature: released back to
  the state it left, or rejected.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import (
    AlarmRuleVersion,
    ConditionAlarm,
    CustodyEvent,
    LoggerFile,
    Order,
    Shipment,
    ShipmentUnit,
    Shipper,
    Site,
    TemperatureReading,
    Unit,
    User,
)
from services.domain.condition import (
    CARRIER_SOURCE,
    SAME_VALUE_C,
    SITE_SOURCE,
    Alarm,
    AlarmRule,
    Reading,
    Summary,
    check_rule,
    default_rule,
    evaluate,
    reconcile,
    summarise,
)
from services.domain.custody import (
    HELD_STATES,
    HOLD,
    READINGS,
    REJECT_HOLD,
    RELEASE_HOLD,
    TERMINAL_STATES,
    Actor,
    UnitState,
)
from services.domain.errors import Conflict, Forbidden, IllegalTransition, InvalidRequest, NotFound
from services.domain.identifiers import din_reference, shipment_code
from services.domain.signatures import APPROVED
from services.operations import access, admin, changelog, shippers
from services.operations.access import visible_order
from services.operations.bags import lock_bags
from services.operations.orders import lock_order
from services.operations.passwords import LoginPolicy
from services.operations.record import append_event
from services.operations.scans import update_shipment_state
from services.operations.shipments import lock_shipment, shipment_by_code, visible_shipment
from services.operations.signing import add_signature, authenticate

# alarm rules


def current_rule(session: Session, product: str) -> AlarmRule:
    row = session.exec(
        select(AlarmRuleVersion)
        .where(AlarmRuleVersion.product == product)
        .order_by(col(AlarmRuleVersion.version).desc())
        .limit(1)
    ).first()
    if row is None:
        return default_rule(product)
    return AlarmRule(
        product=row.product,
        version=row.version,
        limit_c=row.limit_c,
        instant_limit_c=row.instant_limit_c,
        continuous_minutes=row.continuous_minutes,
        cumulative_minutes=row.cumulative_minutes,
        gap_minutes=row.gap_minutes,
    )


def set_rule(
    session: Session,
    *,
    actor: Actor | None,
    product: str,
    now: dt.datetime,
    signed: tuple[str, str, dt.datetime] | None = None,
    **values: float | None,
) -> AlarmRule:
    """A new version of a product's alarm rule (who may is services.operations.products' to
    check; ``signed``: the reason, the signer's printed name and when). Values left out keep
    the current ones; the new rule keeps the clinical bounds."""
    current = current_rule(session, product)
    merged = {
        name: float(values[name]) if values.get(name) is not None else getattr(current, name)  # type: ignore[arg-type]
        for name in (
            "limit_c",
            "instant_limit_c",
            "continuous_minutes",
            "cumulative_minutes",
            "gap_minutes",
        )
    }
    check_rule(**merged)
    row = AlarmRuleVersion(
        product=product,
        version=current.version + 1,
        limit_c=merged["limit_c"],
        instant_limit_c=merged["instant_limit_c"],
        continuous_minutes=merged["continuous_minutes"],
        cumulative_minutes=merged["cumulative_minutes"],
        gap_minutes=merged["gap_minutes"],
        created_by_id=actor.user_id if actor else None,
        created_at=now,
        reason=signed[0] if signed else None,
        signer_name=signed[1] if signed else None,
        signed_at=signed[2] if signed else None,
    )
    session.add(row)
    session.flush()
    after: dict[str, Any] = {"version": row.version, **merged}
    if signed:
        after["reason"] = signed[0]
    changelog.record_change(
        session,
        actor=actor,
        action="alarm rule changed",
        subject=product,
        now=now,
        before={"version": current.version, **_rule_values(current)},
        after=after,
        every_site=True,
    )
    return current_rule(session, product)


def _rule_values(rule: AlarmRule) -> dict[str, float]:
    return {
        "limit_c": rule.limit_c,
        "instant_limit_c": rule.instant_limit_c,
        "continuous_minutes": rule.continuous_minutes,
        "cumulative_minutes": rule.cumulative_minutes,
        "gap_minutes": rule.gap_minutes,
    }


# readings


@dataclass(frozen=True)
class ImportResult:
    shipment: Shipment
    file: LoggerFile
    duplicate: bool  # the same file was imported before: nothing changed
    alarms: list[ConditionAlarm]  # raised by this import
    held: list[str]  # DINs put on hold by this import


def _manifest(session: Session, shipment: Shipment) -> list[Unit]:
    return list(
        session.exec(
            select(Unit)
            .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
            .where(ShipmentUnit.shipment_id == shipment.id)
            .order_by(col(Unit.id))
        ).all()
    )


def import_readings(
    session: Session,
    *,
    actor: Actor,
    shipment: str | int,
    readings: Sequence[Reading],
    original: bytes,
    filename: str,
    media_type: str,
    now: dt.datetime,
    entered: str | None = None,
) -> ImportResult:
    """Store a logger file's readings for a shipment, seal the file in each order's chain, and
    raise the alarms they show. ``readings``: parsed and checked (services.domain.condition).
    ``entered``: how the file came, when not by the uploader's own hand (the command line)."""
    found = visible_shipment(session, actor, shipment)
    access.check_readings_upload(actor, found)
    digest = hashlib.sha256(original).hexdigest()
    earlier = _file(session, found.id, digest)
    if earlier is not None:
        return ImportResult(found, earlier, duplicate=True, alarms=[], held=[])
    if not readings:
        raise InvalidRequest("the upload holds no reading")

    manifest = _manifest(session, found)
    locked = lock_bags(session, manifest) if manifest else []
    found = lock_shipment(session, found.id)
    earlier = _file(session, found.id, digest)  # a concurrent upload of the same file
    if earlier is not None:
        return ImportResult(found, earlier, duplicate=True, alarms=[], held=[])

    fresh = _not_stored(session, found, readings)
    site = session.get(Site, actor.site_id)
    assert site is not None
    source = _source(found, actor.site_id)
    file = LoggerFile(
        shipment_id=found.id,  # type: ignore[arg-type]
        sha256=digest,
        filename=(filename or "readings")[:255],
        media_type=media_type[:100],
        size=len(original),
        content=original,
        devices=sorted({r.device_id for r in readings}),
        readings=len(readings),
        new_readings=len(fresh),
        first_at=min(r.at for r in readings),
        last_at=max(r.at for r in readings),
        uploaded_by_id=actor.user_id,
        uploaded_at=now,
        source=source,
    )
    session.add(file)
    session.flush()
    _insert(session, found, file, fresh)

    details: dict[str, Any] = {
        "shipment": shipment_code(found.id or 0),
        "file": file.filename,
        "sha256": digest,
        "devices": file.devices,
        "readings": file.readings,
        "new_readings": file.new_readings,
        "first_at": file.first_at.isoformat(),
        "last_at": file.last_at.isoformat(),
    }
    if entered:
        details["entered"] = entered
    orders = {order.id: order for _unit, order in locked}
    for order in sorted(orders.values(), key=lambda o: o.id or 0):
        append_event(
            session,
            order=order,
            unit=None,
            action=READINGS,
            from_state=None,
            site=site,
            actor=actor,
            occurred_at=now,
            recorded_at=now,
            shipment_id=found.id,
            reason=f"logger file {file.filename}: {file.readings} readings, SHA-256 {digest}",
            details=details,
        )

    window = leg_window(session, found)
    if _count(session, found) == len(fresh):  # the shipment's first readings: nothing to weigh
        series, conflicts = list(fresh), list[Alarm]()
    else:
        series, conflicts = reconcile(_sourced(session, found), window=window)
    alarms, held = _raise_alarms(
        session, found, file, series, conflicts, locked, site, actor, now, window
    )
    session.flush()
    return ImportResult(found, file, duplicate=False, alarms=alarms, held=held)


COMMAND_LINE = "command line"


def command_line_importer(session: Session, shipment: str | int, email: str | None) -> Actor:
    """Who a file imported at the command line is recorded as: the user named, or else the
    user who opened the shipment (the record says it came by the command line)."""
    found = shipment_by_code(session, shipment)
    user = admin.user_by_email(session, email) if email else session.get(User, found.created_by_id)
    assert user is not None
    site = session.get(Site, user.site_id)
    assert site is not None
    return access.actor_for(user, site)


def _file(session: Session, shipment_id: int | None, digest: str) -> LoggerFile | None:
    return session.exec(
        select(LoggerFile).where(LoggerFile.shipment_id == shipment_id, LoggerFile.sha256 == digest)
    ).first()


SOURCES = {"origin": SITE_SOURCE, "destination": SITE_SOURCE, "carrier": CARRIER_SOURCE}


def _source(shipment: Shipment, site_id: int | None) -> str:
    """Whose logger a file is, by the uploader's site: the shipment's origin, its destination,
    or its carrier (access.check_readings_upload allows no one else)."""
    if site_id == shipment.origin_site_id:
        return "origin"
    if site_id == shipment.destination_site_id:
        return "destination"
    return "carrier"


def _not_stored(session: Session, shipment: Shipment, readings: Sequence[Reading]) -> list[Reading]:
    """The readings not stored yet with the same value: the same reading twice is one reading.
    A reading that disagrees with one stored (another file's value for the same logger and
    moment) is stored too, and weighed by reconcile."""
    devices = sorted({r.device_id for r in readings})
    start, end = min(r.at for r in readings), max(r.at for r in readings)
    stored: dict[tuple[str, dt.datetime], list[float]] = {}
    for device, at, value in session.exec(
        select(
            TemperatureReading.device_id, TemperatureReading.at, TemperatureReading.value_c
        ).where(
            TemperatureReading.shipment_id == shipment.id,
            col(TemperatureReading.device_id).in_(devices),
            TemperatureReading.at >= start,
            TemperatureReading.at <= end,
        )
    ).all():
        stored.setdefault((device, at), []).append(value)
    if not stored:
        return list(readings)
    return [
        reading
        for reading in readings
        if not any(
            abs(value - reading.value_c) <= SAME_VALUE_C
            for value in stored.get((reading.device_id, reading.at), ())
        )
    ]


def _insert(
    session: Session, shipment: Shipment, file: LoggerFile, fresh: Sequence[Reading]
) -> None:
    """Many rows at once: COPY on PostgreSQL, the driver's executemany on SQLite; never one
    ORM object per reading."""
    if not fresh:
        return
    connection = session.connection()
    columns = ("shipment_id", "device_id", "at", "value_c", "file_id")
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY temperature_readings ({', '.join(columns)}) FROM STDIN") as copy:
            for r in fresh:
                copy.write_row((shipment.id, r.device_id, r.at, r.value_c, file.id))
        return
    table = TemperatureReading.__table__  # type: ignore[attr-defined]
    rows = [
        {
            "shipment_id": shipment.id,
            "device_id": r.device_id,
            "at": r.at,
            "value_c": r.value_c,
            "file_id": file.id,
        }
        for r in fresh
    ]
    connection.execute(sa.insert(table), rows)  # the driver's executemany


def _count(session: Session, shipment: Shipment) -> int:
    return int(
        session.scalar(select(sa.func.count()).where(TemperatureReading.shipment_id == shipment.id))
        or 0
    )


def _sourced(session: Session, shipment: Shipment) -> list[tuple[Reading, int]]:
    """Every stored reading of the shipment with the precedence of its file's logger (a file
    kept before its source was, by its uploader's site)."""
    rows = session.exec(
        select(  # type: ignore[call-overload]
            TemperatureReading.device_id,
            TemperatureReading.at,
            TemperatureReading.value_c,
            LoggerFile.source,
            User.site_id,
        )
        .join(LoggerFile, col(LoggerFile.id) == col(TemperatureReading.file_id))
        .join(User, col(User.id) == col(LoggerFile.uploaded_by_id))
        .where(TemperatureReading.shipment_id == shipment.id)
        .order_by(col(TemperatureReading.device_id), col(TemperatureReading.at))
    ).all()
    return [
        (Reading(device, at, value), SOURCES[source or _source(shipment, uploader)])
        for device, at, value, source, uploader in rows
    ]


def _stored(
    session: Session, shipment: Shipment, window: tuple[dt.datetime, dt.datetime | None]
) -> tuple[list[Reading], list[Alarm]]:
    """The readings the leg is judged by (reconcile), and the loggers whose files disagree."""
    return reconcile(_sourced(session, shipment), window=window)


HANDOFFS = ("pack", "pickup")  # what starts a shipment's leg, by the scanners' clocks


def leg_window(session: Session, shipment: Shipment) -> tuple[dt.datetime, dt.datetime | None]:
    """A shipment's leg, by when its handoffs happened (the scanners' clocks), not when the
    server heard of them: from its first packing or pickup (or its opening, if earlier) to the
    last receipt of a bag out of it (open-ended while any is still on its way)."""
    manifest = _manifest(session, shipment)
    received, first = session.exec(
        select(
            sa.func.max(sa.case((col(CustodyEvent.action) == "receive", CustodyEvent.occurred_at))),
            sa.func.min(
                sa.case((col(CustodyEvent.action).in_(HANDOFFS), CustodyEvent.occurred_at))
            ),
        ).where(CustodyEvent.shipment_id == shipment.id)
    ).one()
    on_the_way = any(
        unit.shipment_id == shipment.id and unit.state not in TERMINAL_STATES for unit in manifest
    )
    start = min(shipment.created_at, first) if first is not None else shipment.created_at
    return start, None if on_the_way or received is None else received


def _raise_alarms(
    session: Session,
    shipment: Shipment,
    file: LoggerFile,
    series: list[Reading],
    conflicts: list[Alarm],
    locked: list[tuple[Unit, Order]],
    site: Site,
    actor: Actor,
    now: dt.datetime,
    window: tuple[dt.datetime, dt.datetime | None],
) -> tuple[list[ConditionAlarm], list[str]]:
    existing = {
        (row.product, row.kind.value, row.device_id, row.started_at)
        for row in session.exec(
            select(ConditionAlarm).where(ConditionAlarm.shipment_id == shipment.id)
        ).all()
    }
    by_product: dict[str, list[tuple[Unit, Order]]] = {}
    for unit, order in locked:
        by_product.setdefault(order.product, []).append((unit, order))
    raised: list[ConditionAlarm] = []
    held: list[str] = []
    for product, bags in sorted(by_product.items()):
        rule = current_rule(session, product)
        new = [
            alarm
            for alarm in [*conflicts, *evaluate(series, rule, window=window)]
            if (product, alarm.kind.value, alarm.device_id, alarm.started_at) not in existing
        ]
        if not new:
            continue
        rows = [_alarm_row(shipment, file, rule, alarm, now) for alarm in new]
        session.add_all(rows)
        session.flush()
        raised += rows
        held += _hold(session, shipment, bags, rows, site, actor, now)
    if raised:
        shippers.quarantine_after_alarm(session, shipment, raised[0].kind.value, now)
    return raised, held


def _alarm_row(
    shipment: Shipment, file: LoggerFile, rule: AlarmRule, alarm: Alarm, now: dt.datetime
) -> ConditionAlarm:
    return ConditionAlarm(
        shipment_id=shipment.id,  # type: ignore[arg-type]
        product=rule.product,
        rule_version=rule.version,
        kind=alarm.kind,
        device_id=alarm.device_id,
        started_at=alarm.started_at,
        ended_at=alarm.ended_at,
        minutes=round(alarm.minutes, 2),
        peak_c=alarm.peak_c,
        description=alarm.describe(rule)[:500],
        file_id=file.id,  # type: ignore[arg-type]
        raised_at=now,
    )


def _hold(
    session: Session,
    shipment: Shipment,
    bags: list[tuple[Unit, Order]],
    alarms: list[ConditionAlarm],
    site: Site,
    actor: Actor,
    now: dt.datetime,
) -> list[str]:
    """Every bag of the manifest that is still in the chain goes on hold, each with its record."""
    reason = "temperature alarm in " + shipment_code(shipment.id or 0) + ": "
    reason += "; ".join(alarm.description for alarm in alarms)
    details = {
        "shipment": shipment_code(shipment.id or 0),
        "alarms": [
            {
                "kind": a.kind.value,
                "device_id": a.device_id,
                "started_at": a.started_at.isoformat(),
                "ended_at": a.ended_at.isoformat(),
                "minutes": a.minutes,
                "peak_c": a.peak_c,
                "rule_version": a.rule_version,
            }
            for a in alarms
        ],
    }
    held = []
    for unit, order in bags:
        if unit.state in TERMINAL_STATES or unit.state is UnitState.REJECTED:
            continue
        from_state = unit.state
        if unit.state not in HELD_STATES:
            unit.held_from = unit.state
            unit.state = UnitState.ON_HOLD
        session.add(unit)
        append_event(
            session,
            order=order,
            unit=unit,
            action=HOLD,
            from_state=from_state,
            site=site,
            actor=actor,
            occurred_at=now,
            recorded_at=now,
            shipment_id=shipment.id,
            reason=reason[:1000],
            details=details,
        )
        held.append(unit.din)
    return held


# what a shipment's readings say


@dataclass(frozen=True)
class Condition:
    shipment: Shipment
    shipper: Shipper | None
    window: tuple[dt.datetime, dt.datetime | None]
    rules: dict[str, AlarmRule]  # by product on the manifest
    files: list[LoggerFile]
    readings: list[Reading]
    summaries: list[Summary]  # per device, within the leg
    alarms: list[ConditionAlarm]


def condition_of(session: Session, actor: Actor, shipment: str | int) -> Condition:
    found = visible_shipment(session, actor, shipment)
    return shipment_condition(session, found)


def shipment_condition(session: Session, shipment: Shipment) -> Condition:
    window = leg_window(session, shipment)
    readings, _conflicts = _stored(session, shipment, window)
    products = session.exec(
        select(Order.product)
        .join(Unit, Unit.order_id == Order.id)  # type: ignore[arg-type]
        .join(ShipmentUnit, ShipmentUnit.unit_id == Unit.id)  # type: ignore[arg-type]
        .where(ShipmentUnit.shipment_id == shipment.id)
        .distinct()
    ).all()
    return Condition(
        shipment=shipment,
        shipper=session.exec(select(Shipper).where(Shipper.serial == shipment.shipper_id)).first(),
        window=window,
        rules={product: current_rule(session, product) for product in sorted(products)},
        files=list(
            session.exec(
                select(LoggerFile)
                .where(LoggerFile.shipment_id == shipment.id)
                .order_by(col(LoggerFile.id))
            ).all()
        ),
        readings=readings,
        summaries=summarise(readings, window=window),
        alarms=alarms_of(session, shipment),
    )


def alarms_of(session: Session, shipment: Shipment) -> list[ConditionAlarm]:
    return list(
        session.exec(
            select(ConditionAlarm)
            .where(ConditionAlarm.shipment_id == shipment.id)
            .order_by(col(ConditionAlarm.started_at), col(ConditionAlarm.id))
        ).all()
    )


def shipments_of_order(session: Session, order: Order) -> list[Shipment]:
    """The shipments that carried any bag of the order, in the order they were opened."""
    return list(
        session.exec(
            # IN, not DISTINCT: PostgreSQL has no equality for the json columns of shipments
            select(Shipment)
            .where(
                col(Shipment.id).in_(
                    select(ShipmentUnit.shipment_id)
                    .join(Unit, Unit.id == ShipmentUnit.unit_id)  # type: ignore[arg-type]
                    .where(Unit.order_id == order.id)
                )
            )
            .order_by(col(Shipment.id))
        ).all()
    )


def logger_file(session: Session, actor: Actor, shipment: str | int, sha256: str) -> LoggerFile:
    found = visible_shipment(session, actor, shipment)
    row = _file(session, found.id, sha256.strip().lower())
    if row is None:
        raise NotFound(f"no logger file {sha256[:64]} of shipment {shipment_code(found.id or 0)}")
    return row


# QA's disposition


def held_bags(session: Session, actor: Actor, *, limit: int = 200) -> list[tuple[Unit, Order]]:
    """Bags on hold or quarantined that the actor may see, oldest first."""
    rows = session.exec(
        select(Unit, Order)
        .join(Order, Order.id == Unit.order_id)  # type: ignore[arg-type]
        .where(col(Unit.state).in_(sorted(HELD_STATES)), access.order_condition(actor))
        .order_by(col(Unit.id))
        .limit(limit)
    ).all()
    return [(unit, order) for unit, order in rows]


def dispose(
    session: Session,
    *,
    actor: Actor,
    din: str,
    decision: str,
    reason: str,
    email: str,
    password: str,
    now: dt.datetime,
    policy: LoginPolicy,
) -> CustodyEvent:
    """QA releases a held or quarantined bag (back to the state it left) or rejects it, with a
    reason and a signature (approved). The caller commits even when the signature is refused,
    so that a wrong password counts towards the lock-out."""
    if decision not in ("release", "reject"):
        raise InvalidRequest("a disposition is release or reject")
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidRequest("a disposition needs a reason")
    value = din_reference(din).value
    unit = session.exec(select(Unit).where(Unit.din == value)).first()
    order = visible_order(
        session, actor, session.get(Order, unit.order_id) if unit else None, f"bag {value}"
    )
    assert unit is not None
    shipment = session.get(Shipment, unit.shipment_id) if unit.shipment_id else None
    access.check_disposition(actor, order, unit, shipment)
    if unit.state not in HELD_STATES:
        raise IllegalTransition(
            f"bag {unit.din} is {unit.state.value.replace('_', ' ')}; QA disposes of bags on hold "
            "or quarantined",
            state=unit.state.value,
            action=decision,
        )
    authenticate(session, actor=actor, email=email, password=password, now=now, policy=policy)
    ((unit, order),) = lock_bags(session, [unit])
    order = lock_order(session, order.id)
    if unit.state not in HELD_STATES:
        raise Conflict(f"bag {unit.din} was disposed of meanwhile")
    from_state = unit.state
    if decision == "release":
        back = unit.held_from or _state_before_hold(session, unit)
        unit.state = back
        action = RELEASE_HOLD
    else:
        unit.state = UnitState.REJECTED
        action = REJECT_HOLD
    unit.held_from = None
    session.add(unit)
    site = session.get(Site, actor.site_id)
    assert site is not None
    event = append_event(
        session,
        order=order,
        unit=unit,
        action=action,
        from_state=from_state,
        site=site,
        actor=actor,
        occurred_at=now,
        recorded_at=now,
        shipment_id=unit.shipment_id,
        reason=reason[:1000],
    )
    add_signature(session, event=event, signer=actor, meaning=APPROVED, now=now)
    if unit.shipment_id is not None:
        update_shipment_state(session, lock_shipment(session, unit.shipment_id), now=now)
    session.flush()
    return event


def _state_before_hold(session: Session, unit: Unit) -> UnitState:
    """The state before the bag's hold or quarantine, from its record (bags held before the
    state was kept on the bag)."""
    row = session.exec(
        select(CustodyEvent.from_state)
        .where(
            CustodyEvent.unit_id == unit.id,
            col(CustodyEvent.to_state).in_(sorted(HELD_STATES)),
            col(CustodyEvent.from_state).not_in(sorted(HELD_STATES)),
        )
        .order_by(col(CustodyEvent.sequence).desc())
        .limit(1)
    ).first()
    if row is None:
        raise IllegalTransition(f"bag {unit.din}'s record does not say where it was held from")
    return UnitState(row)


@dataclass(frozen=True)
class HeldBag:
    din: str
    coi: str
    state: UnitState
    held_from: UnitState | None
    since: dt.datetime | None
    reason: str | None  # the hold's alarms, or the quarantine's scan
    shipment: str | None
    may_dispose: bool


def hold_queue(session: Session, actor: Actor) -> list[HeldBag]:
    """The bags on hold or quarantined that the actor may see, each with why, oldest first."""
    queue = []
    for unit, order in held_bags(session, actor):
        last = session.exec(
            select(CustodyEvent)
            .where(
                CustodyEvent.unit_id == unit.id,
                col(CustodyEvent.to_state).in_(sorted(HELD_STATES)),
            )
            .order_by(col(CustodyEvent.sequence).desc())
            .limit(1)
        ).first()
        shipment = session.get(Shipment, unit.shipment_id) if unit.shipment_id else None
        try:
            access.check_disposition(actor, order, unit, shipment)
            may = True
        except Forbidden:
            may = False
        queue.append(
            HeldBag(
                din=unit.din,
                coi=order.coi,
                state=unit.state,
                held_from=unit.held_from,
                since=last.recorded_at if last else None,
                reason=(last.reason or last.action.replace("_", " ")) if last else None,
                shipment=shipment_code(last.shipment_id) if last and last.shipment_id else None,
                may_dispose=may,
            )
        )
    return queue


def order_conditions(session: Session, actor: Actor, order: Order) -> list[Condition]:
    """The temperature record of each shipment of the order that the actor may see and that
    has readings or alarms."""
    return [
        shipment_condition(session, shipment)
        for shipment in shipments_of_order(session, order)
        if access.can_view_shipment(session, actor, shipment)
        and (_count(session, shipment) or alarms_of(session, shipment))
    ]
