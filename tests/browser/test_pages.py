"""The pages in a real browser, used the way people use them: a keyboard for everything and a
barcode scanner that types fast and presses Enter. Each page is saved as a screenshot under
test-artifacts/screenshots/."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from services.db import UnitOfWork
from services.operations import deadlines
from tests.browser.conftest import check_page, scanner, screenshot, sign_in
from tests.integration.test_timeline_window import legacy_receipt, long_order
from tests.world import PASSWORD


def test_sign_in_and_scan_a_bag_through_the_collection_steps(live: Any, page: Any) -> None:
    base, world = live
    bag = world.bag_at("collected", "PAT-PAGES")
    world.label("aph", bag["din"])  # printed: its label is checked by its 2-D code
    sign_in(page, base, world, "aph")
    screenshot(page, "home")
    page.goto(f"{base}/scan")
    expect(page.locator("#barcode")).to_be_focused()
    expect(page.locator("#scan-form")).to_have_attribute("data-ready", "true")
    for action, state in (
        ("verify_label", "label verified"),
        ("cryopreserve", "cryopreserved"),
        ("pack", "packed"),
    ):
        page.select_option("#action", action)
        page.locator("#barcode").focus()
        scanner(page, bag["label_2d"] if action == "verify_label" else bag["barcode"])
        expect(page.locator("#result")).to_have_class(re.compile(r"\bok\b"))
        expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
        expect(page.locator("#result .detail")).to_contain_text(f"now {state}")
        expect(page.locator("#barcode")).to_be_focused()
        expect(page.locator("#barcode")).to_have_value("")
    expect(page.locator("#history li")).to_have_count(3)
    screenshot(page, "scan-station")
    assert world.get("aph", f"/api/v1/units/{bag['din']}").json["state"] == "packed"


def test_a_wrong_site_scan_is_refused_in_words_with_its_code(live: Any, page: Any) -> None:
    base, world = live
    bag = world.bag_at("pack", "PAT-WRONG")
    world.ship([bag["din"]])
    sign_in(page, base, world, "courier")
    page.goto(f"{base}/scan")
    # only the courier's own site and its shipments' ends are offered
    expect(page.locator("#site option")).to_have_text(["COUR-1 (courier)", "APH-1 (collection)",
                                                       "MFG-1 (manufacturing)"])  # fmt: skip
    page.select_option("#action", "pickup")
    page.select_option("#site", "MFG-1")  # its destination, not its origin
    page.locator("#barcode").focus()
    scanner(page, bag["barcode"])
    expect(page.locator("#result")).to_have_class(re.compile(r"\bbad\b"))
    expect(page.locator("#result .headline")).to_have_text("REFUSED")
    expect(page.locator("#result")).to_contain_text("wrong_site")
    expect(page.locator("#result .detail")).to_contain_text("not at MFG-1")
    screenshot(page, "scan-refused")
    assert world.get("courier", f"/api/v1/units/{bag['din']}").json["state"] == "packed"


def test_a_scan_made_offline_is_kept_and_sent_once_when_back(live: Any, page: Any) -> None:
    base, world = live
    bag = world.bag_at("collected", "PAT-OFFLINE")
    world.label("aph", bag["din"])
    sign_in(page, base, world, "aph")
    page.goto(f"{base}/scan")
    expect(page.locator("#scan-form")).to_have_attribute("data-ready", "true")
    page.select_option("#action", "verify_label")
    page.context.set_offline(True)
    page.locator("#barcode").focus()
    scanner(page, bag["label_2d"])
    expect(page.locator("#result .headline")).to_have_text("KEPT OFFLINE")
    expect(page.locator("#queued")).to_contain_text("1 waiting")
    assert world.get("aph", f"/api/v1/units/{bag['din']}").json["state"] == "collected"
    page.context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    expect(page.locator("#result .headline")).to_have_text("SENT LATER: ACCEPTED")
    expect(page.locator("#queued")).to_be_hidden()
    events = world.get("aph", f"/api/v1/units/{bag['din']}/events").json["events"]
    assert [e["action"] for e in events] == ["collect", "verify_label"]


def test_a_scan_kept_offline_outlives_the_sign_out_and_is_sent_after_signing_in(
    live_factory: Any, page: Any
) -> None:
    """Back online after the session ended: the station's answer (401, signed out) is no
    answer about the scan, which stays on the device until its person signs in again."""
    base, world = live_factory(session_idle_minutes=3 / 60)
    bag = world.bag_at("collected", "PAT-OFFLINE-LONG")
    world.label("aph", bag["din"])
    sign_in(page, base, world, "aph")
    page.goto(f"{base}/scan")
    expect(page.locator("#scan-form")).to_have_attribute("data-ready", "true")
    page.select_option("#action", "verify_label")
    page.context.set_offline(True)
    page.locator("#barcode").focus()
    scanner(page, bag["label_2d"])
    expect(page.locator("#result .headline")).to_have_text("KEPT OFFLINE")
    page.wait_for_timeout(3_500)  # signed out meanwhile
    page.context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    expect(page.locator("#result .headline")).to_contain_text("KEPT: 1 scan(s) not sent yet")
    expect(page.locator("#queued")).to_contain_text("1 waiting")
    assert world.get("aph", f"/api/v1/units/{bag['din']}").json["state"] == "collected"
    sign_in(page, base, world, "aph")
    page.goto(f"{base}/scan")
    expect(page.locator("#result .headline")).to_have_text("SENT LATER: ACCEPTED")
    events = world.get("aph", f"/api/v1/units/{bag['din']}/events").json["events"]
    assert [e["action"] for e in events] == ["collect", "verify_label"]


def test_the_late_shipment_leads_the_control_tower(live: Any, page: Any) -> None:
    base, world = live
    now = dt.datetime.now(dt.UTC)
    order = world.enroll("PAT-LATE")
    unit = world.collect(order["coi"], collected_at=(now - dt.timedelta(days=4)).isoformat())
    for hours, action in ((95, "verify_label"), (94, "cryopreserve"), (93, "pack")):
        at = (now - dt.timedelta(hours=hours)).isoformat()
        assert (
            world.scan("aph", unit["barcode"], action, "APH-1", occurred_at=at).status_code == 201
        )
    shipment = world.ship([unit["din"]])
    at = (now - dt.timedelta(hours=90)).isoformat()
    picked = world.scan("courier", shipment["barcode"], "pickup", "APH-1", occurred_at=at)
    assert picked.status_code == 201
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        deadlines.sweep(uow.session, now=now)
        uow.commit()
    sign_in(page, base, world, "care")
    page.goto(f"{base}/tower")
    first = page.locator("#delays tbody tr").first
    expect(first).to_contain_text("LATE")
    expect(first).to_contain_text(order["coi"])
    expect(first).to_contain_text("pickup to delivery")
    screenshot(page, "control-tower")

    page.locator("#delays a").first.click()
    expect(page.locator("h1")).to_contain_text("Order")
    expect(page.locator("table.timeline")).to_contain_text("pickup")
    expect(page.locator(".clock")).to_contain_text("Audit chain: verified")
    screenshot(page, "order-timeline")


def test_the_batch_board_moves_a_batch_by_keyboard(live: Any, page: Any) -> None:
    base, world = live
    bag = world.bag_at("receive", "PAT-BOARD")
    batch = world.post("op", "/api/v1/batches", {"coi": bag["coi"]}).json["code"]
    sign_in(page, base, world, "op")
    page.goto(f"{base}/batches")
    expect(page.locator("#col-activation")).to_be_visible()
    button = page.get_by_role("button", name="Move to transduction")
    button.focus()
    page.keyboard.press("Enter")
    expect(page.locator("section[aria-labelledby='col-transduction']")).to_contain_text(batch)
    screenshot(page, "batch-board")
    assert world.get("op", f"/api/v1/batches/{batch}").json["state"] == "transduction"


def sign_by_keyboard(page: Any, row: Any, email: str, meaning: str) -> None:
    """Sign an event from its timeline row: e-mail, Tab, password, the meaning, Enter."""
    row.get_by_label("E-mail").focus()
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    row.get_by_label("Meaning").select_option(meaning)
    row.get_by_label("Password").press("Enter")


def test_a_receipt_is_signed_and_an_event_corrected_from_the_timeline(live: Any, page: Any) -> None:
    base, world = live
    bag = world.bag_at("deliver", "PAT-SIGNED")
    legacy_receipt(world, bag["din"])  # a receipt from before signatures came with the act
    events = world.get("op", f"/api/v1/orders/{bag['coi']}/events").json["events"]
    (receipt,) = [e for e in events if e["action"] == "receive"]
    sequence = receipt["sequence"]
    sign_in(page, base, world, "op")
    page.goto(f"{base}/orders/{bag['coi']}")
    row = page.locator(f"#event-{sequence}")
    expect(row).to_contain_text("awaiting")
    sign_by_keyboard(page, row, "op@example.org", "verified")
    expect(page.locator(".notice")).to_contain_text(f"Event {sequence} signed")
    expect(page.locator(f"#event-{sequence}")).to_contain_text("op, verified")
    assert world.get("op", f"/api/v1/orders/{bag['coi']}/audit").json["verified"] is True

    page.context.clear_cookies()
    sign_in(page, base, world, "qa")
    page.goto(f"{base}/orders/{bag['coi']}")
    page.get_by_label("Event #").fill("2")
    page.get_by_label("Reason").fill("label checked on the wrong workstation")
    page.get_by_label("Your password (signs it)").fill(PASSWORD)
    page.get_by_label("Your password (signs it)").press("Enter")
    expect(page.locator(".notice")).to_contain_text("Correction of event 2 recorded and signed")
    expect(page.locator("table.timeline")).to_contain_text("corrects #2")
    screenshot(page, "order-signed-and-corrected")


def test_a_long_order_pages_its_timeline_and_keeps_what_awaits_a_signature(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    bag, receipt, review = long_order(world)
    total = len(world.get("op", f"/api/v1/orders/{bag['coi']}/events").json["events"])
    sign_in(page, base, world, "op")
    page.goto(f"{base}/orders/{bag['coi']}")
    expect(page.locator("#timeline-window")).to_contain_text(f"of {total} events")
    expect(page.locator("#event-0")).to_have_count(0)
    expect(page.locator(f"#event-{review}")).to_contain_text("review")
    row = page.locator(f"#event-{receipt}")
    expect(row).to_contain_text("awaiting")
    check_page(page, "order-timeline-long", axe)
    # sign the old receipt from the shortened page: it stays in sight once signed
    sign_by_keyboard(page, row, "op@example.org", "verified")
    expect(page.locator(".notice")).to_contain_text(f"Event {receipt} signed")
    expect(page.locator(f"#event-{receipt}")).to_contain_text("op, verified")
    # the whole record, by keyboard
    page.get_by_role("link", name=f"Show all {total} events").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#timeline-window")).to_contain_text(f"Showing all {total} events")
    expect(page.locator("#event-0")).to_contain_text("enroll")
    expect(page.locator("table.timeline tbody tr")).to_have_count(total)
    check_page(page, "order-timeline-all", axe)
