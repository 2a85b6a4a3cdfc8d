"""The custody record in GS1 EPCIS 2.0, out and in: an order's events as an EPCISDocument, the
events queried (a subset of the EPCIS 2.0 REST binding), and a partner's ObjectEvents captured
as scans under the same custody rules.

Every event is built only from what was known when its record was written (a batch's inputs, a
logger file's own readings, the alarms it raised), so the same record always exports the same
event and the same ``eventID`` (the CBV 2.0 event hash). A correction is the corrective event
(``v2v:corrects``) and an ``errorDeclaration`` on the event it corrects, which the hash leaves
out.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from services import epcis_schema
from services.db.cache import site_code
from services.db.models import (
    BatchInput,
    ConditionAlarm,
    CustodyEvent,
    LoggerFile,
    Order,
    Scan,
    Shipment,
    ShipmentUnit,
    TemperatureReading,
    Unit,
    User,
)
from services.domain.condition import Reading, summarise
from services.domain.custody import Action, Actor, UnitKind
from services.domain.epcis import (
    ADDS,
    EXTENSION_PREFIX,
    JOURNEY,
    Uris,
    document,
    event_hash,
    event_time,
    steps_for,
)
from services.domain.errors import NotFound
from services.domain.identifiers import batch_code, shipment_code
from services.operations import access
from services.operations.access import order_by_coi

CAPTURE_NAMESPACE = uuid.UUID("2f1c7d52-54a4-4f57-9d0b-6b1b2c7e8a10")  # event ids of captures


def _x(name: str) -> str:
    return f"{EXTENSION_PREFIX}:{name}"


@dataclass
class Context:
    """What the events of one order refer to, loaded once (a handful of queries, each bounded
    by the order's own records)."""

    uris: Uris
    order: Order
    codes: Callable[[int], str]  # a site's code by its id
    units: dict[int, Unit]
    shipments: dict[int, Shipment]
    inputs: dict[int, list[str]]  # batch -> apheresis DINs
    products: dict[int, list[tuple[int, str]]]  # batch -> (unit id, DIN) of its products
    manifests: dict[int, list[Unit]]  # shipment -> its bags
    produced_at: dict[int, int]  # product unit -> the sequence of the record that produced it
    namespaces: dict[str, str] = field(default_factory=dict)

    def site(self, site_id: int) -> str:
        return self.uris.site(self.codes(site_id))


def context_of(session: Session, order: Order, uris: Uris) -> Context:
    return contexts_of(session, [order], uris)[order.id or 0]


def contexts_of(session: Session, orders: Sequence[Order], uris: Uris) -> dict[int, Context]:
    """The contexts of several orders' events, loaded together: the same few queries for a
    page of events from many orders as for one order's (what one order's events name, its
    bags, shipments and batches, belongs to it alone or is shared as it is)."""
    ids = [order.id for order in orders if order.id is not None]
    units = {u.id: u for u in session.exec(select(Unit).where(col(Unit.order_id).in_(ids))).all()}
    shipment_ids = set(
        session.exec(
            select(CustodyEvent.shipment_id)
            .where(col(CustodyEvent.order_id).in_(ids), col(CustodyEvent.shipment_id).is_not(None))
            .distinct()
        ).all()
    )
    shipments = (
        {
            s.id: s
            for s in session.exec(select(Shipment).where(col(Shipment.id).in_(shipment_ids))).all()
        }
        if shipment_ids
        else {}
    )
    manifests: dict[int, list[Unit]] = {}
    if shipment_ids:
        for shipment_id, unit in session.exec(
            select(ShipmentUnit.shipment_id, Unit)
            .join(Unit, Unit.id == ShipmentUnit.unit_id)  # type: ignore[arg-type]
            .where(col(ShipmentUnit.shipment_id).in_(shipment_ids))
            .order_by(col(Unit.id))
        ).all():
            manifests.setdefault(shipment_id, []).append(unit)
    inputs: dict[int, list[str]] = {}  # a batch is one order's: keyed by batch, no order needed
    for batch_id, din in session.exec(
        select(BatchInput.batch_id, Unit.din)
        .join(Unit, Unit.id == BatchInput.unit_id)  # type: ignore[arg-type]
        .where(col(Unit.order_id).in_(ids))
        .order_by(col(Unit.din))
    ).all():
        inputs.setdefault(batch_id, []).append(din)
    products: dict[int, list[tuple[int, str]]] = {}
    for unit in sorted(units.values(), key=lambda u: u.id or 0):
        if unit.kind is UnitKind.PRODUCT and unit.batch_id is not None:
            products.setdefault(unit.batch_id, []).append((unit.id or 0, unit.din))
    produced_at = {
        unit_id: sequence
        for unit_id, sequence in session.exec(
            select(CustodyEvent.unit_id, CustodyEvent.sequence).where(
                col(CustodyEvent.order_id).in_(ids),
                CustodyEvent.action == "produce",
                col(CustodyEvent.unit_id).is_not(None),
            )
        ).all()
        if unit_id is not None
    }
    codes = functools.partial(site_code, session)  # kept per process: no query a page
    return {
        order.id or 0: Context(
            uris=uris,
            order=order,
            codes=codes,
            units=units,  # type: ignore[arg-type]
            shipments=shipments,  # type: ignore[arg-type]
            inputs=inputs,
            products=products,
            manifests=manifests,
            produced_at=produced_at,
            namespaces={EXTENSION_PREFIX: uris.vocabulary},
        )
        for order in orders
    }


def named_event(session: Session, context: Context, record: CustodyEvent) -> dict[str, Any]:
    """One record as an EPCIS event, named by its CBV 2.0 event hash."""
    event = _event(session, context, record, context.produced_at)
    return {"eventID": event_hash(event, context.namespaces), **event}


def declare_error(event: dict[str, Any], correction: CustodyEvent, corrective_id: str) -> None:
    """The errorDeclaration a correction puts on the event it corrects (the hash leaves it
    out, so the corrected event keeps its eventID)."""
    event["errorDeclaration"] = {
        "declarationTime": event_time(correction.recorded_at),
        "reason": "incorrect_data",
        "correctiveEventIDs": [corrective_id],
        _x("reason"): correction.reason or "",
    }


def order_events(session: Session, order: Order, uris: Uris) -> list[dict[str, Any]]:
    """Every record of the order's chain as an EPCIS event, in its sequence."""
    context = context_of(session, order, uris)
    records = list(
        session.exec(
            select(CustodyEvent)
            .where(CustodyEvent.order_id == order.id)
            .order_by(col(CustodyEvent.sequence))
        ).all()
    )
    by_id = {record.id: named_event(session, context, record) for record in records}
    for record in records:
        if record.action == "correct" and record.corrects_id in by_id:
            declare_error(by_id[record.corrects_id], record, by_id[record.id]["eventID"])
    return list(by_id.values())


def export_order(
    session: Session, *, actor: Actor | None, coi: str, uris: Uris, now: dt.datetime
) -> dict[str, Any]:
    """The order's EPCISDocument; ``actor=None``: the installation's operator (command line)."""
    if actor is None:
        order = session.exec(select(Order).where(Order.coi == coi)).first()
        if order is None:
            raise NotFound(f"no order {coi}")
    else:
        order = order_by_coi(session, actor, coi)
    return document(order_events(session, order, uris), uris=uris, created=now)


def capture_size(doc: Any, *, most_values: int) -> tuple[int, int]:
    """How many events a captured document holds, and how many values (each list item and
    each member of an object, at any depth) its events hold, read without validating it and
    counted no further than ``most_values`` and one. A document with no event list counts
    (0, 0): the schema then says what is wrong."""
    body = doc.get("epcisBody") if isinstance(doc, dict) else None
    events = body.get("eventList") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return 0, 0
    values = 0
    pending: list[Any] = [events]
    while pending and values <= most_values:
        item = pending.pop()
        if isinstance(item, dict):
            values += len(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            values += len(item)
            pending.extend(item)
    return len(events), values


def schema_errors(doc: Any) -> list[dict[str, str]]:
    """What GS1's EPCIS 2.0 schema says is wrong with a document (empty: valid)."""
    return epcis_schema.errors(doc)


def _event(
    session: Session, context: Context, record: CustodyEvent, produced_at: Mapping[int, int]
) -> dict[str, Any]:
    uris, order = context.uris, context.order
    action = record.action
    step, disposition = steps_for(action, record.batch_state.value if record.batch_state else None)
    unit = context.units.get(record.unit_id) if record.unit_id else None
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": event_time(record.occurred_at),
        "eventTimeZoneOffset": "+00:00",
        "recordTime": event_time(record.recorded_at),
    }
    if action == "produce" and unit is not None and unit.batch_id is not None:
        event["type"] = "TransformationEvent"
        event["inputEPCList"] = [uris.din(d) for d in context.inputs.get(unit.batch_id, [])]
        event["outputEPCList"] = [uris.din(unit.din)]
        event["transformationID"] = uris.batch(batch_code(unit.batch_id))
    else:
        event["epcList"] = _epcs(context, record, unit, produced_at)
        event["action"] = (
            "ADD" if action in ADDS else "DELETE" if action == "destroy" else "OBSERVE"
        )
    event["bizStep"] = step
    event["disposition"] = disposition
    event["readPoint"] = {"id": context.site(record.site_id)}
    event["bizLocation"] = {"id": context.site(record.custodian_site_id)}
    shipment = context.shipments.get(record.shipment_id) if record.shipment_id else None
    if shipment is not None and shipment.id is not None:
        code = shipment_code(shipment.id)
        event["bizTransactionList"] = [{"type": "desadv", "bizTransaction": uris.shipment(code)}]
        if action in JOURNEY:
            event["sourceList"] = [
                {"type": "possessing_party", "source": context.site(shipment.origin_site_id)},
                {"type": "location", "source": context.site(shipment.origin_site_id)},
            ]
            event["destinationList"] = [
                {
                    "type": "possessing_party",
                    "destination": context.site(shipment.destination_site_id),
                },
                {"type": "location", "destination": context.site(shipment.destination_site_id)},
            ]
    ilmd = _ilmd(context, record, unit)
    if ilmd:
        event["ilmd"] = ilmd
    sensors = _sensors(session, context, record, shipment)
    if sensors:
        event["sensorElementList"] = sensors
    event[_x("sequence")] = record.sequence
    event[_x("action")] = action
    event[_x("coi")] = uris.coi(order.coi)
    event[_x("recordHash")] = record.hash
    if record.batch_id is not None and action != "produce":
        event[_x("batch")] = uris.batch(batch_code(record.batch_id))
    if record.batch_state is not None:
        event[_x("batchStatus")] = record.batch_state.value
    if record.reason:
        event[_x("reason")] = record.reason
    if record.corrects_id is not None:
        corrected = session.get(CustodyEvent, record.corrects_id)
        event[_x("corrects")] = corrected.sequence if corrected else None
    return event


def _epcs(
    context: Context, record: CustodyEvent, unit: Unit | None, produced_at: Mapping[int, int]
) -> list[str]:
    uris = context.uris
    if unit is not None:
        return [uris.din(unit.din)]
    if record.action == "enroll":
        return [uris.coi(context.order.coi)]
    if record.action == "readings" and record.shipment_id is not None:
        return [
            uris.din(u.din)
            for u in context.manifests.get(record.shipment_id, [])
            if u.order_id == context.order.id
        ]
    if record.action == "batch_status" and record.batch_id is not None:
        if record.batch_state is not None and record.batch_state.value == "released":
            return [
                uris.din(din)
                for unit_id, din in context.products.get(record.batch_id, [])
                if produced_at.get(unit_id, 10**9) < record.sequence
            ] or [uris.batch(batch_code(record.batch_id))]
        return [uris.din(din) for din in context.inputs.get(record.batch_id, [])] or [
            uris.batch(batch_code(record.batch_id))
        ]
    return [uris.coi(context.order.coi)]


def _ilmd(context: Context, record: CustodyEvent, unit: Unit | None) -> dict[str, Any]:
    order = context.order
    if record.action == "enroll":
        return {_x("product"): order.product}
    if record.action == "collect" and unit is not None:
        ilmd: dict[str, Any] = {
            _x("coi"): context.uris.coi(order.coi),
            _x("product"): order.product,
            _x("collectedAt"): event_time(unit.collected_at),
        }
        if unit.volume_ml is not None:
            ilmd[_x("volumeMl")] = unit.volume_ml
        return ilmd
    if record.action == "produce" and unit is not None and unit.batch_id is not None:
        return {
            _x("coi"): context.uris.coi(order.coi),
            _x("product"): order.product,
            _x("lot"): batch_code(unit.batch_id),
        }
    return {}


def _sensors(
    session: Session, context: Context, record: CustodyEvent, shipment: Shipment | None
) -> list[dict[str, Any]]:
    """A logger file's own readings (per device: its span, min, max, mean) and the alarms it
    raised; a hold's alarms."""
    details = record.details or {}
    if record.action == "readings" and shipment is not None and details.get("sha256"):
        file = session.exec(
            select(LoggerFile).where(
                LoggerFile.shipment_id == shipment.id, LoggerFile.sha256 == details["sha256"]
            )
        ).first()
        if file is None:
            return []
        readings = [
            Reading(device, at, value)
            for device, at, value in session.exec(
                select(
                    TemperatureReading.device_id, TemperatureReading.at, TemperatureReading.value_c
                ).where(TemperatureReading.file_id == file.id)
            ).all()
        ]
        alarms = session.exec(
            select(ConditionAlarm)
            .where(ConditionAlarm.file_id == file.id)
            .order_by(col(ConditionAlarm.id))
        ).all()
        raw = context.uris.logger_file(shipment_code(shipment.id or 0), file.sha256)
        elements = []
        for summary in summarise(readings, window=(dt.datetime.min.replace(tzinfo=dt.UTC), None)):
            reports: list[dict[str, Any]] = [
                {
                    "type": "Temperature",
                    "minValue": summary.min_c,
                    "maxValue": summary.max_c,
                    "meanValue": summary.mean_c,
                    "uom": "CEL",
                }
            ]
            reports += [_alarm_report(a) for a in alarms if a.device_id == summary.device_id]
            elements.append(
                {
                    "sensorMetadata": {
                        "startTime": event_time(summary.first),
                        "endTime": event_time(summary.last),
                        "deviceID": context.uris.logger(summary.device_id),
                        "rawData": raw,
                    },
                    "sensorReport": reports,
                }
            )
        return elements
    if record.action == "hold" and details.get("alarms"):
        return [
            {
                "sensorMetadata": {"deviceID": context.uris.logger(alarm["device_id"])},
                "sensorReport": [
                    {
                        "type": "Temperature",
                        "exception": "ALARM_CONDITION",
                        "time": event_time(dt.datetime.fromisoformat(alarm["started_at"])),
                        **({"value": alarm["peak_c"]} if alarm.get("peak_c") is not None else {}),
                        "uom": "CEL",
                    }
                ],
            }
            for alarm in details["alarms"]
        ]
    return []


def _alarm_report(alarm: ConditionAlarm) -> dict[str, Any]:
    report: dict[str, Any] = {
        "type": "Temperature",
        "exception": "ALARM_CONDITION",
        "time": event_time(alarm.started_at),
        "uom": "CEL",
    }
    if alarm.peak_c is not None:
        report["value"] = alarm.peak_c
    return report


# capture

CAPTURED_STEPS: Mapping[str, Action] = {
    "departing": Action.PICKUP,
    "shipping": Action.PICKUP,
    "transporting": Action.PICKUP,
    "arriving": Action.DELIVER,
    "receiving": Action.RECEIVE,
}


@dataclass(frozen=True)
class Captured:
    """One captured event, read as the scan it stands for."""

    index: int
    event_id: str
    action: Action | None
    barcode: str | None
    site: str | None
    occurred_at: dt.datetime | None
    shipment: str | None
    problem: str | None  # why it cannot be a scan at all


def capture_scan_id(session: Session, *, actor: Actor, event_id: str) -> str:
    """The scan ``event_id`` a captured eventID stands for, in the id space of the sender (the
    capturing user's site): the same eventID from another site is another scan, and never
    replays this site's (a partner's eventID is its own choice, or a hash anyone can compute
    from an event's content). An event this site captured before eventIDs were namespaced
    keeps its id, and replays as it did then.

    A replay answers with what the scan recorded (its bags and their sequences): before one is
    answered, every order its events belong to must be one the actor may see (NotFound
    otherwise, as for an event that does not exist)."""
    own = str(uuid.uuid5(CAPTURE_NAMESPACE, f"site:{actor.site_id}\n{event_id}"))
    before = str(uuid.uuid5(CAPTURE_NAMESPACE, event_id))  # one id space for every sender
    found = dict(
        session.exec(
            select(Scan.event_id, User.site_id)
            .join(User, col(User.id) == col(Scan.actor_id))
            .where(col(Scan.event_id).in_([own, before]))
        ).all()
    )
    chosen = before if own not in found and found.get(before) == actor.site_id else own
    if chosen in found:
        orders = session.exec(
            select(Order)
            .join(CustodyEvent, col(CustodyEvent.order_id) == col(Order.id))
            .join(Scan, col(Scan.id) == col(CustodyEvent.scan_id))
            .where(col(Scan.event_id) == chosen)
            .distinct()
        ).all()
        if not all(access.can_view_order(session, actor, order) for order in orders):
            raise NotFound(f"no captured event {event_id[:80]} that you can see")
    return chosen


def read_capture(doc: Mapping[str, Any], uris: Uris) -> list[Captured]:
    """The events of a (schema-valid) EPCISDocument, each as the scan it asks for."""
    events = doc.get("epcisBody", {}).get("eventList", [])
    context = doc.get("@context")
    namespaces: dict[str, str] = {}
    for item in context if isinstance(context, list) else []:
        if isinstance(item, dict):
            namespaces.update({k: v for k, v in item.items() if isinstance(v, str)})
    return [_captured(i, event, uris, namespaces) for i, event in enumerate(events, start=1)]


def _bare(value: Any, prefix: str) -> str:
    text = str(value or "")
    return text.removeprefix(f"https://ref.gs1.org/cbv/{prefix}")


def _captured(index: int, event: Mapping[str, Any], uris: Uris, ns: dict[str, str]) -> Captured:
    given = event.get("eventID")
    event_id = str(given) if given else event_hash(event, ns)
    step = _bare(event.get("bizStep"), "BizStep-")
    action = CAPTURED_STEPS.get(step)
    site_uri = str((event.get("readPoint") or {}).get("id", ""))
    site = uris.parse(site_uri, "site")
    try:
        occurred = dt.datetime.fromisoformat(str(event.get("eventTime", "")).replace("Z", "+00:00"))
    except ValueError:
        occurred = None
    shipments = [
        uris.parse(str(t.get("bizTransaction", "")), "shipment")
        for t in event.get("bizTransactionList", []) or []
        if _bare(t.get("type"), "BTT-") == "desadv"
    ]
    epcs = [str(e) for e in event.get("epcList", []) or []]
    shipment_epcs = [uris.parse(e, "shipment") for e in epcs]
    dins = [uris.parse(e, "din") for e in epcs]

    def refused(why: str) -> Captured:
        return Captured(index, event_id, action, None, site, occurred, None, why)

    if event.get("type") != "ObjectEvent":
        return refused("only ObjectEvents are captured")
    if action is None:
        return refused(
            f"bizStep {step or '(none)'} is not a handoff we record: departing, shipping, "
            "transporting, arriving or receiving"
        )
    if site is None:
        return refused(f"readPoint {site_uri[:80]!r} is not one of our sites ({uris.site('CODE')})")
    if occurred is None or occurred.tzinfo is None:
        return refused("eventTime is not a time with an offset")
    named = {s for s in [*shipments, *shipment_epcs] if s}
    if len(named) > 1:
        return refused("the event names more than one shipment")
    shipment = next(iter(named), None)
    bags = [d for d in dins if d]
    if len(bags) + len([s for s in shipment_epcs if s]) != len(epcs):
        return refused("an EPC of the event is neither one of our bags nor one of our shipments")
    if shipment and (action is not Action.RECEIVE or not bags):
        return Captured(index, event_id, action, shipment, site, occurred, None, None)
    if len(bags) != 1:
        return refused("name the shipment (a desadv bizTransaction) or exactly one bag")
    return Captured(index, event_id, action, f"={bags[0]}00", site, occurred, shipment, None)
