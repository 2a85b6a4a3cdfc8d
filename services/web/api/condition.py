"""The chain of condition: shippers, a shipment's temperature readings and alarms, alarm rules,
and QA's disposition of a bag on hold."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from flask import Response, jsonify, request
from flask_openapi3 import Tag
from sqlmodel import Session

from services.domain.condition import AlarmRule, ShipperStatus, parse_csv_upload, parse_json
from services.domain.errors import SignatureRefused
from services.domain.identifiers import shipment_code
from services.operations import condition, shippers
from services.operations import products as product_ops
from services.operations.directory import Directory
from services.operations.queries import events_by_id
from services.web import scanning  # the module: scanning imports this package in turn
from services.web.api.blueprint import api
from services.web.api.present import event_public
from services.web.api.schemas import (
    AlarmPublic,
    AlarmRulePublic,
    AlarmRuleUpdate,
    DeviceSummary,
    DispositionCreate,
    EventPublic,
    LoggerFilePath,
    LoggerFilePublic,
    ProductPath,
    ReadingPublic,
    ReadingsCreate,
    ReadingsCsvQuery,
    ReadingsImported,
    ShipmentPath,
    ShipmentReadings,
    ShipperChange,
    ShipperCreate,
    ShipperList,
    ShipperPath,
    ShipperPublic,
    UnitPath,
)
from services.web.errors import domain_problem
from services.web.state import current_actor, login_policy, unit_of_work, utcnow

if TYPE_CHECKING:
    from services.db.models import ConditionAlarm, LoggerFile, Shipper

tag = Tag(name="condition", description="Dry shippers, temperature readings, alarms and holds")
READINGS_MAX_BYTES = 8 * 1024 * 1024  # 50,000 readings as JSON, with room to spare


@api.before_request
def _room_for_readings() -> None:
    """A logger's month of readings is larger than any other request."""
    if request.endpoint in ("api.import_readings", "api.import_readings_csv"):
        request.max_content_length = READINGS_MAX_BYTES


def shipper_public(shipper: Shipper, site: str) -> ShipperPublic:
    moment = utcnow()
    return ShipperPublic(
        serial=shipper.serial,
        model=shipper.model,
        hold_time_hours=shipper.hold_time_hours,
        qualified_until=shipper.qualified_until,
        status=shipper.status.value,
        status_reason=shipper.status_reason,
        site=site,
        usable=shipper.status is ShipperStatus.IN_SERVICE and shipper.qualified_until > moment,
    )


def _shipper(directory: Directory, shipper: Shipper) -> ShipperPublic:
    return shipper_public(shipper, directory.site_code(shipper.site_id) or "")


@api.get("/shippers", tags=[tag], responses={200: ShipperList})
def list_shippers() -> Response:
    """The dry shippers of your site and of its network."""
    with unit_of_work() as uow:
        rows = shippers.visible_shippers(uow.session, current_actor())
        directory = Directory(uow.session)
        result = ShipperList(shippers=[_shipper(directory, row) for row in rows])
    return jsonify(result.model_dump(mode="json"))


@api.post("/shippers", tags=[tag], responses={201: ShipperPublic})
def register_shipper(body: ShipperCreate) -> tuple[Response, int]:
    """Register a shipper of your site: its serial, model, qualified hold time and how long its
    qualification runs. It is in service from now."""
    actor = current_actor()
    with unit_of_work() as uow:
        site = Directory(uow.session).site(actor.site_id)
        row = shippers.register_shipper(
            uow.session,
            actor=actor,
            site=site,
            serial=body.serial,
            model=body.model,
            hold_time_hours=body.hold_time_hours,
            qualified_until=body.qualified_until,
            now=utcnow(),
        )
        uow.commit()
        result = _shipper(Directory(uow.session), row)
    return jsonify(result.model_dump(mode="json")), 201


@api.get("/shippers/<serial>", tags=[tag], responses={200: ShipperPublic})
def read_shipper(path: ShipperPath) -> Response:
    """A shipper: whether it may be packed now, and why not."""
    with unit_of_work() as uow:
        row = shippers.shipper_by_serial(uow.session, current_actor(), path.serial)
        result = _shipper(Directory(uow.session), row)
    return jsonify(result.model_dump(mode="json"))


@api.post("/shippers/<serial>/changes", tags=[tag], responses={200: ShipperPublic})
def change_shipper(path: ShipperPath, body: ShipperChange) -> Response:
    """Requalify a shipper, or put it in or out of service, with a reason (kept in the log)."""
    with unit_of_work() as uow:
        row = shippers.change_shipper(
            uow.session,
            actor=current_actor(),
            serial=path.serial,
            status=ShipperStatus(body.status) if body.status else None,
            reason=body.reason,
            qualified_until=body.qualified_until,
            hold_time_hours=body.hold_time_hours,
            now=utcnow(),
        )
        uow.commit()
        result = _shipper(Directory(uow.session), row)
    return jsonify(result.model_dump(mode="json"))


def file_public(directory: Directory, row: LoggerFile) -> LoggerFilePublic:
    return LoggerFilePublic(
        sha256=row.sha256,
        filename=row.filename,
        media_type=row.media_type,
        size=row.size,
        devices=row.devices,
        readings=row.readings,
        new_readings=row.new_readings,
        first_at=row.first_at,
        last_at=row.last_at,
        uploaded_by=directory.email(row.uploaded_by_id),
        uploaded_at=row.uploaded_at,
    )


def alarm_public(row: ConditionAlarm) -> AlarmPublic:
    return AlarmPublic(
        kind=row.kind.value,
        device_id=row.device_id,
        product=row.product,
        rule_version=row.rule_version,
        started_at=row.started_at,
        ended_at=row.ended_at,
        minutes=row.minutes,
        peak_c=row.peak_c,
        description=row.description,
    )


def rule_public(rule: AlarmRule) -> AlarmRulePublic:
    return AlarmRulePublic(
        product=rule.product,
        version=rule.version,
        limit_c=rule.limit_c,
        instant_limit_c=rule.instant_limit_c,
        continuous_minutes=rule.continuous_minutes,
        cumulative_minutes=rule.cumulative_minutes,
        gap_minutes=rule.gap_minutes,
    )


@api.post("/shipments/<shipment>/readings", tags=[tag], responses={201: ReadingsImported})
def import_readings(path: ShipmentPath, body: ReadingsCreate) -> tuple[Response, int]:
    """A data logger's readings of the shipment (up to 50,000). One bad reading refuses them
    all, naming each (422, nothing stored); the same file again changes nothing (200,
    duplicate). Readings during the leg are checked against each product's alarm rule: an
    excursion or a gap puts the manifest's bags on hold and notifies."""
    now = utcnow()
    readings = parse_json(body.device_id, body.readings, now=now)  # type: ignore[arg-type]
    original = request.get_data()
    with unit_of_work() as uow:
        result = condition.import_readings(
            uow.session,
            actor=current_actor(),
            shipment=path.shipment,
            readings=readings,
            original=original,
            filename=f"{body.device_id}.json",
            media_type="application/json",
            now=now,
        )
        uow.commit()
        answer = _imported(uow.session, result)
    return jsonify(answer.model_dump(mode="json")), 200 if result.duplicate else 201


def _imported(session: Session, result: condition.ImportResult) -> ReadingsImported:
    directory = Directory(session)
    return ReadingsImported(
        shipment=shipment_code(result.shipment.id or 0),
        duplicate=result.duplicate,
        file=file_public(directory, result.file),
        alarms=[alarm_public(row) for row in result.alarms],
        held=result.held,
    )


CSV_BODY = {
    "requestBody": {
        "required": True,
        "description": "A logger's CSV export: a header naming at, value, unit (and device_id, "
        "unless given as a query parameter), then one reading per line, e.g. "
        "'at,value,unit' / '2026-12-01T10:30:00Z,-182.5,C'",
        "content": {"text/csv": {"schema": {"type": "string", "maxLength": READINGS_MAX_BYTES}}},
    }
}


@api.post(
    "/shipments/<shipment>/readings/csv",
    tags=[tag],
    responses={201: ReadingsImported},
    openapi_extensions=CSV_BODY,
)
def import_readings_csv(path: ShipmentPath, query: ReadingsCsvQuery) -> tuple[Response, int]:
    """The same as POST .../readings, from a logger's CSV file as it was exported. A bad line
    refuses the file (422 naming each line); nothing of it is stored."""
    now = utcnow()
    original = request.get_data()
    readings = parse_csv_upload(original, device_id=query.device_id, now=now)
    with unit_of_work() as uow:
        result = condition.import_readings(
            uow.session,
            actor=current_actor(),
            shipment=path.shipment,
            readings=readings,
            original=original,
            filename=query.filename or "readings.csv",
            media_type="text/csv",
            now=now,
        )
        uow.commit()
        answer = _imported(uow.session, result)
    return jsonify(answer.model_dump(mode="json")), 200 if result.duplicate else 201


@api.get("/shipments/<shipment>/readings", tags=[tag], responses={200: ShipmentReadings})
def read_readings(path: ShipmentPath) -> Response:
    """The shipment's readings, their files, per-device figures within its leg, its alarms, and
    the alarm rules they were checked against."""
    with unit_of_work() as uow:
        found = condition.condition_of(uow.session, current_actor(), path.shipment)
        directory = Directory(uow.session)
        result = ShipmentReadings(
            shipment=shipment_code(found.shipment.id or 0),
            shipper=_shipper(directory, found.shipper) if found.shipper else None,
            leg_start=found.window[0],
            leg_end=found.window[1],
            rules=[rule_public(rule) for rule in found.rules.values()],
            files=[file_public(directory, row) for row in found.files],
            summaries=[DeviceSummary(**asdict(summary)) for summary in found.summaries],
            alarms=[alarm_public(row) for row in found.alarms],
            readings=[
                ReadingPublic(device_id=r.device_id, at=r.at, value_c=r.value_c)
                for r in found.readings
            ],
        )
    return jsonify(result.model_dump(mode="json"))


@api.get(
    "/shipments/<shipment>/readings/files/<sha256>",
    tags=[tag],
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
)
def download_logger_file(path: LoggerFilePath) -> Response:
    """A logger's original file, byte for byte as it was uploaded."""
    with unit_of_work() as uow:
        row = condition.logger_file(uow.session, current_actor(), path.shipment, path.sha256)
        content, media_type, filename = row.content, row.media_type, row.filename
    response = Response(content, mimetype=media_type)
    response.headers["Content-Disposition"] = (
        f"attachment; filename={json.dumps(filename.encode('ascii', 'replace').decode())}"
    )
    return response


@api.get("/alarm-rules/<product>", tags=[tag], responses={200: AlarmRulePublic})
def read_alarm_rule(path: ProductPath) -> Response:
    """A product's alarm rule in force (version 0: the defaults, -150 °C)."""
    with unit_of_work() as uow:
        rule = condition.current_rule(uow.session, path.product)
    return jsonify(rule_public(rule).model_dump(mode="json"))


@api.post("/alarm-rules/<product>", tags=[tag], responses={201: AlarmRulePublic})
def update_alarm_rule(path: ProductPath, body: AlarmRuleUpdate) -> tuple[Response, int]:
    """A new version of the product's alarm rule, by QA of the product's owning manufacturing
    site, with a reason and signed (your password), within clinical bounds; values left out
    keep the current ones. Kept in the admin log."""
    actor = current_actor()
    signers = scanning.signers_for(
        actor,
        actor.site.code,
        scanning.Credentials(password=body.signature.password if body.signature else None),
    )
    with unit_of_work() as uow:
        rule = product_ops.change_alarm_rule(
            uow.session,
            actor=actor,
            product=path.product,
            reason=body.reason or "",
            signers=signers,
            now=utcnow(),
            **body.model_dump(exclude={"reason", "signature"}),
        )
        uow.commit()
    return jsonify(rule_public(rule).model_dump(mode="json")), 201


@api.post("/units/<din>/disposition", tags=[tag], responses={201: EventPublic})
def dispose(path: UnitPath, body: DispositionCreate) -> Response | tuple[Response, int]:
    """QA's disposition of a bag on hold or quarantined, signed (your e-mail and password
    again): release it back to the state it left, or reject it."""
    with unit_of_work() as uow:
        try:
            event = condition.dispose(
                uow.session,
                actor=current_actor(),
                din=path.din,
                decision=body.decision,
                reason=body.reason,
                email=body.email,
                password=body.password,
                now=utcnow(),
                policy=login_policy(),
            )
        except SignatureRefused as error:
            uow.commit()  # the failed attempt counts towards the lock-out
            return domain_problem(error)
        uow.commit()
        assert event.id is not None
        (record,) = events_by_id(uow.session, [event.id])
    return jsonify(event_public(record).model_dump(mode="json")), 201
