"""Into the hospital's systems: an order as FHIR R5 (its bags, their dispense, the chain's
provenance) and patient record merges from the hospital (ADT^A40 or a plain pair)."""

from __future__ import annotations

import json

from flask import Response, jsonify, request, url_for
from flask_openapi3 import Tag

from services.domain.errors import InvalidRequest
from services.domain.fhir import FHIR_JSON, System
from services.domain.patients import MergeMessage, merge, parse_adt_a40
from services.operations import fhir, merges
from services.operations.queries import coi_value
from services.web.api.blueprint import api
from services.web.api.schemas import (
    OrderPath,
    PatientMergeCreate,
    PatientMergeResult,
    Relinked,
)
from services.web.state import current_actor, state, unit_of_work, utcnow

tag = Tag(name="hospital", description="FHIR R5 out, patient record merges in")
HL7_MAX_BYTES = 64 * 1024
_BUNDLE = {"type": "object", "description": "A FHIR R5 Bundle (type collection)"}


@api.get(
    "/orders/<coi>/fhir",
    tags=[tag],
    responses={200: {"content": {FHIR_JSON: {"schema": _BUNDLE}}}},
)
def order_fhir(path: OrderPath) -> Response:
    """The order as a FHIR R5 Bundle: a BiologicallyDerivedProduct per bag, after infusion a
    BiologicallyDerivedProductDispense, and a Provenance pointing to the chain record. The
    patient reference is in it only for the sites that meet the patient."""
    coi = coi_value(path.coi)
    system = System(
        state().settings.epcis_base_uri,
        audit_url=request.host_url.rstrip("/") + url_for("api.read_order_audit", coi=coi),
    )
    with unit_of_work() as uow:
        body = fhir.order_bundle(
            uow.session, actor=current_actor(), coi=coi, system=system, now=utcnow()
        )
    return Response(json.dumps(body), status=200, mimetype=FHIR_JSON)


@api.post("/patient-merges", tags=[tag], responses={201: PatientMergeResult})
def merge_patients(body: PatientMergeCreate) -> tuple[Response, int]:
    """Record a patient record merge at the caller's treatment site (its administrators or its
    integration's care-team account): each of the site's orders for ``old_ref`` follows
    ``new_ref`` from now on, through a patient_merge record in its chain. The COI never
    changes; the bedside accepts the new wristband and refuses the old one."""
    message = MergeMessage((merge(body.old_ref, body.new_ref),), "", "api")
    return _merged(message)


@api.post("/patient-merges/hl7", tags=[tag], responses={201: PatientMergeResult})
def merge_patients_hl7() -> tuple[Response, int]:
    """The same from an HL7 v2 ADT^A40 message (ER7 text, as the hospital's interface engine
    sends it: Content-Type application/hl7-v2 or text/plain): each PID names the surviving
    patient (PID-3, its MR identifier), the MRG after it the merged one (MRG-1)."""
    data = request.get_data(cache=False)
    if len(data) > HL7_MAX_BYTES:
        raise InvalidRequest(f"an ADT^A40 message is at most {HL7_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # HL7 v2's own default character set
    return _merged(parse_adt_a40(text))


def _merged(message: MergeMessage) -> tuple[Response, int]:
    with unit_of_work() as uow:
        relinked = merges.record_merges(
            uow.session, actor=current_actor(), message=message, now=utcnow()
        )
        uow.commit()
    result = PatientMergeResult(
        relinked=[Relinked(coi=coi, old_ref=old, new_ref=new) for coi, old, new in relinked],
        source=message.source,
        message_control_id=message.control_id or None,
    )
    return jsonify(result.model_dump(mode="json")), 201
