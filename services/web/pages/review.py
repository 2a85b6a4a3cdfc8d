"""QA's review queue: each refused scan or flagged event closed with a correction or a signed
"reviewed, no action" note."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy.exc import IntegrityError

from services.domain.errors import DomainError, InvalidRequest, SignatureRefused
from services.operations import review as review_ops
from services.web import forms
from services.web.pages import pages
from services.web.security import session_actor
from services.web.state import login_policy, unit_of_work, utcnow


@pages.route("/review")
@login_required
def review() -> str:
    actor = session_actor()
    with unit_of_work() as uow:
        items = review_ops.queue(uow.session, actor)
    groups: dict[str, list[review_ops.Item]] = {}
    for item in items:
        groups.setdefault(item.coi or "", []).append(item)
    return render_template(
        "review.html", actor=actor, items=items, groups=groups, most=review_ops.MANY_AT_ONCE
    )


@pages.route("/review/many", methods=["POST"])
@login_required
def close_reviews() -> Any:
    """Several related items closed with one "reviewed, no action" note and one signature."""
    actor = session_actor()
    with unit_of_work() as uow:
        try:
            ticked = request.form.getlist("items")
            if len(ticked) > review_ops.MANY_AT_ONCE:
                raise InvalidRequest(f"close at most {review_ops.MANY_AT_ONCE} items at once")
            closed = review_ops.no_action_many(
                uow.session,
                actor=actor,
                items=[_item(value) for value in ticked],
                note=forms.text("note", max_length=1000, required=True, label="the note"),
                email=forms.text("email", max_length=254, required=True, label="your e-mail"),
                password=forms.password("password"),
                now=utcnow(),
                policy=login_policy(),
            )
            uow.commit()
            flash(
                f"Reviewed, no action: {len(closed)} item(s) closed with one note, signed and "
                "on record."
            )
        except SignatureRefused as error:
            uow.commit()  # a wrong password counts towards the lock-out
            flash(f"Not signed: {error.detail}")
        except DomainError as error:
            flash(f"Not closed: {error.detail}")
        except IntegrityError:
            flash("Not closed: someone reviewed one of these items meanwhile; look again.")
    return redirect(url_for("pages.review"), 303)


def _item(value: str) -> tuple[str, int]:
    """A ticked item, as its checkbox sends it: ``refused_scan:12`` or ``custody_event:7``."""
    source, _, number = value.partition(":")
    if source not in (review_ops.REFUSAL, review_ops.EVENT) or not (
        number.isascii() and number.isdigit() and len(number) <= 10
    ):
        raise InvalidRequest("an item to close is one of the queue's, ticked on this page")
    return source, forms.row_id(int(number))


@pages.route("/review/<source>/<int:source_id>", methods=["POST"])
@login_required
def close_review(source: str, source_id: int) -> Any:
    actor = session_actor()
    with unit_of_work() as uow:
        try:
            outcome = forms.text("outcome", max_length=16, required=True)
            if outcome == "corrected":
                review_ops.corrected(
                    uow.session,
                    actor=actor,
                    event_id=forms.row_id(source_id),
                    reason=forms.text("note", max_length=1000, required=True, label="the reason"),
                    now=utcnow(),
                    password=forms.password("password"),
                    policy=login_policy(),
                )
                flash("Reviewed: the event is corrected, signed, and on its record.")
            else:
                review_ops.no_action(
                    uow.session,
                    actor=actor,
                    source=source,
                    source_id=forms.row_id(source_id),
                    note=forms.text("note", max_length=1000, required=True, label="the note"),
                    email=forms.text("email", max_length=254, required=True, label="e-mail"),
                    password=forms.password("password"),
                    now=utcnow(),
                    policy=login_policy(),
                )
                flash("Reviewed, no action: signed and on record.")
            uow.commit()
        except SignatureRefused as error:
            uow.commit()  # a wrong password counts towards the lock-out
            flash(f"Not signed: {error.detail}")
        except DomainError as error:
            flash(f"Not closed: {error.detail}")
    return redirect(url_for("pages.review"), 303)
