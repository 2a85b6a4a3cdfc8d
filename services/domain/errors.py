"""Domain errors. Each carries a stable machine ``code``; the web layer maps codes to HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the domain refuses. ``detail`` is written for the person at the scanner."""

    code = "domain_error"
    title = "Request refused"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidIdentifier(DomainError):
    code = "invalid_identifier"
    title = "Invalid identifier"


class InvalidRequest(DomainError):
    code = "invalid_request"
    title = "Invalid request"


class CoiMismatch(DomainError):
    code = "coi_mismatch"
    title = "Chain of identity mismatch"


class WrongSite(DomainError):
    code = "wrong_site"
    title = "Wrong site"


class NotInShipment(DomainError):
    code = "not_in_shipment"
    title = "Bag not in this shipment"


class IllegalTransition(DomainError):
    code = "illegal_transition"
    title = "Not allowed in the bag's current state"


class OnHold(IllegalTransition):
    code = "on_hold"
    title = "On hold"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class EventIdReused(DomainError):
    code = "event_id_reused"
    title = "Event id already used for a different scan"


class SequenceExhausted(DomainError):
    code = "sequence_exhausted"
    title = "Identifier sequence exhausted"


class ThawExpired(DomainError):
    code = "thaw_expired"
    title = "Thawed too long ago to infuse"


class SignatureRefused(DomainError):
    code = "signature_refused"
    title = "Signature refused"


class InvalidJson(DomainError):
    """A body no JSON parser is given: nested deeper than any document of ours."""

    code = "invalid_json"
    title = "Body is not acceptable JSON"


class RateLimited(DomainError):
    code = "rate_limited"
    title = "Too many requests"
