"""The plan's arithmetic, pure: a chain of dates from a profile, the actual milestones and a
slot; the window at the bedside; a profile's bounds."""

from __future__ import annotations

import datetime as dt

import pytest

from services.domain.custody import BagView, UnitKind, UnitState, check_window
from services.domain.errors import InvalidRequest, WindowViolation
from services.domain.plans import Actuals, compute, earliest_slot_day, facts, first_free, slip
from services.domain.products import PROFILE_SEED, check_profile
from services.domain.sla import default_policy

D = dt.date(2027, 3, 1)


def _days(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def _facts(**values: object) -> object:
    base = {
        "collection_to_pickup_days": 1,
        "outbound_transit_days": 2,
        "manufacturing_days": 10,
        "release_to_ship_days": 1,
        "return_transit_days": 1,
        "ld_days": 3,
        "ld_to_infusion_min_days": 2,
        "ld_to_infusion_max_days": 7,
        "release_before_ld": True,
        "monitoring": {"US": {"monitoring": 14, "no_driving": 14}},
    }
    return facts({**base, **values}, default_policy("x"))


def test_the_chain_follows_the_slot_and_the_profile() -> None:
    fx = _facts()
    assert earliest_slot_day(fx, D) == _days(3)  # type: ignore[arg-type]
    chain = compute(fx, apheresis_on=D, slot_on=_days(5), jurisdiction="US")  # type: ignore[arg-type]
    assert (chain.arrival_on, chain.manufacturing_start_on, chain.release_on) == (
        _days(3),
        _days(5),
        _days(15),
    )
    assert chain.treatment_arrival_on == _days(17)
    # LD starts after release and ends so the window opens when the product is there
    assert chain.ld_window is not None
    assert chain.ld_window.start == _days(15)
    assert chain.infusion_window is not None
    assert (chain.infusion_window.start, chain.infusion_window.end) == (_days(19), _days(24))
    assert chain.monitoring == {"monitoring": _days(33), "no_driving": _days(33)}
    assert chain.assumed == ()


def test_an_actual_milestone_and_the_clock_move_the_rest() -> None:
    fx = _facts()
    planned = compute(fx, apheresis_on=D, slot_on=_days(5))  # type: ignore[arg-type]
    # the material arrives two days late, after its slot: manufacturing starts on arrival
    late = compute(
        fx,  # type: ignore[arg-type]
        apheresis_on=D,
        slot_on=_days(5),
        actuals=Actuals(collected_on=D, arrived_on=_days(7)),
    )
    assert late.manufacturing_start_on == _days(7)
    assert "arrival_on" in late.actual
    moved = slip(planned, late)
    assert moved is not None
    assert moved.moved_days == 2
    assert not moved.after_ld
    # nothing still to happen lies before today
    waiting = compute(
        fx,  # type: ignore[arg-type]
        apheresis_on=D,
        slot_on=_days(5),
        actuals=Actuals(collected_on=D),
        today=_days(9),
    )
    assert waiting.pickup_on == _days(9)
    assert slip(planned, planned) is None


def test_after_ld_the_window_counts_from_its_end_and_a_slip_past_it_is_flagged() -> None:
    fx = _facts()
    chain = compute(
        fx,  # type: ignore[arg-type]
        apheresis_on=D,
        slot_on=_days(5),
        actuals=Actuals(ld_started_on=_days(15), ld_ended_on=None),
    )
    assert chain.ld_window is not None
    assert chain.ld_window.end == _days(17)
    assert chain.infusion_window is not None
    assert (chain.infusion_window.start, chain.infusion_window.end) == (_days(19), _days(24))
    later = compute(
        fx,  # type: ignore[arg-type]
        apheresis_on=D,
        slot_on=_days(13),
        actuals=Actuals(ld_started_on=_days(15)),
    )
    found = slip(chain, later)
    assert found is not None
    assert found.past_window
    assert found.after_ld


def test_unconfirmed_values_come_from_the_turnaround_policy_and_say_so() -> None:
    fx = facts({"ld_to_infusion_min_days": 2, "ld_to_infusion_max_days": 4}, default_policy("x"))
    assert "manufacturing_days" in fx.assumed
    assert "ld_days" in fx.assumed
    assert fx.manufacturing == 12  # the policy's typical 12 days, start to release


def test_first_free_slot() -> None:
    days = [(_days(1), 0), (_days(3), 2), (_days(2), 1)]
    assert first_free(days, _days(1)) == _days(2)
    assert first_free(days, _days(3)) == _days(3)
    assert first_free(days, _days(4)) is None


def _bag(window: tuple[dt.date, dt.date] | None, day: dt.date | None) -> BagView:
    return BagView(
        din="W000026000001",
        coi="W0000260000011",
        kind=UnitKind.PRODUCT,
        state=UnitState.THAWED,
        custodian="TRT",
        collection_site="APH",
        manufacturing_site="MFG",
        treatment_site="TRT",
        shipment=None,
        infusion_window=window,
        infusion_day=day,
        repeat_ld_after=14,
    )


def test_the_bedside_refuses_a_day_outside_the_window_naming_it() -> None:
    window = (_days(2), _days(4))
    check_window(_bag(window, _days(2)))
    check_window(_bag(window, _days(4)))
    check_window(_bag(None, _days(9)))  # no LD recorded: nothing to check
    with pytest.raises(WindowViolation, match="not before"):
        check_window(_bag(window, _days(1)))
    with pytest.raises(WindowViolation, match="repeat lymphodepletion") as late:
        check_window(_bag(window, _days(5)))
    assert "more than 14 days late" in late.value.detail
    assert late.value.extra["window"] == {"from": _days(2).isoformat(), "to": _days(4).isoformat()}


def test_a_profile_stays_within_bounds_and_every_seed_is_valid() -> None:
    for seed in PROFILE_SEED:
        checked = check_profile(seed.values)
        assert checked["ld_to_infusion_min_days"] is not None
        assert set(seed.sources) >= {"ld_to_infusion_min_days", "manufacturing_days"}
    for wrong in (
        {"ld_to_infusion_min_days": 5, "ld_to_infusion_max_days": 2},
        {"ld_to_infusion_min_days": 2},
        {"manufacturing_days": 500},
        {"manufacturing_days": 1.5},
        {"manufacturing_days": float("nan")},
        {"manufacturing_days": float("inf")},
        {"ld_days": float("-inf")},
        {"ld_days": 0},
        {"manufacturing_days": 10, "manufacturing_days_min": 12},
        {"monitoring": {"US": {"sunbathing": 3}}},
        {"monitoring": {"us": {"monitoring": 14}, "US": {"no_driving": 28}}},
        {"manufacturing_days_min": 12, "manufacturing_days_max": 9},
        {"repeat_ld_after_days": 0},
    ):
        with pytest.raises(InvalidRequest):
            check_profile(wrong)
