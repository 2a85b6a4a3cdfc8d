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


class NotReleased(DomainError):
    code = "not_released"
    title = "Not released by QA"


class SignatureRequired(DomainError):
    """An act that must be e-signed came without the signer's password (or witness)."""

    code = "signature_required"
    title = "Signature required"


class SignatureInvalid(SignatureRefused):
    """The password given to sign an act is not the signer's. A SignatureRefused, so that every
    caller that commits a refused signature (the failure counts towards the back-off) does."""

    code = "signature_invalid"
    title = "Signature invalid"


class LabelNotVerified(DomainError):
    code = "label_not_verified"
    title = "Label not checked"


class LabelNotPrinted(DomainError):
    code = "label_not_printed"
    title = "Label never printed"


class UnknownProduct(DomainError):
    code = "unknown_product"
    title = "Unknown product"


class SigningKeyMissing(Conflict):
    """Checkpoints were signed, and the key is gone: no unsigned one may follow (`audit
    verify` would take it for a signature removed)."""

    code = "signing_key_missing"
    title = "The installation's signing key is missing"


class InvalidJson(DomainError):
    """A body no JSON parser is given: nested deeper than any document of ours."""

    code = "invalid_json"
    title = "Body is not acceptable JSON"


class RateLimited(DomainError):
    code = "rate_limited"
    title = "Too many requests"


class ProductNotReleased(DomainError):
    """Lymphodepletion before the product's QA release (without a second person's signed
    override)."""

    code = "product_not_released"
    title = "Product not released"


class NoCapacity(DomainError):
    code = "no_capacity"
    title = "No manufacturing slot free"


class WindowViolation(DomainError):
    """An infusion outside the product's window after lymphodepletion."""

    code = "window_violation"
    title = "Outside the infusion window"


class SsoRefused(DomainError):
    """A single sign-on the provider answered but vein2vein does not accept: an ID token that
    is not the provider's or not for this sign-in, a person nobody provisioned, an e-mail the
    provider has not verified, or a site whose people sign in otherwise."""

    code = "sso_refused"
    title = "Single sign-on refused"
