"""An ID token's claims (domain.sso): each way one can be wrong is refused, naming it."""

from __future__ import annotations

from typing import Any

import pytest

from services.domain.custody import SiteKind
from services.domain.errors import SignatureRefused, SsoRefused
from services.domain.sso import check_claims, check_reauthentication, vouches_for

NOW = 1_800_000_000.0
GOOD = {
    "iss": "https://idp.example",
    "aud": "v2v",
    "exp": NOW + 300,
    "iat": NOW - 5,
    "nonce": "n-1",
    "sub": "s-1",
    "email": "Nurse@Example.org",
    "email_verified": True,
    "auth_time": int(NOW - 5),
}


def claims(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**GOOD, **changes}.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"iss": "https://evil.example"}, "not from the configured"),
        ({"aud": "another-client"}, "not for this installation"),
        ({"aud": ["v2v", "other"]}, "other audiences"),
        ({"azp": "evil"}, "another party"),
        ({"aud": {"v2v": 1}}, "not a string or a list"),
        ({"aud": ["v2v", 7]}, "not a string or a list"),
        ({"exp": NOW - 61}, "expired"),
        ({"iat": NOW + 61}, "in the future"),
        ({"exp": None}, "no expiry"),
        ({"nonce": "n-2"}, "nonce"),
        ({"sub": ""}, "names nobody"),
    ],
)
def test_a_wrong_claim_is_refused(changes: dict[str, Any], why: str) -> None:
    with pytest.raises(SsoRefused, match=why):
        check_claims(
            claims(**changes), issuer=GOOD["iss"], client_id="v2v", nonce="n-1", now=NOW, skew=60
        )


def test_good_claims_within_the_skew_name_the_person_and_a_stale_signature_is_refused() -> None:
    identity = check_claims(
        claims(exp=NOW - 59, aud=["v2v", "other"], azp="v2v"),
        issuer=GOOD["iss"],
        client_id="v2v",
        nonce="n-1",
        now=NOW,
        skew=60,
    )
    assert (identity.subject, identity.email, identity.email_verified) == (
        "s-1",
        "nurse@example.org",
        True,
    )
    assert check_reauthentication(identity, requested_at=NOW - 5.9, now=NOW - 4.5) == int(NOW - 5)
    # each clock measures its own interval: a provider 30 s behind us that authenticated the
    # person after the request is accepted; one 30 s ahead whose session is 20 s old is not,
    # nor one on our clock whose session is older than the request
    for iat, auth_time, requested, accepted in (
        (NOW - 30, NOW - 32, NOW - 4, True),
        (NOW + 30, NOW + 10, NOW - 5, False),
        (NOW - 5, NOW - 60, NOW - 10, False),
    ):
        answer = check_claims(
            claims(iat=iat, auth_time=auth_time),
            issuer=GOOD["iss"],
            client_id="v2v",
            nonce="n-1",
            now=NOW,
            skew=60,
        )
        if accepted:
            assert check_reauthentication(answer, requested_at=requested, now=NOW)
        else:
            with pytest.raises(SignatureRefused, match="did not authenticate you again"):
                check_reauthentication(answer, requested_at=requested, now=NOW)
    without = check_claims(
        claims(auth_time=None), issuer=GOOD["iss"], client_id="v2v", nonce="n-1", now=NOW, skew=60
    )
    with pytest.raises(SignatureRefused, match="auth_time"):
        check_reauthentication(without, requested_at=NOW - 10, now=NOW)


def test_the_provider_vouches_for_the_sites_oidc_sites_names_or_else_the_hospitals_own() -> None:
    assert vouches_for("", code="TRT-1", kind=SiteKind.TREATMENT)
    assert vouches_for("", code="APH-1", kind=SiteKind.COLLECTION)
    assert not vouches_for("", code="MFG-1", kind=SiteKind.MANUFACTURING)
    assert not vouches_for("", code="COUR-2", kind=SiteKind.COURIER)
    assert vouches_for("trt-1, MFG-1", code="MFG-1", kind=SiteKind.MANUFACTURING)
    assert not vouches_for("TRT-1,MFG-1", code="APH-1", kind=SiteKind.COLLECTION)
