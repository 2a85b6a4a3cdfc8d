"""Server-rendered pages: sign-in, each role's navigation and home page, and (in the modules
below) the pages people work in. They call the same operations as the API, as the signed-in
user; forms carry CSRF tokens."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from services.domain.custody import Role
from services.domain.notifications import summary
from services.operations import alerts as alert_ops
from services.operations import home as home_view
from services.operations.passwords import actor_for_session, check_password
from services.web import clock, words
from services.web.security import SessionUser, session_actor
from services.web.state import login_policy, unit_of_work, utcnow

pages = Blueprint("pages", __name__)

LOGIN_REFUSED = (
    "The e-mail or the password is wrong. After repeated failures this device must wait a "
    "while before it may try again; your site administrator can set a new password."
)


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class LogoutForm(FlaskForm):
    """Only its CSRF token: signing out is a POST, so no other site can sign a user out."""


# each role's navigation: what that role does, in the order of its day
NAV: dict[Role, list[tuple[str, str]]] = {
    Role.APHERESIS_STAFF: [
        ("pages.new_order", "New order"),
        ("pages.scan_station", "Scan"),
        ("pages.new_shipment", "Ship bags"),
        ("pages.shipments", "Shipments"),
        ("pages.shippers_page", "Shippers"),
    ],
    Role.COURIER: [("pages.shipments", "My shipments"), ("pages.scan_station", "Scan")],
    Role.MANUFACTURING_OPERATOR: [
        ("pages.shipments", "Receive"),
        ("pages.scan_station", "Scan"),
        ("pages.batch_board", "Batches"),
        ("pages.capacity_board", "Capacity"),
        ("pages.new_shipment", "Ship products"),
        ("pages.shippers_page", "Shippers"),
    ],
    Role.CARE_TEAM: [
        ("pages.new_order", "New order"),
        ("pages.shipments", "Receive"),
        ("pages.bedside", "Bedside"),
        ("pages.treatment_week", "Week"),
        ("pages.scan_station", "Scan"),
        ("pages.subscriptions", "Subscriptions"),
    ],
    Role.QA: [
        ("pages.holds", "Holds"),
        ("pages.review", "Review"),
        ("pages.batch_board", "Batches"),
        ("pages.capacity_board", "Capacity"),
        ("pages.control_tower", "Control tower"),
        ("pages.scan_station", "Scan"),
        ("pages.products_page", "Products"),
        ("pages.subscriptions", "Subscriptions"),  # witnesses of the audit checkpoints
    ],
    Role.ADMIN: [
        ("pages.admin", "Admin"),
        ("pages.new_order", "New order"),
        ("pages.control_tower", "Control tower"),
        ("pages.subscriptions", "Subscriptions"),
    ],
}
# pages a user with a temporary password may open: to change it, or to leave
CHANGE_FIRST = frozenset(
    {"pages.change_password", "pages.logout", "pages.login", "static", "pages.sso_callback"}
)


@pages.record_once
def _times(setup: object) -> None:
    clock.install(setup.app)  # type: ignore[attr-defined]
    words.install(setup.app)  # type: ignore[attr-defined]


@pages.app_context_processor
def _forms() -> dict[str, object]:
    if request.blueprint == "family":
        return {}  # no CSRF token (it would set a session cookie), no signed-in navigation
    context: dict[str, object] = {"logout_form": LogoutForm()}
    if current_user.is_authenticated:
        actor = session_actor()
        with unit_of_work() as uow:
            # what needs a look: critical alerts not yet acknowledged and unread warnings
            context["unread_alerts"] = alert_ops.needing_a_look(uow.session, actor)
        context["nav"] = [("pages.home", "Home"), *NAV[actor.role], ("pages.alerts", "Alerts")]
    return context


@pages.before_app_request
def _temporary_password_first() -> Response | None:
    """A temporary password is changed before anything else is done."""
    if (
        request.path.startswith("/api/")
        or request.endpoint in CHANGE_FIRST
        or request.blueprint == "family"  # the family's page knows no sign-in
    ):
        return None
    user = current_user
    if user.is_authenticated and getattr(user, "must_change_password", False):
        return redirect(url_for("pages.change_password"))
    return None


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
        with unit_of_work() as uow:
            state = actor_for_session(uow.session, key)
        must_change = bool(state and state.must_change_password)
        login_user(SessionUser(actor, key, must_change_password=must_change))
        if must_change:
            flash("Your password is temporary: choose your own to continue.")
            return redirect(url_for("pages.change_password"))
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
        waiting = home_view.home(uow.session, actor)
        triaged = alert_ops.site_alerts(
            uow.session, actor, clock=clock.plain, unread_only=True, limit=100
        )
    return render_template(
        "home.html",
        actor=actor,
        home=waiting,
        summary=summary,
        first=(triaged.pinned + triaged.alerts)[:5],
    )


def _safe_next(target: str | None) -> str:
    """Only a path on this site: ?next= must not send a fresh login to another host."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and "\\" not in target:
            return target
    return url_for("pages.home")


# the working pages, each a module of its own, registering its routes on ``pages``
import services.web.pages.account  # noqa: E402
import services.web.pages.admin  # noqa: E402
import services.web.pages.alerts  # noqa: E402
import services.web.pages.bedside  # noqa: E402
import services.web.pages.condition  # noqa: E402
import services.web.pages.orders  # noqa: E402
import services.web.pages.plans  # noqa: E402
import services.web.pages.products  # noqa: E402
import services.web.pages.review  # noqa: E402
import services.web.pages.shipments  # noqa: E402
import services.web.pages.sso  # noqa: E402
import services.web.pages.status_links  # noqa: E402
import services.web.pages.work  # noqa: E402, F401
