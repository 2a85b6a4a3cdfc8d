"""The chain of condition in the browser: the shippers, a shipment's temperature record (its
curve, figures, alarms and logger files, and the CSV upload), and QA's holds to dispose of."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import login_required

from services.domain.condition import MAX_READINGS, ShipperStatus, parse_csv_upload
from services.domain.errors import DomainError, InvalidRequest, SignatureRefused
from services.domain.identifiers import shipment_code
from services.operations import access, condition, shippers
from services.operations.directory import Directory
from services.web import charts, clock, forms
from services.web.pages import pages
from services.web.security import session_actor
from services.web.state import login_policy, unit_of_work, utcnow

UPLOAD_MAX_BYTES = 8 * 1024 * 1024  # a month of one-minute readings is about 2 MB of CSV


@pages.before_app_request
def _room_for_a_loggers_file() -> None:
    if request.endpoint == "pages.shipment_condition" and request.method == "POST":
        request.max_content_length = UPLOAD_MAX_BYTES
        request.max_form_memory_size = UPLOAD_MAX_BYTES


# shippers


@pages.route("/shippers", methods=["GET", "POST"])
@login_required
def shippers_page() -> Any:
    actor = session_actor()
    if request.method == "POST":
        try:
            with unit_of_work() as uow:
                row = shippers.register_shipper(
                    uow.session,
                    actor=actor,
                    site=Directory(uow.session).site(actor.site_id),
                    serial=forms.text("serial", max_length=64, required=True, label="serial"),
                    model=forms.text("model", max_length=100, required=True),
                    hold_time_hours=_hours("hold_time_hours"),
                    qualified_until=_day("qualified_until"),
                    now=utcnow(),
                )
                uow.commit()
                flash(f"Shipper {row.serial} is registered and in service.")
        except DomainError as error:
            flash(f"Not registered: {error.detail}")
        return redirect(url_for("pages.shippers_page"), 303)
    with unit_of_work() as uow:
        rows = shippers.visible_shippers(uow.session, actor)
        directory = Directory(uow.session)
        listed = [(row, directory.code(row.site_id)) for row in rows]
    now = utcnow()
    return render_template(
        "shippers.html",
        actor=actor,
        shippers=listed,
        now=now,
        may_manage=actor.role in access.SHIPPER_ROLES,
        statuses=[s.value for s in ShipperStatus if s is not ShipperStatus.IN_USE],
        default_until=(now + dt.timedelta(days=365)).date().isoformat(),
    )


@pages.route("/shippers/<serial>", methods=["POST"])
@login_required
def change_shipper(serial: str) -> Any:
    actor = session_actor()
    try:
        with unit_of_work() as uow:
            status = forms.optional("status", max_length=16)
            until = forms.optional("qualified_until", max_length=10)
            row = shippers.change_shipper(
                uow.session,
                actor=actor,
                serial=serial[:64],
                status=_status(status),
                reason=forms.text("reason", max_length=500, required=True),
                qualified_until=_day("qualified_until") if until else None,
                now=utcnow(),
            )
            uow.commit()
            flash(f"Shipper {row.serial}: {row.status.value.replace('_', ' ')}, on record.")
    except DomainError as error:
        flash(f"Not changed: {error.detail}")
    return redirect(url_for("pages.shippers_page"), 303)


def _status(value: str | None) -> ShipperStatus | None:
    if not value:
        return None
    try:
        return ShipperStatus(value)
    except ValueError:
        raise InvalidRequest(f"a shipper's status is one of {', '.join(ShipperStatus)}") from None


def _hours(name: str) -> float:
    raw = forms.text(name, max_length=16, required=True, label="the hold time")
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest("the hold time is a number of hours") from None


def _day(name: str) -> dt.datetime:
    raw = forms.text(name, max_length=10, required=True, label="the qualification date")
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest("the qualification date is a date such as 2027-06-30") from None
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)


# a shipment's temperature record


@pages.route("/shipments/<code>/condition", methods=["GET", "POST"])
@login_required
def shipment_condition(code: str) -> Any:
    actor = session_actor()
    if request.method == "POST":
        status = _upload(code)
        if status is not None:
            return status
        return redirect(url_for("pages.shipment_condition", code=code), 303)
    with unit_of_work() as uow:
        found = condition.condition_of(uow.session, actor, code[:32])
        directory = Directory(uow.session)
        view = condition_view(found, directory)
        may_upload = actor.site_id in (
            found.shipment.origin_site_id,
            found.shipment.destination_site_id,
            found.shipment.carrier_site_id,
        )
    return render_template("shipment_condition.html", actor=actor, view=view, may_upload=may_upload)


def _upload(code: str) -> tuple[str, int] | None:
    """The CSV form: a refused file is shown again with every bad line, nothing stored."""
    actor = session_actor()
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise InvalidRequest("choose the logger's CSV file")
        data = upload.read(UPLOAD_MAX_BYTES + 1)
        if len(data) > UPLOAD_MAX_BYTES:
            raise InvalidRequest(f"the file is larger than {MAX_READINGS} readings: split it")
        now = utcnow()
        readings = parse_csv_upload(
            data, device_id=forms.optional("device_id", max_length=64), now=now
        )
        with unit_of_work() as uow:
            result = condition.import_readings(
                uow.session,
                actor=actor,
                shipment=code[:32],
                readings=readings,
                original=data,
                filename=upload.filename[:255],
                media_type="text/csv",
                now=now,
            )
            uow.commit()
            if result.duplicate:
                flash(f"{upload.filename} was imported before: nothing changed.")
            else:
                flash(
                    f"{result.file.readings} readings imported ({result.file.new_readings} new); "
                    "the file's SHA-256 is sealed in the chain."
                )
            for alarm in result.alarms:
                flash(f"ALARM: {alarm.description}")
            if result.held:
                flash(f"ON HOLD until QA disposes of them: {', '.join(result.held)}")
    except DomainError as error:
        if error.code in ("not_found", "forbidden"):
            raise
        with unit_of_work() as uow:
            found = condition.condition_of(uow.session, actor, code[:32])
            view = condition_view(found, Directory(uow.session))
        page = render_template(
            "shipment_condition.html",
            actor=actor,
            view=view,
            may_upload=True,
            refused=error.detail,
            errors=error.extra.get("errors", []),
        )
        return page, 422
    return None


def condition_view(found: condition.Condition, directory: Directory) -> dict[str, Any]:
    shipment = found.shipment
    limits = [rule.limit_c for rule in found.rules.values()]
    limit = charts.temperature_limit(limits)
    alarms = [(a.started_at, a.ended_at) for a in found.alarms if a.kind.value != "gap"]
    code = shipment_code(shipment.id or 0)
    return {
        "code": code,
        "shipment": shipment,
        "origin": directory.code(shipment.origin_site_id),
        "destination": directory.code(shipment.destination_site_id),
        "shipper": found.shipper,
        "window": found.window,
        "rules": list(found.rules.values()),
        "files": [(row, directory.email(row.uploaded_by_id)) for row in found.files],
        "summaries": found.summaries,
        "alarms": found.alarms,
        "chart": charts.temperature_chart(
            found.readings,
            limit_c=limit,
            alarms=alarms,
            title=f"{code}: temperature",
            window=found.window,
            zone_name=clock.viewer_zone(),
        )
        if found.readings
        else None,
        "limit": limit,
    }


@pages.route("/shipments/<code>/readings/<sha256>")
@login_required
def logger_file(code: str, sha256: str) -> Response:
    with unit_of_work() as uow:
        row = condition.logger_file(uow.session, session_actor(), code[:32], sha256[:64])
        content, media_type, filename = row.content, row.media_type, row.filename
    response = Response(content, mimetype=media_type)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)
    response.headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    return response


# QA's holds


@pages.route("/holds")
@login_required
def holds() -> str:
    actor = session_actor()
    with unit_of_work() as uow:
        queue = condition.hold_queue(uow.session, actor)
    return render_template("holds.html", actor=actor, queue=queue)


@pages.route("/holds/<din>", methods=["POST"])
@login_required
def dispose(din: str) -> Any:
    actor = session_actor()
    with unit_of_work() as uow:
        try:
            decision = forms.text("decision", max_length=8, required=True)
            condition.dispose(
                uow.session,
                actor=actor,
                din=din[:64],
                decision=decision,
                reason=forms.text("reason", max_length=1000, required=True, label="the reason"),
                email=forms.text("email", max_length=254, required=True, label="e-mail"),
                password=forms.password("password"),
                now=utcnow(),
                policy=login_policy(),
            )
            uow.commit()
            done = "released" if decision == "release" else "rejected"
            flash(f"Bag {din[:64]} {done}: signed and on record.")
        except SignatureRefused as error:
            uow.commit()  # a wrong password counts towards the lock-out
            flash(f"Not signed: {error.detail}")
        except DomainError as error:
            flash(f"Not disposed of: {error.detail}")
    return redirect(url_for("pages.holds"), 303)
