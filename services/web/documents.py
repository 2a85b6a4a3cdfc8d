"""The order's record as downloads, for the API and the pages alike: the chain-of-custody
report (PDF) and the evidence bundle (JSON, as `vein2vein audit export` writes it)."""

from __future__ import annotations

import json

from flask import Response

from services.documents import report_pdf
from services.domain.custody import Actor
from services.operations import evidence, keys, report
from services.operations.queries import coi_value
from services.web.state import state, unit_of_work, utcnow


def installation_trust() -> keys.Trust:
    """The installation's key and the keys it trusts, read per export: the web process reads
    SIGNING_KEY_PATH too (docker compose mounts the key's volume read-only in web), so that
    what it exports is signed. A key it cannot read leaves the export unsigned (logged)."""
    settings = state().settings
    return keys.installation_trust(
        key_path=settings.signing_key_path, configured=settings.trusted_public_keys, quiet=True
    )


def report_response(actor: Actor, coi: str) -> Response:
    signer = installation_trust().signer
    with unit_of_work() as uow:
        data = report.report_data(
            uow.session,
            actor=actor,
            coi=coi_value(coi),
            signing_key=signer.public_key if signer else None,
        )
    response = Response(report_pdf.render(data), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="coc-{data.coi}.pdf"'
    return response


def evidence_response(actor: Actor, coi: str) -> Response:
    with unit_of_work() as uow:
        body = evidence.bundle(
            uow.session, actor=actor, coi=coi_value(coi), now=utcnow(), trust=installation_trust()
        )
    response = Response(json.dumps(body, indent=2, sort_keys=True), mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="evidence-{body["order"]["coi"]}.json"'
    )
    return response
