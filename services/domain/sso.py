"""Single sign-on (OpenID Connect) and its signatures: what an ID token must say to be accepted.

The provider's signature on the token is checked by the client (web/oidc.py) before these
claims are read. Here, with no I/O:

- a sign-in: the token is from our provider (``iss``), for this installation (``aud``, a
  string or a list of strings; ``azp``, when present or when it names several audiences, is
  our client), not expired and not issued in the future (``exp``,
  ``iat``, within a bounded clock skew), and for this very request (``nonce``);
- a signature (21 CFR 11.200: both components at each signing outside a continuous session):
  besides, the provider authenticated the person again after the signing was asked for
  (``auth_time`` after the request, each clock measuring its own interval; the server checks
  it, whatever the browser or the provider did with ``prompt=login`` and ``max_age=0``), and
  the person is the signer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.domain.custody import SiteKind
from services.domain.errors import SignatureRefused, SsoRefused

# the sites a provider vouches for when OIDC_SITES names none: the hospital's own
HOSPITAL_KINDS = frozenset({SiteKind.TREATMENT, SiteKind.COLLECTION})


@dataclass(frozen=True)
class Identity:
    """The person an accepted ID token names."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    auth_time: int | None
    issued_at: int | None = None  # the ID token's iat, on the provider's clock


def check_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: float,
    skew: int,
) -> Identity:
    """The claims of an ID token whose signature is verified, for a sign-in: SsoRefused
    naming what is wrong."""
    if claims.get("iss") != issuer:
        raise SsoRefused("the ID token is not from the configured identity provider")
    audience = claims.get("aud")
    if isinstance(audience, str):
        audiences = [audience]
    elif isinstance(audience, list) and all(isinstance(item, str) for item in audience):
        audiences = audience
    else:
        raise SsoRefused("the ID token's audience is not a string or a list of strings")
    if client_id not in audiences:
        raise SsoRefused("the ID token is not for this installation")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SsoRefused("the ID token names other audiences and was not issued to us")
    if "azp" in claims and claims["azp"] != client_id:
        raise SsoRefused("the ID token was issued to another party (azp)")
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    if exp is None or iat is None:
        raise SsoRefused("the ID token has no expiry or issue time")
    if exp + skew < now:
        raise SsoRefused("the ID token has expired")
    if iat - skew > now:
        raise SsoRefused("the ID token was issued in the future (check the clocks)")
    if not nonce or claims.get("nonce") != nonce:
        raise SsoRefused("the ID token is not for this sign-in (nonce)")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise SsoRefused("the ID token names nobody")
    email = claims.get("email")
    auth_time = _number(claims, "auth_time")
    return Identity(
        issuer=issuer,
        subject=subject,
        email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
        email_verified=claims.get("email_verified") is True,
        auth_time=int(auth_time) if auth_time is not None else None,
        issued_at=int(iat),
    )


def check_reauthentication(identity: Identity, *, requested_at: float, now: float) -> int:
    """A signature's re-authentication: the provider authenticated the person after the
    signature was asked for. Its ``auth_time`` is on the provider's clock, ``requested_at``
    and ``now`` (when its answer came) on ours: so the two clocks are never compared, each
    measures its own interval. The provider's, from ``auth_time`` to the token's ``iat``
    (issued as it answered), is at most ours, from the request to ``now`` (whole seconds, as
    the provider counts them). Returns ``auth_time``; SignatureRefused when it is missing or
    older (a session the provider kept, a replayed answer), whatever the clocks' offset."""
    if identity.auth_time is None or identity.issued_at is None:
        raise SignatureRefused(
            "the identity provider did not say when it authenticated you (auth_time): "
            "a signature needs it"
        )
    if identity.issued_at - identity.auth_time > int(now) - int(requested_at):
        raise SignatureRefused(
            "the identity provider did not authenticate you again for this signature: sign "
            "in at the provider when it asks (your earlier sign-in does not sign)"
        )
    return identity.auth_time


def vouches_for(sites: str, *, code: str, kind: SiteKind) -> bool:
    """Whether the provider vouches for the people of site ``code``: it is one of ``sites``
    (OIDC_SITES, codes separated by commas), or, when that names none, a treatment or
    collection site. A manufacturer's or a courier's people are not the hospital's to vouch
    for (the same e-mail at the provider would take over their account)."""
    named = {item.strip().upper() for item in sites.split(",") if item.strip()}
    return code.upper() in named if named else kind in HOSPITAL_KINDS


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
