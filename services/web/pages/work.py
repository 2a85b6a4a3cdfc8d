"""The pages people work in: scan station, order timeline, batch board, control tower.

They call the same operations as the API, as the signed-in user; forms carry CSRF tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required

import labels

if TYPE_CHECKING:
    from services.db.models import Site
from services.domain.batches import STEPS, BatchState, next_step
from services.domain.custody import Action, Role, UnitState
from services.domain.errors import DomainError, SignatureRefused
from services.domain.identifiers import batch_number
from services.domain.signatures import MEANINGS, correction_meaning
from services.operations import access, audit, batches, condition, signing, tower
from services.operations import labels as label_ops
from services.operations.directory import Directory
from services.operations.labels import label_spec
from services.operations.queries import coi_value, unit_by_din
from services.operations.scans import ScanInput
from services.web import charts, forms
from services.web.api.present import batch_public, order_public, timeline_window
from services.web.documents import evidence_response, report_response
from services.web.pages import pages
from services.web.pages.condition import condition_view
from services.web.scanning import submit_scan
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
    with unit_of_work() as uow:
        return Directory(uow.session).sites()


# the scan station


@pages.route("/scan", methods=["GET", "POST"])
@login_required
def scan_station() -> Any:
    actor = session_actor()
    actions = ROLE_ACTIONS[actor.role]
    if request.method == "GET":
        return render_template(
            "scan.html",
            actor=actor,
            actions=actions,
            action=request.args.get("action", actions[0].value if actions else ""),
            site=request.args.get("site", actor.site.code),
            sites=_sites(),
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
            "headline": "NOT SENT",
            "detail": "this scan was made by another user; it is sent when they sign in here",
        }
        return (jsonify(result), 409) if wants_json else _station(actor, actions, form, result)
    try:
        scan = ScanInput(
            barcode=forms.text("barcode", max_length=256, required=True, label="the scan"),
            action=Action(forms.text("action", max_length=32, required=True)),
            site=forms.text("site", max_length=32) or actor.site.code,
            event_id=forms.event_id(),
            occurred_at=forms.timestamp("occurred_at"),
            shipment=forms.optional("shipment", max_length=32),
            patient_ref=forms.optional("patient_ref", max_length=64, label="patient reference"),
        )
    except (ValueError, DomainError) as error:
        result = {
            "ok": False,
            "code": "invalid_request",
            "headline": "NOT RECORDED",
            "detail": getattr(error, "detail", str(error)),
        }
        return (jsonify(result), 422) if wants_json else _station(actor, actions, form, result)
    try:
        outcome, recorded = submit_scan(actor, scan)
    except DomainError as error:
        result = {
            "ok": False,
            "code": error.code,
            "headline": "REFUSED",
            "detail": error.detail,
            "barcode": scan.barcode,
            "action": scan.action.value,
            "event_id": scan.event_id,
        }
        status = 409 if error.code in ("illegal_transition", "conflict") else 422
        return (jsonify(result), status) if wants_json else _station(actor, actions, form, result)
    moved = ", ".join(
        f"bag {e.din} now {e.to_state.value.replace('_', ' ')}"
        for e in recorded.events
        if e.din and e.to_state
    )
    coi = recorded.coi or recorded.events[0].coi
    result = {
        "ok": True,
        "code": "replayed" if outcome.replayed else "recorded",
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
    return _station(actor, actions, form, result)


def _station(
    actor: Any, actions: list[Action], form: Any, result: dict[str, Any]
) -> tuple[str, int]:
    page = render_template(
        "scan.html",
        actor=actor,
        actions=actions,
        action=form.get("action", ""),
        site=form.get("site", actor.site.code),
        sites=_sites(),
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
    if fmt not in ("pdf", "png", "zpl"):
        abort(404)
    with unit_of_work() as uow:
        unit, order = unit_by_din(uow.session, session_actor(), din)
        spec = label_spec(uow.session, unit, order)
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
    actor = session_actor()
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
        return redirect(url_for("pages.batch_board")), 303
    return redirect(url_for("pages.batch_board")), 303


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
    with unit_of_work() as uow:
        try:
            signing.sign(
                uow.session,
                actor=actor,
                coi=coi_value(coi),
                sequence=sequence,
                email=forms.text("email", max_length=254, required=True, label="e-mail"),
                password=forms.password("password"),
                meaning=forms.text("meaning", max_length=16, required=True),
                now=utcnow(),
                policy=login_policy(),
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
                )
            except SignatureRefused:
                uow.commit()  # a wrong password counts for this client
                raise
            uow.commit()
        flash(f"Correction of event {sequence} recorded and signed.")
    except DomainError as error:
        flash(f"Not recorded: {error.detail}")
    return redirect(url_for("pages.order_timeline", coi=coi)), 303
