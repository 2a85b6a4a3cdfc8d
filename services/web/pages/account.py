"""Everyone's own account: change the password, sign out everywhere, one's own API tokens."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import login_required, login_user

from services.domain.errors import DomainError, InvalidRequest, SignatureRefused
from services.operations import admin, passwords
from services.web import forms
from services.web.pages import pages
from services.web.security import SessionUser, session_actor
from services.web.state import login_policy, unit_of_work, utcnow


def _tokens() -> list[Any]:
    with unit_of_work() as uow:
        return admin.tokens_of(uow.session, email=session_actor().email)


@pages.route("/account")
@login_required
def account() -> str:
    return render_template("account.html", actor=session_actor(), tokens=_tokens(), new_token=None)


def _sign_in_again(key: str) -> None:
    """The user's sessions ended with their new key; this one goes on under it."""
    actor = session_actor()
    session.clear()
    session.permanent = True
    login_user(SessionUser(actor, key))


@pages.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> Any:
    actor = session_actor()
    if request.method == "GET":
        return render_template("change_password.html", actor=actor)
    try:
        new = forms.password("new_password")
        if new != forms.password("confirm_password"):
            raise InvalidRequest("the two new passwords differ")
        with unit_of_work() as uow:
            try:
                key = passwords.change_password(
                    uow.session,
                    actor=actor,
                    current=forms.password("current_password"),
                    new=new,
                    now=utcnow(),
                    policy=login_policy(),
                )
            except SignatureRefused:
                uow.commit()  # the failure counts towards the lock-out
                raise
            uow.commit()
    except DomainError as error:
        flash(f"Not changed: {error.detail}")
        return render_template("change_password.html", actor=actor), 422
    _sign_in_again(key)
    flash("Your password is changed; your other sessions are signed out.")
    return redirect(url_for("pages.account"), 303)


@pages.route("/account/sign-out-everywhere", methods=["POST"])
@login_required
def sign_out_everywhere() -> Any:
    with unit_of_work() as uow:
        key = passwords.sign_out_everywhere(uow.session, actor=session_actor())
        uow.commit()
    _sign_in_again(key)
    flash("Every other session of yours is signed out.")
    return redirect(url_for("pages.account"), 303)


@pages.route("/account/tokens", methods=["POST"])
@login_required
def create_token() -> Any:
    actor = session_actor()
    try:
        name = forms.text("name", max_length=100, required=True, label="the token's name")
        days = (
            forms.number("days", high=3650, label="days")
            if forms.optional("days", max_length=5)
            else None
        )
        expires = utcnow() + dt.timedelta(days=days) if days else None
        with unit_of_work() as uow:
            _row, secret = admin.issue_token(
                uow.session,
                by=actor,
                email=actor.email,
                name=name,
                expires_at=expires,
                now=utcnow(),
            )
            uow.commit()
    except DomainError as error:
        flash(f"Not made: {error.detail}")
        return redirect(url_for("pages.account"), 303)
    return render_template("account.html", actor=actor, tokens=_tokens(), new_token=secret)


@pages.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int) -> Any:
    try:
        with unit_of_work() as uow:
            row = admin.revoke_token(
                uow.session, actor=session_actor(), token_id=forms.row_id(token_id), now=utcnow()
            )
            uow.commit()
        flash(f"Token {row.name} ({row.prefix}...) is revoked.")
    except DomainError as error:
        flash(f"Not revoked: {error.detail}")
    return redirect(url_for("pages.account"), 303)
