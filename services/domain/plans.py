"""The vein-to-vein plan: pure arithmetic over a product's profile and a calendar.

A plan is the chain of dates of one order: apheresis, pickup, arrival at manufacturing, the
manufacturing slot (a start of manufacturing booked against the site's capacity), QA release,
the return shipment, arrival at the treatment site, the lymphodepletion (LD) window, the
infusion window and, after infusion, the monitoring periods of the treatment site's
jurisdiction. Every date is computed from the profile, the actual milestones so far and the slot
handed in; a milestone that happened replaces its expectation and moves the rest, and no
expectation of what has not happened yet lies before today. Nothing here reads a clock or a
table.

The infusion window counts from the day LD ends: [end + min, end + max] days. Before LD is
recorded the plan proposes LD so that the product is at the treatment site (and released, where
the profile says so) by the window's first day.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.domain.errors import InvalidRequest, ProductNotReleased
from services.domain.sla import DAY, Leg, Policy


class PlanState(StrEnum):
    HELD = "held"  # a slot held for PLAN_HOLD_HOURS, not binding yet
    CONFIRMED = "confirmed"  # binding
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the hold ran out; its slot was freed
    NOT_INFUSED = "not_infused"  # the patient could not be infused (with a reason)


ACTIVE_STATES = frozenset({PlanState.HELD, PlanState.CONFIRMED})
"""The states that keep a slot booked."""

DEFAULT_HOLD_HOURS = 48.0
MAX_BOOKING_DAYS_AHEAD = 365


@dataclass(frozen=True, slots=True)
class Facts:
    """A profile's values as planning uses them: each set, or taken from the product's
    turnaround policy (named in ``assumed``)."""

    collection_to_pickup: int
    outbound_transit: int
    manufacturing: int
    release_to_ship: int
    return_transit: int
    ld_days: int
    window: tuple[int, int] | None  # days after LD ends; None: the profile has none
    release_before_ld: bool
    repeat_ld_after: int | None
    monitoring: Mapping[str, Mapping[str, int]]
    assumed: tuple[str, ...] = ()


def _days(seconds: float) -> int:
    return max(0, math.ceil(seconds / DAY - 1e-9))


def facts(profile: Mapping[str, Any] | None, policy: Policy) -> Facts:
    """The profile's values, each unset one filled in from the turnaround policy's typical
    legs (rounded up to whole days), or for LD's length, one day."""
    given = dict(profile or {})
    assumed: list[str] = []

    def pick(name: str, fallback: int) -> int:
        value = given.get(name)
        if value is None:
            assumed.append(name)
            return fallback
        return int(value)

    typical = policy.typical
    low, high = given.get("ld_to_infusion_min_days"), given.get("ld_to_infusion_max_days")
    return Facts(
        collection_to_pickup=pick(
            "collection_to_pickup_days", _days(typical[Leg.COLLECTION_TO_PICKUP])
        ),
        outbound_transit=pick(
            "outbound_transit_days",
            _days(typical[Leg.PICKUP_TO_DELIVERY] + typical[Leg.DELIVERY_TO_RECEIPT]),
        ),
        manufacturing=pick("manufacturing_days", _days(typical[Leg.BATCH_START_TO_RELEASE])),
        release_to_ship=pick("release_to_ship_days", _days(typical[Leg.RELEASE_TO_SHIP])),
        return_transit=pick("return_transit_days", _days(typical[Leg.SHIP_TO_TREATMENT_RECEIPT])),
        ld_days=pick("ld_days", 1),
        window=(int(low), int(high)) if low is not None and high is not None else None,
        release_before_ld=bool(given.get("release_before_ld", True)),
        repeat_ld_after=given.get("repeat_ld_after_days"),
        monitoring=given.get("monitoring") or {},
        assumed=tuple(assumed),
    )


@dataclass(frozen=True, slots=True)
class Actuals:
    """The milestones that happened, by day (the site's local day), from the order's record."""

    collected_on: dt.date | None = None
    picked_up_on: dt.date | None = None
    arrived_on: dt.date | None = None  # apheresis received at manufacturing
    started_on: dt.date | None = None  # manufacturing started
    released_on: dt.date | None = None  # QA release signed
    shipped_on: dt.date | None = None  # product picked up for the treatment site
    delivered_on: dt.date | None = None  # product received at the treatment site
    ld_started_on: dt.date | None = None
    ld_ended_on: dt.date | None = None
    infused_on: dt.date | None = None
    # the infusion window fixed when LD was recorded (what the bedside enforces): a later
    # profile change does not move it
    infusion_window: Window | None = None


@dataclass(frozen=True, slots=True)
class Window:
    start: dt.date
    end: dt.date

    def public(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}

    def holds(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True, slots=True)
class Chain:
    """One plan's dates (expected, or actual where ``actual`` names the milestone)."""

    apheresis_on: dt.date
    pickup_on: dt.date
    arrival_on: dt.date
    manufacturing_start_on: dt.date
    release_on: dt.date
    return_pickup_on: dt.date
    treatment_arrival_on: dt.date
    ld_window: Window | None
    infusion_window: Window | None
    infusion_on: dt.date | None
    monitoring: dict[str, dt.date] = field(default_factory=dict)  # period -> last day
    actual: frozenset[str] = frozenset()  # the milestones that happened
    assumed: tuple[str, ...] = ()

    def public(self) -> dict[str, Any]:
        return {
            "apheresis_on": self.apheresis_on.isoformat(),
            "pickup_on": self.pickup_on.isoformat(),
            "arrival_on": self.arrival_on.isoformat(),
            "manufacturing_start_on": self.manufacturing_start_on.isoformat(),
            "release_on": self.release_on.isoformat(),
            "return_pickup_on": self.return_pickup_on.isoformat(),
            "treatment_arrival_on": self.treatment_arrival_on.isoformat(),
            "ld_window": self.ld_window.public() if self.ld_window else None,
            "infusion_window": self.infusion_window.public() if self.infusion_window else None,
            "infusion_on": self.infusion_on.isoformat() if self.infusion_on else None,
            "monitoring": {name: day.isoformat() for name, day in self.monitoring.items()},
            "actual": sorted(self.actual),
            "assumed": list(self.assumed),
        }


MILESTONES = (
    "apheresis_on",
    "pickup_on",
    "arrival_on",
    "manufacturing_start_on",
    "release_on",
    "return_pickup_on",
    "treatment_arrival_on",
    "infusion_on",
)


def _plus(day: dt.date, days: int) -> dt.date:
    return day + dt.timedelta(days=days)


def compute(
    facts: Facts,
    *,
    apheresis_on: dt.date,
    slot_on: dt.date,
    actuals: Actuals = Actuals(),
    today: dt.date | None = None,
    jurisdiction: str | None = None,
) -> Chain:
    """The chain of dates: each milestone's actual day, or else the later of its
    predecessor plus its lead time and today (nothing still to happen is in the past); the
    manufacturing start is the slot, or the arrival if that comes later."""
    floor = today or dt.date.min
    done: set[str] = set()

    def step(name: str, actual: dt.date | None, expected: dt.date) -> dt.date:
        if actual is not None:
            done.add(name)
            return actual
        return max(expected, floor)

    aph = step("apheresis_on", actuals.collected_on, apheresis_on)
    pickup = step("pickup_on", actuals.picked_up_on, _plus(aph, facts.collection_to_pickup))
    arrival = step("arrival_on", actuals.arrived_on, _plus(pickup, facts.outbound_transit))
    start = step("manufacturing_start_on", actuals.started_on, max(slot_on, arrival))
    release = step("release_on", actuals.released_on, _plus(start, facts.manufacturing))
    ship = step("return_pickup_on", actuals.shipped_on, _plus(release, facts.release_to_ship))
    at_bedside = step(
        "treatment_arrival_on", actuals.delivered_on, _plus(ship, facts.return_transit)
    )

    ld_window = infusion_window = None
    infusion_on: dt.date | None = None
    if facts.window is not None:
        low, high = facts.window
        if actuals.ld_started_on is not None:
            done.add("ld_started_on")
            ld_end = actuals.ld_ended_on or _plus(actuals.ld_started_on, facts.ld_days - 1)
            ld_window = Window(actuals.ld_started_on, ld_end)
            infusion_window = actuals.infusion_window or Window(
                _plus(ld_end, low), _plus(ld_end, high)
            )
            infusion_on = max(infusion_window.start, at_bedside, floor)
        else:
            # LD ends so that the window opens when the product is there; it starts no earlier
            # than the release where the label asks for the product first
            earliest_end = _plus(at_bedside, -low)
            ld_start = _plus(earliest_end, -(facts.ld_days - 1))
            if facts.release_before_ld:
                ld_start = max(ld_start, release)
            ld_start = max(ld_start, floor)
            ld_end = _plus(ld_start, facts.ld_days - 1)
            ld_window = Window(ld_start, _plus(ld_start, high - low))
            infusion_window = Window(_plus(ld_end, low), _plus(ld_end, high))
            infusion_on = infusion_window.start
    else:
        infusion_on = at_bedside
    if actuals.infused_on is not None:
        infusion_on = actuals.infused_on
        done.add("infusion_on")
    monitoring: dict[str, dt.date] = {}
    if infusion_on is not None and jurisdiction:
        periods = facts.monitoring.get(jurisdiction.upper()) or {}
        monitoring = {name: _plus(infusion_on, days) for name, days in sorted(periods.items())}
    return Chain(
        apheresis_on=aph,
        pickup_on=pickup,
        arrival_on=arrival,
        manufacturing_start_on=start,
        release_on=release,
        return_pickup_on=ship,
        treatment_arrival_on=at_bedside,
        ld_window=ld_window,
        infusion_window=infusion_window,
        infusion_on=infusion_on,
        monitoring=monitoring,
        actual=frozenset(done),
        assumed=facts.assumed,
    )


def earliest_slot_day(facts: Facts, apheresis_on: dt.date) -> dt.date:
    """The first day a slot can be used: the apheresis material's expected arrival."""
    return _plus(apheresis_on, facts.collection_to_pickup + facts.outbound_transit)


def first_free(days: Iterable[tuple[dt.date, int]], on_or_after: dt.date) -> dt.date | None:
    """The first day on or after ``on_or_after`` with a free slot (days: (day, free))."""
    free = sorted(day for day, count in days if count > 0 and day >= on_or_after)
    return free[0] if free else None


def check_apheresis_day(day: dt.date, today: dt.date) -> dt.date:
    if day < today - dt.timedelta(days=30):
        raise InvalidRequest("the apheresis date is more than 30 days ago")
    if day > today + dt.timedelta(days=MAX_BOOKING_DAYS_AHEAD):
        raise InvalidRequest(f"the apheresis date is more than {MAX_BOOKING_DAYS_AHEAD} days ahead")
    return day


@dataclass(frozen=True, slots=True)
class Slip:
    """What a re-plan found: the expected infusion moved, and whether the product can still
    be infused in the window (before LD: the planned window; after it: the real one)."""

    moved_days: int
    past_window: bool
    after_ld: bool


def slip(before: Chain | None, after: Chain) -> Slip | None:
    """None when nothing moved; else how far the product's arrival at the bedside moved and
    whether it lies past the window the plan fixed."""
    if before is None:
        return None
    moved = (after.treatment_arrival_on - before.treatment_arrival_on).days
    after_ld = "ld_started_on" in after.actual
    window = after.infusion_window if after_ld else before.infusion_window
    past = window is not None and after.treatment_arrival_on > window.end
    if moved <= 0 and not past:
        return None  # on time or ahead: the dates move, nobody needs warning
    return Slip(moved_days=moved, past_window=past, after_ld=after_ld)


def ld_gate(
    *, coi: str, product: str, released: bool, release_before_ld: bool, override: str | None
) -> bool:
    """Lymphodepletion waits for the product's QA release where its label asks for it: before
    it, only an override with its reason (signed by a second person) lets it start. Returns
    whether the override is used."""
    if released or not release_before_ld:
        return False
    if not override:
        raise ProductNotReleased(
            f"order {coi}'s product is not released by QA: {product}'s lymphodepletion starts "
            "only once it is. To start it anyway, a second person of your site signs an "
            "override with its reason"
        )
    return True


def hold_until(now: dt.datetime, hours: float) -> dt.datetime:
    return now + dt.timedelta(hours=hours)
