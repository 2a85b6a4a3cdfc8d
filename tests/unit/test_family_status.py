"""The family's view, pure: stages from a record, news that waits, day ranges, quiet hours."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from services.domain import family_status as family
from services.domain.batches import BatchState
from services.domain.custody import UnitKind, UnitState
from services.domain.errors import InvalidRequest
from services.domain.family_status import Stage, Step

A, P = UnitKind.APHERESIS, UnitKind.PRODUCT


def bag(n: int, kind: UnitKind, state: UnitState, action: str = "scan", unit: int = 1) -> Step:
    return Step(n, action, kind, unit, state, None, None)


def batch(n: int, state: BatchState) -> Step:
    return Step(n, "batch_status", None, None, None, 7, state)


def test_the_furthest_stage_wins_and_holds_move_nothing() -> None:
    assert family.stage_of([]) is None
    walk = [
        (bag(1, A, UnitState.PACKED), Stage.COLLECTED),
        (bag(2, A, UnitState.IN_TRANSIT), Stage.TO_PLANT),
        (bag(3, A, UnitState.ON_HOLD, "hold"), Stage.TO_PLANT),
        (bag(4, A, UnitState.RECEIVED), Stage.BEING_MADE),
        (batch(5, BatchState.QC_TESTING), Stage.TESTING),
        (batch(6, BatchState.FAILED), Stage.BEING_MADE),  # what the rest has reached
        (bag(7, P, UnitState.RELEASED, unit=2), Stage.ON_ITS_WAY_BACK),
        (bag(8, P, UnitState.STORED, unit=2), Stage.ARRIVED),
        (bag(9, P, UnitState.INFUSED, unit=2), Stage.GIVEN),
    ]
    steps: list[Step] = []
    for step, expected in walk:
        steps.append(step)
        assert family.stage_of(reversed(steps)) is expected, step  # replayed in sequence
    assert family.news_kind(walk[2][0]) == "hold"
    assert family.news_kind(walk[5][0]) == "batch_failed"
    assert family.news_kind(walk[4][0]) is None


def test_a_failed_batch_and_a_bag_out_of_the_chain_carry_the_order_no_more() -> None:
    started = Step(2, "start_manufacturing", A, 1, UnitState.IN_MANUFACTURING, 7, None)
    walk = [
        (bag(1, A, UnitState.RECEIVED), Stage.BEING_MADE),
        (started, Stage.BEING_MADE),
        (batch(3, BatchState.QC_TESTING), Stage.TESTING),
        (batch(4, BatchState.FAILED), None),  # nothing carries the order now
        (bag(5, A, UnitState.COLLECTED, "collect", unit=3), Stage.COLLECTED),  # collected again
    ]
    steps: list[Step] = []
    for step, expected in walk:
        steps.append(step)
        assert family.stage_of(steps) is expected, step
    arrived = [bag(1, P, UnitState.RELEASED, unit=2), bag(2, P, UnitState.RECEIVED, unit=2)]
    assert family.stage_of(arrived) is Stage.ARRIVED
    rejected = [*arrived, bag(3, P, UnitState.REJECTED, "reject", unit=2)]
    assert family.stage_of(rejected) is None  # not "arrived, stored safely" any more
    held = [*arrived, bag(3, P, UnitState.QUARANTINED, "quarantine", unit=2)]
    assert family.stage_of(held) is Stage.ARRIVED  # set aside: the news says so, once told


def test_day_ranges_widen_with_distance_and_never_start_before_today() -> None:
    tz = ZoneInfo("Asia/Tokyo")
    now = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)  # 12:00 in Tokyo
    near = family.day_range(now + dt.timedelta(hours=6), now=now, tz=tz)
    assert (near.first, near.last) == (dt.date(2026, 12, 1), dt.date(2026, 12, 2))
    far = family.day_range(now + dt.timedelta(days=30), now=now, tz=tz)
    assert far.last - far.first == dt.timedelta(days=10)
    late = family.day_range(now - dt.timedelta(days=3), now=now, tz=tz)
    assert late.first == dt.date(2026, 12, 1)


def test_quiet_hours_a_day_between_e_mails_and_link_rules() -> None:
    tz = ZoneInfo("Europe/London")
    day = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)  # 10:00 BST
    night = dt.datetime(2026, 6, 1, 21, 30, tzinfo=dt.UTC)  # 22:30 BST
    assert family.may_email(now=day, last_sent=None, tz=tz)
    assert not family.may_email(now=night, last_sent=None, tz=tz)
    assert not family.may_email(now=day, last_sent=day - dt.timedelta(hours=23), tz=tz)
    assert family.may_email(now=day, last_sent=day - dt.timedelta(hours=24), tz=tz)
    token = family.new_token()
    assert len(token) * 6 >= family.MIN_TOKEN_BITS
    assert family.plausible_token(token)
    assert not family.plausible_token("../../etc")
    assert family.link_expiry(day, None) == day + dt.timedelta(days=60)
    for days in (0, 181):
        with pytest.raises(InvalidRequest):
            family.link_expiry(day, days)
    assert family.check_phone(" +44  20 7946 0000 ") == "+44 20 7946 0000"
    with pytest.raises(InvalidRequest):
        family.check_phone("call me")
