"""The vein-to-vein plan through the API, on both databases: capacity, booking the first free
slot, holds that run out, twenty bookings racing for the last slot (PostgreSQL, threads against
the real app), the LD gate and its override, every seeded product's infusion window at the
bedside, a late leg that re-plans and alerts, a failed batch that proposes a remanufacture."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import Order
from services.domain.products import PROFILE_SEED
from services.operations import family_status, plans, sites
from tests.integration.test_vein_to_vein import STEPS, bc, ship_back, status
from tests.world import PASSWORD, World


def _uow(world: World) -> UnitOfWork:
    return UnitOfWork(world.app.extensions["vein2vein"].db.session_factory)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()  # the test sites keep UTC


def _day(offset: int) -> str:
    return (_today() + dt.timedelta(days=offset)).isoformat()


def _publish(world: World, offset: int, slots: int, product: str = "axi-cel", who: str = "op"):
    return world.post(
        who,
        "/api/v1/capacity",
        {"site": "MFG-1", "product": product, "date": _day(offset), "slots": slots},
    )


def _capacity(world: World, start: int, end: int, who: str = "care") -> dict[str, Any]:
    response = world.get(
        who, f"/api/v1/capacity?site=MFG-1&product=axi-cel&from={_day(start)}&to={_day(end)}"
    )
    assert response.status_code == 200, response.json
    return {day["date"]: day for day in response.json["days"]}


def _book(world: World, coi: str, apheresis: int = 1, who: str = "care") -> Any:
    return world.post(who, f"/api/v1/orders/{coi}/plan", {"apheresis_on": _day(apheresis)})


def _actions(world: World, coi: str) -> list[dict[str, Any]]:
    return world.get("care", f"/api/v1/orders/{coi}/events").json["events"]


def _feed(world: World, who: str = "care") -> list[dict[str, Any]]:
    return world.get(who, "/api/v1/notifications?limit=500").json["items"]


def test_booking_takes_the_first_free_slot_holds_it_and_an_expired_hold_frees_it(
    world: World,
) -> None:
    # axi-cel: a day to pickup and two in transit (its turnaround policy's typical legs, as
    # its profile leaves them unconfirmed): material collected tomorrow arrives in 4 days
    assert _publish(world, 3, 1).status_code == 201  # before the material arrives: not used
    assert _publish(world, 5, 1).status_code == 201
    assert _publish(world, 6, 1).status_code == 201
    assert _publish(world, 5, 1, who="care").status_code == 403  # not the manufacturing site
    assert _publish(world, 5, 1, who="op2").status_code == 403  # another manufacturing site

    first, second, third = (world.enroll(f"PAT-SLOT-{n}")["coi"] for n in range(3))
    assert _book(world, first, who="op").status_code == 403  # the care team or collection books
    booked = _book(world, first)
    assert booked.status_code == 201, booked.json
    plan = booked.json
    assert plan["state"] == "held"
    assert plan["manufacturing_start_on"] == _day(5)
    assert plan["expected"]["arrival_on"] == _day(4)
    assert plan["infusion_window"]["from"] <= plan["infusion_window"]["to"]
    held_until = dt.datetime.fromisoformat(plan["held_until"])
    assert dt.timedelta(hours=47) < held_until - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=48)
    assert _book(world, first).status_code == 409  # one plan per order: move or cancel it
    # the family's status page reads the plan's days (issue 32), not the bare projection
    with _uow(world) as uow:
        order = uow.session.exec(select(Order).where(Order.coi == first)).one()
        expected = family_status.expected_dates(uow.session, order, dt.datetime.now(dt.UTC))
    infusion = plan["expected"]["infusion_on"] or plan["infusion_window"]["from"]
    assert expected.given_at is not None
    assert expected.given_at.date().isoformat() == infusion
    assert expected.back_at.date().isoformat() == plan["expected"]["treatment_arrival_on"]

    # the collection site's apheresis staff book too; the next slot is the next free day
    assert _book(world, second, who="aph").json["manufacturing_start_on"] == _day(6)
    full = _book(world, third)
    assert full.status_code == 409
    assert full.json["code"] == "no_capacity"

    days = _capacity(world, 0, 10)
    assert days[_day(5)] == {"date": _day(5), "slots": 1, "booked": 1, "free": 0}
    assert days[_day(3)]["free"] == 1
    # fewer slots than booked is refused, naming the booking
    fewer = _publish(world, 5, 0)
    assert fewer.status_code == 409
    assert first in fewer.json["detail"]

    # the hold runs out unconfirmed: the beat frees the slot, on record in the order's chain
    with _uow(world) as uow:
        expired = plans.expire_holds(uow.session, now=held_until + dt.timedelta(minutes=1))
        uow.commit()
    assert first in expired
    assert _capacity(world, 0, 10)[_day(5)]["free"] == 1
    last = _actions(world, first)[-1]
    assert last["action"] == "plan_expire"
    assert "free again" in last["reason"]
    late = world.post("care", f"/api/v1/orders/{first}/plan/confirm", {})
    assert late.status_code == 409
    # the freed slot goes to the next booking, which is confirmed and then cancelled
    assert _book(world, third).json["manufacturing_start_on"] == _day(5)
    confirmed = world.post("care", f"/api/v1/orders/{third}/plan/confirm", {})
    assert confirmed.status_code == 200, confirmed.json
    assert confirmed.json["state"] == "confirmed"
    cancelled = world.post("care", f"/api/v1/orders/{third}/plan/cancel", {"reason": "unwell"})
    assert cancelled.json["state"] == "cancelled"
    assert _capacity(world, 0, 10)[_day(5)]["free"] == 1
    assert [e["action"] for e in _actions(world, third)][-3:] == [
        "plan_book",
        "plan_confirm",
        "plan_cancel",
    ]
    # another treatment site's care team does not see the order's plan
    assert world.get("care2", f"/api/v1/orders/{second}/plan").status_code == 404
    # the order's record and its plan read as pages, the plan's events among the others
    browser = world.browser("care")
    record = browser.get(f"/orders/{third}")
    assert record.status_code == 200
    assert "plan cancel" in record.get_data(as_text=True)
    assert browser.get(f"/orders/{second}/plan").status_code == 200
    assert browser.get("/capacity?site=MFG-1&from=9999-01-01").status_code == 422
    # collected three days ago but not picked up: picked up today at the earliest, the
    # material arrives on day 2, so day 1's slot is of no use to it
    assert _publish(world, 1, 1).status_code == 201
    past = _book(world, world.enroll("PAT-SLOT-PAST")["coi"], apheresis=-3)
    assert past.json["manufacturing_start_on"] == _day(3), past.json
    assert _capacity(world, 0, 10)[_day(1)]["free"] == 1


@pytest.mark.postgres
def test_twenty_concurrent_bookings_of_the_last_slot_give_exactly_one(pg_app: Any) -> None:
    world = World.build(pg_app)
    assert _publish(world, 5, 1).status_code == 201
    orders = [world.enroll(f"PAT-RACE-{n:02}")["coi"] for n in range(20)]
    barrier = threading.Barrier(len(orders))
    answers: dict[str, int] = {}

    def book(coi: str) -> None:
        client = pg_app.test_client()
        barrier.wait()
        response = client.post(
            f"/api/v1/orders/{coi}/plan",
            json={"apheresis_on": _day(1)},
            headers=world.headers("care"),
        )
        answers[coi] = response.status_code

    threads = [threading.Thread(target=book, args=(coi,)) for coi in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers.values()) == [201] + [409] * 19
    assert _capacity(world, 5, 5)[_day(5)]["booked"] == 1
    with _uow(world) as uow:
        planned = uow.session.exec(select(Order).where(Order.has_plan)).all()
    assert len(planned) == 1


def _witness(world: World, who: str) -> dict[str, str]:
    world.password(who)
    return {"email": f"{who}@example.org", "password": PASSWORD}


def test_lymphodepletion_before_release_needs_a_second_persons_signed_override(
    world: World,
) -> None:
    coi = world.enroll("PAT-LD")["coi"]
    path = f"/api/v1/orders/{coi}/lymphodepletion"
    body = {"started_on": _day(0)}
    assert world.post("op", path, body).status_code == 403  # the treatment site records LD
    refused = world.post("care", path, body)
    assert refused.status_code == 409
    assert refused.json["code"] == "product_not_released"
    override = {**body, "override_reason": "bridging therapy failed; physician's decision"}
    alone = world.post("care", path, {**override, "signature": world.signature("care")})
    assert alone.status_code == 422
    assert alone.json["code"] == "signature_required"
    himself = world.post(
        "care",
        path,
        {**override, "signature": world.signature("care"), "witness": _witness(world, "care")},
    )
    assert himself.status_code == 403
    other_site = world.post(
        "care",
        path,
        {**override, "signature": world.signature("care"), "witness": _witness(world, "care2")},
    )
    assert other_site.status_code == 403
    signed = world.post(
        "care",
        path,
        {**override, "signature": world.signature("care"), "witness": _witness(world, "admin")},
    )
    assert signed.status_code == 201, signed.json
    assert signed.json["override"] is True
    # axi-cel: LD on days -5, -4, -3 (three days), infusion 3 days after it ends
    assert signed.json["ended_on"] == _day(2)
    assert signed.json["infusion_window"] == {"from": _day(5), "to": _day(5)}
    (event,) = [e for e in _actions(world, coi) if e["action"] == "lymphodepletion"]
    assert "bridging therapy" in event["reason"]
    assert sorted(s["meaning"] for s in event["signatures"]) == ["performed", "witness"]


def _released_order(
    world: World, product: str, patient_ref: str, plan: bool = False
) -> dict[str, Any]:
    """An order of ``product``, its product released, shipped, received, stored, thawed (its
    plan booked, held, before collection if ``plan``)."""
    order = world.post(
        "care",
        "/api/v1/orders",
        {
            "patient_ref": patient_ref,
            "product": product,
            "collection_site": "APH-1",
            "manufacturing_site": "MFG-1",
            "treatment_site": "TRT-1",
        },
    ).json
    if plan:
        assert _book(world, order["coi"], apheresis=0).status_code == 201
    unit = world.collect(order["coi"])
    assert world.verify_label("aph", unit).status_code == 201
    for action in ("cryopreserve", "pack"):
        assert world.scan("aph", unit["barcode"], action, "APH-1").status_code == 201
    world.ship([unit["din"]])
    for action, who, site in (
        ("pickup", "courier", "APH-1"),
        ("deliver", "courier", "MFG-1"),
        ("receive", "op", "MFG-1"),
    ):
        assert world.scan(who, unit["barcode"], action, site).status_code == 201
    code = world.post("op", "/api/v1/batches", {"coi": order["coi"]}).json["code"]
    for step in STEPS:
        assert status(world, "op", code, step).status_code == 200
    (product_bag,) = world.post("op", f"/api/v1/batches/{code}/products", {"count": 1}).json[
        "products"
    ]
    for step in ("cryopreservation", "qc_testing"):
        assert status(world, "op", code, step).status_code == 200
    assert status(world, "qa", code, "released").status_code == 200
    din = product_bag["din"]
    shipment = ship_back(world, [din])
    for action in ("receive", "store", "thaw"):
        extra = {"shipment": shipment["barcode"]} if action == "receive" else {}
        assert world.scan("care", bc(din), action, "TRT-1", **extra).status_code == 201
    return {"coi": order["coi"], "din": din, "code": code}


@pytest.mark.parametrize("seed", PROFILE_SEED, ids=lambda seed: seed.product)
def test_each_products_infusion_a_day_outside_its_window_is_refused_inside_accepted(
    world: World, seed: Any
) -> None:
    low, high = seed.values["ld_to_infusion_min_days"], seed.values["ld_to_infusion_max_days"]
    patient = f"PAT-WIN-{seed.product}"
    made = _released_order(world, seed.product, patient)
    path = f"/api/v1/orders/{made['coi']}/lymphodepletion"

    def ld(ended: int) -> None:
        response = world.post("care", path, {"started_on": _day(ended), "ended_on": _day(ended)})
        assert response.status_code == 201, response.json

    def infuse() -> Any:
        return world.scan("care", bc(made["din"]), "infuse", "TRT-1", patient_ref=patient)

    ld(-(high + 1))  # LD ended a day too long ago: today is a day past the window
    late = infuse()
    assert late.status_code == 422, late.json
    assert late.json["code"] == "window_violation"
    assert _day(-1) in late.json["detail"]  # the window's last day, named
    assert "repeat lymphodepletion" in late.json["detail"]
    if low >= 1:
        ld(-(low - 1))  # a day before the window opens
        early = infuse()
        assert early.status_code == 422
        assert early.json["code"] == "window_violation"
    ld(-low)  # the repeat LD: today is the window's first day
    accepted = infuse()
    assert accepted.status_code == 201, accepted.json
    assert accepted.json["to_state"] == "infused"
    not_infused = world.post(
        "care", f"/api/v1/orders/{made['coi']}/not-infused", {"reason": "x", "fate": "destroy"}
    )
    assert not_infused.status_code == 409  # the patient is infused


def test_a_late_leg_moves_the_plan_and_past_the_window_raises_a_critical_alert(
    world: World,
) -> None:
    assert _publish(world, 3, 2).status_code == 201
    assert _publish(world, 20, 1).status_code == 201
    coi = world.enroll("PAT-LATE")["coi"]
    plan = _book(world, coi, apheresis=0).json
    assert plan["manufacturing_start_on"] == _day(3)
    assert world.post("care", f"/api/v1/orders/{coi}/plan/confirm", {}).status_code == 200
    unit = world.collect(coi)  # collected today, as planned
    # a second order on the same day, late too: no slot is left for it after day 3
    stuck = world.enroll("PAT-LATE-2")["coi"]
    assert _book(world, stuck, apheresis=0).json["manufacturing_start_on"] == _day(3)
    planned_window = plan["infusion_window"]

    # five days on, the material has not reached the manufacturing site: its slot (day 3)
    # is missed, so the beat re-plans it onto the next free slot (day 20), past the window
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=5)
    looks = []
    for _ in range(2):  # the beat, twice: the second look alerts nobody again
        with _uow(world) as uow:
            looks.append(plans.replan_due(uow.session, now=later))
            assert plans.send_reminders(uow.session, now=later) == 0
            uow.commit()
    assert coi in looks[0]
    # the plan with no later slot keeps its day, holds no slot, and asks for one, once
    stuck_plan = world.get("care", f"/api/v1/orders/{stuck}/plan").json
    assert stuck_plan["manufacturing_start_on"] == _day(3)
    assert "no later slot is free" in _actions(world, stuck)[-1]["reason"]
    (no_slot,) = [n for n in _feed(world) if n["kind"] == "plan_no_slot"]
    assert no_slot["severity"] == "critical"
    now_plan = world.get("care", f"/api/v1/orders/{coi}/plan").json
    assert now_plan["manufacturing_start_on"] == _day(20)
    assert now_plan["expected"]["arrival_on"] == _day(7)  # picked up today at the earliest
    assert now_plan["expected"]["treatment_arrival_on"] > planned_window["to"]
    assert now_plan["planned"]["infusion_window"] == planned_window  # what was booked stays
    assert now_plan["past_window"] is True
    move = _actions(world, coi)[-1]
    assert move["action"] == "plan_move"
    assert "after its slot" in move["reason"]
    alerts = [n for n in _feed(world) if n["kind"] == "plan_past_window" and n["coi"] == coi]
    assert len(alerts) == 1
    assert alerts[0]["severity"] == "critical"
    assert _capacity(world, 0, 30)[_day(3)]["free"] == 2  # the missed slots are free again
    assert unit["din"]


def test_a_failed_batch_proposes_a_remanufacture_with_the_next_free_slot(world: World) -> None:
    for offset in (3, 6):
        assert _publish(world, offset, 1).status_code == 201
    # an order whose manufacturing started books no slot it would never use
    started = world.bag_at("receive", "PAT-STARTED")["coi"]
    assert world.post("op", "/api/v1/batches", {"coi": started}).status_code == 201
    assert _book(world, started, apheresis=0).status_code == 409
    bag = world.bag_at("receive", "PAT-FAIL")
    coi = bag["coi"]
    held = _book(world, coi, apheresis=0).json
    assert held["manufacturing_start_on"] == _day(3)
    code = world.post("op", "/api/v1/batches", {"coi": coi}).json["code"]
    # manufacturing started on the held slot: the plan is binding, a hold running out frees
    # nothing
    assert world.get("care", f"/api/v1/orders/{coi}/plan").json["state"] == "confirmed"
    with _uow(world) as uow:
        gone = plans.expire_holds(
            uow.session, now=dt.datetime.fromisoformat(held["held_until"]) + dt.timedelta(hours=1)
        )
        uow.commit()
    assert gone == []
    assert _capacity(world, 0, 10)[_day(3)]["booked"] == 1
    failed = status(world, "op", code, "failed", reason="sterility failure")
    assert failed.status_code == 200, failed.json
    plan = world.get("care", f"/api/v1/orders/{coi}/plan").json
    assert plan["proposal"]["manufacturing_start_on"] == _day(6)
    assert plan["proposal"]["chain"]["manufacturing_start_on"] == _day(6)
    (alert,) = [n for n in _feed(world) if n["kind"] == "plan_remanufacture"]
    assert alert["severity"] == "critical"
    # the care team takes the proposal: the plan moves to that slot
    moved = world.post(
        "care",
        f"/api/v1/orders/{coi}/plan/move",
        {"manufacturing_start_on": _day(6), "reason": "remanufacture"},
    )
    assert moved.status_code == 200, moved.json
    assert moved.json["manufacturing_start_on"] == _day(6)
    assert moved.json["proposal"] is None
    # the failed run's start is no milestone of the plan: the remanufacture starts on day 6
    assert "manufacturing_start_on" not in moved.json["expected"]["actual"]
    assert moved.json["expected"]["manufacturing_start_on"] == _day(6)
    assert moved.json["expected"]["release_on"] > _day(6)


def test_the_profile_is_the_owners_signed_and_the_plans_days_remind_the_care_team(
    world: World,
) -> None:
    path = "/api/v1/products/axi-cel/profile"
    seeded = world.get("care", path).json
    assert seeded["version"] == 1
    assert seeded["values"]["ld_days"] == 3
    assert "not confirmed" in seeded["sources"]["manufacturing_days"]
    assert seeded["values"]["monitoring"]["US"]["monitoring"] == 14
    change = {"values": {"manufacturing_days": 9}, "reason": "our own QC data, 2026"}
    assert world.post("op", path, {**change, "signature": world.signature("op")}).status_code == 403
    assert (
        world.post("qa2", path, {**change, "signature": world.signature("qa2")}).status_code == 403
    )
    assert world.post("qa", path, change).status_code == 422  # unsigned
    wrong = {
        "values": {"ld_to_infusion_min_days": 9},
        "reason": "x",
        "signature": world.signature("qa"),
    }
    assert world.post("qa", path, wrong).status_code == 422  # past the window's last day
    changed = world.post("qa", path, {**change, "signature": world.signature("qa")})
    assert changed.status_code == 201, changed.json
    assert changed.json["version"] == 2
    assert changed.json["values"]["manufacturing_days"] == 9
    assert "our own QC data" in changed.json["sources"]["manufacturing_days"]

    # the treatment site is in the US: the plan ends with the US monitoring periods as dates
    with _uow(world) as uow:
        sites.change_site(
            uow.session, actor=None, code="TRT-1", jurisdiction="us", now=dt.datetime.now(dt.UTC)
        )
        uow.commit()
    assert _publish(world, 3, 1).status_code == 201
    coi = world.enroll("PAT-DAYS")["coi"]
    plan = _book(world, coi, apheresis=0).json
    assert plan["profile_version"] == 2
    assert plan["expected"]["release_on"] == _day(3 + 9)
    infusion = dt.date.fromisoformat(plan["expected"]["infusion_on"])
    assert plan["expected"]["monitoring"] == {
        name: (infusion + dt.timedelta(days=14)).isoformat()
        for name in ("monitoring", "no_driving", "stay_near_centre")
    }
    # on infusion day the beat reminds the care team, once
    on_the_day = dt.datetime.combine(infusion, dt.time(9), tzinfo=dt.UTC)
    for _ in range(2):
        with _uow(world) as uow:
            plans.send_reminders(uow.session, now=on_the_day)
            uow.commit()
    assert [n["kind"] for n in _feed(world)].count("plan_infusion_day") == 1

    # the patient cannot be infused: on record with its reason; the slot goes back
    gone = world.post(
        "care",
        f"/api/v1/orders/{coi}/not-infused",
        {"reason": "disease progression", "fate": "destroy"},
    )
    assert gone.status_code == 201, gone.json
    assert gone.json["state"] == "not_infused"
    last = _actions(world, coi)[-1]
    assert (last["action"], last["reason"]) == ("not_infused", "disease progression")
    assert _capacity(world, 0, 10)[_day(3)]["free"] == 1
    again = world.post(
        "care", f"/api/v1/orders/{coi}/not-infused", {"reason": "again", "fate": "return"}
    )
    assert again.status_code == 409  # on record once


def test_a_missed_slot_with_none_later_never_refuses_the_scan(world: World) -> None:
    assert _publish(world, 3, 1).status_code == 201
    unit = world.bag_at("pack", "PAT-NOSLOT")
    coi = unit["coi"]
    assert _book(world, coi, apheresis=0).json["manufacturing_start_on"] == _day(3)
    # the profile now says transit takes five days: picked up today, the material arrives on
    # day 5, after its slot, and no later slot is published
    change = {
        "values": {"outbound_transit_days": 5},
        "reason": "courier lane change",
        "signature": world.signature("qa"),
    }
    assert world.post("qa", "/api/v1/products/axi-cel/profile", change).status_code == 201
    world.ship([unit["din"]])
    pickup = world.scan("courier", unit["barcode"], "pickup", "APH-1")
    assert pickup.status_code == 201, pickup.json  # the scan is on record whatever the plan
    plan = world.get("care", f"/api/v1/orders/{coi}/plan").json
    assert plan["manufacturing_start_on"] == _day(3)
    assert plan["expected"]["arrival_on"] == _day(5)
    assert [n["kind"] for n in _feed(world)].count("plan_no_slot") == 1
    assert _capacity(world, 0, 10)[_day(3)]["free"] == 1
    # a slot published later is taken at the next look
    assert _publish(world, 6, 1).status_code == 201
    with _uow(world) as uow:
        assert plans.replan_due(uow.session, now=dt.datetime.now(dt.UTC)) == [coi]
        uow.commit()
    assert world.get("care", f"/api/v1/orders/{coi}/plan").json["manufacturing_start_on"] == _day(6)


def test_past_the_window_after_ld_alerts_once_and_the_days_remind_once(world: World) -> None:
    assert _publish(world, 3, 2).status_code == 201
    # a plan of no interest to the reminders comes first, and the beat reads one at a time
    assert _book(world, world.enroll("PAT-FIRST")["coi"], apheresis=0).status_code == 201
    made = _released_order(world, "axi-cel", "PAT-REMIND", plan=True)
    coi = made["coi"]
    # axi-cel: LD of three days ended three days ago, the window is today only
    ld = world.post(
        "care",
        f"/api/v1/orders/{coi}/lymphodepletion",
        {"started_on": _day(-5), "ended_on": _day(-3)},
    )
    assert ld.status_code == 201, ld.json
    assert ld.json["infusion_window"] == {"from": _day(0), "to": _day(0)}
    # the profile's window changes afterwards: the plan keeps the window the bedside enforces
    change = {
        "values": {"ld_to_infusion_min_days": 2, "ld_to_infusion_max_days": 9},
        "reason": "label update",
        "signature": world.signature("qa"),
    }
    assert world.post("qa", "/api/v1/products/axi-cel/profile", change).status_code == 201
    start = dt.datetime.now(dt.UTC)
    for offset in range(4):  # the beat, today and three days past the window
        with _uow(world) as uow:
            plans.replan_due(uow.session, now=start + dt.timedelta(days=offset))
            plans.send_reminders(uow.session, now=start + dt.timedelta(days=offset), page=1)
            uow.commit()
    kinds = [n["kind"] for n in _feed(world) if n["coi"] == coi]
    assert kinds.count("plan_infusion_day") == 1  # today, in the window; not again after it
    alerts = [n for n in _feed(world) if n["kind"] == "plan_past_window" and n["coi"] == coi]
    assert len(alerts) == 1
    assert alerts[0]["severity"] == "critical"
    plan = world.get("care", f"/api/v1/orders/{coi}/plan").json
    assert (plan["repeat_ld"], plan["past_window"]) == (True, True)
    assert plan["infusion_window"] == {"from": _day(0), "to": _day(0)}


@pytest.mark.postgres
def test_two_moves_that_swap_slots_do_not_deadlock(pg_app: Any) -> None:
    world = World.build(pg_app)
    answers: list[int] = []
    for attempt in range(8):
        first, second = 20 + 3 * attempt, 21 + 3 * attempt
        assert _publish(world, first, 2).status_code == 201
        assert _publish(world, second, 2).status_code == 201
        x, y = (world.enroll(f"PAT-SWAP-{attempt}-{n}")["coi"] for n in range(2))
        assert _book(world, x, apheresis=first - 3).json["manufacturing_start_on"] == _day(first)
        assert _book(world, y, apheresis=second - 3).json["manufacturing_start_on"] == _day(second)
        barrier = threading.Barrier(2)

        def move(coi: str, day: int, barrier: threading.Barrier = barrier) -> None:
            client = pg_app.test_client()
            barrier.wait()
            response = client.post(
                f"/api/v1/orders/{coi}/plan/move",
                json={"apheresis_on": _day(day - 3), "manufacturing_start_on": _day(day)},
                headers=world.headers("care"),
            )
            answers.append(response.status_code)

        threads = [
            threading.Thread(target=move, args=(x, second)),
            threading.Thread(target=move, args=(y, first)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == [200] * 16
