"""POST /scans: every handoff, scan by scan. Refusals are answered and kept on record."""

from __future__ import annotations

from flask import Response, jsonify

from services.domain.errors import DomainError
from services.operations.scans import ScanInput
from services.web import scanning  # the module: scanning imports this package in turn
from services.web.api.blueprint import api, scans_tag
from services.web.api.schemas import Problem, ScanCreate, ScanResult, new_event_id
from services.web.errors import domain_problem
from services.web.state import current_actor


@api.post(
    "/scans",
    tags=[scans_tag],
    responses={200: ScanResult, 201: ScanResult, 409: Problem},
)
def scan(body: ScanCreate) -> Response | tuple[Response, int]:
    """Record a scan; a repeated event_id returns the event recorded the first time (200).
    Where the site signs the step, the scan carries the signature (and witness) with it."""
    scan_input = ScanInput(
        barcode=body.barcode,
        action=body.action,
        site=body.site,
        event_id=str(body.event_id) if body.event_id else new_event_id(),
        occurred_at=body.occurred_at,
        shipment=body.shipment,
        coi=body.coi,
        patient_ref=body.patient_ref,
        patient_birth_date=body.patient_birth_date,
    )
    credentials = scanning.Credentials(
        password=body.signature.password if body.signature else None,
        witness_email=body.witness.email if body.witness else None,
        witness_password=body.witness.password if body.witness else None,
    )
    try:
        outcome, result = scanning.submit_scan(current_actor(), scan_input, credentials)
    except DomainError as error:
        return domain_problem(error)
    return jsonify(result.model_dump(mode="json")), 200 if outcome.replayed else 201
