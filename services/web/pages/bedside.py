"""The bedside: the patient's wristband (two identifiers: the reference and the date of birth)
and the product bag, MATCH or MISMATCH in large type with both identifiers and the product to
read back, the thaw timer, and the infusion confirmed with the nurse's password (and, where the
site requires it, a witness's e-mail and password): the act and its signatures are recorded
together, through the same scan as the API's. A wrong password keeps the match on screen."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask import render_template, request, url_for
from flask_login import login_required

from services.domain.custody import Action
from services.domain.errors import DomainError, SignatureRefused
from services.operations import signing
from services.operations.scans import BedsideCheck, ScanInput, check_infusion
from services.web import forms
from services.web.pages import pages, sso
from services.web.scanning import Credentials, keep_refusal, submit_scan
from services.web.security import session_actor
from services.web.state import unit_of_work, utcnow


def _requirement() -> bool | None:
    """Whether the ward signs infusions (None: no), and whether with a witness."""
    actor = session_actor()
    with unit_of_work() as uow:
        return signing.step_requirement(uow.session, actor.site_id, Action.INFUSE.value)


def _page(status: int = 200, **context: Any) -> tuple[str, int]:
    values = {
        "actor": session_actor(),
        "patient_ref": "",
        "birth_date": "",
        "barcode": "",
        "check": None,
        "refusal": None,
        "signature_error": None,
        "infused": None,
        "requirement": _requirement(),
        **context,
    }
    return render_template("bedside.html", **values), status


def _check(barcode: str, patient_ref: str, born: dt.date | None) -> BedsideCheck:
    actor = session_actor()
    with unit_of_work() as uow:
        return check_infusion(
            uow.session,
            actor=actor,
            barcode=barcode,
            patient_ref=patient_ref,
            patient_birth_date=born,
            now=utcnow(),
        )


@pages.route("/bedside", methods=["GET", "POST"])
@login_required
def bedside() -> Any:
    actor = session_actor()
    if request.method == "GET":
        resumed = sso.kept(url_for("pages.confirm_infusion")) if request.args.get("resume") else {}
        if not resumed.get("barcode"):
            return _page()
        # back from a re-authentication at the identity provider: the match, checked again
        try:
            born = (
                dt.date.fromisoformat(resumed["birth_date"]) if resumed.get("birth_date") else None
            )
            check = _check(resumed["barcode"], resumed.get("patient_ref", ""), born)
        except (DomainError, ValueError):
            return _page()
        return _page(
            patient_ref=resumed.get("patient_ref", ""),
            birth_date=resumed.get("birth_date", ""),
            barcode=resumed["barcode"],
            check=check,
            event_id=resumed.get("event_id") or str(uuid.uuid4()),
        )
    try:
        patient_ref = forms.text("patient_ref", max_length=64, required=True, label="the patient")
        born = forms.date("birth_date", label="the date of birth")
        barcode = forms.text("barcode", max_length=256)
    except DomainError as error:
        return _page(422, refusal=error)
    shown = born.isoformat() if born else ""
    if not barcode:  # the wristband is scanned; the bag comes next
        return _page(patient_ref=patient_ref, birth_date=shown)
    try:
        check = _check(barcode, patient_ref, born)
    except DomainError as error:
        keep_refusal(actor, _scan(barcode, patient_ref, born, str(uuid.uuid4())), error)
        return _page(422, patient_ref=patient_ref, birth_date=shown, refusal=error)
    return _page(
        patient_ref=patient_ref,
        birth_date=shown,
        barcode=barcode,
        check=check,
        event_id=str(uuid.uuid4()),
    )


def _scan(barcode: str, patient_ref: str, born: dt.date | None, event_id: str) -> ScanInput:
    return ScanInput(
        barcode=barcode,
        action=Action.INFUSE,
        site=session_actor().site.code,
        event_id=event_id,
        patient_ref=patient_ref,
        patient_birth_date=born,
    )


@pages.route("/bedside/infuse", methods=["POST"])
@login_required
def confirm_infusion() -> Any:
    actor = session_actor()
    try:
        patient_ref = forms.text("patient_ref", max_length=64, required=True, label="the patient")
        born = forms.date("birth_date", label="the date of birth")
        barcode = forms.text("barcode", max_length=256, required=True, label="the product")
        event_id = forms.event_id()
        credentials = Credentials(
            password=forms.password("password") or None,
            witness_email=forms.optional(
                "witness_email", max_length=254, label="the witness's e-mail"
            ),
            witness_password=forms.password("witness_password") or None,
            # bound to the match the screen showed when the provider was asked
            tickets=sso.tickets_for(
                subject={
                    "patient_ref": patient_ref,
                    "birth_date": born.isoformat() if born else "",
                    "barcode": barcode,
                    "event_id": event_id,
                }
            ),
        )
    except DomainError as error:
        return _page(422, refusal=error)
    shown = born.isoformat() if born else ""
    scan = _scan(barcode, patient_ref, born, event_id)
    try:
        outcome, recorded = submit_scan(actor, scan, credentials)
    except SignatureRefused as error:
        # a typo in a password: the match stands (checked again), only the signature is asked
        # for again
        try:
            check = _check(barcode, patient_ref, born)
        except DomainError as refused:
            return _page(422, patient_ref=patient_ref, birth_date=shown, refusal=refused)
        return _page(
            403,
            patient_ref=patient_ref,
            birth_date=shown,
            barcode=barcode,
            check=check,
            event_id=event_id,
            signature_error=error,
        )
    except DomainError as error:
        if error.code == "signature_required":
            check = _check(barcode, patient_ref, born)
            return _page(
                422,
                patient_ref=patient_ref,
                birth_date=shown,
                barcode=barcode,
                check=check,
                event_id=event_id,
                signature_error=error,
            )
        return _page(422, patient_ref=patient_ref, birth_date=shown, refusal=error)
    infused = {
        "din": recorded.din or "",
        "signatures": [
            (s.printed_name, s.meaning) for event in recorded.events for s in event.signatures
        ],
        "replayed": outcome.replayed,
    }
    return _page(infused=infused)
