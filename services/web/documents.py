"""The order's record as downloads, for the API and the pages alike: the chain-of-custody
report (PDF) and the evidence bundle (JSON, as `vein2vein audit export` writes it)."""

from __future__ import annotations

import json

from flask import Response

from services.documents import report_pdf
from services.domain.custody import Actor
from services.operations import evidence, report
from services.operations.queries import coi_value
from services.web.state import unit_of_work, utcnow


def report_response(actor: Actor, coi: str) -> Response:
    with unit_of_work() as uow:
        data = report.report_data(uow.session, actor=actor, coi=coi_value(coi))
    response = Response(report_pdf.render(data), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="coc-{data.coi}.pdf"'
    return response


def evidence_response(actor: Actor, coi: str) -> Response:
    with unit_of_work() as uow:
        body = evidence.bundle(uow.session, actor=actor, coi=coi_value(coi), now=utcnow())
    response = Response(json.dumps(body, indent=2, sort_keys=True), mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="evidence-{body["order"]["coi"]}.json"'
    )
    return response
