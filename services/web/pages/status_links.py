"""The care team's side of the family's status page, on the order's page: make a share link
(shown once), revoke it, and mark news discussed with the family."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, url_for
from flask_login import login_required

from services.domain.errors import DomainError, InvalidRequest
from services.operations import family_status
from services.operations.queries import coi_value
from services.web import forms, shown_once
from services.web.api.status_links import status_url
from services.web.pages import pages
from services.web.security import session_actor
from services.web.state import unit_of_work, utcnow


def _back(coi: str) -> Any:
    return redirect(url_for("pages.order_timeline", coi=coi, _anchor="family"), 303)


@pages.route("/orders/<coi>/status-links", methods=["POST"])
@login_required
def make_status_link(coi: str) -> Any:
    actor = session_actor()
    try:
        days_text = forms.optional("expires_in_days", max_length=4, label="days")
        try:
            days = int(days_text) if days_text else None
        except ValueError:
            raise InvalidRequest("the link lasts a whole number of days") from None
        with unit_of_work() as uow:
            link, token = family_status.make_link(
                uow.session, actor=actor, coi=coi_value(coi), days=days, now=utcnow()
            )
            uow.commit()
            link_id = link.id
        # the token is shown once, on the next page only (never in a URL of ours or a log)
        shown_once.keep(status_url=status_url(token), link_id=str(link_id))
        flash("Status link made: copy it now and give it to the family. It is shown only once.")
    except DomainError as error:
        flash(f"No link made: {error.detail}")
    return _back(coi)


@pages.route("/orders/<coi>/status-links/<int:link_id>/revoke", methods=["POST"])
@login_required
def revoke_status_link(coi: str, link_id: int) -> Any:
    actor = session_actor()
    try:
        with unit_of_work() as uow:
            family_status.revoke_link(
                uow.session,
                actor=actor,
                coi=coi_value(coi),
                link_id=forms.row_id(link_id),
                now=utcnow(),
            )
            uow.commit()
        flash(f"Status link {link_id} revoked: it no longer opens.")
    except DomainError as error:
        flash(f"Not revoked: {error.detail}")
    return _back(coi)


@pages.route("/orders/<coi>/status-news/<int:sequence>/discussed", methods=["POST"])
@login_required
def mark_news_discussed(coi: str, sequence: int) -> Any:
    actor = session_actor()
    try:
        with unit_of_work() as uow:
            family_status.mark_discussed(
                uow.session,
                actor=actor,
                coi=coi_value(coi),
                sequence=forms.row_id(sequence),
                reason=forms.text("reason", max_length=500, required=True, label="how"),
                now=utcnow(),
            )
            uow.commit()
        flash("Marked discussed: the family's status page shows it now.")
    except DomainError as error:
        flash(f"Not marked: {error.detail}")
    return _back(coi)
