"""Turnaround: delays, the per-site and per-leg summary, and the SLA policies."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import Tag

from services.domain.sla import Policy
from services.operations import deadlines, staff, turnaround
from services.web.api.blueprint import api
from services.web.api.present import deadline_public
from services.web.api.schemas import (
    DelayList,
    LegSummaryPublic,
    ProductPath,
    SlaPolicyPublic,
    SlaPolicyUpdate,
    TurnaroundQuery,
    TurnaroundSummary,
)
from services.web.state import current_actor, unit_of_work, utcnow

tag = Tag(name="turnaround", description="Deadlines, delays and turnaround policies")


@api.get("/delays", tags=[tag], responses={200: DelayList})
def read_delays() -> Response:
    """Open legs at risk or late that you may see, most overdue first."""
    now = utcnow()
    with unit_of_work() as uow:
        rows = turnaround.delays(uow.session, actor=current_actor(), now=now)
        items = [deadline_public(uow.session, row, now) for row in rows]
    return jsonify(DelayList(items=items).model_dump(mode="json"))


@api.get("/turnaround", tags=[tag], responses={200: TurnaroundSummary})
def read_turnaround(query: TurnaroundQuery) -> Response:
    """Per site and leg: count, median and p90 duration, and how many closed late."""
    with unit_of_work() as uow:
        rows = turnaround.turnaround(
            uow.session,
            actor=current_actor(),
            since=query.since,
            until=query.until,
            site=query.site,
        )
    result = TurnaroundSummary(
        since=query.since,
        until=query.until,
        items=[
            LegSummaryPublic(
                site=r.site,
                leg=r.leg.value,
                count=r.count,
                median_hours=round(r.median_hours, 3),
                p90_hours=round(r.p90_hours, 3),
                late=r.late,
            )
            for r in rows
        ],
    )
    return jsonify(result.model_dump(mode="json"))


@api.get("/sla-policies/<product>", tags=[tag], responses={200: SlaPolicyPublic})
def read_policy(path: ProductPath) -> Response:
    """A product's turnaround policy in force."""
    with unit_of_work() as uow:
        policy = deadlines.current_policy(uow.session, path.product)
    return jsonify(_public(policy).model_dump(mode="json"))


@api.post("/sla-policies/<product>", tags=[tag], responses={201: SlaPolicyPublic})
def update_policy(path: ProductPath, body: SlaPolicyUpdate) -> tuple[Response, int]:
    """A new version of the policy (admin or QA), in the admin log. Legs already open keep
    their limits."""
    with unit_of_work() as uow:
        policy = staff.change_policy(
            uow.session,
            actor=current_actor(),
            product=path.product,
            limits={leg: hours * 3600 for leg, hours in body.limits_hours.items()},
            at_risk=body.at_risk,
            escalate_after=body.escalate_after_hours * 3600 if body.escalate_after_hours else None,
            target_days=body.target_days,
            typical={leg: hours * 3600 for leg, hours in body.typical_hours.items()},
            now=utcnow(),
        )
        uow.commit()
    return jsonify(_public(policy).model_dump(mode="json")), 201


def _public(policy: Policy) -> SlaPolicyPublic:
    return SlaPolicyPublic(
        product=policy.product,
        version=policy.version,
        limits_hours={leg.value: seconds / 3600 for leg, seconds in policy.limits.items()},
        typical_hours={leg.value: seconds / 3600 for leg, seconds in policy.typical.items()},
        at_risk=policy.at_risk,
        escalate_after_hours=policy.escalate_after / 3600,
        target_days=policy.target_days,
    )
