"""/admin: an admin's site (FIN, signing rules, courier contracts), its users (add, role,
deactivate, reset the password), their API tokens, and the log of every change. A product's
settings are its owning site's QA's (/products)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

from services.domain.custody import Role, SiteKind
from services.domain.errors import DomainError, Forbidden, InvalidRequest
from services.domain.local_time import COMMON_ZONES, known_zones
from services.operations import access, contracts, signing, sites, sso, staff
from services.operations.admin import ROLE_SITE_KINDS
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
    chosen = (request.args.get("site") or actor.site.code).strip()[:32]
    with unit_of_work() as uow:
        try:
            site = access.managed_site(uow.session, actor, chosen)
        except DomainError:
            site = Directory(uow.session).site(actor.site_id)
        assert site.id is not None
        context = {
            "site": site,
            "sites": sites.managed_sites(uow.session, actor),
            "steps": signing.critical_steps(uow.session, site),
            "users": staff.site_users(uow.session, actor),
            "blocked": staff.blocked_clients(uow.session, actor, now=utcnow()),
            "tokens": staff.site_tokens(uow.session, actor),
            "contracted": contracts.contracted_couriers(uow.session, site.id),
            "couriers": [s for s in Directory(uow.session).sites() if s.kind is SiteKind.COURIER],
            "log": staff.changes(uow.session, actor, limit=50),
        }
    context["site_codes"] = {s.id: s.code for s in context["sites"]}  # type: ignore[attr-defined]
    # a temporary password comes from the session, once: never from the URL (?temporary=
    # is ignored, so nobody can make this page show a "password" of their choosing)
    return render_template(
        "admin.html",
        actor=actor,
        roles=list(Role),
        role_kinds={
            role.value: [k.value for k in kinds] for role, kinds in ROLE_SITE_KINDS.items()
        },
        kinds=list(SiteKind),
        zones=known_zones(),
        common_zones=COMMON_ZONES,
        now=utcnow(),
        temporary=shown_once.take(),
        **context,
    )


def _done(message: str, site: str | None = None) -> Any:
    flash(message)
    return redirect(url_for("pages.admin", site=site or None), 303)


def _back() -> str | None:
    """The site a form was about, to show again after it (whatever was sent: only a lookup)."""
    return request.form.get("site", "").strip()[:32] or None


def _site_field() -> str | None:
    """The site a form acts on (a site the admin administers), or None: the admin's own."""
    return forms.optional("site", max_length=32, label="the site")


@pages.route("/admin/sites", methods=["POST"])
@login_required
def admin_add_site() -> Any:
    """A new site of the admin's network (kind, name, FIN, time zone), administered from here
    too; on the admin log."""
    actor = _admin()
    try:
        kind = forms.text("kind", max_length=16, required=True, label="the kind of site")
        if kind not in {k.value for k in SiteKind}:
            raise InvalidRequest("a site is a collection, courier, manufacturing or treatment site")
        with unit_of_work() as uow:
            site = sites.add_site(
                uow.session,
                actor=actor,
                code=forms.text("code", max_length=32, required=True, label="the site's code"),
                kind=SiteKind(kind),
                name=forms.text("name", max_length=200, required=True, label="the site's name"),
                fin=forms.optional("fin", max_length=5, label="the FIN"),
                time_zone=forms.text("time_zone", max_length=64, required=True, label="time zone"),
                now=utcnow(),
            )
            uow.commit()
            code, zone = site.code, site.time_zone
    except DomainError as error:
        return _done(f"Site not added: {error.detail}")
    return _done(f"Site {code} added, on {zone} time. Add its users below.", code)


@pages.route("/admin/sites/<code>", methods=["POST"])
@login_required
def admin_change_site(code: str) -> Any:
    """A site's name or time zone changed (its code and kind never change)."""
    actor = _admin()
    try:
        with unit_of_work() as uow:
            site = sites.change_site(
                uow.session,
                actor=actor,
                code=code[:32],
                name=forms.text("name", max_length=200, required=True, label="the site's name"),
                time_zone=forms.text("time_zone", max_length=64, required=True, label="time zone"),
                # a treatment site's phone for families; absent from the form: unchanged
                phone=request.form.get("phone", None, type=str),
                now=utcnow(),
            )
            uow.commit()
            message = f"{site.code}: {site.name}, on {site.time_zone} time."
            if site.phone:
                message += f" Families call {site.phone}."
    except DomainError as error:
        return _done(f"Not changed: {error.detail}", code[:32])
    return _done(message, code[:32])


@pages.route("/admin/sites/<code>/passwords", methods=["POST"])
@login_required
def admin_site_passwords(code: str) -> Any:
    """A site's own passwords turned on or off (off: single sign-on only), on the admin log."""
    actor = _admin()
    try:
        choice = forms.text("local_passwords", max_length=3, required=True)
        if choice not in ("on", "off"):
            raise InvalidRequest("a site's passwords are on or off")
        with unit_of_work() as uow:
            site = sso.set_local_passwords(
                uow.session, actor=actor, site_code=code[:32], on=choice == "on", now=utcnow()
            )
            uow.commit()
            message = (
                f"{site.code}: its people sign in with a password or single sign-on."
                if site.local_passwords
                else f"{site.code}: its people sign in and sign with single sign-on only "
                "(their API tokens are revoked)."
            )
    except DomainError as error:
        return _done(f"Not changed: {error.detail}", code[:32])
    return _done(message, code[:32])


@pages.route("/admin/users", methods=["POST"])
@login_required
def admin_add_user() -> Any:
    actor = _admin()
    try:
        with unit_of_work() as uow:
            user, temporary = staff.add_staff(
                uow.session,
                actor=actor,
                site_code=_site_field(),
                email=forms.text("email", max_length=254, required=True, label="e-mail"),
                name=forms.text("name", max_length=200, required=True, label="the printed name"),
                role=Role(forms.text("role", max_length=32, required=True)),
                now=utcnow(),
            )
            uow.commit()
            email = user.email
    except ValueError:
        return _done("Not added: choose the user's role from the list")
    except DomainError as error:
        return _done(f"Not added: {error.detail}", _back())
    shown_once.keep(email=email, password=temporary)
    flash(f"{email} added. Hand over the temporary password below; it is shown this once.")
    return redirect(url_for("pages.admin", site=_back()), 303)


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
            elif change == "unbind_sso":
                row = staff.unbind_provider(
                    uow.session, actor=actor, user_id=forms.row_id(user_id), now=utcnow()
                )
                message = f"{row.email} is bound to nobody at the identity provider now."
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
                raise InvalidRequest(
                    "change the role, activate, deactivate, reset the password or unbind "
                    "single sign-on"
                )
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
    where = _back()
    try:
        _site_field()  # checked: at most 32 characters, no control characters
        with unit_of_work() as uow:
            if request.form.get("fin") is not None:
                site = staff.set_fin(
                    uow.session,
                    actor=actor,
                    fin=forms.text("fin", max_length=5, required=True, label="the FIN"),
                    now=utcnow(),
                    site_code=where,
                )
                message = f"{site.code}'s FIN is {site.fin}."
            else:
                staff.set_signing(
                    uow.session,
                    actor=actor,
                    step=forms.text("step", max_length=32, required=True, label="the step"),
                    required=request.form.get("required") == "yes",
                    witness=request.form.get("witness") == "yes",
                    now=utcnow(),
                    site_code=where,
                )
                message = "Signing rules changed."
            uow.commit()
    except DomainError as error:
        return _done(f"Not changed: {error.detail}", where)
    return _done(message, where)


@pages.route("/admin/contracts", methods=["POST"])
@login_required
def admin_contracts() -> Any:
    """Contract a courier for the admin's site, or end a contract (on record)."""
    actor = _admin()
    where = _back()
    try:
        _site_field()  # checked: at most 32 characters, no control characters
        courier = forms.text("courier", max_length=32, required=True, label="the courier")
        active = forms.text("change", max_length=8) != "end"
        with unit_of_work() as uow:
            site = access.managed_site(uow.session, actor, where or actor.site.code)
            contracts.set_contract(
                uow.session, actor=actor, site=site, courier=courier, active=active, now=utcnow()
            )
            uow.commit()
    except DomainError as error:
        return _done(f"Not changed: {error.detail}", where)
    return _done(f"{courier} {'contracted' if active else 'no longer contracted'}.", where)


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a number") from None
    return value
