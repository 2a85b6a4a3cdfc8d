"""POST /scans: every handoff, scan by scan. Refusals are answered and kept on record."""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy.exc import IntegrityError

from services.domain.custody import Actor
from services.domain.errors import DomainError
from services.operations.scans import ScanInput, ScanOutcome, record_refusal, record_scan
from services.web.api.blueprint import api, scans_tag
from services.web.api.present import scan_result
from services.web.api.schemas import Problem, ScanCreate, ScanResult, new_event_id
from services.web.errors import domain_problem
from services.web.state import current_actor, max_clock_skew, unit_of_work, utcnow


@api.post(
    "/scans",
    tags=[scans_tag],
    responses={200: ScanResult, 201: ScanResult, 409: Problem},
)
def scan(body: ScanCreate) -> Response | tuple[Response, int]:
    """Record a scan; a repeated event_id returns the event recorded the first time (200)."""
    actor = current_actor()
    scan_input = ScanInput(
        barcode=body.barcode,
        action=body.action,
        site=body.site,
        event_id=str(body.event_id) if body.event_id else new_event_id(),
        occurred_at=body.occurred_at,
        shipment=body.shipment,
        coi=body.coi,
        patient_ref=body.patient_ref,
    )
    try:
        outcome, result = _record(actor, scan_input)
    except DomainError as error:
        # the scan's own transaction is rolled back; the refusal is a record of its own
        with unit_of_work() as uow:
            record_refusal(uow.session, actor=actor, scan=scan_input, error=error, now=utcnow())
            uow.commit()
        return domain_problem(error)
    return jsonify(result.model_dump(mode="json")), 200 if outcome.replayed else 201


def _record(actor: Actor, scan_input: ScanInput) -> tuple[ScanOutcome, ScanResult]:
    """One transaction for the scan. When a concurrent scan with the same event_id committed
    first (the unique constraint is the last line of defence), try once more: the second try
    finds that scan and answers as a replay, or refuses the reuse of its id."""
    for attempt in (1, 2):
        try:
            with unit_of_work() as uow:
                outcome = record_scan(
                    uow.session,
                    actor=actor,
                    scan=scan_input,
                    now=utcnow(),
                    max_clock_skew=max_clock_skew(),
                )
                uow.commit()
                return outcome, scan_result(uow.session, actor, outcome)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
