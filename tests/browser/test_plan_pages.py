"""The vein-to-vein plan in a real browser (issue 30): the manufacturing site publishes a week
of slots on its capacity board; a care team member books a plan on the order's page, confirms
it, and sees it move when a leg runs late; the treatment site's week lists it. Each page is
screenshot at desktop and phone width and checked with axe-core."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from services.db import UnitOfWork
from services.operations import plans
from tests.browser.conftest import check_page, sign_in


def nav(page: Any, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()


def test_manufacturing_publishes_a_week_and_the_care_team_books_confirms_and_sees_a_slip(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    today = dt.datetime.now(dt.UTC).date()  # the test sites keep UTC
    first = today + dt.timedelta(days=3)

    # the manufacturing operator publishes a week of axi-cel slots, one a day
    sign_in(page, base, world, "op")
    nav(page, "Capacity")
    expect(page.locator("h1")).to_contain_text("Capacity board: MFG-1")
    page.get_by_label("Product").select_option("axi-cel")
    page.get_by_label("First day").fill(first.isoformat())
    page.get_by_label("Days", exact=True).fill("7")
    page.get_by_label("Slots per day").fill("1")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".notice")).to_contain_text("published for 7 day(s)")
    expect(page.locator("#capacity")).to_contain_text("1 free")
    check_page(page, "capacity-board", axe)
    days = world.get(
        "op",
        f"/api/v1/capacity?site=MFG-1&product=axi-cel&from={first}"
        f"&to={first + dt.timedelta(days=6)}",
    ).json["days"]
    assert [d["slots"] for d in days] == [1] * 7

    # the care team books the plan from today's apheresis, and confirms it
    coi = world.enroll("PAT-PLAN-WALK")["coi"]
    world.collect(coi)
    sign_in(page, base, world, "care")
    page.goto(f"{base}/orders/{coi}")
    page.get_by_role("link", name="Plan", exact=True).click()
    page.get_by_label("Apheresis date").fill(today.isoformat())
    page.get_by_role("button", name="Book the first free slot").click()
    expect(page.locator(".notice")).to_contain_text("Plan booked")
    expect(page.locator("#plan-state")).to_contain_text("held")
    expect(page.locator("#timeline")).to_contain_text(first.isoformat())
    check_page(page, "plan-held", axe)
    page.get_by_role("button", name="Confirm the plan").click()
    expect(page.locator("#plan-state")).to_contain_text("confirmed")
    window = world.get("care", f"/api/v1/orders/{coi}/plan").json["infusion_window"]

    # four days on, the material has not reached manufacturing: the beat re-plans it onto a
    # later slot, and the plan shows what moved
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        moved = plans.replan_due(uow.session, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=4))
        uow.commit()
    assert coi in moved
    page.reload()
    expect(page.locator("#timeline")).to_contain_text("(moved)")
    expect(page.locator("#plan-state")).to_contain_text("moved 1 time")
    after = world.get("care", f"/api/v1/orders/{coi}/plan").json
    assert after["infusion_window"] != window
    assert after["manufacturing_start_on"] > first.isoformat()
    check_page(page, "plan-moved", axe)

    # the treatment site's week
    nav(page, "Week")
    expect(page.locator("h1")).to_contain_text("The week at TRT-1")
    expect(page.locator("#week")).to_contain_text(coi)
    check_page(page, "treatment-week", axe)
