"""An order's life from the pages: enrol it, register collections, print and reprint labels
(on record), open its batch, and "notify me"."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

import labels
from services.domain.custody import SiteKind
from services.domain.errors import DomainError, InvalidRequest
from services.domain.identifiers import batch_code
from services.operations import batches, deadlines, subscriptions
from services.operations import labels as label_ops
from services.operations import orders as order_ops
from services.operations.directory import Directory
from services.operations.queries import coi_value, unit_by_din
from services.printing import PrinterError, send_zpl
from services.web import forms
from services.web.pages import pages
from services.web.security import session_actor
from services.web.state import max_clock_skew, state, unit_of_work, utcnow


def _choices() -> dict[str, Any]:
    with unit_of_work() as uow:
        sites = Directory(uow.session).sites()
        products = deadlines.products(uow.session)
    return {
        "products": products,
        "sites": {kind: [s for s in sites if s.kind is kind] for kind in SiteKind},
    }


@pages.route("/orders/new", methods=["GET", "POST"])
@login_required
def new_order() -> Any:
    actor = session_actor()
    if request.method == "GET":
        return render_template("new_order.html", actor=actor, form={}, **_choices())
    try:
        patient_ref = forms.text(
            "patient_ref", max_length=64, required=True, label="the patient reference"
        )
        if request.form.get("same_patient") != "yes":
            with unit_of_work() as uow:
                before = order_ops.enrolled_before(uow.session, actor, patient_ref)
            if before:
                # a warning, not a refusal: the person reads it and enrols anyway if it is
                # a new therapy event of the same patient
                page = render_template(
                    "new_order.html",
                    actor=actor,
                    form=request.form,
                    enrolled_before=before,
                    **_choices(),
                )
                return page, 200
        with unit_of_work() as uow:
            order = order_ops.enroll_order(
                uow.session,
                actor=actor,
                patient_ref=patient_ref,
                patient_birth_date=_required_date("patient_birth_date", "the date of birth"),
                patient_name=forms.optional("patient_name", max_length=200, label="the name"),
                product=forms.text("product", max_length=64, required=True, label="the product"),
                collection_site=forms.text(
                    "collection_site", max_length=32, required=True, label="the collection site"
                ),
                manufacturing_site=forms.text(
                    "manufacturing_site",
                    max_length=32,
                    required=True,
                    label="the manufacturing site",
                ),
                treatment_site=forms.text(
                    "treatment_site", max_length=32, required=True, label="the treatment site"
                ),
                now=utcnow(),
            )
            uow.commit()
            coi = order.coi
    except DomainError as error:
        flash(f"Not enrolled: {error.detail}")
        page = render_template("new_order.html", actor=actor, form=request.form, **_choices())
        return page, 422
    return redirect(url_for("pages.order_timeline", coi=coi, enrolled=1), 303)


def _required_date(name: str, label: str) -> Any:
    born = forms.date(name, label=label)
    if born is None:
        raise InvalidRequest(f"{label} is required: the bedside checks it with the reference")
    return born


@pages.route("/orders/<coi>/collections", methods=["POST"])
@login_required
def register_collection(coi: str) -> Any:
    actor = session_actor()
    try:
        volume = forms.optional("volume_ml", max_length=8, label="volume")
        try:
            volume_ml = float(volume) if volume else None
        except ValueError:
            raise InvalidRequest("the volume is a number of millilitres") from None
        if volume_ml is not None and not 0 < volume_ml <= 5000:
            raise InvalidRequest("the volume is between 0 and 5000 ml")
        with unit_of_work() as uow:
            unit, _event = order_ops.register_collection(
                uow.session,
                actor=actor,
                coi=coi_value(coi),
                collected_at=forms.local_time("collected_at"),
                volume_ml=volume_ml,
                now=utcnow(),
                max_clock_skew=max_clock_skew(),
            )
            uow.commit()
            din = unit.din
    except DomainError as error:
        flash(f"Not registered: {error.detail}")
        return redirect(url_for("pages.order_timeline", coi=coi), 303)
    flash(f"Bag {din} registered: print its label now.")
    return redirect(url_for("pages.order_timeline", coi=coi, _anchor=f"bag-{din}"), 303)


@pages.route("/units/<din>/print", methods=["POST"])
@login_required
def print_label(din: str) -> Any:
    """Print a bag's label (first print, or a reprint with its reason), on the order's record:
    to the browser's print dialog (PDF) or to the site's network label printer (ZPL)."""
    actor = session_actor()
    printer = state().settings.label_printer_url
    coi = ""
    try:
        target = forms.text("target", max_length=16, required=True)
        reason = forms.optional("reason", max_length=500)
        with unit_of_work() as uow:
            unit, order = unit_by_din(uow.session, actor, din)
            coi = order.coi
            row = label_ops.record_print(
                uow.session,
                actor=actor,
                unit=unit,
                order=order,
                target=target,
                reason=reason,
                now=utcnow(),
            )
            spec = label_ops.label_spec(uow.session, unit, order)
            if target == "printer":
                if not printer:
                    raise InvalidRequest("no label printer is set up (LABEL_PRINTER_URL)")
                send_zpl(printer, labels.render(spec, "zpl", dpi=203))
            uow.commit()
            copy, print_id = row.copy_number, row.id
    except (DomainError, PrinterError) as error:
        flash(f"Not printed: {getattr(error, 'detail', str(error))}")
        if not coi:
            return redirect(url_for("pages.home"), 303)
        return redirect(url_for("pages.order_timeline", coi=coi), 303)
    if target == "printer":
        flash(f"Label of {din} sent to the label printer (copy {copy}).")
        return redirect(url_for("pages.order_timeline", coi=coi, _anchor=f"bag-{din}"), 303)
    pdf = url_for("pages.unit_label", din=din, fmt="pdf", print=print_id)
    return render_template(
        "print.html", actor=actor, pdf=pdf, what=f"bag {din}", copy=copy, coi=coi
    )


@pages.route("/orders/<coi>/batch", methods=["POST"])
@login_required
def open_batch(coi: str) -> Any:
    actor = session_actor()
    try:
        with unit_of_work() as uow:
            batch = batches.open_batch(
                uow.session,
                actor=actor,
                coi=coi_value(coi),
                units=None,
                now=utcnow(),
                max_clock_skew=max_clock_skew(),
            )
            uow.commit()
            flash(f"Batch opened from the received bags: {batch_code(batch.id or 0)}.")
    except DomainError as error:
        flash(f"No batch opened: {error.detail}")
    return redirect(url_for("pages.order_timeline", coi=coi), 303)


@pages.route("/orders/<coi>/notify", methods=["POST"])
@login_required
def notify_me(coi: str) -> Any:
    actor = session_actor()
    try:
        with unit_of_work() as uow:
            subscriptions.notify_me(uow.session, actor=actor, coi=coi_value(coi))
            uow.commit()
        flash(f"You will hear of this order's every step by e-mail, at {actor.email}.")
    except DomainError as error:
        flash(f"Not subscribed: {error.detail}")
    return redirect(url_for("pages.order_timeline", coi=coi), 303)
