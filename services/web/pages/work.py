"""The pages people work in: scan station, order timeline, batch board, control tower.

They call the same operations as the API, as the signed-in user; forms carry CSRF tokens."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required
from sqlmodel import col, select

import labels
from services.db.models import Site, Unit
from services.domain.batches import STEPS, BatchState, next_step
from services.domain.custody import Action, Role, UnitState
from services.domain.errors import DomainError
from services.domain.identifiers import batch_number
from services.domain.signatures import MEANINGS
from services.operations import access, audit, batches, signing, turnaround
from services.operations.labels import label_spec
from services.operations.queries import coi_value, unit_by_din
from services.operations.scans import ScanInput
from services.web.api.present import batch_public, order_public, timeline_events
from services.web.pages import pages
from services.web.scanning import submit_scan
from services.web.security import session_actor
from services.web.state import login_policy, unit_of_work, utcnow

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
        return list(uow.session.exec(select(Site).order_by(col(Site.code))).all())


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
    try:
        scan = ScanInput(
            barcode=form.get("barcode", "").strip(),
            action=Action(form.get("action", "")),
            site=form.get("site", actor.site.code).strip(),
            event_id=form.get("event_id") or str(uuid.uuid4()),
            occurred_at=_time(form.get("occurred_at")),
            shipment=form.get("shipment") or None,
            patient_ref=form.get("patient_ref") or None,
        )
        if not scan.barcode:
            raise ValueError("nothing was scanned")
    except ValueError as error:
        result = {
            "ok": False,
            "code": "invalid_request",
            "headline": "NOT RECORDED",
            "detail": str(error),
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


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("occurred_at needs its offset")
    return value


# the order timeline


@pages.route("/orders/<coi>")
@login_required
def order_timeline(coi: str) -> str:
    actor = session_actor()
    with unit_of_work() as uow:
        order = access.order_by_coi(uow.session, actor, coi_value(coi))
        public = order_public(uow.session, actor, order)
        events = timeline_events(uow.session, order)
        report = audit.verify(uow.session, order_id=order.id)
    return render_template(
        "order.html",
        actor=actor,
        order=public,
        events=events,
        verified=report.ok,
        finding=str(report.finding) if report.finding else None,
        now=utcnow(),
        may_correct=actor.role in signing.CORRECTING_ROLES,
        meanings=MEANINGS,
    )


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
    status = request.form.get("status", "")
    reason = request.form.get("reason") or None
    try:
        with unit_of_work() as uow:
            batches.change_status(
                uow.session,
                actor=actor,
                number=batch_number(batch),
                status=BatchState(status),
                reason=reason,
                now=utcnow(),
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
    now = utcnow()
    with unit_of_work() as uow:
        session = uow.session
        visible = access.visible_orders(session, actor, limit=500)
        products = sorted({order.product for order in visible})
        orders = visible
        if product_filter:
            orders = [o for o in orders if o.product == product_filter]
        sites = {s.id: s.code for s in session.exec(select(Site)).all()}
        if site_filter:
            orders = [
                o
                for o in orders
                if site_filter
                in (
                    sites[o.collection_site_id],
                    sites[o.manufacturing_site_id],
                    sites[o.treatment_site_id],
                )
            ]
        ids = [o.id for o in orders]
        units = list(session.exec(select(Unit).where(col(Unit.order_id).in_(ids)))) if ids else []
        stages = Counter(
            unit.state
            for unit in units
            if unit.state not in (UnitState.INFUSED, UnitState.DESTROYED)
        )
        delays = [d for d in turnaround.delays(session, actor=actor, now=now) if d.order_id in ids]
        delayed = []
        by_order = {o.id: o for o in orders}
        dins = {u.id: u.din for u in units}
        for row in sorted(delays, key=lambda d: (d.late_flagged_at is None, d.due_at)):
            delayed.append(
                {
                    "coi": by_order[row.order_id].coi,
                    "din": dins.get(row.unit_id, ""),
                    "leg": row.leg.value.replace("_", " "),
                    "site": sites[row.site_id],
                    "state": "LATE" if row.due_at <= now else "AT RISK",
                    "due": row.due_at,
                    "overdue_h": max(0.0, (now - row.due_at).total_seconds() / 3600),
                }
            )
        weeks = []
        for back in range(3, -1, -1):
            until = now - dt.timedelta(days=7 * back)
            since = until - dt.timedelta(days=7)
            summary = turnaround.turnaround(
                session, actor=actor, since=since, until=until, site=site_filter
            )
            weeks.append((since, until, summary))
        legs = turnaround.turnaround(
            session, actor=actor, since=now - dt.timedelta(days=90), until=now, site=site_filter
        )
    scale = max([s.p90_hours for s in legs] + [1.0])
    return render_template(
        "tower.html",
        actor=actor,
        orders=orders,
        stages=sorted(stages.items(), key=lambda kv: list(UnitState).index(kv[0])),
        delayed=delayed,
        legs=legs,
        weeks=weeks,
        scale=scale,
        site_filter=site_filter,
        product_filter=product_filter,
        site_codes=sorted(sites.values()),
        products=products,
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
                email=request.form.get("email", ""),
                password=request.form.get("password", ""),
                meaning=request.form.get("meaning", ""),
                now=utcnow(),
                policy=login_policy(),
            )
            flash(f"Event {sequence} signed.")
        except DomainError as error:
            flash(f"Not signed: {error.detail}")
        uow.commit()  # a wrong password counts towards the lock-out
    return redirect(url_for("pages.order_timeline", coi=coi, _anchor=f"event-{sequence}")), 303


@pages.route("/orders/<coi>/corrections", methods=["POST"])
@login_required
def correct_event(coi: str) -> Any:
    """Record a correction of an event, with its reason (QA or admin)."""
    actor = session_actor()
    try:
        sequence = int(request.form.get("sequence", ""))
        with unit_of_work() as uow:
            signing.correct_event(
                uow.session,
                actor=actor,
                coi=coi_value(coi),
                sequence=sequence,
                reason=request.form.get("reason", ""),
                now=utcnow(),
            )
            uow.commit()
        flash(f"Correction of event {sequence} recorded.")
    except DomainError as error:
        flash(f"Not recorded: {error.detail}")
    except ValueError:
        flash("Not recorded: name the event by its number")
    return redirect(url_for("pages.order_timeline", coi=coi)), 303
