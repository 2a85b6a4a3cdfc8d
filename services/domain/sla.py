"""Turnaround: the legs of a bag's journey, their limits per product, and projections. Pure.

A leg opens with one event and closes with another (``LEGS``); its due time is its start plus
the product's limit, and it is at risk from a fraction of that on. Legs are computed from all
the bag's known events by their ``occurred_at``, so a scan uploaded late recomputes them.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.domain.custody import COLLECT, Action, UnitKind
from services.domain.errors import InvalidRequest


class Leg(StrEnum):
    COLLECTION_TO_PICKUP = "collection_to_pickup"
    PICKUP_TO_DELIVERY = "pickup_to_delivery"
    DELIVERY_TO_RECEIPT = "delivery_to_receipt"
    RECEIPT_TO_BATCH_START = "receipt_to_batch_start"
    BATCH_START_TO_RELEASE = "batch_start_to_release"
    RELEASE_TO_SHIP = "release_to_ship"
    SHIP_TO_TREATMENT_RECEIPT = "ship_to_treatment_receipt"
    RECEIPT_TO_INFUSION = "receipt_to_infusion"
    THAW_TO_INFUSION = "thaw_to_infusion"


@dataclass(frozen=True, slots=True)
class LegRule:
    opens: str  # the event action that starts the leg
    closes: frozenset[str]  # actions that end it (its completion, or the bag leaving the chain)


# Exception actions end every leg: a quarantined, rejected, destroyed or lost bag is no longer
# late, it is an exception of its own (notified as such).
_ENDS = frozenset({Action.QUARANTINE, Action.REJECT, Action.DESTROY, Action.REPORT_LOST})

LEGS: Mapping[tuple[UnitKind, Leg], LegRule] = {
    (UnitKind.APHERESIS, Leg.COLLECTION_TO_PICKUP): LegRule(COLLECT, frozenset({Action.PICKUP})),
    (UnitKind.APHERESIS, Leg.PICKUP_TO_DELIVERY): LegRule(
        Action.PICKUP, frozenset({Action.DELIVER})
    ),
    (UnitKind.APHERESIS, Leg.DELIVERY_TO_RECEIPT): LegRule(
        Action.DELIVER, frozenset({Action.RECEIVE})
    ),
    (UnitKind.APHERESIS, Leg.RECEIPT_TO_BATCH_START): LegRule(
        Action.RECEIVE, frozenset({Action.START_MANUFACTURING})
    ),
    # the product legs: their events arrive with batches and the return leg
    (UnitKind.PRODUCT, Leg.RELEASE_TO_SHIP): LegRule(Action.RELEASE, frozenset({Action.PICKUP})),
    (UnitKind.PRODUCT, Leg.SHIP_TO_TREATMENT_RECEIPT): LegRule(
        Action.PICKUP, frozenset({Action.RECEIVE})
    ),
    (UnitKind.PRODUCT, Leg.RECEIPT_TO_INFUSION): LegRule(
        Action.RECEIVE, frozenset({Action.INFUSE})
    ),
    (UnitKind.PRODUCT, Leg.THAW_TO_INFUSION): LegRule(Action.THAW, frozenset({Action.INFUSE})),
}
# batch start -> release is a batch's leg, not a bag's: it is timed when batches exist.


def moves_legs(kind: UnitKind, action: str) -> bool:
    """Whether an event of ``action`` on a bag of ``kind`` can open or close any of its legs
    (the only events :func:`spans` looks at)."""
    return action in _ENDS or any(
        action == rule.opens or action in rule.closes
        for (unit_kind, _leg), rule in LEGS.items()
        if unit_kind is kind
    )


HOUR = 3600.0
DAY = 24 * HOUR

# Defaults from DOMAIN.md's published medians and handling limits, in seconds.
DEFAULT_LIMITS: Mapping[Leg, float] = {
    Leg.COLLECTION_TO_PICKUP: 48 * HOUR,  # cryopreserved on site, then handed to the courier
    Leg.PICKUP_TO_DELIVERY: 48 * HOUR,  # LN2 shippers hold 10+ days; couriers take 1-2
    Leg.DELIVERY_TO_RECEIPT: 4 * HOUR,  # a shipper must not wait on the dock
    Leg.RECEIPT_TO_BATCH_START: 3 * DAY,
    Leg.BATCH_START_TO_RELEASE: 14 * DAY,  # axi-cel: US median collection-to-release 14 days
    Leg.RELEASE_TO_SHIP: 2 * DAY,
    Leg.SHIP_TO_TREATMENT_RECEIPT: 2 * DAY,
    Leg.RECEIPT_TO_INFUSION: 14 * DAY,  # infusion 2-14 days after lymphodepletion
    Leg.THAW_TO_INFUSION: 30 * 60.0,  # start infusion within 30 minutes of thaw
}
# What a leg usually takes, for projections until our own history has enough closed legs:
# about 21 days from collection to infusion, against the 30-day median vein-to-vein of axi-cel.
DEFAULT_TYPICAL: Mapping[Leg, float] = {
    Leg.COLLECTION_TO_PICKUP: 24 * HOUR,
    Leg.PICKUP_TO_DELIVERY: 24 * HOUR,
    Leg.DELIVERY_TO_RECEIPT: 1 * HOUR,
    Leg.RECEIPT_TO_BATCH_START: 1 * DAY,
    Leg.BATCH_START_TO_RELEASE: 12 * DAY,
    Leg.RELEASE_TO_SHIP: 1 * DAY,
    Leg.SHIP_TO_TREATMENT_RECEIPT: 1 * DAY,
    Leg.RECEIPT_TO_INFUSION: 5 * DAY,
    Leg.THAW_TO_INFUSION: 15 * 60.0,
}
VEIN_TO_VEIN_TARGET_DAYS = {"axi-cel": 30, "liso-cel": 36, "tisa-cel": 48}
DEFAULT_TARGET_DAYS = 30
DEFAULT_AT_RISK = 0.75  # at risk once 75% of a leg's limit has passed
DEFAULT_ESCALATE_AFTER = 12 * HOUR  # still late this long after due: escalate


@dataclass(frozen=True, slots=True)
class Policy:
    product: str
    version: int
    limits: Mapping[Leg, float]  # seconds: the most a leg may take
    typical: Mapping[Leg, float]  # seconds: what it usually takes, for projections
    at_risk: float
    escalate_after: float  # seconds
    target_days: float

    def limit(self, leg: Leg) -> dt.timedelta:
        return dt.timedelta(seconds=self.limits[leg])


def default_policy(product: str) -> Policy:
    return Policy(
        product=product,
        version=0,
        limits=dict(DEFAULT_LIMITS),
        typical=dict(DEFAULT_TYPICAL),
        at_risk=DEFAULT_AT_RISK,
        escalate_after=DEFAULT_ESCALATE_AFTER,
        target_days=VEIN_TO_VEIN_TARGET_DAYS.get(product, DEFAULT_TARGET_DAYS),
    )


# What a policy may say, so that no one site's change can disrupt every site: a leg takes at
# least an hour (the thaw at least five minutes) and at most 90 days (the thaw four hours).
LEG_BOUNDS: Mapping[Leg, tuple[float, float]] = {
    leg: (5 * 60.0, 4 * HOUR) if leg is Leg.THAW_TO_INFUSION else (HOUR, 90 * DAY) for leg in Leg
}
ESCALATE_BOUNDS = (HOUR, 30 * DAY)
TARGET_DAYS_BOUNDS = (1.0, 365.0)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= HOUR else f"{seconds / 60:g} min"


def check_legs(values: Mapping[str, float], what: str) -> dict[Leg, float]:
    unknown = sorted(set(values) - {leg.value for leg in Leg})
    if unknown:
        raise InvalidRequest(f"unknown legs {unknown}; the legs are {', '.join(Leg)}")
    checked = {}
    for name, seconds in values.items():
        low, high = LEG_BOUNDS[Leg(name)]
        if not (math.isfinite(seconds) and low <= seconds <= high):
            raise InvalidRequest(
                f"{name}'s {what} must be between {_hours(low)} and {_hours(high)}"
            )
        checked[Leg(name)] = float(seconds)
    return checked


def check_policy(
    limits: Mapping[str, float], at_risk: float, escalate_after: float, target_days: float
) -> dict[Leg, float]:
    checked = check_legs(limits, "limit")
    if not (math.isfinite(at_risk) and 0 < at_risk < 1):
        raise InvalidRequest("at_risk is a fraction of the limit, between 0 and 1")
    low, high = ESCALATE_BOUNDS
    if not (math.isfinite(escalate_after) and low <= escalate_after <= high):
        raise InvalidRequest(f"escalate_after must be between {_hours(low)} and {_hours(high)}")
    low, high = TARGET_DAYS_BOUNDS
    if not (math.isfinite(target_days) and low <= target_days <= high):
        raise InvalidRequest(f"target_days must be between {low:g} and {high:g}")
    return {**DEFAULT_LIMITS, **checked}


@dataclass(frozen=True, slots=True)
class Span:
    """A leg as the events say it went: when it started and, if it has, when it ended."""

    leg: Leg
    started_at: dt.datetime
    ended_at: dt.datetime | None


def spans(kind: UnitKind, events: Iterable[tuple[str, dt.datetime]]) -> list[Span]:
    """The legs of a bag from its events (action, occurred_at), whatever order they came in."""
    ordered = sorted(events, key=lambda event: event[1])
    found = []
    for (unit_kind, leg), rule in LEGS.items():
        if unit_kind is not kind:
            continue
        start = next((at for action, at in ordered if action == rule.opens), None)
        if start is None:
            continue
        end = next(
            (
                at
                for action, at in ordered
                if at >= start and (action in rule.closes or action in _ENDS)
            ),
            None,
        )
        found.append(Span(leg, start, end))
    return found


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (inclusive method); the one value when there is one."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


OUTBOUND_ORDER = (
    Leg.COLLECTION_TO_PICKUP,
    Leg.PICKUP_TO_DELIVERY,
    Leg.DELIVERY_TO_RECEIPT,
    Leg.RECEIPT_TO_BATCH_START,
    Leg.BATCH_START_TO_RELEASE,
    Leg.RELEASE_TO_SHIP,
    Leg.SHIP_TO_TREATMENT_RECEIPT,
    Leg.RECEIPT_TO_INFUSION,
)
"""The legs from vein to vein, in order (thaw -> infusion lies inside receipt -> infusion)."""


def projected_infusion(
    *,
    now: dt.datetime,
    current: Span | None,
    done: set[Leg],
    typical: Mapping[Leg, float],
) -> dt.datetime:
    """Now, plus what is left of the current leg, plus the typical duration of every later leg."""
    remaining = 0.0
    for leg in OUTBOUND_ORDER:
        if leg in done:
            continue
        if current is not None and leg is current.leg:
            elapsed = (now - current.started_at).total_seconds()
            remaining += max(0.0, typical[leg] - elapsed)
        else:
            remaining += typical[leg]
    return now + dt.timedelta(seconds=remaining)
