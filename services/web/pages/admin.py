"""/admin: an admin's site (FIN, signing rules, courier contracts), its users (add, role,
deactivate, reset the password), their API tokens, and the log of every change. A product's
settings are its owning site's QA's (/products)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

from services.domain.custody import Role, SiteKind
from services.domain.errors import DomainError, Forbidden, InvalidRequest
from services.operations import contracts, signing, staff
from services.operations.directory import Directory
from services.web import forms, shown_once
from services.web.pages import pages
from services.web.security import session_actor
from services.web.state import unit_of_work, utcnow


def _admin() -> Any:
    actor = session_actor()
    if actor.role is not Role.ADMIN:
        raise Forbidden("this is an administrator's page")
    return actor


@pages.route("/admin")
@login_required
def admin() -> str:
    actor = _admin()
    with unit_of_work() as uow:
        site = Directory(uow.session).site(actor.site_id)
        context = {
            "site": site,
            "steps": signing.critical_steps(uow.session, site),
            "users": staff.site_users(uow.session, actor),
            "blocked": staff.blocked_clients(uow.session, actor, now=utcnow()),
            "tokens": staff.site_tokens(uow.session, actor),
            "contracted": contracts.contracted_couriers(uow.session, actor.site_id),
            "couriers": [s for s in Directory(uow.session).sites() if s.kind is SiteKind.COURIER],
            "log": staff.changes(uow.session, actor, limit=50),
        }
    # a temporary password comes from the session, once: never from the URL (?temporary=
    # is ignored, so nobody can make this page show a "password" of their choosing)
    return render_template(
        "admin.html",
        actor=actor,
        roles=list(Role),
        temporary=shown_once.take(),
        **context,
    )


def _done(message: str) -> Any:
    flash(message)
    return redirect(url_for("pages.admin"), 303)


@pages.route("/admin/users", methods=["POST"])
@login_required
def admin_add_user() -> Any:
    actor = _admin()
    try:
        with unit_of_work() as uow:
            user, temporary = staff.add_staff(
                uow.session,
                actor=actor,
                email=forms.text("email", max_length=254, required=True, label="e-mail"),
                name=forms.text("name", max_length=200, required=True, label="the printed name"),
                role=Role(forms.text("role", max_length=32, required=True)),
                now=utcnow(),
            )
            uow.commit()
            email = user.email
    except (DomainError, ValueError) as error:
        return _done(f"Not added: {getattr(error, 'detail', str(error))}")
    shown_once.keep(email=email, password=temporary)
    flash(f"{email} added. Hand over the temporary password below; it is shown this once.")
    return redirect(url_for("pages.admin"), 303)


@pages.route("/admin/users/<int:user_id>", methods=["POST"])
@login_required
def admin_change_user(user_id: int) -> Any:
    actor = _admin()
    try:
        change = forms.text("change", max_length=16, required=True)
        with unit_of_work() as uow:
            if change == "role":
                row = staff.set_role(
                    uow.session,
                    actor=actor,
                    user_id=forms.row_id(user_id),
                    role=Role(forms.text("role", max_length=32, required=True)),
                    now=utcnow(),
                )
                message = f"{row.email} is now {row.role.value.replace('_', ' ')}."
            elif change in ("deactivate", "activate"):
                row = staff.set_active(
                    uow.session,
                    actor=actor,
                    user_id=forms.row_id(user_id),
                    active=change == "activate",
                    now=utcnow(),
                )
                message = f"{row.email} is {'active' if row.active else 'deactivated'}."
            elif change == "password":
                row, temporary = staff.reset_password(
                    uow.session, actor=actor, user_id=forms.row_id(user_id), now=utcnow()
                )
                uow.commit()
                email = row.email
                shown_once.keep(email=email, password=temporary)
                flash(f"Temporary password of {email} set; shown this once.")
                return redirect(url_for("pages.admin"), 303)
            else:
                raise InvalidRequest("change the role, activate, deactivate or reset the password")
            uow.commit()
    except (DomainError, ValueError) as error:
        return _done(f"Not changed: {getattr(error, 'detail', str(error))}")
    return _done(message)


@pages.route("/admin/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def admin_revoke_token(token_id: int) -> Any:
    actor = _admin()
    try:
        with unit_of_work() as uow:
            row = staff.revoke_site_token(
                uow.session, actor=actor, token_id=forms.row_id(token_id), now=utcnow()
            )
            uow.commit()
            name = row.name
    except DomainError as error:
        return _done(f"Not revoked: {error.detail}")
    return _done(f"Token {name} is revoked.")


@pages.route("/admin/site", methods=["POST"])
@login_required
def admin_site() -> Any:
    actor = _admin()
    try:
        with unit_of_work() as uow:
            if request.form.get("fin") is not None:
                site = staff.set_fin(
                    uow.session,
                    actor=actor,
                    fin=forms.text("fin", max_length=5, required=True, label="the FIN"),
                    now=utcnow(),
                )
                message = f"{site.code}'s FIN is {site.fin}."
            else:
                staff.set_signing(
                    uow.session,
                    actor=actor,
                    step=forms.text("step", max_length=32, required=True),
                    required=request.form.get("required") == "yes",
                    witness=request.form.get("witness") == "yes",
                    now=utcnow(),
                )
                message = "Signing rules changed."
            uow.commit()
    except DomainError as error:
        return _done(f"Not changed: {error.detail}")
    return _done(message)


@pages.route("/admin/contracts", methods=["POST"])
@login_required
def admin_contracts() -> Any:
    """Contract a courier for the admin's site, or end a contract (on record)."""
    actor = _admin()
    try:
        courier = forms.text("courier", max_length=32, required=True, label="the courier")
        active = forms.text("change", max_length=8) != "end"
        with unit_of_work() as uow:
            site = Directory(uow.session).site(actor.site_id)
            contracts.set_contract(
                uow.session, actor=actor, site=site, courier=courier, active=active, now=utcnow()
            )
            uow.commit()
    except DomainError as error:
        return _done(f"Not changed: {error.detail}")
    return _done(f"{courier} {'contracted' if active else 'no longer contracted'}.")


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a number") from None
    return value
