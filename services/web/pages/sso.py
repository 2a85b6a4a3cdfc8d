"""Single sign-on pages: "Sign in with <hospital>", the provider's answer, and a signature's
re-authentication at the provider (the performer's, or a witness's at the same screen).

The pending authorization request (state, nonce, PKCE verifier, what it is for, and when a
signature was asked for) lives in the signed login session until its answer comes back, and
is used once. A signature's answer must carry an ``auth_time`` at or after that moment; its
ticket waits in the session for the act posted from ``purpose`` (the act's page path)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from services.domain.errors import DomainError
from services.domain.sso import check_reauthentication
from services.operations import sso
from services.operations.signing import Tickets
from services.web import forms
from services.web.oidc import Pending, Provider, new_pending
from services.web.pages import LoginForm, _safe_next, pages
from services.web.security import SessionUser, session_actor
from services.web.state import state, unit_of_work, utcnow

PENDING = "_oidc_pending"  # state -> what the request was for (at most MOST_PENDING kept)
TICKETS = "_oidc_tickets"  # purpose -> {"performer": token, "witness": token}
MOST_PENDING = 5


class SignForm(FlaskForm):
    """Only its CSRF token: a signature's re-authentication is started by a POST."""


def provider() -> Provider | None:
    found = current_app.extensions.get("vein2vein_oidc")
    if found is None and state().settings.oidc_issuer:
        found = current_app.extensions["vein2vein_oidc"] = Provider(state().settings)
    return found


def _configured() -> Provider:
    found = provider()
    if found is None:
        abort(404)
    return found


def _callback_url() -> str:
    return url_for("pages.sso_callback", _external=True)


def _begin(found: Provider, what: dict[str, Any], *, signing: bool, hint: str | None) -> Response:
    pending = new_pending()
    kept = dict(session.get(PENDING) or {})
    while len(kept) >= MOST_PENDING:
        kept.pop(next(iter(kept)))
    kept[pending.state] = {**what, "nonce": pending.nonce, "verifier": pending.verifier}
    session[PENDING] = kept
    try:
        target = found.authorization_url(_callback_url(), pending, signing=signing, login_hint=hint)
    except DomainError as error:
        return _refused(error)
    return redirect(target, 303)


@pages.route("/sso/login")
def sso_login() -> Response:
    """Sign in at the identity provider."""
    found = _configured()
    return _begin(
        found, {"kind": "sign_in", "next": request.args.get("next")}, signing=False, hint=None
    )


@pages.route("/sso/sign", methods=["POST"])
@login_required
def sso_sign() -> Response:
    """Re-authenticate at the provider for one signature: the signed-in user's own
    (``role=performer``) or a witness's (``role=witness``), for the act posted from
    ``purpose``; back to ``return_to`` after."""
    found = _configured()
    if not SignForm().validate_on_submit():
        abort(400)
    actor = session_actor()
    role = forms.text("role", max_length=16, required=True)
    if role not in ("performer", "witness"):
        abort(400)
    # (stored with the SHA-256 of what it signs: 65 more characters of the column's 300)
    purpose = _safe_next(forms.text("purpose", max_length=230, required=True))
    what = {
        "kind": "sign",
        "role": role,
        "purpose": purpose,
        "return_to": _safe_next(request.form.get("return_to") or purpose),
        "requested_at": utcnow().timestamp(),
        "user_id": actor.user_id,
        # what is signed, as the screen shows it (the bedside's bag, patient and event; a
        # correction's event and reason): the ticket is bound to it, and the page shows it
        # again on return
        "keep": {
            name.removeprefix("keep_"): str(value)[:1000]
            for name, value in request.form.items()
            if name.startswith("keep_") and len(name) <= 40
        },
    }
    return _begin(found, what, signing=True, hint=actor.email if role == "performer" else None)


@pages.route("/sso/callback")
def sso_callback() -> Response | tuple[str, int]:
    """The provider's answer: a sign-in, or a signature's re-authentication."""
    found = _configured()
    kept = dict(session.get(PENDING) or {})
    what = kept.pop(request.args.get("state", ""), None)
    session[PENDING] = kept  # used once, whatever the answer
    if what is None:
        return _refused_page(
            "This answer is not for a sign-in started here, or it was used already."
        )
    if request.args.get("error"):
        why = request.args.get("error_description") or request.args["error"]
        return _refused_page(f"The identity provider did not sign you in: {why[:200]}")
    pending = Pending(state="", nonce=what["nonce"], verifier=what["verifier"])
    try:
        identity = found.identity(_callback_url(), request.args.get("code", ""), pending)
        if what["kind"] == "sign":
            return _signed(what, identity)
        with unit_of_work() as uow:
            actor, key = sso.sign_in(
                uow.session, identity, now=utcnow(), sites=state().settings.oidc_sites
            )
            uow.commit()
    except DomainError as error:
        if what["kind"] == "sign":
            flash(f"Not signed: {error.detail}")
            return redirect(what["return_to"], 303)
        return _refused_page(error.detail)
    session.clear()  # a fresh session: nothing from before the sign-in survives it
    session.permanent = True
    login_user(SessionUser(actor, key, single_sign_on=True))
    return redirect(_safe_next(what.get("next")), 303)


def _signed(what: dict[str, Any], identity: Any) -> Response:
    actor = session_actor() if current_user.is_authenticated else None
    if actor is None or actor.user_id != what["user_id"]:
        flash("Not signed: you were signed out meanwhile.")
        return redirect(url_for("pages.login"), 303)
    requested = dt.datetime.fromtimestamp(what["requested_at"], dt.UTC)
    authenticated = check_reauthentication(
        identity, requested_at=what["requested_at"], now=utcnow().timestamp()
    )
    with unit_of_work() as uow:
        token = sso.issue_ticket(
            uow.session,
            actor=actor,
            identity=identity,
            witness=what["role"] == "witness",
            purpose=what["purpose"],
            subject=what.get("keep") or {},
            requested_at=requested,
            authenticated_at=dt.datetime.fromtimestamp(authenticated, dt.UTC),
            now=utcnow(),
            lifetime=dt.timedelta(minutes=state().settings.oidc_signing_ticket_minutes),
            sites=state().settings.oidc_sites,
        )
        uow.commit()
    held = dict(session.get(TICKETS) or {})
    held[what["purpose"]] = {
        **held.get(what["purpose"], {}),
        what["role"]: token,
        "keep": what.get("keep") or {},
    }
    session[TICKETS] = held
    who = "The witness is" if what["role"] == "witness" else "You are"
    flash(f"{who} authenticated again at {state().settings.oidc_name}: confirm to sign.")
    return redirect(what["return_to"], 303)


def tickets_for(
    purpose: str | None = None, subject: dict[str, str] | None = None
) -> Tickets | None:
    """The re-authentications waiting in this session for the act posted to ``purpose`` (by
    default this request's path), taken out of the session: each is offered to one act, on
    ``subject`` (what the act records; its ticket must have been issued for the same)."""
    purpose = purpose or request.path
    held = dict(session.get(TICKETS) or {})
    mine = held.pop(purpose, None)
    if not mine:
        return None
    session[TICKETS] = held
    return Tickets(
        purpose=purpose,
        performer=mine.get("performer"),
        witness=mine.get("witness"),
        subject=subject or {},
    )


def waiting(purpose: str) -> dict[str, bool]:
    """Which re-authentications wait for the act posted to ``purpose`` (for the page)."""
    mine = (session.get(TICKETS) or {}).get(purpose) or {}
    return {"performer": "performer" in mine, "witness": "witness" in mine}


def kept(purpose: str) -> dict[str, str]:
    """The act's page fields kept across a re-authentication (``keep_*`` of /sso/sign)."""
    mine = (session.get(TICKETS) or {}).get(purpose) or {}
    return dict(mine.get("keep") or {})


def _refused(error: DomainError) -> Response:
    flash(f"Single sign-on is not available: {error.detail}")
    return redirect(url_for("pages.login"), 303)


def _refused_page(detail: str) -> tuple[str, int]:
    return render_template("login.html", form=LoginForm(), refused=detail), 403


@pages.app_context_processor
def _single_sign_on() -> dict[str, object]:
    found = provider()
    user = current_user
    return {
        "sso_name": found.name if found is not None else None,
        "sso_user": bool(getattr(user, "single_sign_on", False)),
        "sso_sign_form": SignForm() if found is not None else None,
        "sso_waiting": waiting,
        "sso_kept": kept,
    }
