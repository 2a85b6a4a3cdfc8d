"""Into the hospital's systems: an order as FHIR R5 (its bags, their dispense, the chain's
provenance) and patient record merges from the hospital (ADT^A40 or a plain pair)."""

from __future__ import annotations

import json

from flask import Response, request, url_for
from flask_openapi3 import Tag

from services.domain.fhir import FHIR_JSON, System
from services.operations import fhir
from services.operations.queries import coi_value
from services.web.api.blueprint import api
from services.web.api.schemas import OrderPath
from services.web.state import current_actor, state, unit_of_work, utcnow

tag = Tag(name="hospital", description="FHIR R5 out, patient record merges in")
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
