"""The record as documents: the chain-of-custody report (PDF), the evidence bundle (JSON), and
the installation's public keys that sign checkpoints."""

from __future__ import annotations

import json

from flask import Response
from flask_openapi3 import Tag

from services.operations import keys
from services.web.api.blueprint import api
from services.web.api.schemas import OrderPath
from services.web.documents import evidence_response, report_response
from services.web.state import current_actor, unit_of_work

tag = Tag(name="evidence", description="The report, the evidence bundle and the signing keys")


@api.get(
    "/orders/<coi>/report.pdf",
    tags=[tag],
    responses={
        200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
def order_report(path: OrderPath) -> Response:
    """The order's chain-of-custody report: the same record gives the same bytes."""
    return report_response(current_actor(), path.coi)


@api.get(
    "/orders/<coi>/evidence",
    tags=[tag],
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
def order_evidence(path: OrderPath) -> Response:
    """The order's evidence bundle: its chain's records, signatures and reviews, the signed
    checkpoints that cover it (with Merkle proofs), the public keys, and the installation's
    signature over all of it (`export_signature`). `python -m services.bundle FILE
    --public-key KEY` (or `vein2vein audit verify --bundle FILE --public-key KEY`) checks it
    with no database, against a key obtained apart from the bundle."""
    return evidence_response(current_actor(), path.coi)


@api.get(
    "/keys",
    tags=[tag],
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
def signing_keys() -> Response:
    """Every public key that has signed a checkpoint (Ed25519, base64 of the raw 32 bytes), as
    the database records them: compare a key's fingerprint with one obtained another way (the
    report's first page, `vein2vein keys show` at the installation) before trusting it."""
    with unit_of_work() as uow:
        rows = keys.public_keys(uow.session)
        body = {
            "keys": [
                {
                    "key_id": row.key_id,
                    "algorithm": row.algorithm,
                    "public_key": row.public_key,
                    "first_used_at": row.first_used_at.isoformat(),
                }
                for row in rows
            ]
        }
    return Response(json.dumps(body), mimetype="application/json")
