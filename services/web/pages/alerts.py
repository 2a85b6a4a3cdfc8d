"""The in-app feed (alerts) and one's own subscriptions (e-mail, webhooks)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

from services.domain.errors import DomainError
from services.domain.notifications import CHECKPOINT, EVENT_KINDS, Channel
from services.operations import alerts as alert_ops
from services.operations import subscriptions as subscription_ops
from services.operations.directory import Directory
from services.operations.queries import coi_value
from services.operations.subscriptions import WITNESS_ROLES
from services.web import clock, forms
from services.web.pages import pages
from services.web.security import session_actor
from services.web.state import state, unit_of_work, utcnow


@pages.route("/alerts")
@login_required
def alerts() -> str:
    """The site's alerts, triaged: critical ones pinned until acknowledged, then warnings,
    then progress folded away; for the viewer's role unless asked for everything."""
    actor = session_actor()
    coi = (request.args.get("coi") or "").strip()[:64] or None
    kind = (request.args.get("kind") or "").strip()[:32] or None
    unread = request.args.get("unread") == "1"
    everything = request.args.get("show") == "all"
    error = None
    with unit_of_work() as uow:
        try:
            view = alert_ops.site_alerts(
                uow.session,
                actor,
                clock=clock.plain,
                unread_only=unread,
                coi=coi_value(coi) if coi else None,
                kind=kind if kind in EVENT_KINDS else None,
                everything=everything,
            )
        except DomainError as problem:
            view, error = alert_ops.AlertsView(pinned=[], alerts=[], progress=[]), problem.detail
    return render_template(
        "alerts.html",
        actor=actor,
        view=view,
        kinds=EVENT_KINDS,
        coi=coi,
        kind=kind,
        unread=unread,
        everything=everything,
        error=error,
    )


@pages.route("/alerts/<int:notification_id>/acknowledge", methods=["POST"])
@login_required
def acknowledge_alert(notification_id: int) -> Any:
    """A critical alert acknowledged: who and when are kept, and it is no longer pinned."""
    try:
        with unit_of_work() as uow:
            alert_ops.acknowledge(
                uow.session,
                actor=session_actor(),
                notification_id=forms.row_id(notification_id),
                now=utcnow(),
            )
            uow.commit()
        flash("Acknowledged: your name and the time are on record; it is no longer pinned.")
    except DomainError as error:
        flash(f"Not acknowledged: {error.detail}")
    return redirect(url_for("pages.alerts"), 303)


@pages.route("/alerts/<int:notification_id>/read", methods=["POST"])
@login_required
def mark_alert_read(notification_id: int) -> Any:
    try:
        with unit_of_work() as uow:
            subscription_ops.mark_read(
                uow.session,
                actor=session_actor(),
                notification_id=forms.row_id(notification_id),
                now=utcnow(),
            )
            uow.commit()
    except DomainError as error:
        flash(f"Not marked: {error.detail}")
    return redirect(request.referrer or url_for("pages.alerts"), 303)


@pages.route("/alerts/read", methods=["POST"])
@login_required
def mark_all_alerts_read() -> Any:
    with unit_of_work() as uow:
        count = subscription_ops.mark_all_read(uow.session, actor=session_actor(), now=utcnow())
        uow.commit()
    flash(f"{count} alert(s) marked read.")
    return redirect(url_for("pages.alerts"), 303)


@pages.route("/subscriptions", methods=["GET", "POST"])
@login_required
def subscriptions() -> Any:
    actor = session_actor()
    secret = None
    status = 200
    if request.method == "POST":
        try:
            scope = forms.text("scope", max_length=12, required=True)
            coi = forms.optional("coi", max_length=64, label="the order's COI")
            events = request.form.getlist("events") or None
            if scope == "checkpoints":  # a witness: the signed audit checkpoints alone
                events, coi = [CHECKPOINT], None
            if events and (len(events) > 64 or any(len(e) > 32 for e in events)):
                raise DomainError("choose the kinds from the list")
            with unit_of_work() as uow:
                row, secret = subscription_ops.subscribe(
                    uow.session,
                    actor=actor,
                    coi=coi_value(coi) if scope == "order" and coi else None,
                    site=actor.site.code if scope == "site" else None,
                    channel=Channel(forms.text("channel", max_length=8, required=True)),
                    target=forms.text("target", max_length=2048, required=True),
                    events=events,
                    allow_private=bool(state().settings.webhook_allow_private_targets),
                    secret_keys=state().settings.webhook_secret_keys,
                    digest=request.form.get("digest") == "daily",
                )
                uow.commit()
            folded = " Progress comes once a day, in a digest." if row.digest else ""
            flash(f"Subscribed: {row.channel.value} to {row.target}.{folded}")
        except (DomainError, ValueError) as error:
            flash(f"Not subscribed: {getattr(error, 'detail', str(error))}")
            status = 422
    with unit_of_work() as uow:
        rows = subscription_ops.subscriptions_of(uow.session, actor)
        names = Directory(uow.session)
        listed = [
            (
                row,
                names.order(row.order_id).coi if row.order_id else None,
                names.site_code(row.site_id),
            )
            for row in rows
        ]
    page = render_template(
        "subscriptions.html",
        actor=actor,
        rows=listed,
        secret=secret,
        kinds=[kind for kind in EVENT_KINDS if kind != CHECKPOINT],
        witness=actor.role in WITNESS_ROLES,
        digest_hour=state().settings.digest_hour,
    )
    return page, status


@pages.route("/subscriptions/<int:subscription_id>/stop", methods=["POST"])
@login_required
def stop_subscription(subscription_id: int) -> Any:
    try:
        with unit_of_work() as uow:
            subscription_ops.unsubscribe(
                uow.session, actor=session_actor(), subscription_id=forms.row_id(subscription_id)
            )
            uow.commit()
        flash("Subscription stopped; its past notifications stay on record.")
    except DomainError as error:
        flash(f"Not stopped: {error.detail}")
    return redirect(url_for("pages.subscriptions"), 303)
