"""/products: every product, its owning manufacturing site and its safety settings (turnaround
policy with the thaw-to-infusion limit, alarm rule), each version with who signed it and why.
QA of the owning site changes them here, with a reason and their password; everyone else
reads them."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for
from flask_login import login_required

from services.domain.condition import (
    CONTINUOUS_BOUNDS_MINUTES,
    CUMULATIVE_BOUNDS_MINUTES,
    GAP_BOUNDS_MINUTES,
    INSTANT_LIMIT_HIGHEST_C,
    LIMIT_BOUNDS_C,
)
from services.domain.errors import DomainError, InvalidRequest
from services.domain.products import thaw_limit_bound
from services.domain.sla import Leg
from services.operations import condition, deadlines
from services.operations import products as product_ops
from services.web import forms
from services.web.pages import pages
from services.web.scanning import Credentials, signers_for
from services.web.security import session_actor
from services.web.state import unit_of_work, utcnow

ALARM_FIELDS = (
    ("limit_c", "limit (°C)"),
    ("instant_limit_c", "instant limit (°C)"),
    ("continuous_minutes", "continuous minutes"),
    ("cumulative_minutes", "cumulative minutes"),
    ("gap_minutes", "gap minutes"),
)


@pages.route("/products")
@login_required
def products_page() -> str:
    actor = session_actor()
    with unit_of_work() as uow:
        rows = product_ops.products(uow.session)
    return render_template("products.html", actor=actor, products=rows)


@pages.route("/products/<code>")
@login_required
def product_page(code: str) -> str:
    actor = session_actor()
    with unit_of_work() as uow:
        row = product_ops.product_row(uow.session, forms.product(code))
        view = next(p for p in product_ops.products(uow.session) if p.code == row.code)
        policies, rules = product_ops.versions(uow.session, row.code)
        context = {
            "product": view,
            "policy": deadlines.current_policy(uow.session, row.code),
            "rule": condition.current_rule(uow.session, row.code),
            "policies": policies,
            "rules": rules,
            "may_change": product_ops.may_change(uow.session, actor, row.code),
            "thaw_bound": thaw_limit_bound(row.label_thaw_minutes),
        }
    return render_template(
        "product.html",
        actor=actor,
        legs=list(Leg),
        alarm_fields=ALARM_FIELDS,
        bounds={
            "limit": LIMIT_BOUNDS_C,
            "instant": INSTANT_LIMIT_HIGHEST_C,
            "continuous": CONTINUOUS_BOUNDS_MINUTES,
            "cumulative": CUMULATIVE_BOUNDS_MINUTES,
            "gap": GAP_BOUNDS_MINUTES,
        },
        **context,
    )


def _number(name: str) -> float | None:
    value = forms.optional(name, max_length=12)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidRequest(f"{name.replace('_', ' ')}: {value!r} is not a number") from None


def _signers() -> Any:
    actor = session_actor()
    return signers_for(
        actor, actor.site.code, Credentials(password=forms.password("password") or None)
    )


@pages.route("/products/<code>/policy", methods=["POST"])
@login_required
def product_policy(code: str) -> Any:
    """A new version of the product's turnaround policy (hours per leg; the thaw limit in
    minutes), signed by QA of its owning site."""
    actor = session_actor()
    code = forms.product(code)
    try:
        limits: dict[str, float] = {}
        for leg in Leg:
            value = _number(f"limit_{leg.value}")
            if value is not None:
                unit = 60 if leg is Leg.THAW_TO_INFUSION else 3600
                limits[leg.value] = value * unit
        target = _number("target_days")
        reason = forms.text("reason", max_length=500, required=True, label="the reason")
        signers = _signers()
        with unit_of_work() as uow:
            policy = product_ops.change_policy(
                uow.session,
                actor=actor,
                product=code,
                limits=limits,
                at_risk=None,
                escalate_after=None,
                target_days=target,
                reason=reason,
                signers=signers,
                now=utcnow(),
            )
            uow.commit()
        flash(f"{code}: policy version {policy.version} in force for legs opened from now.")
    except DomainError as error:
        flash(f"Not changed: {error.detail}")
    return redirect(url_for("pages.product_page", code=code), 303)


@pages.route("/products/<code>/alarm-rule", methods=["POST"])
@login_required
def product_alarm_rule(code: str) -> Any:
    """A new version of the product's alarm rule, signed by QA of its owning site."""
    actor = session_actor()
    code = forms.product(code)
    try:
        values = {name: _number(name) for name, _label in ALARM_FIELDS}
        reason = forms.text("reason", max_length=500, required=True, label="the reason")
        signers = _signers()
        with unit_of_work() as uow:
            rule = product_ops.change_alarm_rule(
                uow.session,
                actor=actor,
                product=code,
                reason=reason,
                signers=signers,
                now=utcnow(),
                **values,
            )
            uow.commit()
        flash(f"{code}: alarm rule version {rule.version} in force for imports from now.")
    except DomainError as error:
        flash(f"Not changed: {error.detail}")
    return redirect(url_for("pages.product_page", code=code), 303)
