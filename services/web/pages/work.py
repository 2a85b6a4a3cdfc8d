"""The pages people work in: scan station, order timeline, batch board, control tower.

They call the same operations as the API, as the signed-in user; forms carry CSRF tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required

import labels

if TYPE_CHECKING:
    from services.db.models import Site
from services.domain.batches import FILLING, STEPS, BatchState, next_step
from services.domain.custody import Action, Role, UnitState
from services.domain.errors import DomainError, InvalidRequest, SignatureRefused
from services.domain.identifiers import batch_code, batch_number
from services.domain.signatures import MEANINGS, correction_meaning
from services.domain.triage import Severity, refusal_severity
from services.operations import (
    access,
    audit,
    batches,
    condition,
    family_status,
    signing,
    station,
    tower,
)
from services.operations import labels as label_ops
from services.operations.directory import Directory
from services.operations.labels import label_spec
from services.operations.queries import coi_value, unit_by_din
from services.operations.scans import ScanInput
from services.web import charts, forms, shown_once
from services.web.api.present import batch_public, order_public, timeline_window
from services.web.documents import evidence_response, report_response
from services.web.errors import STATUS_BY_CODE
from services.web.pages import pages, sso
from services.web.pages.condition import condition_view
from services.web.scanning import Credentials, signers_for, submit_scan
from services.web.security import session_actor
from services.web.state import login_policy, max_clock_skew, state, unit_of_work, utcnow

# the actions each role scans, in the order of the journey
ROLE_ACTIONS: dict[Role, list[Action]] = {
    Role.APHERESIS_STAFF: [
        Action.VERIFY_LABEL,
        Action.CRYOPRESERVE,
        Action.PACK,
        Action.QUARANTINE,
    ],
    Role.COURIER: [Action.PICKUP, Action.DELIVER, Action.REPORT_LOST],
    Role.MANUFACTURING_OPERATOR: [
        Action.RECEIVE,
        Action.START_MANUFACTURING,
        Action.PACK,
        Action.QUARANTINE,
        Action.REJECT,
    ],
    Role.CARE_TEAM: [
        Action.RECEIVE,
        Action.STORE,
        Action.THAW,
        Action.INFUSE,
        Action.QUARANTINE,
        Action.DESTROY,
    ],
    Role.QA: [Action.QUARANTINE, Action.REJECT, Action.DESTROY],
    Role.ADMIN: [],
}


def _sites() -> list[Site]:
    """Where the signed-in user scans: their own site (a courier also at its shipments'
    origins and destinations)."""
    with unit_of_work() as uow:
        return station.scan_sites(uow.session, session_actor())


def _signed_steps(sites: list[Site]) -> dict[str, dict[str, bool]]:
    """Each of those sites' signed steps (step -> witness too), for the scan station to ask
    for the signature with the scan, before the act."""
    with unit_of_work() as uow:
        return {site.code: signing.critical_steps(uow.session, site) for site in sites}


def _station_page(actor: Any, *, action: str, site: str, result: Any, barcode: str = "") -> str:
    sites = _sites()
    return render_template(
        "scan.html",
        actor=actor,
        actions=ROLE_ACTIONS[actor.role],
        action=action,
        site=site if site in {s.code for s in sites} else actor.site.code,
        sites=sites,
        signed=_signed_steps(sites),
        result=result,
        barcode=barcode,
    )


# the scan station


@pages.route("/scan", methods=["GET", "POST"])
@login_required
def scan_station() -> Any:
    actor = session_actor()
    actions = ROLE_ACTIONS[actor.role]
    if request.method == "GET":
        chosen = request.args.get("action", "")
        return _station_page(
            actor,
            action=chosen if chosen in {a.value for a in actions} else "",
            site=request.args.get("site", actor.site.code),
            result=None,
        )
    form = request.form
    wants_json = request.accept_mimetypes.best == "application/json"
    scanned_by = form.get("scanned_by")
    if scanned_by and scanned_by != str(actor.user_id):
        # a scan kept offline in this browser by someone else: never sent under this login
        result = {
            "ok": False,
            "code": "scanned_by_another_user",
            "severity": Severity.WARNING.value,
            "headline": "NOT SENT",
            "detail": "this scan was made by another user; it is sent when they sign in here",
        }
        return (jsonify(result), 409) if wants_json else _station(actor, form, result)
    if not form.get("action", "").strip():
        return _suggestion(actor, form, wants_json)
    try:
        scan = ScanInput(
            barcode=forms.text("barcode", max_length=256, required=True, label="the scan"),
            action=_action(),
            site=forms.text("site", max_length=32) or actor.site.code,
            event_id=forms.event_id(),
            occurred_at=forms.timestamp("occurred_at", label="the scanner's time"),
            shipment=forms.optional("shipment", max_length=32),
            coi=forms.optional("coi", max_length=64, label="the chain of identity"),
            patient_ref=forms.optional("patient_ref", max_length=64, label="patient reference"),
            patient_birth_date=forms.date("patient_birth_date", label="the date of birth"),
        )
        credentials = Credentials(
            password=forms.password("password") or None,
            witness_email=forms.optional("witness_email", max_length=254, label="the witness"),
            witness_password=forms.password("witness_password") or None,
        )
    except (ValueError, DomainError) as error:
        result = {
            "ok": False,
            "code": "invalid_request",
            "severity": Severity.INFORMATION.value,
            "headline": "NOT RECORDED",
            "detail": getattr(error, "detail", "this scan could not be read: scan it again"),
        }
        return (jsonify(result), 422) if wants_json else _station(actor, form, result)
    try:
        outcome, recorded = submit_scan(actor, scan, credentials)
    except DomainError as error:
        level = refusal_severity(error.code)
        result = {
            "ok": False,
            "code": error.code,
            "severity": level.value,
            "headline": "STOP: WRONG PATIENT" if error.code == "coi_mismatch" else "REFUSED",
            "detail": error.detail,
            "barcode": scan.barcode,
            "action": scan.action.value,
            "event_id": scan.event_id,
        }
        status = 409 if STATUS_BY_CODE.get(error.code) == 409 else 422
        return (jsonify(result), status) if wants_json else _station(actor, form, result)
    moved = ", ".join(
        f"bag {e.din} now {e.to_state.value.replace('_', ' ')}"
        for e in recorded.events
        if e.din and e.to_state
    )
    coi = recorded.coi or recorded.events[0].coi
    result = {
        "ok": True,
        "code": "replayed" if outcome.replayed else "recorded",
        "severity": Severity.INFORMATION.value,
        "headline": "ACCEPTED" if not outcome.replayed else "ALREADY RECORDED",
        "detail": f"{scan.action.value.replace('_', ' ')}: {moved} (COI {coi})",
        "din": recorded.din,
        "coi": coi,
        "to_state": recorded.to_state.value if recorded.to_state else None,
        "action": scan.action.value,
        "event_id": scan.event_id,
    }
    if wants_json:
        return jsonify(result), 200 if outcome.replayed else 201
    return _station(actor, form, result)


def _action() -> Action:
    value = forms.text("action", max_length=32, required=True, label="the action")
    try:
        return Action(value)
    except ValueError:
        raise InvalidRequest(f"{value!r} is not a scan action: choose one from the list") from None


def _suggestion(actor: Any, form: Any, wants_json: bool) -> Any:
    """No action chosen: what most likely comes next for the bag (or shipment) scanned, for
    the user's role, preselected; nothing is recorded until the person confirms."""
    barcode = form.get("barcode", "").strip()[:256]
    try:
        if not barcode:
            raise InvalidRequest("scan a bag or a shipment first")
        with unit_of_work() as uow:
            found = station.suggest(uow.session, actor, barcode)
    except DomainError as error:
        result = {
            "ok": False,
            "code": error.code,
            "severity": Severity.INFORMATION.value,
            "headline": "NOT FOUND" if error.code == "not_found" else "NOT READ",
            "detail": error.detail,
            "barcode": barcode,
        }
        status = 404 if error.code == "not_found" else 422
        return (jsonify(result), status) if wants_json else _station(actor, form, result)
    if found.action is None:
        result = {
            "ok": False,
            "code": "nothing_next",
            "severity": Severity.INFORMATION.value,
            "headline": "NOTHING TO SCAN HERE",
            "detail": found.detail,
            "barcode": barcode,
            "site": found.site,
        }
        return (jsonify(result), 200) if wants_json else _station(actor, form, result)
    result = {
        "ok": True,
        "code": "suggested",
        "severity": Severity.INFORMATION.value,
        "headline": f"NEXT: {found.action.value.replace('_', ' ').upper()}",
        "detail": f"{found.detail}. Scan it again (or press Enter) to record it, or choose "
        "another action first.",
        "barcode": barcode,
        "action": found.action.value,
        "actions": [a.value for a in found.actions],
        "site": found.site,
    }
    if wants_json:
        return jsonify(result), 200
    page = _station_page(
        actor, action=found.action.value, site=found.site, result=result, barcode=barcode
    )
    return page, 200


@pages.route("/scan/next")
@login_required
def scan_next() -> Any:
    """What the station would preselect for a barcode, as JSON (nothing is recorded)."""
    actor = session_actor()
    barcode = (request.args.get("barcode") or "").strip()[:256]
    try:
        if not barcode:
            raise InvalidRequest("scan a bag or a shipment first")
        with unit_of_work() as uow:
            found = station.suggest(uow.session, actor, barcode)
    except DomainError as error:
        status = 404 if error.code == "not_found" else 422
        return jsonify({"code": error.code, "detail": error.detail}), status
    return jsonify(
        {
            "action": found.action.value if found.action else None,
            "actions": [a.value for a in found.actions],
            "site": found.site,
            "detail": found.detail,
            "din": found.din,
            "state": found.state,
        }
    )


def _station(actor: Any, form: Any, result: dict[str, Any]) -> tuple[str, int]:
    page = _station_page(
        actor,
        action=form.get("action", ""),
        site=form.get("site", actor.site.code),
        result=result,
    )
    return page, 201 if result["ok"] else 422


# the order timeline

TIMELINE_LATEST = 100  # events a long order's page shows unless asked for all of them


@pages.route("/orders/<coi>")
@login_required
def order_timeline(coi: str) -> str:
    actor = session_actor()
    with unit_of_work() as uow:
        order = access.order_by_coi(uow.session, actor, coi_value(coi))
        public = order_public(uow.session, actor, order)
        whole = request.args.get("events") == "all"
        also = [n for n in (request.args.get("event", type=int),) if n is not None]
        timeline = timeline_window(
            uow.session, order, latest=None if whole else TIMELINE_LATEST, also=also
        )
        report = audit.verify(uow.session, order_id=order.id)
        prints = label_ops.prints_of(uow.session, order)
        directory = Directory(uow.session)
        conditions = [
            condition_view(found, directory)
            for found in condition.order_conditions(uow.session, actor, order)
        ]
        at_collection = actor.site_id == order.collection_site_id
        at_manufacturing = actor.site_id == order.manufacturing_site_id
        # the family's status page: shared by the treatment site's care team only
        shares = actor.role is Role.CARE_TEAM and actor.site_id == order.treatment_site_id
        status_links = (
            family_status.links_of(uow.session, actor=actor, coi=order.coi, now=utcnow())
            if shares
            else []
        )
        status_news = (
            family_status.pending_news(uow.session, actor=actor, coi=order.coi, now=utcnow())
            if shares
            else []
        )
    printed = {p.what for p in prints}
    return render_template(
        "order.html",
        actor=actor,
        order=public,
        events=timeline.events,
        events_total=timeline.total,
        events_left_out=timeline.left_out,
        events_first=timeline.first,
        events_all=whole,
        timeline_latest=TIMELINE_LATEST,
        verified=report.ok,
        finding=str(report.finding) if report.finding else None,
        now=utcnow(),
        may_correct=actor.role in signing.CORRECTING_ROLES,
        correction_meaning=correction_meaning(actor.role),
        meanings=MEANINGS,
        prints=prints,
        printed=printed,
        enrolled=request.args.get("enrolled") == "1",
        may_collect=actor.role is Role.APHERESIS_STAFF and at_collection,
        may_print=actor.role in label_ops.PRINTING_ROLES and (at_collection or at_manufacturing),
        may_open_batch=actor.role is Role.MANUFACTURING_OPERATOR
        and at_manufacturing
        and any(u.state is UnitState.RECEIVED for u in public.units),
        printer=bool(state().settings.label_printer_url),
        conditions=conditions,
        shares=shares,
        status_links=status_links,
        status_news=status_news,
        status_made=shown_once.take() if shares else None,
    )


@pages.route("/orders/<coi>/report.pdf")
@login_required
def order_report(coi: str) -> Response:
    """The chain-of-custody report, as the API gives it."""
    return report_response(session_actor(), coi)


@pages.route("/orders/<coi>/evidence.json")
@login_required
def order_evidence(coi: str) -> Response:
    """The evidence bundle, as the API gives it."""
    return evidence_response(session_actor(), coi)


@pages.route("/units/<din>/label.<fmt>")
@login_required
def unit_label(din: str, fmt: str) -> Response:
    """A bag's label file. The print page shows the print it just recorded (``?print=ID``);
    any other fetch of the file is a download, on record like a print."""
    if fmt not in ("pdf", "png", "zpl", "svg"):
        abort(404)
    actor = session_actor()
    shown = request.args.get("print", type=int)
    with unit_of_work() as uow:
        unit, order = unit_by_din(uow.session, actor, din)
        spec = label_spec(uow.session, unit, order)
        now = utcnow()
        if not label_ops.print_shown(uow.session, actor=actor, unit=unit, print_id=shown, now=now):
            label_ops.record_download(
                uow.session, actor=actor, unit=unit, order=order, via="page", now=now
            )
            uow.commit()
    content = labels.render(spec, fmt, size=labels.DEFAULT_SIZE)  # type: ignore[arg-type]
    response = Response(content, mimetype=labels.MEDIA_TYPES[fmt])  # type: ignore[index]
    response.headers["Content-Disposition"] = f'inline; filename="label-{unit.din}.{fmt}"'
    return frameable(response)


def frameable(response: Response) -> Response:
    """A label this site's print page shows in a frame (and hands to the print dialog)."""
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'self'"
    return response


# the batch board


@pages.route("/batches")
@login_required
def batch_board() -> str:
    actor = session_actor()
    with unit_of_work() as uow:
        records = batches.visible_batches(uow.session, actor)
        cards = [batch_public(uow.session, record) for record in records]
    columns = [
        (state, [c for c in cards if c.state is state])
        for state in (*STEPS, BatchState.RELEASED, BatchState.FAILED)
    ]
    return render_template(
        "batches.html",
        actor=actor,
        columns=columns,
        next_step=next_step,
        can_work=actor.role in (Role.MANUFACTURING_OPERATOR, Role.QA),
    )


@pages.route("/batches/<batch>/status", methods=["POST"])
@login_required
def batch_status(batch: str) -> Any:
    """The next step, or a failure with its reason. A QA release is signed on its review page
    (batch_release), not here."""
    actor = session_actor()
    back = request.form.get("back") == "batch"
    try:
        status = BatchState(forms.text("status", max_length=32, required=True))
        reason = forms.optional("reason", max_length=1000)
        with unit_of_work() as uow:
            batches.change_status(
                uow.session,
                actor=actor,
                number=batch_number(batch),
                status=status,
                reason=reason,
                now=utcnow(),
                max_clock_skew=max_clock_skew(),
            )
            uow.commit()
    except (DomainError, ValueError) as error:
        flash(f"Not changed: {getattr(error, 'detail', str(error))}")
    target = url_for("pages.batch_page", batch=batch) if back else url_for("pages.batch_board")
    return redirect(target), 303


@pages.route("/batches/<batch>")
@login_required
def batch_page(batch: str) -> str:
    """One batch: its record, its product bags with their labels, and what may be done next
    (register product bags, the next step, QA's review and release, failing it)."""
    actor = session_actor()
    number = batch_number(batch)
    with unit_of_work() as uow:
        record = batches.batch_record(uow.session, actor, number)
        card = batch_public(uow.session, record)
        at_site = actor.site_id == record.batch.site_id
    return render_template(
        "batch.html",
        actor=actor,
        batch=card,
        next_step=next_step(card.state),
        may_work=at_site and actor.role is Role.MANUFACTURING_OPERATOR,
        may_fail=at_site and actor.role in (Role.MANUFACTURING_OPERATOR, Role.QA),
        may_release=at_site and actor.role is Role.QA,
        filling=card.state in FILLING,
    )


@pages.route("/batches/<batch>/products", methods=["POST"])
@login_required
def batch_products(batch: str) -> Any:
    """Register the product bags filled from the batch: count and volume; the new DINs and
    their labels are shown at once."""
    actor = session_actor()
    try:
        count = forms.number("count", low=1, high=10, label="the number of bags")
        volume = forms.optional("volume_ml", max_length=8, label="the volume")
        try:
            volume_ml = float(volume) if volume else None
        except ValueError:
            raise InvalidRequest("the volume is a number of millilitres") from None
        if volume_ml is not None and not 0 < volume_ml <= 2000:
            raise InvalidRequest("the volume of a product bag is between 0 and 2000 ml")
        with unit_of_work() as uow:
            made = batches.add_products(
                uow.session,
                actor=actor,
                number=batch_number(batch),
                count=count,
                volume_ml=volume_ml,
                now=utcnow(),
                max_clock_skew=max_clock_skew(),
            )
            uow.commit()
            dins = [unit.din for unit in made]
    except DomainError as error:
        flash(f"Not registered: {error.detail}")
        return redirect(url_for("pages.batch_page", batch=batch)), 303
    flash(f"Registered {len(dins)} product bag(s): {', '.join(dins)}. Print their labels below.")
    return redirect(url_for("pages.batch_page", batch=batch, _anchor="products")), 303


@pages.route("/batches/<batch>/labels", methods=["POST"])
@login_required
def batch_labels(batch: str) -> Any:
    """Every product bag's label at once, each print on record (a reprint with its reason),
    to the browser's print dialog: one label per page."""
    actor = session_actor()
    number = batch_number(batch)
    try:
        reason = forms.optional("reason", max_length=500, label="the reason for a reprint")
        with unit_of_work() as uow:
            record = batches.batch_record(uow.session, actor, number)
            products = record.products
            if not products:
                raise InvalidRequest("the batch has no product bags yet: register them first")
            prints = [
                label_ops.record_print(
                    uow.session,
                    actor=actor,
                    unit=unit,
                    order=record.order,
                    target="pdf",
                    reason=reason,
                    now=utcnow(),
                ).id
                for unit in products
            ]
            uow.commit()
    except DomainError as error:
        flash(f"Not printed: {error.detail}")
        return redirect(url_for("pages.batch_page", batch=batch, _anchor="products")), 303
    pdf = url_for(
        "pages.batch_labels_pdf", batch=batch_code(number), prints=",".join(map(str, prints))
    )
    return render_template(
        "print.html",
        actor=actor,
        pdf=pdf,
        what=f"{len(prints)} product bag(s) of batch {batch_code(number)}",
        copy=None,
        coi=None,
        back=url_for("pages.batch_page", batch=batch_code(number)),
    )


@pages.route("/batches/<batch>/labels.pdf")
@login_required
def batch_labels_pdf(batch: str) -> Response:
    """The product bags' labels as one PDF; the prints the page just recorded are shown, any
    other fetch is a download, on record like a print."""
    actor = session_actor()
    number = batch_number(batch)
    shown = {
        int(p)
        for p in (request.args.get("prints") or "").split(",")[:20]
        if p.isdigit() and len(p) < 10
    }
    with unit_of_work() as uow:
        record = batches.batch_record(uow.session, actor, number)
        products = record.products
        if not products:
            abort(404)
        now = utcnow()
        specs = []
        for unit in products:
            if not any(
                label_ops.print_shown(uow.session, actor=actor, unit=unit, print_id=p, now=now)
                for p in shown
            ):
                label_ops.record_download(
                    uow.session, actor=actor, unit=unit, order=record.order, via="page", now=now
                )
            specs.append(label_spec(uow.session, unit, record.order))
        uow.commit()
    content = labels.render_sheet(
        specs, size=labels.DEFAULT_SIZE, title=f"labels {batch_code(number)}"
    )
    response = Response(content, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="labels-{batch_code(number)}.pdf"'
    return frameable(response)


@pages.route("/batches/<batch>/release", methods=["GET", "POST"])
@login_required
def batch_release(batch: str) -> Any:
    """QA's release in one act: the batch record to review, and one e-signature (meaning
    approved) that covers the batch and all its product bags."""
    actor = session_actor()
    number = batch_number(batch)
    error: DomainError | None = None
    if request.method == "POST":
        try:
            credentials = Credentials(
                password=forms.password("password") or None,
                witness_email=forms.optional("witness_email", max_length=254, label="witness"),
                witness_password=forms.password("witness_password") or None,
                tickets=sso.tickets_for(),
            )
            signers = signers_for(actor, actor.site.code, credentials)
            with unit_of_work() as uow:
                batches.change_status(
                    uow.session,
                    actor=actor,
                    number=number,
                    status=BatchState.RELEASED,
                    reason=None,
                    now=utcnow(),
                    max_clock_skew=max_clock_skew(),
                    signers=signers,
                )
                uow.commit()
            flash(f"Batch {batch_code(number)} released: its product bags may be shipped.")
            return redirect(url_for("pages.batch_page", batch=batch_code(number))), 303
        except DomainError as refused:
            error = refused
    with unit_of_work() as uow:
        review = batches.release_review(uow.session, actor, number)
        card = batch_public(uow.session, review.record)
        names = Directory(uow.session)
        holds = [
            (event, names.email(event.actor_id), names.code(event.site_id))
            for event in review.holds
        ]
    status = 200 if error is None else STATUS_BY_CODE.get(error.code, 422)
    page = render_template(
        "batch_release.html",
        actor=actor,
        batch=card,
        review=review,
        holds=holds,
        error=error,
    )
    return page, status


# the control tower


@pages.route("/tower")
@login_required
def control_tower() -> str:
    actor = session_actor()
    site_filter = request.args.get("site") or None
    product_filter = request.args.get("product") or None
    with unit_of_work() as uow:
        view = tower.control_tower(
            uow.session, actor=actor, now=utcnow(), site=site_filter, product=product_filter
        )
    return render_template(
        "tower.html",
        actor=actor,
        view=view,
        charts=charts,
        site_filter=site_filter,
        product_filter=product_filter,
    )


# signing and correcting, from the timeline


@pages.route("/orders/<coi>/events/<int:sequence>/sign", methods=["POST"])
@login_required
def sign_event(coi: str, sequence: int) -> Any:
    """Sign a critical step: e-mail and password again (two components) and a meaning."""
    actor = session_actor()
    tickets = sso.tickets_for()  # a single sign-on user's re-authentication for this one
    with unit_of_work() as uow:
        try:
            signing.sign(
                uow.session,
                actor=actor,
                coi=coi_value(coi),
                sequence=sequence,
                email=""
                if tickets
                else forms.text("email", max_length=254, required=True, label="e-mail"),
                password="" if tickets else forms.password("password"),
                meaning=forms.text("meaning", max_length=16, required=True),
                now=utcnow(),
                policy=login_policy(),
                tickets=tickets,
            )
            flash(f"Event {sequence} signed.")
        except DomainError as error:
            flash(f"Not signed: {error.detail}")
        uow.commit()  # a wrong password counts towards the lock-out
    return redirect(
        url_for("pages.order_timeline", coi=coi, event=sequence, _anchor=f"event-{sequence}")
    ), 303


@pages.route("/orders/<coi>/corrections", methods=["POST"])
@login_required
def correct_event(coi: str) -> Any:
    """Record a correction of an event, with its reason, signed with the author's password
    (QA or admin)."""
    actor = session_actor()
    try:
        sequence = forms.number("sequence", label="the event's number")
        with unit_of_work() as uow:
            try:
                signing.correct_event(
                    uow.session,
                    actor=actor,
                    coi=coi_value(coi),
                    sequence=sequence,
                    reason=forms.text("reason", max_length=1000, required=True),
                    now=utcnow(),
                    password=forms.password("password"),
                    policy=login_policy(),
                    tickets=sso.tickets_for(),
                )
            except SignatureRefused:
                uow.commit()  # a wrong password counts for this client
                raise
            uow.commit()
        flash(f"Correction of event {sequence} recorded and signed.")
    except DomainError as error:
        flash(f"Not recorded: {error.detail}")
    return redirect(url_for("pages.order_timeline", coi=coi)), 303
