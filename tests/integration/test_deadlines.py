"""Deadlines as rows and the sweep, with controlled time (time-machine)."""

from __future__ import annotations

import datetime as dt
import random
import threading
from typing import Any

import pytest
import time_machine
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import Deadline, Notification, Order, OrderEvent, Unit
from services.domain.custody import UnitKind, UnitState
from services.domain.sla import DEFAULT_LIMITS, Leg, percentile
from services.operations import admin, deadlines
from tests.world import World

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)

# the leg, the scans (after collection) that open it, and the scan that closes it
LEGS = [
    (Leg.COLLECTION_TO_PICKUP, [], "pickup"),
    (Leg.PICKUP_TO_DELIVERY, ["pickup"], "deliver"),
    (Leg.DELIVERY_TO_RECEIPT, ["pickup", "deliver"], "receive"),
    (Leg.RECEIPT_TO_BATCH_START, ["pickup", "deliver", "receive"], "start_manufacturing"),
]
WHO = {
    "pickup": ("courier", "APH-1"),
    "deliver": ("courier", "MFG-1"),
    "receive": ("op", "MFG-1"),
    "start_manufacturing": ("op", "MFG-1"),
}


def sweep(world: World) -> deadlines.SweepResult:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        result = deadlines.sweep(uow.session, now=dt.datetime.now(dt.UTC))
        uow.commit()
    return result


def rows(world: World, model: Any, *where: Any) -> list[Any]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return list(uow.session.exec(select(model).where(*where)).all())


def packed_bag(world: World, patient: str = "PAT-1") -> dict[str, Any]:
    """A bag collected, checked, frozen and packed on a shipment at T0 (scanner clocks)."""
    bag = world.bag_at("collected", patient)
    for action in ("verify_label", "cryopreserve", "pack"):
        assert world.scan("aph", bag["barcode"], action, "APH-1").status_code == 201
    world.ship([bag["din"]])
    return bag


def scan(world: World, bag: dict[str, Any], action: str, **extra: Any) -> None:
    who, site = WHO[action]
    response = world.scan(who, bag["barcode"], action, site, **extra)
    assert response.status_code == 201, response.json


@pytest.mark.parametrize(("leg", "openers", "closer"), LEGS, ids=[leg for leg, _, _ in LEGS])
def test_each_leg_is_flagged_at_risk_then_late_then_escalated_once(
    world: World, leg: Leg, openers: list[str], closer: str
) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        bag = packed_bag(world)
        for action in openers:
            scan(world, bag, action)
        limit = dt.timedelta(seconds=DEFAULT_LIMITS[leg])
        assert sweep(world) == deadlines.SweepResult()
        clock.move_to(T0 + limit * 0.8)
        assert sweep(world) == deadlines.SweepResult(at_risk=1)
        assert sweep(world) == deadlines.SweepResult()  # once
        clock.move_to(T0 + limit + dt.timedelta(minutes=1))
        assert sweep(world) == deadlines.SweepResult(late=1)
        assert sweep(world) == deadlines.SweepResult()
        clock.move_to(T0 + limit + 13 * HOUR)
        assert sweep(world) == deadlines.SweepResult(escalated=1)
        assert sweep(world) == deadlines.SweepResult()
        (row,) = rows(world, Deadline, Deadline.leg == leg)
        assert row.at_risk_flagged_at is not None
        assert row.escalated_at is not None
        kinds = [e.kind for e in rows(world, OrderEvent)]
        assert kinds == ["deadline_at_risk", "deadline_late", "deadline_escalated"]
        # the care team heard each, in its feed
        feed = [i["kind"] for i in world.get("care", "/api/v1/notifications").json["items"]]
        assert feed[:3] == ["deadline_escalated", "deadline_late", "deadline_at_risk"]
        # the escalation also reached the feed of the site holding the bag
        holder = {"collection_to_pickup": "aph", "pickup_to_delivery": "courier"}.get(leg, "op")
        holder_feed = world.get(holder, "/api/v1/notifications").json["items"]
        assert "deadline_escalated" in [i["kind"] for i in holder_feed]
        # completing the leg clears it from the delays
        assert [d["leg"] for d in world.get("care", "/api/v1/delays").json["items"]] == [leg]
        scan(world, bag, closer)
        assert leg not in [d["leg"] for d in world.get("care", "/api/v1/delays").json["items"]]


def test_a_leg_closed_in_time_is_never_flagged(world: World) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        bag = packed_bag(world)
        clock.move_to(T0 + 10 * HOUR)
        scan(world, bag, "pickup")
        clock.move_to(T0 + 30 * 24 * HOUR)
        result = sweep(world)
        # only the leg still open (in transit) is flagged; the closed one never
        assert result == deadlines.SweepResult(late=1, escalated=1)
        (closed,) = rows(world, Deadline, Deadline.leg == Leg.COLLECTION_TO_PICKUP)
        assert closed.closed_at == T0 + 10 * HOUR
        assert (closed.at_risk_flagged_at, closed.late_flagged_at) == (None, None)


def test_concurrent_sweeps_flag_each_leg_once(world: World) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        for n in range(12):
            packed_bag(world, f"PAT-{n}")
        clock.move_to(T0 + 100 * HOUR)
        results: list[deadlines.SweepResult] = []
        barrier = threading.Barrier(4)

        def run() -> None:
            barrier.wait()
            results.append(sweep(world))

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(r.late for r in results) == 12
    assert sum(r.escalated for r in results) == 12
    late = rows(world, Notification, Notification.kind == "deadline_late")
    assert len(late) == 12  # one feed item per leg, not one per sweep


def test_scans_uploaded_late_recompute_the_legs(world: World) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        bag = packed_bag(world)
        # the courier's scanner was offline: its pickup arrives 60 hours later, saying 10:00
        clock.move_to(T0 + 60 * HOUR)
        assert sweep(world) == deadlines.SweepResult(late=1, escalated=1)
        scan(world, bag, "pickup", occurred_at=(T0 + 2 * HOUR).isoformat())
        (first,) = rows(world, Deadline, Deadline.leg == Leg.COLLECTION_TO_PICKUP)
        assert first.closed_at == T0 + 2 * HOUR  # it was picked up in time after all
        (transit,) = rows(world, Deadline, Deadline.leg == Leg.PICKUP_TO_DELIVERY)
        assert transit.started_at == T0 + 2 * HOUR
        assert transit.due_at == T0 + 50 * HOUR  # the limit counts from the real pickup
        # and the delivery, uploaded now, says it happened at hour 40: on time
        scan(world, bag, "deliver", occurred_at=(T0 + 40 * HOUR).isoformat())
        (transit,) = rows(world, Deadline, Deadline.leg == Leg.PICKUP_TO_DELIVERY)
        assert transit.closed_at == T0 + 40 * HOUR
        order = world.get("care", f"/api/v1/orders/{bag['coi']}").json
        statuses = {d["leg"]: d["status"] for d in order["deadlines"]}
        assert statuses["collection_to_pickup"] == "closed_on_time"
        assert statuses["pickup_to_delivery"] == "closed_on_time"
        assert statuses["delivery_to_receipt"] == "late"  # 20 hours on the dock by now


def test_a_policy_change_applies_to_legs_opened_after_it(world: World) -> None:
    with time_machine.travel(T0, tick=False):
        first = packed_bag(world, "PAT-1")
        scan(world, first, "pickup")
        refused = world.post(
            "care", "/api/v1/sla-policies/axi-cel", {"limits_hours": {"pickup_to_delivery": 24}}
        )
        assert refused.status_code == 403
        signed = {"reason": "courier SLA renegotiated", "signature": world.signature("qa")}
        changed = world.post(
            "qa",
            "/api/v1/sla-policies/axi-cel",
            {"limits_hours": {"pickup_to_delivery": 24}, "target_days": 28, **signed},
        )
        assert changed.status_code == 201, changed.json
        assert changed.json["version"] == 1
        assert changed.json["limits_hours"]["pickup_to_delivery"] == 24
        assert (
            world.post(
                "qa", "/api/v1/sla-policies/axi-cel", {"limits_hours": {"teleport": 1}, **signed}
            ).status_code
            == 422
        )
        second = packed_bag(world, "PAT-2")
        scan(world, second, "pickup")
    transit = {r.unit_id: r for r in rows(world, Deadline, Deadline.leg == Leg.PICKUP_TO_DELIVERY)}
    old, new = sorted(transit.values(), key=lambda r: r.id or 0)
    assert (old.policy_version, old.due_at) == (0, T0 + 48 * HOUR)  # the past is not rewritten
    assert (new.policy_version, new.due_at) == (1, T0 + 24 * HOUR)
    policy = world.get("care", "/api/v1/sla-policies/axi-cel").json
    assert (policy["version"], policy["target_days"]) == (1, 28)


def test_projection_and_turnaround_summary(world: World) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        bags = [packed_bag(world, f"PAT-{n}") for n in range(3)]
        for n, bag in enumerate(bags):
            clock.move_to(T0 + (10 + 20 * n) * HOUR)  # 10 h, 30 h, 50 h (late)
            scan(world, bag, "pickup")
        clock.move_to(T0 + 60 * HOUR)
        order = world.get("care", f"/api/v1/orders/{bags[0]['coi']}").json
        turnaround = order["turnaround"]
        assert turnaround["elapsed_days"] == pytest.approx(2.5)
        assert turnaround["target_days"] == 30
        assert turnaround["over_target"] is False
        projected = dt.datetime.fromisoformat(turnaround["projected_infusion_at"])
        assert projected > T0 + 60 * HOUR
        summary = world.get(
            "care", "/api/v1/turnaround?since=2026-11-01T00:00:00Z&until=2026-11-30T00:00:00Z"
        ).json["items"]
        (pickup,) = [s for s in summary if s["leg"] == "collection_to_pickup"]
        assert (pickup["site"], pickup["count"], pickup["late"]) == ("APH-1", 3, 1)
        assert pickup["median_hours"] == pytest.approx(30)
        assert pickup["p90_hours"] == pytest.approx(46)


def test_turnaround_percentiles_from_the_database_match_the_inclusive_method(
    world: World,
) -> None:
    """The median and 90th percentile the database computes (percentile_cont on PostgreSQL,
    ranks on SQLite) against the domain's own statistics.quantiles oracle."""
    order = world.enroll("PAT-STATS")
    rng = random.Random(17)
    durations: dict[Leg, list[float]] = {Leg.COLLECTION_TO_PICKUP: [], Leg.PICKUP_TO_DELIVERY: []}
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        row = uow.session.exec(select(Order).where(Order.coi == order["coi"])).one()
        site = admin.site_by_code(uow.session, "APH-1")
        for n in range(42):  # (n - 1) x 0.5 and x 0.9 fall between ranks: interpolated
            unit = Unit(
                din=f"X{n:012d}",
                kind=UnitKind.APHERESIS,
                order_id=row.id,  # type: ignore[arg-type]
                state=UnitState.COLLECTED,
                custodian_site_id=site.id,  # type: ignore[arg-type]
                collected_at=T0,
            )
            uow.session.add(unit)
            uow.session.flush()
            for leg, values in durations.items():
                hours = rng.uniform(1, 100)
                values.append(hours)
                start = T0 + n * HOUR
                uow.session.add(
                    Deadline(
                        order_id=row.id,  # type: ignore[arg-type]
                        unit_id=unit.id,  # type: ignore[arg-type]
                        leg=leg,
                        site_id=site.id,  # type: ignore[arg-type]
                        policy_version=0,
                        limit_seconds=48 * 3600,
                        at_risk_fraction=0.75,
                        escalate_after_seconds=12 * 3600,
                        started_at=start,
                        at_risk_at=start + 36 * HOUR,
                        due_at=start + 48 * HOUR,
                        escalate_at=start + 60 * HOUR,
                        closed_at=start + dt.timedelta(hours=hours),
                    )
                )
        uow.commit()
    summary = world.get(
        "care", "/api/v1/turnaround?since=2026-11-01T00:00:00Z&until=2026-11-30T00:00:00Z"
    ).json["items"]
    for leg, values in durations.items():
        (found,) = [s for s in summary if s["leg"] == leg.value and s["site"] == "APH-1"]
        assert found["count"] == 42
        assert found["late"] == sum(1 for hours in values if hours > 48)
        assert found["median_hours"] == pytest.approx(percentile(values, 0.5), abs=1e-3)
        assert found["p90_hours"] == pytest.approx(percentile(values, 0.9), abs=1e-3)


def test_an_order_projected_over_its_target(world: World) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        bag = packed_bag(world)
        clock.move_to(T0 + 29 * 24 * HOUR)
        order = world.get("care", f"/api/v1/orders/{bag['coi']}").json
    assert order["turnaround"]["over_target"] is True
    assert order["turnaround"]["projected_days"] > 30


def test_delays_show_only_what_the_caller_may_see(world: World) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        packed_bag(world, "PAT-1")
        other = world.bag_at(
            "collected",
            "PAT-2",
            collection="APH-2",
            manufacturing="MFG-2",
            treatment="TRT-2",
            who="care2",
        )
        clock.move_to(T0 + 100 * HOUR)
        mine = world.get("care", "/api/v1/delays").json["items"]
        theirs = world.get("care2", "/api/v1/delays").json["items"]
    assert [d["din"] for d in theirs] == [other["din"]]
    assert other["din"] not in [d["din"] for d in mine]
    assert all(d["status"] == "late" and d["overdue_hours"] > 0 for d in mine + theirs)


def test_sweep_from_the_command_line_under_controlled_time(world: World) -> None:
    from flask.testing import FlaskCliRunner

    from services.cli import sweep_command

    with time_machine.travel(T0, tick=False) as clock:
        packed_bag(world)
        clock.move_to(T0 + 47 * HOUR)
        runner = FlaskCliRunner(world.app)
        result = runner.invoke(sweep_command)
        assert result.exit_code == 0, result.output
        assert "1 at risk, 0 late, 0 escalated" in result.output
