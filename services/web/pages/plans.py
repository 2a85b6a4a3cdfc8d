"""The vein-to-vein plan in pages: the manufacturing capacity board (days by products: slots,
booked, free, who booked), the patient's plan as a timeline (planned, expected, actual, as the
treatment site's days), and the treatment site's week (apheresis, LD, infusion, monitoring).
The forms call the same operations as the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

from services.domain.custody import Role, SiteKind
from services.domain.errors import DomainError, InvalidRequest, NotFound
from services.domain.local_time import local_day
from services.domain.plans import ACTIVE_STATES, MILESTONES
from services.operations import plans
from services.operations.access import order_by_coi
from services.operations.queries import coi_value
from services.web import forms
from services.web.pages import pages
from services.web.security import session_actor
from services.web.state import state, unit_of_work, utcnow

BOARD_DAYS = 14
MAX_WEEK_DAYS = 31
LABELS = {
    "apheresis_on": "Apheresis",
    "pickup_on": "Pickup by the courier",
    "arrival_on": "Arrival at manufacturing",
    "manufacturing_start_on": "Manufacturing starts (slot)",
    "release_on": "QA release",
    "return_pickup_on": "Return shipment",
    "treatment_arrival_on": "Arrival at the treatment site",
    "infusion_on": "Infusion",
}


def _today(zone: str) -> dt.date:
    return local_day(utcnow(), zone)


@pages.route("/capacity")
@login_required
def capacity_board() -> str:
    """A manufacturing site's days by products: slots, booked, free, and (for its own people)
    who booked."""
    actor = session_actor()
    with unit_of_work() as uow:
        sites = plans.manufacturing_sites(uow.session)
        default = actor.site.code if actor.site.kind is SiteKind.MANUFACTURING else None
        code = request.args.get("site") or default or (sites[0].code if sites else "")
        site = next((s for s in sites if s.code == code), None)
        if site is None:
            raise NotFound(f"no manufacturing site {code!r}")
        start = _day_arg("from") or _today(site.time_zone)
        end = start + dt.timedelta(days=BOARD_DAYS - 1)
        own = actor.site_id == site.id
        by_product = plans.capacity(
            uow.session, site=site.code, product=None, start=start, end=end, with_bookings=own
        )
        products = plans.product_codes(uow.session)
    days = [start + dt.timedelta(days=n) for n in range(BOARD_DAYS)]
    shown = sorted(by_product) or []
    cells = {(product, view.day): view for product, views in by_product.items() for view in views}
    return render_template(
        "capacity.html",
        actor=actor,
        site=site,
        sites=sites,
        days=days,
        products=shown,
        all_products=products,
        cells=cells,
        own=own,
        may_publish=own and actor.role in plans.CAPACITY_ROLES,
        start=start,
        earlier=start - dt.timedelta(days=BOARD_DAYS),
        later=start + dt.timedelta(days=BOARD_DAYS),
    )


def _day_arg(name: str) -> dt.date | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidRequest(f"{name} is a date such as 2026-12-31") from None
    if not dt.date(2000, 1, 1) <= day <= dt.date(9000, 12, 31):
        raise InvalidRequest(f"{name} is a date from 2000 to 9000")
    return day


@pages.route("/capacity", methods=["POST"])
@login_required
def publish_capacity() -> Any:
    """Publish slots for a product on each of several days (a week at a time)."""
    actor = session_actor()
    site = actor.site.code
    try:
        product = forms.product(forms.text("product", max_length=64, required=True))
        first = forms.date("first_day", label="the first day")
        if first is None:
            raise InvalidRequest("the first day is needed")
        count = forms.number("days", low=1, high=MAX_WEEK_DAYS, label="the number of days")
        slots = forms.number("slots", low=0, high=plans.MAX_SLOTS, label="slots per day")
        with unit_of_work() as uow:
            for n in range(count):
                plans.publish_capacity(
                    uow.session,
                    actor=actor,
                    site=site,
                    product=product,
                    day=first + dt.timedelta(days=n),
                    slots=slots,
                    now=utcnow(),
                )
            uow.commit()
        flash(f"{product}: {slots} slot(s) a day published for {count} day(s) from {first}.")
        board = url_for("pages.capacity_board", site=site)
        return redirect(f"{board}&from={first.isoformat()}", 303)
    except DomainError as error:
        flash(f"Not published: {error.detail}")
    return redirect(url_for("pages.capacity_board", site=site), 303)


@pages.route("/orders/<coi>/plan")
@login_required
def plan_page(coi: str) -> str:
    """The patient's plan as a timeline: each milestone planned, expected and (when it
    happened) actual, in the treatment site's days; the LD and infusion windows; monitoring."""
    actor = session_actor()
    with unit_of_work() as uow:
        order = order_by_coi(uow.session, actor, coi_value(coi))
        plan = plans.plan_of(uow.session, order)
        treatment = plans.site_row(uow.session, order.treatment_site_id)
        may_plan = (actor.role is Role.CARE_TEAM and actor.site_id == order.treatment_site_id) or (
            actor.role is Role.APHERESIS_STAFF and actor.site_id == order.collection_site_id
        )
    rows = []
    if plan is not None:
        planned, expected = plan.planned or {}, plan.expected or {}
        done = set(expected.get("actual") or ())
        for key in MILESTONES:
            rows.append(
                {
                    "label": LABELS[key],
                    "planned": planned.get(key),
                    "expected": expected.get(key),
                    "actual": expected.get(key) if key in done else None,
                    "moved": planned.get(key) != expected.get(key),
                }
            )
    return render_template(
        "plan.html",
        actor=actor,
        order=order,
        plan=plan,
        rows=rows,
        treatment=treatment,
        may_plan=may_plan,
        active=plan is not None and plan.state in ACTIVE_STATES,
        today=_today(treatment.time_zone),
    )


def _plan_action(coi: str, act: Any, done: str) -> Any:
    try:
        with unit_of_work() as uow:
            act(uow.session, session_actor(), coi_value(coi))
            uow.commit()
        flash(done)
    except DomainError as error:
        flash(f"Not done: {error.detail}")
    return redirect(url_for("pages.plan_page", coi=coi), 303)


@pages.route("/orders/<coi>/plan", methods=["POST"])
@login_required
def book_plan(coi: str) -> Any:
    def act(session: Any, actor: Any, value: str) -> None:
        day = forms.date("apheresis_on", label="the apheresis date")
        if day is None:
            raise InvalidRequest("the apheresis date is needed")
        plans.book(
            session,
            actor=actor,
            coi=value,
            apheresis_on=day,
            now=utcnow(),
            hold_hours=state().settings.plan_hold_hours,
        )

    return _plan_action(coi, act, "Plan booked: its slot is held until you confirm it.")


@pages.route("/orders/<coi>/plan/confirm", methods=["POST"])
@login_required
def confirm_plan(coi: str) -> Any:
    def act(session: Any, actor: Any, value: str) -> None:
        plans.confirm(session, actor=actor, coi=value, now=utcnow())

    return _plan_action(coi, act, "Plan confirmed.")


@pages.route("/orders/<coi>/plan/move", methods=["POST"])
@login_required
def move_plan(coi: str) -> Any:
    def act(session: Any, actor: Any, value: str) -> None:
        plans.move(
            session,
            actor=actor,
            coi=value,
            now=utcnow(),
            apheresis_on=forms.date("apheresis_on", label="the apheresis date"),
            manufacturing_start_on=forms.date("manufacturing_start_on", label="the slot"),
            reason=forms.optional("reason", max_length=500),
        )

    return _plan_action(coi, act, "Plan moved.")


@pages.route("/orders/<coi>/plan/cancel", methods=["POST"])
@login_required
def cancel_plan(coi: str) -> Any:
    def act(session: Any, actor: Any, value: str) -> None:
        reason = forms.text("reason", max_length=500, required=True, label="the reason")
        plans.cancel(session, actor=actor, coi=value, reason=reason, now=utcnow())

    return _plan_action(coi, act, "Plan cancelled: its slot is free.")


@pages.route("/week")
@login_required
def treatment_week() -> str:
    """The treatment site's week: who has apheresis, LD, infusion or monitoring each day."""
    actor = session_actor()
    with unit_of_work() as uow:
        site = plans.site_row(uow.session, actor.site_id)
        start = _day_arg("from") or _today(site.time_zone)
        start -= dt.timedelta(days=start.weekday())  # from Monday
        days = [start + dt.timedelta(days=n) for n in range(7)]
        rows = plans.site_week(uow.session, actor)
    agenda: dict[dt.date, list[tuple[str, str]]] = {day: [] for day in days}
    for plan, order in rows:
        expected = plan.expected or {}
        for key, what in (("apheresis_on", "apheresis"), ("infusion_on", "infusion")):
            _put(agenda, expected.get(key), order.coi, what)
        ld = expected.get("ld_window") or {}
        _put(agenda, ld.get("from"), order.coi, "lymphodepletion window opens")
        for period, last in (expected.get("monitoring") or {}).items():
            _put(agenda, last, order.coi, f"{period.replace('_', ' ')} ends")
    return render_template(
        "week.html",
        actor=actor,
        site=site,
        days=days,
        agenda=agenda,
        earlier=start - dt.timedelta(days=7),
        later=start + dt.timedelta(days=7),
    )


def _put(agenda: dict[dt.date, list[tuple[str, str]]], day: Any, coi: str, what: str) -> None:
    if not day:
        return
    found = dt.date.fromisoformat(day)
    if found in agenda:
        agenda[found].append((coi, what))
