"""Shipments from the pages: open one and scan its bags into the manifest, print its label; a
courier's shipments, each one scan away; a receipt, bag by bag, closed by reconciling it."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

import labels
from services.domain.custody import Action, SiteKind, UnitState
from services.domain.errors import DomainError, InvalidRequest
from services.domain.identifiers import shipment_code
from services.operations import labels as label_ops
from services.operations import manifests, shippers, signing
from services.operations import shipments as shipment_ops
from services.operations.directory import Directory
from services.operations.scans import ScanInput
from services.printing import PrinterError, send_zpl
from services.web import forms
from services.web.pages import pages
from services.web.pages.work import frameable
from services.web.scanning import NO_CREDENTIALS, Credentials, submit_scan
from services.web.security import session_actor
from services.web.state import state, unit_of_work, utcnow


def _result(ok: bool, headline: str, detail: str, code: str = "") -> dict[str, Any]:
    return {"ok": ok, "headline": headline, "detail": detail, "code": code}


def _scan(scan: ScanInput, credentials: Credentials = NO_CREDENTIALS) -> dict[str, Any]:
    """Record one scan, as the scan station does; the answer in words for the page."""
    try:
        outcome, recorded = submit_scan(session_actor(), scan, credentials)
    except DomainError as error:
        return _result(False, "REFUSED", error.detail, error.code)
    moved = ", ".join(
        f"bag {e.din} now {e.to_state.value.replace('_', ' ')}"
        for e in recorded.events
        if e.din and e.to_state
    )
    headline = "ALREADY RECORDED" if outcome.replayed else "ACCEPTED"
    return _result(True, headline, moved or scan.action.value.replace("_", " "))


@pages.route("/shipments", methods=["GET", "POST"])
@login_required
def shipments() -> Any:
    """A courier's shipments (to pick up, in transit), each one scan away; a site's incoming
    and outgoing ones."""
    actor = session_actor()
    result = None
    if request.method == "POST":
        try:
            code = forms.text(
                "barcode", max_length=64, required=True, label="the shipment's barcode"
            )
            with unit_of_work() as uow:
                action, site = manifests.courier_step(uow.session, actor, code)
            result = _scan(
                ScanInput(barcode=code, action=action, site=site, event_id=forms.event_id())
            )
        except DomainError as error:
            result = _result(False, "REFUSED", error.detail, error.code)
    with unit_of_work() as uow:
        board = manifests.board(uow.session, actor)
    page = render_template("shipments.html", actor=actor, board=board, result=result)
    return page, (200 if result is None or result["ok"] else 422)


@pages.route("/shipments/new", methods=["GET", "POST"])
@login_required
def new_shipment() -> Any:
    actor = session_actor()
    with unit_of_work() as uow:
        sites = Directory(uow.session).sites()
    choices = {
        "destinations": [
            s
            for s in sites
            if s.kind in (SiteKind.MANUFACTURING, SiteKind.TREATMENT) and s.id != actor.site_id
        ],
        "couriers": [s for s in sites if s.kind is SiteKind.COURIER],
    }
    if request.method == "GET":
        return render_template("shipment_new.html", actor=actor, form={}, **choices)
    try:
        with unit_of_work() as uow:
            shipment = shipment_ops.create_shipment(
                uow.session,
                actor=actor,
                origin=actor.site.code,
                destination=forms.text("destination", max_length=32, required=True),
                shipper_id=forms.text(
                    "shipper_id", max_length=64, required=True, label="the shipper's serial"
                ),
                units=[],
                carrier=forms.optional("carrier", max_length=32),
                now=utcnow(),
                require_registered_shipper=state().settings.require_registered_shippers,
            )
            uow.commit()
            code = shipment_code(shipment.id or 0)
            warnings = shippers.shipment_warnings(uow.session, shipment)
    except DomainError as error:
        flash(f"Not opened: {error.detail}")
        return render_template("shipment_new.html", actor=actor, form=request.form, **choices), 422
    flash(f"Shipment {code} is open: scan each bag into it as it goes into the shipper.")
    for warning in warnings:
        flash(f"Warning: {warning}.")
    return redirect(url_for("pages.pack_shipment", code=code), 303)


@pages.route("/shipments/<code>/pack", methods=["GET", "POST"])
@login_required
def pack_shipment(code: str) -> Any:
    """Scan bags into the manifest one by one: each is checked as it is scanned (a bag of
    another order than the manifest's, one not ready to pack, one for another destination is
    refused there and then, and kept on record)."""
    actor = session_actor()
    result = None
    if request.method == "POST":
        result = _pack_one(code)
    with unit_of_work() as uow:
        line = manifests.shipment_line(uow.session, actor, code)
        manifest = manifests.manifest(uow.session, actor, code)
    page = render_template(
        "shipment_pack.html", actor=actor, shipment=line, manifest=manifest, result=result
    )
    return page, (200 if result is None or result["ok"] else 422)


def _pack_one(code: str) -> dict[str, Any]:
    actor = session_actor()
    try:
        barcode = forms.text("barcode", max_length=256, required=True, label="the scan")
        with unit_of_work() as uow:
            manifest = manifests.manifest(uow.session, actor, code)
            expected_coi = manifest[0].coi if manifest else None
            unit = manifests.bag_scanned(uow.session, actor, barcode)
        if (
            unit is not None
            and unit.state == UnitState.PACKED.value
            and expected_coi in (None, unit.coi)
        ):
            with unit_of_work() as uow:
                shipment_ops.add_packed(
                    uow.session, actor=actor, code=code, din=unit.din, now=utcnow()
                )
                uow.commit()
            return _result(True, "ACCEPTED", f"bag {unit.din} added to the manifest")
        return _scan(
            ScanInput(
                barcode=barcode,
                action=Action.PACK,
                site=actor.site.code,
                event_id=forms.event_id(),
                shipment=code,
                coi=expected_coi,
            )
        )
    except DomainError as error:
        return _result(False, "REFUSED", error.detail, error.code)


@pages.route("/shipments/<code>/receive", methods=["GET", "POST"])
@login_required
def receive_shipment(code: str) -> Any:
    """A receipt bag by bag: expected against scanned as it goes, an unexpected bag refused,
    the missing ones listed; closing the receipt reconciles it."""
    actor = session_actor()
    result = None
    if request.method == "POST":
        try:
            barcode = forms.text("barcode", max_length=256, required=True, label="the scan")
            credentials = Credentials(
                password=forms.password("password") or None,
                witness_email=forms.optional("witness_email", max_length=254, label="witness"),
                witness_password=forms.password("witness_password") or None,
            )
            result = _scan(
                ScanInput(
                    barcode=barcode,
                    action=Action.RECEIVE,
                    site=actor.site.code,
                    event_id=forms.event_id(),
                    shipment=code,
                ),
                credentials,
            )
        except DomainError as error:
            result = _result(False, "REFUSED", error.detail, error.code)
    with unit_of_work() as uow:
        receipt = manifests.receipt(uow.session, actor, code)
        signed = signing.step_requirement(uow.session, actor.site_id, Action.RECEIVE.value)
    page = render_template(
        "shipment_receive.html", actor=actor, receipt=receipt, result=result, signed=signed
    )
    return page, (200 if result is None or result["ok"] else 422)


@pages.route("/shipments/<code>/cancel", methods=["POST"])
@login_required
def cancel_shipment(code: str) -> Any:
    """A shipment opened by mistake, cancelled before pickup with a reason: its bags go back
    to where they were before packing, its shipper is free again."""
    try:
        reason = forms.text("reason", max_length=500, required=True, label="the reason")
        with unit_of_work() as uow:
            shipment = shipment_ops.cancel_shipment(
                uow.session, actor=session_actor(), code=code, reason=reason, now=utcnow()
            )
            uow.commit()
        flash(f"Shipment {shipment_code(shipment.id or 0)} cancelled: its bags are unpacked.")
        return redirect(url_for("pages.shipments"), 303)
    except DomainError as error:
        flash(f"Not cancelled: {error.detail}")
        return redirect(url_for("pages.pack_shipment", code=code), 303)


@pages.route("/shipments/<code>/reconcile", methods=["POST"])
@login_required
def reconcile_shipment(code: str) -> Any:
    """Close a receipt. With bags still missing it asks first: the person confirms the very
    bags the page listed (a bag scanned in meanwhile, or one more missing, asks again)."""
    actor = session_actor()
    try:
        with unit_of_work() as uow:
            missing_now = [b.din for b in manifests.receipt(uow.session, actor, code).missing]
        confirmed = forms.text("missing", max_length=4000).split(",")
        if missing_now and (
            request.form.get("confirm_missing") != "yes"
            or sorted(d for d in confirmed if d) != sorted(missing_now)
        ):
            flash(
                f"Not closed yet: {len(missing_now)} bag(s) not scanned in "
                f"({', '.join(missing_now)}). Look in the shipper again; to close, tick the box "
                "that reports them missing."
            )
            return redirect(url_for("pages.receive_shipment", code=code), 303)
        with unit_of_work() as uow:
            shipment = shipment_ops.reconcile(uow.session, actor=actor, code=code, now=utcnow())
            uow.commit()
            missing = shipment.missing or []
        if missing:
            flash(f"Receipt closed: {len(missing)} bag(s) missing, reported: {', '.join(missing)}.")
        else:
            flash("Receipt closed: every bag of the manifest was received.")
    except DomainError as error:
        flash(f"Not closed: {error.detail}")
    return redirect(url_for("pages.receive_shipment", code=code), 303)


@pages.route("/shipments/<code>/label.<fmt>")
@login_required
def shipment_label(code: str, fmt: str) -> Response:
    if fmt not in ("pdf", "png", "zpl"):
        abort(404)
    with unit_of_work() as uow:
        shipment = shipment_ops.visible_shipment(uow.session, session_actor(), code)
        spec = label_ops.shipment_label_spec(uow.session, shipment)
    content = labels.render(spec, fmt)  # type: ignore[arg-type]
    response = Response(content, mimetype=labels.MEDIA_TYPES[fmt])  # type: ignore[index]
    response.headers["Content-Disposition"] = f'inline; filename="label-{spec.code}.{fmt}"'
    return frameable(response)


@pages.route("/shipments/<code>/print", methods=["POST"])
@login_required
def print_shipment_label(code: str) -> Any:
    actor = session_actor()
    try:
        target = forms.text("target", max_length=16, required=True)
        reason = forms.optional("reason", max_length=500)
        with unit_of_work() as uow:
            shipment = shipment_ops.visible_shipment(uow.session, actor, code)
            manifest = manifests.manifest(uow.session, actor, code)
            if not manifest:
                raise InvalidRequest("the shipment holds no bag yet: scan its bags in first")
            row = label_ops.record_shipment_print(
                uow.session,
                actor=actor,
                shipment=shipment,
                order_id=manifest[0].order_id,
                target=target,
                reason=reason,
                now=utcnow(),
            )
            if target == "printer":
                printer = state().settings.label_printer_url
                if not printer:
                    raise InvalidRequest("no label printer is set up (LABEL_PRINTER_URL)")
                spec = label_ops.shipment_label_spec(uow.session, shipment)
                send_zpl(printer, labels.render(spec, "zpl", dpi=203))
            uow.commit()
            copy = row.copy_number
    except (DomainError, PrinterError) as error:
        flash(f"Not printed: {getattr(error, 'detail', str(error))}")
        return redirect(url_for("pages.pack_shipment", code=code), 303)
    if target == "printer":
        flash(f"Label of {code} sent to the label printer (copy {copy}).")
        return redirect(url_for("pages.pack_shipment", code=code), 303)
    pdf = url_for("pages.shipment_label", code=code, fmt="pdf")
    return render_template(
        "print.html", actor=actor, pdf=pdf, what=f"shipment {code}", copy=copy, coi=None
    )
