"""The OpenID Connect client (authlib): the provider's discovery document and keys, the
authorization request (code flow with PKCE S256, state and nonce; for a signature
``prompt=login`` and ``max_age=0``), the code exchanged for tokens at the token endpoint with
the client's secret, and the ID token's signature verified with the provider's published keys
(joserfc) before its claims are checked (domain.sso)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.config import Settings
from services.domain.errors import SsoRefused
from services.domain.sso import Identity, check_claims

# asymmetric signatures only: never "none", never a MAC keyed with our own client secret
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
METADATA_SECONDS = 3600.0  # the discovery document and keys are read again after this long


@dataclass(frozen=True)
class Pending:
    """What a login session keeps of an authorization request until its answer comes back."""

    state: str
    nonce: str
    verifier: str


def new_pending() -> Pending:
    return Pending(state=generate_token(32), nonce=generate_token(32), verifier=generate_token(64))


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Provider:
    """The installation's identity provider (OIDC_ISSUER), with its metadata cached."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.oidc_issuer
        self.client_id = settings.oidc_client_id
        self._secret = settings.oidc_client_secret
        self.name = settings.oidc_name
        self.skew = settings.oidc_clock_skew_seconds
        self._timeout = settings.oidc_timeout_seconds
        self._lock = threading.Lock()
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is not None and self._metadata[0] > time.monotonic():
                return self._metadata[1]
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get(url)
        if document.get("issuer") != self.issuer:
            raise SsoRefused("the identity provider's discovery document names another issuer")
        with self._lock:
            self._metadata = (time.monotonic() + METADATA_SECONDS, document)
        return document

    def authorization_url(
        self, redirect_uri: str, pending: Pending, *, signing: bool, login_hint: str | None
    ) -> str:
        extra: dict[str, Any] = {"nonce": pending.nonce}
        if signing:
            # both components again (21 CFR 11.200); the answer's auth_time is what is checked
            extra.update(prompt="login", max_age=0)
        if login_hint:
            extra["login_hint"] = login_hint
        client = self._client(redirect_uri)
        url, _state = client.create_authorization_url(
            self.metadata()["authorization_endpoint"],
            state=pending.state,
            code_verifier=pending.verifier,
            **extra,
        )
        return str(url)

    def identity(self, redirect_uri: str, code: str, pending: Pending) -> Identity:
        """Exchange the code (with the PKCE verifier) and return whom the ID token names."""
        client = self._client(redirect_uri)
        try:
            token = client.fetch_token(
                self.metadata()["token_endpoint"],
                code=code,
                code_verifier=pending.verifier,
                timeout=self._timeout,
            )
        except (requests.RequestException, ValueError) as error:
            raise SsoRefused(f"the identity provider refused the sign-in ({error})") from None
        except Exception as error:  # authlib's OAuthError and kin: the provider said no
            raise SsoRefused(f"the identity provider refused the sign-in ({error})") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SsoRefused("the identity provider sent no ID token")
        return self.verify(id_token, nonce=pending.nonce)

    def verify(self, id_token: str, *, nonce: str, now: float | None = None) -> Identity:
        """The ID token's signature by one of the provider's keys, then its claims."""
        claims = self._decode(id_token, self._key_set())
        if claims is None:  # a key the provider rotated in since we read its keys
            claims = self._decode(id_token, self._key_set(refresh=True))
        if claims is None:
            raise SsoRefused("the ID token's signature is not the identity provider's")
        return check_claims(
            claims,
            issuer=self.issuer,
            client_id=self.client_id,
            nonce=nonce,
            now=time.time() if now is None else now,
            skew=self.skew,
        )

    def _decode(self, id_token: str, keys: KeySet) -> dict[str, Any] | None:
        try:
            return dict(jwt.decode(id_token, keys, algorithms=list(ALGORITHMS)).claims)
        except (JoseError, ValueError):
            return None

    def _key_set(self, *, refresh: bool = False) -> KeySet:
        with self._lock:
            if not refresh and self._keys is not None and self._keys[0] > time.monotonic():
                return self._keys[1]
        keys = KeySet.import_key_set(self._get(self.metadata()["jwks_uri"]))  # type: ignore[arg-type]
        with self._lock:
            self._keys = (time.monotonic() + METADATA_SECONDS, keys)
        return keys

    def _client(self, redirect_uri: str) -> OAuth2Session:
        return OAuth2Session(
            self.client_id,
            self._secret,
            scope="openid email",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        )

    def _get(self, url: str) -> dict[str, Any]:
        try:
            answer = requests.get(url, timeout=self._timeout)
            answer.raise_for_status()
            document = answer.json()
        except (requests.RequestException, ValueError) as error:
            raise SsoRefused(f"the identity provider did not answer ({error})") from None
        if not isinstance(document, dict):
            raise SsoRefused("the identity provider's answer is not a JSON object")
        return document
