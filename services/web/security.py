"""Sessions, CSRF, rate limits and security headers: the web app's gates, set up in one place.

- API calls authenticate with bearer tokens (``api/blueprint.py``); they carry no cookies, so
  they need no CSRF token. Pages authenticate with a login session (Flask-Login) and every form
  they post carries a CSRF token (Flask-WTF).
- Rate limits count login attempts per client address (Flask-Limiter), API calls per token
  (``api_limit.ApiLimit``, which leases shares of a window so a call seldom waits on Redis),
  and API calls answered 401 per client address (no token, or an unknown one: past their
  limit the address is refused before any token of it is looked up), in Redis in production
  so that every gunicorn worker counts together.
- A login session keeps its own clock (signed into the session cookie by the server): a
  request after SESSION_IDLE_MINUTES without one, or SESSION_HOURS after the sign-in, finds
  the user signed out, and the login page says why.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, flash, g, jsonify, redirect, request, session, url_for
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, current_user, logout_user, user_logged_in
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response as BaseResponse

from services.config import API_LIMIT_OFF, Settings
from services.domain.custody import Actor
from services.operations.admin import hash_token
from services.operations.passwords import SSO_KEY, actor_for_session
from services.web.api_limit import ApiLimit
from services.web.errors import error_page, problem, wants_page
from services.web.state import unit_of_work

API_PREFIX = "/api/"
FAMILY = "family"  # the blueprint of the family's status page (services/web/family.py)
# the session's clock: when its user signed in, and when they last asked for anything
SIGNED_IN_AT, LAST_SEEN_AT = "_signed_in_at", "_last_seen_at"
# pages that sign a stale session out and go on (the others send it to the login page)
SIGN_IN_PAGES = frozenset({"pages.login", "pages.logout", "pages.sso_login", "pages.sso_callback"})

csrf = CSRFProtect()


class SessionUser(UserMixin):
    """The logged-in user of a page request; ``actor`` is what operations are called with."""

    def __init__(
        self,
        actor: Actor,
        key: str,
        *,
        must_change_password: bool = False,
        single_sign_on: bool = False,
    ) -> None:
        self.actor = actor
        self._key = key
        self.must_change_password = must_change_password
        # signed in at the identity provider: signs there too (pages/sso.py)
        self.single_sign_on = single_sign_on

    def get_id(self) -> str:
        return self._key


def session_actor() -> Actor:
    user = current_user._get_current_object()
    assert isinstance(user, SessionUser), "only for @login_required views"
    return user.actor


def _credential_key() -> str:
    """API calls count per token (hashed: the counter store never sees one), else per address."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "token:" + hash_token(token.strip())[:32]
    return "addr:" + get_remote_address()


class RecentTokens:
    """The tokens (as their counting keys) that authenticated in this process lately. While an
    address is refused for its failed calls, a call from it with one of these is still let
    through to be authenticated: a flood of made-up tokens from a hospital's one address does
    not stop its scanners that were working a moment ago."""

    def __init__(self, *, keep_seconds: float = 3600.0, most: int = 10_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._keep = keep_seconds
        self._most = most
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._seen[key] = time.monotonic() + self._keep
            self._seen.move_to_end(key)
            while len(self._seen) > self._most:
                self._seen.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            until = self._seen.get(str(key))
        return until is not None and until > time.monotonic()


def _too_many(limit: RequestLimit) -> Response:
    retry = max(1, int(limit.reset_at - dt.datetime.now(dt.UTC).timestamp()))
    return _refusal(str(limit.limit), retry)


def _refusal(limit: str, retry: int) -> Response:
    detail = f"more than {limit} from this client; try again in {retry} s"
    if wants_page():
        response = error_page("rate_limited", "Too many attempts", detail, 429)
    else:
        response = problem("rate_limited", "Too many requests", detail, 429)
    response.headers["Retry-After"] = str(retry)
    return response


def install(app: Flask, settings: Settings) -> None:
    production = settings.app_env == "production"
    app.config.update(
        SESSION_COOKIE_NAME="vein2vein_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=production,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.session_hours),
        # CSRF is checked for page requests only (below): the API takes no cookies
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=int(settings.session_hours * 3600),
        WTF_CSRF_SSL_STRICT=production,
    )
    csrf.init_app(app)

    login_manager = LoginManager()
    login_manager.login_view = "pages.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.session_protection = "strong"
    login_manager.init_app(app)

    @login_manager.user_loader
    def _load(key: str) -> SessionUser | None:
        with unit_of_work() as uow:
            state = actor_for_session(uow.session, key)
        if state is None:
            return None
        return SessionUser(
            state.actor,
            key,
            must_change_password=state.must_change_password,
            single_sign_on=key.endswith(SSO_KEY),
        )

    @app.before_request
    def _page_csrf() -> None:
        # the family's status page has no session to ride on: its token is its only key
        if not request.path.startswith(API_PREFIX) and request.blueprint != FAMILY:
            csrf.protect()

    _install_session_clock(app, settings)

    limiter = Limiter(
        _credential_key,
        app=app,
        storage_uri=settings.ratelimit_storage_url,
        strategy="moving-window",
        on_breach=_too_many,
        # no X-RateLimit-* headers on every answer: each costs the counter store a second
        # round trip per request (the window's state, read after the hit); a refusal still
        # says when to try again (Retry-After, _too_many)
        headers_enabled=False,
        # a counter store that is down must not stop scans: fall back to per-process counting
        in_memory_fallback_enabled=True,
        key_prefix="vein2vein",
    )
    app.extensions["vein2vein_limiter"] = limiter
    # Flask-Limiter counts sign-ins only: it need not resolve limits for each API call
    limiter.request_filter(lambda: request.path.startswith(API_PREFIX))
    api_limit = None
    if settings.api_rate_limit != API_LIMIT_OFF:
        api_limit = ApiLimit(settings.api_rate_limit, settings.ratelimit_storage_url)
    app.extensions["vein2vein_api_limit"] = api_limit

    # calls answered 401, counted per client address (an unknown token would otherwise be a
    # fresh count of its own each time)
    failures = None
    if settings.api_auth_failure_limit != API_LIMIT_OFF:
        failures = ApiLimit(settings.api_auth_failure_limit, settings.ratelimit_storage_url)
    recent = RecentTokens()
    app.extensions["vein2vein_auth_failures"] = failures

    @app.before_request
    def _api_limit() -> Response | None:
        # app-wide hooks run before the API blueprint's, so a call is counted before its token
        # is checked: a flood of bad tokens is refused as cheaply as one of good ones
        if not request.path.startswith(API_PREFIX):
            return None
        credential = _credential_key()
        if failures is not None and request.blueprint == "api" and credential not in recent:
            # an address whose failed calls are over their limit: refused before its token is
            # looked up (once this process has seen the limit reached; asking no one); the
            # OpenAPI document, which takes no token, is still served
            known = failures.refused_already("addr:" + get_remote_address())
            if known is not None:
                return _refusal(str(known.limit), known.retry_after)
        if api_limit is None:
            return None
        refused = api_limit.take(credential)
        return None if refused is None else _refusal(str(refused.limit), refused.retry_after)

    @app.after_request
    def _count_failures(response: Response) -> Response:
        if failures is None or not request.path.startswith(API_PREFIX):
            return response
        if g.get("actor") is not None:
            recent.add(_credential_key())
        elif response.status_code == 401:
            refused = failures.take("addr:" + get_remote_address())
            if refused is not None:
                return _refusal(str(refused.limit), refused.retry_after)
        return response

    # the limiter is per app (tests make several), so the login view is wrapped here
    login_limit = limiter.limit(
        settings.login_rate_limit, key_func=get_remote_address, methods=["POST"]
    )
    app.view_functions["pages.login"] = login_limit(app.view_functions["pages.login"])  # type: ignore[assignment]

    # a signature's re-authentication is a form posted here and redirected to the identity
    # provider: the browser checks form-action against that redirect too
    form_action = "'self'"
    if settings.oidc_issuer:
        form_action += " " + _origin(settings.oidc_issuer)
    policy = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        f"script-src 'self'; frame-ancestors 'none'; form-action {form_action}"
    )

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith(API_PREFIX):
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Content-Security-Policy", policy)
            if g.get("no_store", True):
                response.headers.setdefault("Cache-Control", "no-store")
        return response


def _install_session_clock(app: Flask, settings: Settings) -> None:
    idle = settings.session_idle_minutes * 60
    longest = settings.session_hours * 3600

    @user_logged_in.connect_via(app)
    def _started(_sender: Any, **_extra: Any) -> None:
        session[SIGNED_IN_AT] = session[LAST_SEEN_AT] = _now()

    @app.before_request
    def _session_clock() -> BaseResponse | None:
        if request.path.startswith(API_PREFIX) or request.endpoint == "static":
            return None
        if request.blueprint == FAMILY:
            return None  # no sign-in there: a care team's session is neither kept nor ended
        if "_user_id" not in session:  # Flask-Login's: nobody is signed in
            return None
        now = _now()
        seen, since = session.get(LAST_SEEN_AT), session.get(SIGNED_IN_AT)
        if not isinstance(seen, float | int) or not isinstance(since, float | int):
            why = "Your session has ended. Sign in again."
        elif now - seen > idle:
            why = f"You were signed out after {_minutes(idle)} without activity. Sign in again."
        elif now - since > longest:
            why = f"You were signed out {_minutes(longest)} after signing in. Sign in again."
        else:
            session[LAST_SEEN_AT] = now
            return None
        logout_user()
        session.clear()
        flash(why)
        if request.endpoint in SIGN_IN_PAGES:
            return None
        if request.accept_mimetypes.best == "application/json":  # the scan page's own fetch
            body = {"ok": False, "code": "signed_out", "headline": "SIGNED OUT", "detail": why}
            answer = jsonify(body)
            answer.status_code = 401
            return answer
        target = request.full_path if request.query_string else request.path
        return redirect(url_for("pages.login", next=target if request.method == "GET" else None))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} seconds"
    if seconds >= 7200 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} hours"
    minutes = seconds / 60
    return f"{minutes:g} minute{'' if minutes == 1 else 's'}"
