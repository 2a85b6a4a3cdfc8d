"""From the care team's link to the family's view, in a real browser: the care team makes
the link on the order's page, and the family opens it on a phone (390 x 844), without a
session, and asks for e-mail updates with JavaScript off. Every page: screenshots and axe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from services.db import UnitOfWork
from services.operations import sites
from tests.browser.conftest import AXE, check_page, sign_in

PHONE = {"width": 390, "height": 844}


def test_care_team_shares_the_link_and_the_family_follows(
    live: tuple[str, Any], page: Any, chromium: Any, axe: Path
) -> None:
    base, world = live
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        sites.change_site(
            uow.session, actor=None, code="TRT-1", phone="+44 20 7946 0000", now=_now()
        )
        uow.commit()
    bag = world.bag_at("receive", "PAT-BROWSER-FAMILY")
    coi = bag["coi"]

    page.set_viewport_size(PHONE)
    sign_in(page, base, world, "care")
    page.goto(f"{base}/orders/{coi}")
    page.get_by_role("button", name="Make a link for the family").click()
    link = page.get_by_label("Copy it and give it to the patient or family")
    expect(link).to_be_visible()
    url = link.input_value()
    assert url.startswith(f"{base}/status/")
    check_page(page, "family-share-order", axe)

    # the family: another browser, no cookies, no JavaScript, on a phone
    family = chromium.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        _family_walk(family, url, coi, bag["din"])
    finally:
        family.close()
    # axe needs script: the same pages again in a context with it, as check_page asks
    checked = chromium.new_context(viewport=PHONE)
    checked.add_init_script(path=str(AXE))
    try:
        phone = checked.new_page()
        phone.goto(url)
        check_page(phone, "family-status", axe)
        phone.goto(f"{base}/status/{'x' * 43}")
        expect(phone.get_by_role("heading", level=1)).to_have_text("This page is not available")
        check_page(phone, "family-status-missing", axe)
    finally:
        checked.close()


def _family_walk(context: Any, url: str, coi: str, din: str) -> None:
    phone = context.new_page()
    response = phone.goto(url)
    assert response.status == 200
    assert "set-cookie" not in response.headers
    expect(phone.get_by_role("heading", level=1)).to_have_text("Where is the treatment now?")
    current = phone.locator('[aria-current="step"]')
    expect(current).to_contain_text("Being made")
    expect(phone.get_by_text("+44 20 7946 0000").first).to_be_visible()
    phone.get_by_label("Your e-mail address").fill("family@example.net")
    phone.get_by_role("button", name="Send me updates").click()
    expect(phone.get_by_role("status")).to_have_text("E-mail updates are on.")
    expect(phone.get_by_role("button", name="Stop e-mail updates")).to_be_visible()
    html = phone.content()
    assert coi not in html
    assert din not in html
    assert "TRT-1" not in html


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)
