"""The bedside: the patient's wristband and the product bag, MATCH or MISMATCH in large type,
the thaw timer, and the infusion confirmed with the nurse's password (and, where the site
requires it, a witness's e-mail and password), recorded with its signatures at once."""

from __future__ import annotations

import uuid
from typing import Any

from flask import render_template, request
from flask_login import login_required

from services.domain.custody import Action
from services.domain.errors import DomainError, SignatureRefused
from services.operations import bedside as bedside_ops
from services.operations import signing
from services.operations.scans import BedsideCheck, ScanInput, check_infusion
from services.web import forms
from services.web.pages import pages
from services.web.scanning import keep_refusal
from services.web.security import session_actor
from services.web.state import login_policy, max_clock_skew, unit_of_work, utcnow


def _witness_required() -> bool | None:
    actor = session_actor()
    with unit_of_work() as uow:
        return signing.step_requirement(uow.session, actor.site_id, "infuse")


def _page(status: int = 200, **context: Any) -> tuple[str, int]:
    values = {
        "actor": session_actor(),
        "patient_ref": "",
        "barcode": "",
        "check": None,
        "refusal": None,
        "infused": None,
        "requirement": _witness_required(),
        **context,
    }
    return render_template("bedside.html", **values), status


@pages.route("/bedside", methods=["GET", "POST"])
@login_required
def bedside() -> Any:
    actor = session_actor()
    if request.method == "GET":
        return _page()
    try:
        patient_ref = forms.text("patient_ref", max_length=64, required=True, label="the patient")
        barcode = forms.text("barcode", max_length=256)
    except DomainError as error:
        return _page(422, refusal=error)
    if not barcode:  # the wristband is scanned; the bag comes next
        return _page(patient_ref=patient_ref)
    try:
        with unit_of_work() as uow:
            check: BedsideCheck = check_infusion(
                uow.session, actor=actor, barcode=barcode, patient_ref=patient_ref, now=utcnow()
            )
    except DomainError as error:
        keep_refusal(actor, _scan(barcode, patient_ref, str(uuid.uuid4())), error)
        return _page(422, patient_ref=patient_ref, barcode=barcode, refusal=error)
    return _page(patient_ref=patient_ref, barcode=barcode, check=check, event_id=str(uuid.uuid4()))


def _scan(barcode: str, patient_ref: str, event_id: str) -> ScanInput:
    return ScanInput(
        barcode=barcode,
        action=Action.INFUSE,
        site=session_actor().site.code,
        event_id=event_id,
        patient_ref=patient_ref,
    )


@pages.route("/bedside/infuse", methods=["POST"])
@login_required
def confirm_infusion() -> Any:
    actor = session_actor()
    try:
        patient_ref = forms.text("patient_ref", max_length=64, required=True, label="the patient")
        barcode = forms.text("barcode", max_length=256, required=True, label="the product")
        event_id = forms.event_id()
        password = forms.password("password")
        witness_email = forms.optional(
            "witness_email", max_length=254, label="the witness's e-mail"
        )
        witness_password = forms.password("witness_password")
    except DomainError as error:
        return _page(422, refusal=error)
    now = utcnow()
    requirement = _witness_required()
    witness = None
    with unit_of_work() as uow:  # the credentials first: a failure counts, nothing is recorded
        try:
            if requirement is not None:
                signing.authenticate(
                    uow.session,
                    actor=actor,
                    email=actor.email,
                    password=password,
                    now=now,
                    policy=login_policy(),
                )
            if requirement:
                if not witness_email or witness_email.strip().lower() == actor.email:
                    raise SignatureRefused("a second person witnesses the infusion")
                witness = signing.authenticate_witness(
                    uow.session,
                    site_id=actor.site_id,
                    email=witness_email,
                    password=witness_password,
                    now=now,
                    policy=login_policy(),
                )
        except DomainError as error:
            uow.commit()
            return _page(422, patient_ref=patient_ref, barcode=barcode, refusal=error)
        uow.commit()
    try:
        with unit_of_work() as uow:
            infusion = bedside_ops.infuse(
                uow.session,
                actor=actor,
                barcode=barcode,
                patient_ref=patient_ref,
                event_id=event_id,
                witness=witness,
                now=now,
                max_clock_skew=max_clock_skew(),
            )
            uow.commit()
            infused = {
                "din": (infusion.outcome.events[0].identity or {}).get("din", "")
                if infusion.outcome.events
                else "",
                "signatures": [(s.printed_name, s.meaning) for s in infusion.signatures],
                "replayed": infusion.outcome.replayed,
            }
    except DomainError as error:
        keep_refusal(actor, _scan(barcode, patient_ref, event_id), error)
        return _page(422, patient_ref=patient_ref, barcode=barcode, refusal=error)
    return _page(infused=infused)
