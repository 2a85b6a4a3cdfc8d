"""GET /identifiers: what a scanned or typed identifier is, or precisely why it is not one."""

from __future__ import annotations

from flask import Response, jsonify

from services.domain.identifiers import ParsedDin, parse_identifier
from services.web.api.blueprint import api, identifiers_tag
from services.web.api.schemas import FlagsPublic, IdentifierPublic, IdentifierQuery


@api.get("/identifiers", tags=[identifiers_tag], responses={200: IdentifierPublic})
def read_identifier(query: IdentifierQuery) -> Response:
    """Parse a DIN or chain of identity identifier in barcode or keyboard form."""
    parsed = parse_identifier(query.text)
    if isinstance(parsed, ParsedDin):
        din = parsed.din
        result = IdentifierPublic(
            kind="din",
            value=din.value,
            check_character=din.check_character,
            eye_readable=din.eye_readable,
            barcode=din.barcode,
            form=parsed.form,
            flags=FlagsPublic(value=parsed.flags.value, kind=parsed.flags.kind)
            if parsed.flags
            else None,
        )
    else:
        coi = parsed.coi
        result = IdentifierPublic(
            kind="coi",
            value=coi.value,
            check_character=coi.check_character,
            eye_readable=coi.eye_readable,
            barcode=coi.barcode,
            form=parsed.form,
        )
    return jsonify(result.model_dump(mode="json"))
