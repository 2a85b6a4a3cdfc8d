"""The vein-to-vein plan: capacity, an order's plan, lymphodepletion and its gate, profiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response, jsonify
from flask_openapi3 import Tag
from sqlmodel import Session

from services.domain.errors import Conflict, NotFound
from services.domain.plans import PlanState
from services.domain.sla import Leg
from services.operations import deadlines, plans, profiles
from services.operations import products as product_ops
from services.operations.access import order_by_coi
from services.operations.orders import known_product
from services.operations.queries import coi_value
from services.web import scanning
from services.web.api.blueprint import api
from services.web.api.schemas import (
    CapacityCreate,
    CapacityDayPublic,
    CapacityPublic,
    CapacityQuery,
    LymphodepletionCreate,
    LymphodepletionPublic,
    NotInfusedCreate,
    NotInfusedPublic,
    OrderPath,
    PlanCancel,
    PlanCreate,
    PlanMove,
    PlanPublic,
    Problem,
    ProductPath,
    ProfilePublic,
    ProfileUpdate,
)
from services.web.state import current_actor, state, unit_of_work, utcnow

if TYPE_CHECKING:
    from services.db.models import Order, Plan

tag = Tag(name="plans", description="Manufacturing capacity and the vein-to-vein plan")


def plan_public(order: Order, plan: Plan) -> PlanPublic:
    expected = plan.expected or {}
    return PlanPublic(
        coi=order.coi,
        product=order.product,
        state=plan.state,
        apheresis_on=plan.apheresis_on,
        manufacturing_start_on=plan.manufacturing_start_on,
        held_until=plan.held_until,
        confirmed_at=plan.confirmed_at,
        infusion_window=expected.get("infusion_window"),
        ld_window=expected.get("ld_window"),
        infusion_on=plan.infusion_on,
        ld_started_on=plan.ld_started_on,
        ld_ended_on=plan.ld_ended_on,
        repeat_ld=plan.repeat_ld,
        past_window=plan.past_window,
        moves=plan.moves,
        profile_version=plan.profile_version,
        planned=plan.planned or {},
        expected=expected,
        proposal=plan.proposal,
        reason=plan.reason,
    )


def _json(model: PlanPublic | CapacityPublic | LymphodepletionPublic | ProfilePublic) -> Response:
    return jsonify(model.model_dump(mode="json"))


@api.post("/capacity", tags=[tag], responses={201: CapacityDayPublic, 409: Problem})
def publish_capacity(body: CapacityCreate) -> tuple[Response, int]:
    """Publish a manufacturing site's slots for a product on a day (its operators or QA).
    Fewer slots than are booked is refused (409), naming the bookings."""
    with unit_of_work() as uow:
        view = plans.publish_capacity(
            uow.session,
            actor=current_actor(),
            site=body.site,
            product=body.product,
            day=body.date,
            slots=body.slots,
            now=utcnow(),
        )
        uow.commit()
    result = CapacityDayPublic(date=view.day, slots=view.slots, booked=view.booked, free=view.free)
    return jsonify(result.model_dump(mode="json")), 201


@api.get("/capacity", tags=[tag], responses={200: CapacityPublic})
def read_capacity(query: CapacityQuery) -> Response:
    """A manufacturing site's days for a product: slots, booked, free (days without published
    slots are absent)."""
    with unit_of_work() as uow:
        by_product = plans.capacity(
            uow.session, site=query.site, product=query.product, start=query.start, end=query.end
        )
    days = [
        CapacityDayPublic(date=v.day, slots=v.slots, booked=v.booked, free=v.free)
        for v in by_product.get(query.product, [])
    ]
    return _json(CapacityPublic(site=query.site, product=query.product, days=days))


def _plan_answer(session: Session, coi: str, plan: Plan) -> PlanPublic:
    return plan_public(plans.order_of(session, plan), plan)


@api.get("/orders/<coi>/plan", tags=[tag], responses={200: PlanPublic})
def read_plan(path: OrderPath) -> Response:
    """The order's plan: its slot, state, and the chain of dates as booked and as expected."""
    with unit_of_work() as uow:
        order = order_by_coi(uow.session, current_actor(), coi_value(path.coi))
        plan = plans.plan_of(uow.session, order)
        if plan is None:
            raise NotFound(f"order {order.coi} has no plan")
        result = plan_public(order, plan)
    return _json(result)


@api.post("/orders/<coi>/plan", tags=[tag], responses={201: PlanPublic, 409: Problem})
def book_plan(path: OrderPath, body: PlanCreate) -> tuple[Response, int]:
    """Book the order's plan from an apheresis date (its treatment site's care team or its
    collection site's apheresis staff): the first free slot on or after the material's
    arrival, held for PLAN_HOLD_HOURS. No slot free: 409 no_capacity."""
    with unit_of_work() as uow:
        plan = plans.book(
            uow.session,
            actor=current_actor(),
            coi=coi_value(path.coi),
            apheresis_on=body.apheresis_on,
            now=utcnow(),
            hold_hours=state().settings.plan_hold_hours,
        )
        uow.commit()
        result = _plan_answer(uow.session, path.coi, plan)
    return jsonify(result.model_dump(mode="json")), 201


@api.post("/orders/<coi>/plan/confirm", tags=[tag], responses={200: PlanPublic, 409: Problem})
def confirm_plan(path: OrderPath) -> Response:
    """Confirm the held plan: binding. A hold that ran out is refused (409)."""
    with unit_of_work() as uow:
        try:
            plan = plans.confirm(
                uow.session, actor=current_actor(), coi=coi_value(path.coi), now=utcnow()
            )
        except Conflict as error:
            if error.extra.get("state") == PlanState.EXPIRED.value:
                uow.commit()  # the hold that ran out is freed and on record, and refused
            raise
        uow.commit()
        result = _plan_answer(uow.session, path.coi, plan)
    return _json(result)


@api.post("/orders/<coi>/plan/move", tags=[tag], responses={200: PlanPublic, 409: Problem})
def move_plan(path: OrderPath, body: PlanMove) -> Response:
    """Move the plan: a new apheresis date, or the first free slot on or after a day (a
    failed batch's proposal); the old slot is freed."""
    with unit_of_work() as uow:
        plan = plans.move(
            uow.session,
            actor=current_actor(),
            coi=coi_value(path.coi),
            now=utcnow(),
            apheresis_on=body.apheresis_on,
            manufacturing_start_on=body.manufacturing_start_on,
            reason=body.reason,
        )
        uow.commit()
        result = _plan_answer(uow.session, path.coi, plan)
    return _json(result)


@api.post("/orders/<coi>/plan/cancel", tags=[tag], responses={200: PlanPublic, 409: Problem})
def cancel_plan(path: OrderPath, body: PlanCancel) -> Response:
    """Cancel the plan, with a reason: its slot is freed."""
    with unit_of_work() as uow:
        plan = plans.cancel(
            uow.session,
            actor=current_actor(),
            coi=coi_value(path.coi),
            reason=body.reason,
            now=utcnow(),
        )
        uow.commit()
        result = _plan_answer(uow.session, path.coi, plan)
    return _json(result)


@api.post(
    "/orders/<coi>/lymphodepletion",
    tags=[tag],
    responses={201: LymphodepletionPublic, 409: Problem},
)
def record_lymphodepletion(path: OrderPath, body: LymphodepletionCreate) -> tuple[Response, int]:
    """Lymphodepletion started (the treatment site's care team). Before the product's QA
    release: 409 product_not_released, unless ``override_reason`` comes with your signature
    and a second person's (``witness``). Fixes the infusion window the bedside checks."""
    actor = current_actor()
    coi = coi_value(path.coi)
    credentials = scanning.Credentials(
        password=body.signature.password if body.signature else None,
        witness_email=body.witness.email if body.witness else None,
        witness_password=body.witness.password if body.witness else None,
    )
    signers = scanning.signers_for(actor, actor.site.code, credentials)
    with unit_of_work() as uow:
        order, plan, event = plans.record_lymphodepletion(
            uow.session,
            actor=actor,
            coi=coi,
            started_on=body.started_on,
            ended_on=body.ended_on,
            now=utcnow(),
            signers=signers,
            override_reason=body.override_reason,
        )
        uow.commit()
        details = event.details or {}
        result = LymphodepletionPublic(
            coi=order.coi,
            sequence=event.sequence,
            started_on=details["started_on"],
            ended_on=details["ended_on"],
            infusion_window=details.get("infusion_window"),
            override=bool(details.get("override")),
            plan=plan_public(order, plan) if plan is not None else None,
        )
    return jsonify(result.model_dump(mode="json")), 201


@api.post("/orders/<coi>/not-infused", tags=[tag], responses={201: NotInfusedPublic})
def record_not_infused(path: OrderPath, body: NotInfusedCreate) -> tuple[Response, int]:
    """The patient cannot be infused: the reason, and the product's fate (destroyed or
    returned, by its own scans)."""
    with unit_of_work() as uow:
        plans.record_not_infused(
            uow.session,
            actor=current_actor(),
            coi=coi_value(path.coi),
            reason=body.reason,
            fate=body.fate,
            now=utcnow(),
        )
        uow.commit()
        order = order_by_coi(uow.session, current_actor(), coi_value(path.coi))
        plan = plans.plan_of(uow.session, order)
        result = NotInfusedPublic(coi=order.coi, state=plan.state if plan else "not_infused")
    return jsonify(result.model_dump(mode="json")), 201


def _profile_public(session: Session, product: str) -> ProfilePublic:
    known_product(session, product)
    row = profiles.current_profile(session, product)
    if row is None:
        raise NotFound(f"{product} has no profile yet: its owning site's QA sets one")
    thaw = deadlines.current_policy(session, product).limits[Leg.THAW_TO_INFUSION] / 60
    return ProfilePublic(
        product=product,
        version=row.version,
        values=profiles.profile_values(row),
        sources=row.sources,
        thaw_to_infusion_minutes=thaw,
        reason=row.reason,
        signer_name=row.signer_name,
        signed_at=row.signed_at,
    )


@api.get("/products/<product>/profile", tags=[tag], responses={200: ProfilePublic})
def read_profile(path: ProductPath) -> Response:
    """A product's profile in force: the plan's facts, each with its source, and the
    thaw-to-infusion limit of its turnaround policy."""
    with unit_of_work() as uow:
        result = _profile_public(uow.session, path.product)
    return _json(result)


@api.post("/products/<product>/profile", tags=[tag], responses={201: ProfilePublic})
def update_profile(path: ProductPath, body: ProfileUpdate) -> tuple[Response, int]:
    """A new version of the product's profile, by QA of its owning manufacturing site, with a
    reason and signed (your password)."""
    actor = current_actor()
    signers = scanning.signers_for(
        actor,
        actor.site.code,
        scanning.Credentials(password=body.signature.password if body.signature else None),
    )
    with unit_of_work() as uow:
        product_ops.change_profile(
            uow.session,
            actor=actor,
            product=path.product,
            values=dict(body.values),
            reason=body.reason or "",
            signers=signers,
            now=utcnow(),
        )
        uow.commit()
        result = _profile_public(uow.session, path.product)
    return jsonify(result.model_dump(mode="json")), 201
