"""The family's status page, /status/<token>: no sign-in, no session cookie, no CSRF token
(the token in the address is the only key, and no form here acts for anyone but its holder),
no script. Never cached or indexed, and the address is never sent on as a referrer.

An unknown, revoked or expired link all answer the same friendly 404: nothing says whether an
order exists.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from services.domain.errors import DomainError, NotFound
from services.operations import family_emails, family_status
from services.web.state import state, unit_of_work, utcnow

family = Blueprint("family", __name__)


@family.after_request
def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _missing() -> tuple[str, int]:
    return render_template("family_missing.html"), 404


@family.route("/status/<token>")
def status_page(token: str) -> Any:
    now = utcnow()
    try:
        with unit_of_work() as uow:
            link = family_status.open_link(uow.session, token=token, now=now)
            view = family_status.family_view(uow.session, link=link, now=now)
            uow.commit()  # the view, counted
    except NotFound:
        return _missing()
    return render_template(
        "family_status.html",
        view=view,
        token=token,
        said=request.args.get("emails"),
    )


@family.route("/status/<token>/emails", methods=["POST"])
def status_emails(token: str) -> Any:
    """The family turns e-mails about new stages on (with an address) or off."""
    now = utcnow()
    stop = request.form.get("emails") == "off"
    try:
        with unit_of_work() as uow:
            link = family_status.open_link(uow.session, token=token, now=now, count=False)
            address = (request.form.get("email") or "")[:254]
            family_emails.set_emails(
                uow.session, link=link, email=None if stop else address, now=now
            )
            uow.commit()
    except NotFound:
        return _missing()
    except DomainError:
        said = "invalid"
    else:
        said = "off" if stop else "on"
    target = url_for("family.status_page", token=token, emails=said, _anchor="emails")
    return redirect(target, 303)


@family.route("/status/stop/<int:subscription_id>/<signature>", methods=["GET", "POST"])
def stop_emails(subscription_id: int, signature: str) -> Any:
    """The e-mail's own stop link: a button to press (GET, which mail scanners fetch, changes
    nothing), or a one-click POST from the mail program (RFC 8058)."""
    if request.method == "GET":
        return render_template("family_stop.html", stopped=False)
    if not 1 <= subscription_id <= 2**31 - 1:
        return _missing()  # no id we hand out
    try:
        with unit_of_work() as uow:
            family_emails.stop_by_signature(
                uow.session,
                subscription_id=subscription_id,
                signature=signature[:64],
                secret_key=state().settings.secret_key,
                now=utcnow(),
            )
            uow.commit()
    except NotFound:
        return _missing()
    return render_template("family_stop.html", stopped=True)
