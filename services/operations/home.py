"""What waits for a user when they sign in: the bags at their site by state, the shipments due
in (or, for a courier, to pick up and in transit), their unread alerts, QA's review queue, and
the orders that involve their site."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlmodel import Session, col, select

from services.db.models import Notification, Unit
from services.domain.custody import TERMINAL_STATES, Actor, Role, UnitState
from services.operations import access, alerts, manifests, review, subscriptions
from services.operations.manifests import ShipmentLine


@dataclass(frozen=True)
class OrderLine:
    coi: str
    product: str
    state: str
    patient_ref: str | None
    created_at: object


@dataclass(frozen=True)
class Home:
    bags: list[tuple[UnitState, int]]
    due_in: list[ShipmentLine]
    unread: int
    latest: list[tuple[Notification, object]]
    to_review: int
    orders: list[OrderLine]


def home(session: Session, actor: Actor) -> Home:
    held: Counter[UnitState] = Counter(
        UnitState(state)
        for state in session.exec(
            select(col(Unit.state)).where(Unit.custodian_site_id == actor.site_id)
        ).all()
        if state not in TERMINAL_STATES
    )
    board = manifests.board(session, actor)
    due = board.to_pick_up + board.in_transit if actor.role is Role.COURIER else board.incoming
    orders = access.visible_orders(session, actor, limit=100)
    return Home(
        bags=sorted(held.items(), key=lambda kv: list(UnitState).index(kv[0])),
        due_in=due,
        unread=alerts.needing_a_look(session, actor),
        latest=list(subscriptions.feed(session, actor=actor, unread_only=True, limit=5)),
        to_review=review.pending_count(session, actor),
        orders=[
            OrderLine(
                coi=order.coi,
                product=order.product,
                state=order.state.value,
                patient_ref=order.current_patient_ref
                if access.may_see_patient_ref(actor, order)
                else None,
                created_at=order.created_at,
            )
            for order in orders
        ],
    )
