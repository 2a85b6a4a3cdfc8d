"""Typed settings, read once by the factories (create_app, the Celery app, the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.domain.evidence import parse_keys
from services.domain.webhook_secrets import check_key, derived_key

DEVELOPMENT_SECRET = "dev-only-not-secret"  # noqa: S105 - the default refused outside development
RATELIMIT_STORES = ("redis://", "rediss://", "unix://", "memory://")  # what the limits count in
API_LIMIT_OFF = "off"  # API_RATE_LIMIT=off: the reverse proxy limits the API


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    app_env: Literal["development", "production", "test"] = "development"
    var_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = ""
    smtp_url: str = ""
    secret_key: str = DEVELOPMENT_SECRET
    sqlite_busy_timeout_ms: int = 30_000
    # how far a scanner's clock may run ahead of ours before its occurred_at is refused
    max_clock_skew_seconds: int = 300
    # packing into a shipper nobody registered: refused (shipper_unavailable) when true; when
    # false it is allowed, with a warning on the shipment that its qualification is unchecked
    require_registered_shippers: bool = False
    # EPCIS identifiers (DIN, COI, sites, shipments, batches) are HTTP URIs under this base
    epcis_base_uri: str = "https://vein2vein.example/id"

    # notifications (see RELIABILITY.md): the row, not Celery, decides retries and giving up
    mail_from: str = "vein2vein <notifications@vein2vein.invalid>"
    message_id_domain: str = "vein2vein.invalid"
    smtp_timeout_seconds: float = 10.0
    webhook_timeout_seconds: float = 10.0
    # loopback and private webhook targets: allowed in development only, unless set here
    webhook_allow_private_targets: bool | None = None
    # the Fernet key(s) that seal webhook signing secrets at rest (comma-separated: the first
    # seals, all open). Required in production; elsewhere, empty derives one from SECRET_KEY
    webhook_secret_key: str = ""
    notify_max_attempts: int = 10
    notify_backoff_seconds: float = 30.0  # first retry; doubles each time, with jitter
    notify_backoff_cap_seconds: float = 3600.0
    # a claimed row is offered again after this long if its task never reported back; it must
    # exceed the task time limit, so a task still running is never raced by its own retry
    notify_claim_seconds: float = 120.0
    dispatch_interval_seconds: float = 5.0
    dispatch_batch: int = 200
    deliver_chunk: int = 10  # notifications per delivery task
    sweep_interval_seconds: float = 60.0  # how often the beat flags late and at-risk legs
    # the vein-to-vein plan: a booked slot is held this long until the plan is confirmed; the
    # beat frees expired holds (and sends the plan's reminders) every plan_interval_seconds
    plan_hold_hours: float = Field(default=48.0, gt=0, le=24 * 30)
    plan_interval_seconds: float = 300.0
    checkpoint_interval_seconds: float = 300.0  # how often the beat records every chain's head
    # progress news for digest subscribers is folded into one message a day, at this hour on
    # the clock of the subscriber's site; the beat looks every digest_interval_seconds
    digest_hour: int = Field(default=7, ge=0, le=23)
    digest_interval_seconds: float = 600.0
    # the family's status page (issue 32): the address families reach vein2vein at, for the
    # links in their e-mails (empty: the API answers with the address it was called at, and
    # e-mails use http://localhost:5000); how often the beat looks for stage changes to tell
    public_url: str = ""
    family_email_interval_seconds: float = 600.0
    # the development server's access log (a line per request): off unless asked for
    log_requests: bool = False

    # web login and rate limits
    # wrong passwords in a row for one account from one client (address) before that client,
    # and only that client, must wait; at sign-in and at signing alike ...
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_seconds: int = Field(default=900, ge=1)  # ... this long the first time,
    login_lockout_max_seconds: int = Field(default=86_400, ge=1)  # doubling up to this
    session_hours: float = Field(default=12.0, gt=0)  # a login lasts one shift at most ...
    # ... and ends after this long without a request (21 CFR 11.300, HIPAA automatic log-off)
    session_idle_minutes: float = Field(default=15.0, gt=0, le=24 * 60)
    login_rate_limit: str = "10 per minute"  # login attempts per client address
    # API calls per token (or per address without one); "off": none counted here, for a
    # deployment whose reverse proxy limits the API
    api_rate_limit: str = "100 per second"
    # API calls answered 401 (no token, or one unknown, expired or revoked) per client address;
    # past it, that address's calls are refused (429) before their token is looked up, but
    # for tokens that authenticated lately. "off": not counted
    api_auth_failure_limit: str = "30 per minute"
    # refused scans kept per user (each is a record in a chain and a line for QA): past it the
    # user's scans are answered 429 and not recorded until the window has room. "off": none
    refusal_rate_limit: str = "60 per minute; 600 per hour"
    # where the counters live: memory:// is per process, so production needs Redis (all
    # gunicorn workers count together); empty means BROKER_URL when that is Redis
    ratelimit_storage_url: str = ""
    # a network label printer that takes ZPL over raw TCP (tcp://HOST[:PORT], port 9100);
    # empty: labels are printed from the browser (PDF) only
    label_printer_url: str = ""
    # how many reverse proxies in front of the app set X-Forwarded-For/-Proto (werkzeug's
    # ProxyFix): rate limits then key on the real client; 0 trusts no such header
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    # the installation's Ed25519 key that signs checkpoints (`vein2vein keys init` makes it);
    # empty: VAR_DIR/keys/checkpoint-ed25519.pem. Readable by the beat/worker and the CLI only
    signing_key_path: Path | None = None
    # public keys trusted to have signed checkpoints and exports, besides the key file's own
    # (base64 of the raw 32 bytes, separated by commas): after a rotation the old key stays
    # here, valid for what it signed. Never taken from the database (its signing_keys table
    # is only checked against these)
    audit_trusted_keys: str = ""

    # single sign-on (OpenID Connect, authorization code flow with PKCE): the hospital's
    # identity provider (its issuer URL, as its discovery document names it) and this
    # installation's client there. Empty OIDC_ISSUER: vein2vein passwords only
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_name: str = "your hospital"  # the sign-in button says "Sign in with <OIDC_NAME>"
    # how far the provider's clock may be from ours when an ID token's exp and iat are checked
    oidc_clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    # how long a signature's re-authentication at the provider may wait for its act
    oidc_signing_ticket_minutes: float = Field(default=10.0, gt=0, le=60)
    oidc_timeout_seconds: float = 10.0  # the calls to the provider (discovery, keys, token)
    # the sites whose people this provider vouches for (site codes, separated by commas): a
    # user of any other site is never signed in, bound or re-authenticated through it. Empty:
    # the installation's treatment and collection sites (the hospital's own)
    oidc_sites: str = ""

    @field_validator(
        "login_rate_limit", "api_rate_limit", "api_auth_failure_limit", "refusal_rate_limit"
    )
    @classmethod
    def _rate_limit(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if info.field_name != "login_rate_limit" and value.lower() == API_LIMIT_OFF:
            return API_LIMIT_OFF
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit: write it like '100 per second' or "
                "'10 per minute' (all but LOGIN_RATE_LIMIT may also be 'off')"
            ) from None
        return value

    @field_validator("audit_trusted_keys")
    @classmethod
    def _trusted_keys(cls, value: str) -> str:
        parse_keys(value)  # ValueError naming the entry that is not an Ed25519 key
        return value.strip()

    @field_validator("signing_key_path", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if value == "" else value  # `SIGNING_KEY_PATH=` as in .env.example

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.var_dir / 'vein2vein.db').resolve()}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if self.signing_key_path is None:
            self.signing_key_path = (self.var_dir / "keys" / "checkpoint-ed25519.pem").resolve()
        if self.webhook_allow_private_targets is None:
            self.webhook_allow_private_targets = self.app_env == "development"
        if self.app_env != "development" and self.secret_key == DEVELOPMENT_SECRET:
            raise ValueError(f"SECRET_KEY must be set to a real secret when APP_ENV={self.app_env}")
        if self.app_env == "production" and not self.webhook_secret_key.strip():
            raise ValueError(
                "WEBHOOK_SECRET_KEY must be set when APP_ENV=production: it seals webhook "
                'signing secrets at rest (python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            )
        for key in self.webhook_secret_keys:
            check_key(key)
        self.oidc_issuer = self.oidc_issuer.strip()
        self.oidc_sites = ",".join(
            code.strip() for code in self.oidc_sites.split(",") if code.strip()
        )
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            raise ValueError("OIDC_ISSUER needs OIDC_CLIENT_ID and OIDC_CLIENT_SECRET")
        if not self.ratelimit_storage_url:
            redis_broker = self.broker_url.startswith(("redis://", "rediss://"))
            self.ratelimit_storage_url = self.broker_url if redis_broker else "memory://"
        if not self.ratelimit_storage_url.startswith(RATELIMIT_STORES):
            raise ValueError(
                f"RATELIMIT_STORAGE_URL must start with one of {', '.join(RATELIMIT_STORES)}"
            )
        if self.app_env == "production" and self.ratelimit_storage_url.startswith("memory"):
            raise ValueError(
                "RATELIMIT_STORAGE_URL must be redis://... in production: in-memory counters "
                "are per process, so each gunicorn worker would allow the full rate"
            )
        return self

    @property
    def webhook_secret_keys(self) -> list[str]:
        """WEBHOOK_SECRET_KEY's keys, the sealing one first; outside production, when it is
        empty, one derived from SECRET_KEY."""
        given = [key.strip() for key in self.webhook_secret_key.split(",") if key.strip()]
        return given or [derived_key(self.secret_key)]

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver we ship: psycopg 3 for PostgreSQL."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def trusted_public_keys(self) -> list[bytes]:
        """``AUDIT_TRUSTED_KEYS`` as raw keys (the key file's own is added by whoever reads
        it: services.operations.keys.installation_trust)."""
        return parse_keys(self.audit_trusted_keys)

    @property
    def broker_folder(self) -> Path:
        return (self.var_dir / "broker").resolve()

    @property
    def mail_folder(self) -> Path:
        return (self.var_dir / "mail").resolve()
