"""Server-rendered pages: login and the home page. They call the same operations as the API."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import login_required, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from services.operations import access
from services.operations.passwords import check_password
from services.web.security import SessionUser, session_actor
from services.web.state import login_policy, unit_of_work, utcnow

pages = Blueprint("pages", __name__)

LOGIN_REFUSED = (
    "The e-mail or the password is wrong. After repeated failures the account is locked for a "
    "while; your site administrator can set a new password."
)


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class LogoutForm(FlaskForm):
    """Only its CSRF token: signing out is a POST, so no other site can sign a user out."""


@pages.app_context_processor
def _forms() -> dict[str, object]:
    return {"logout_form": LogoutForm()}


@pages.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    form = LoginForm()
    if form.validate_on_submit():
        with unit_of_work() as uow:
            found = check_password(
                uow.session,
                email=form.email.data or "",
                password=form.password.data or "",
                now=utcnow(),
                policy=login_policy(),
            )
            uow.commit()  # the failure counter too
        if found is None:
            return render_template("login.html", form=form, refused=LOGIN_REFUSED), 401  # type: ignore[return-value]
        actor, key = found
        session.clear()  # a fresh session: nothing from before the login survives it
        session.permanent = True
        login_user(SessionUser(actor, key))
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if form.is_submitted() else 200
    return render_template("login.html", form=form, refused=None), status  # type: ignore[return-value]


@pages.route("/logout", methods=["POST"])
def logout() -> Response:
    if LogoutForm().validate_on_submit():
        logout_user()
        session.clear()
        flash("You are signed out.")
    return redirect(url_for("pages.login"))


@pages.route("/")
@login_required
def home() -> str:
    actor = session_actor()
    with unit_of_work() as uow:
        orders = access.visible_orders(uow.session, actor, limit=100)
        rows = [
            {
                "coi": order.coi,
                "product": order.product,
                "state": order.state.value,
                "patient_ref": order.patient_ref
                if access.may_see_patient_ref(actor, order)
                else None,
                "created_at": order.created_at,
            }
            for order in orders
        ]
    return render_template("home.html", actor=actor, orders=rows)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: ?next= must not send a fresh login to another host."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and "\\" not in target:
            return target
    return url_for("pages.home")


from services.web.pages import work  # noqa: E402, F401 - the working pages
