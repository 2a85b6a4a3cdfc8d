"""Each role's day in local time, through the pages alone (issue 29), in a real browser: a
keyboard and a barcode scanner that types fast and presses Enter. The operator registers
product bags from the batch board and prints their labels at once; the admin adds a site in
another time zone and a user there; the care team sees a critical alert pinned first,
acknowledges it, and reads the bedside deadline on the ward's clock; QA closes three related
review items with one signature; the scan station preselects what comes next, on a phone.
Every page on the way is screenshot at 1280x800 and 390x844, must not scroll sideways, and
must pass axe-core with no serious or critical violation."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pypdfium2
import zxingcpp
from playwright.sync_api import expect

from services.db import UnitOfWork
from services.domain.identifiers import Din
from services.operations import sites
from tests.browser.conftest import check_page, scanner, sign_in, type_credentials
from tests.integration.test_gmp_gates import _thawed
from tests.integration.test_triage import hold_a_bag
from tests.world import PASSWORD, World


def nav(page: Any, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()


def set_zone(world: World, code: str, zone: str) -> None:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        sites.change_site(
            uow.session, actor=None, code=code, time_zone=zone, now=dt.datetime.now(dt.UTC)
        )
        uow.commit()


def decoded_pages(content: bytes) -> list[dict[str, str]]:
    found = []
    for pdf_page in pypdfium2.PdfDocument(content):
        image = pdf_page.render(scale=300 / 72).to_pil()
        found.append({str(r.format): r.text for r in zxingcpp.read_barcodes(image)})
    return found


def test_the_operator_registers_product_bags_and_prints_their_labels(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    page.add_init_script(
        "window.print = function () { window.top.__prints = (window.top.__prints || 0) + 1; };"
    )
    bag = world.bag_at("receive", "PAT-FILLED")
    code = world.post("op", "/api/v1/batches", {"coi": bag["coi"]}).json["code"]
    for step in ("transduction", "expansion", "harvest", "formulation"):
        world.post("op", f"/api/v1/batches/{code}/status", {"status": step})
    others = [world.bag_at("receive", f"PAT-BOARD-{n}") for n in range(3)]
    for other in others:  # a board with batches at several steps
        world.post("op", "/api/v1/batches", {"coi": other["coi"]})
    sign_in(page, base, world, "op")
    nav(page, "Batches")
    board = page.locator(".board")
    expect(board).to_be_visible()
    assert board.bounding_box()["width"] <= 1280
    check_page(page, "local-batch-board", axe)
    page.get_by_role("link", name=f"Register product bags of {code}").click()
    expect(page.get_by_label("How many bags were filled")).to_be_visible()
    page.get_by_label("How many bags were filled").fill("2")
    page.get_by_label("Volume of each bag (ml)").fill("68")
    page.get_by_label("Volume of each bag (ml)").press("Enter")
    expect(page.locator(".notice")).to_contain_text("Registered 2 product bag(s)")
    products = [p["din"] for p in world.get("op", f"/api/v1/batches/{code}").json["products"]]
    assert len(products) == 2
    for din in products:
        expect(page.locator("#products")).to_contain_text(Din.from_value(din).eye_readable)
    check_page(page, "local-batch-registered", axe)
    page.get_by_role("button", name="Print all 2 label(s)").click()
    expect(page.locator("h1")).to_contain_text(
        f"Print the labels of 2 product bag(s) of batch {code}"
    )
    _handed_to_print(page)
    check_page(page, "local-batch-labels-print", axe)
    pdf = page.request.get(base + page.locator("#label-frame").get_attribute("src")).body()
    assert decoded_pages(pdf) == [
        {
            "Code 128": Din.from_value(din).barcode,
            "QR Code": f"{Din.from_value(din).barcode}&/{bag['coi']}",
        }
        for din in products
    ]
    # each print is on the order's record, a first print of each
    page.goto(f"{base}/orders/{bag['coi']}")
    for din in products:
        expect(page.locator("#prints")).to_contain_text(f"{din} copy 1 (pdf)")


def _handed_to_print(page: Any) -> None:
    """The print page handed the labels to the browser's print dialog (counted, not shown:
    headless chromium has none)."""
    for _ in range(100):
        if page.evaluate("() => window.__prints || 0") >= 1:
            return
        page.wait_for_timeout(100)
    raise AssertionError("the labels were never handed to the print dialog")


def test_the_admin_adds_a_site_in_another_time_zone_and_a_user_there(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    sign_in(page, base, world, "admin")
    nav(page, "Admin")
    check_page(page, "local-admin", axe)
    if not page.locator("#add-site").is_visible():
        page.get_by_text("Add a site").click()
    page.get_by_label("Code (upper case, as scanners type it)").fill("TRT-TOKYO")
    page.get_by_label("Name", exact=True).first.fill("Tokyo Haematology")
    page.locator("#new-site-kind").select_option("treatment")
    page.locator("#new-site-zone").select_option("Asia/Tokyo")
    page.get_by_role("button", name="Add site").click()
    expect(page.locator(".notice")).to_contain_text("Site TRT-TOKYO added, on Asia/Tokyo time")
    tokyo = page.locator("#sites tr", has_text="TRT-TOKYO")
    expect(tokyo).to_contain_text("Asia/Tokyo")
    expect(tokyo).to_contain_text("JST (UTC+09:00)")  # its clock now
    expect(page.locator("#site-title")).to_contain_text("TRT-TOKYO")
    check_page(page, "local-admin-site-added", axe)
    # a courier has no place at a treatment site
    page.get_by_label("E-mail", exact=True).fill("van@example.org")
    page.get_by_label("Printed name").fill("Van Driver")
    page.locator("#new-user-site").select_option("TRT-TOKYO")
    page.get_by_label("Role", exact=True).select_option("courier")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator(".notice")).to_contain_text(
        "TRT-TOKYO is a treatment site: a courier works at a courier site"
    )
    page.get_by_label("E-mail", exact=True).fill("aiko@example.org")
    page.get_by_label("Printed name").fill("Aiko Tanaka")
    page.locator("#new-user-site").select_option("TRT-TOKYO")
    page.get_by_label("Role", exact=True).select_option("care_team")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator(".result")).to_contain_text("Temporary password of aiko@example.org")
    temporary = page.locator("#temporary-password").inner_text().strip()
    expect(page.locator("#users tr", has_text="aiko@example.org")).to_contain_text("TRT-TOKYO")
    expect(page.locator("#admin-log")).to_contain_text("site added")
    expect(page.locator("#admin-log")).to_contain_text("Aiko Tanaka")
    check_page(page, "local-admin-user-added", axe)
    page.get_by_role("button", name="Sign out").click()
    # the new nurse signs in and reads Tokyo's clock
    type_credentials(page, base, "aiko@example.org", temporary)
    expect(page.locator("h1")).to_contain_text("Change your password")
    page.get_by_label("Current password").fill(temporary)
    page.get_by_label("New password (at least 12 characters)").fill("a Tokyo nurse's phrase")
    page.get_by_label("New password again").fill("a Tokyo nurse's phrase")
    page.get_by_role("button", name="Change password").click()
    page.goto(f"{base}/alerts")
    expect(page.locator("h1")).to_contain_text("Alerts for TRT-TOKYO")
    page.goto(f"{base}/account")
    expect(page.locator("main")).to_contain_text("aiko@example.org")


def test_the_care_team_acknowledges_a_pinned_critical_alert_and_reads_the_wards_clock(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    set_zone(world, "TRT-1", "America/New_York")
    made = _thawed(world, "PAT-WARD-CLOCK", birth_date="1961-05-04")
    world.bag_at("cryopreserve", "PAT-PROGRESS")  # progress news, folded away
    held = hold_a_bag(world, "PAT-ON-HOLD")
    sign_in(page, base, world, "care")
    expect(page.locator("#unread-count")).to_contain_text("1")
    expect(page.locator("#alerts-title")).to_contain_text("Alerts that need a look: 1")
    check_page(page, "local-home-care", axe)
    nav(page, "Alerts")
    pinned = page.locator("#pinned li").first
    expect(pinned).to_contain_text(f"ON HOLD: bag {held['din']} of patient PAT-ON-HOLD")
    expect(pinned).to_contain_text("Do not use")
    # pinned above everything else
    assert (
        page.locator("#pinned").bounding_box()["y"]
        < page.locator("#alerts-title").bounding_box()["y"]
    )
    expect(page.locator("#progress")).to_contain_text("Progress:")
    check_page(page, "local-alerts-pinned", axe)
    pinned.get_by_role("button", name=re.compile("^Acknowledge")).focus()
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_contain_text("Acknowledged")
    expect(page.locator("#pinned")).to_have_count(0)
    acknowledged = page.locator("#alerts li", has_text="ON HOLD")
    expect(acknowledged).to_contain_text("acknowledged by care@example.org")
    expect(acknowledged).to_contain_text("EST (UTC-05:00)")  # when, on the ward's clock
    expect(page.locator("#unread-count")).to_have_count(0)
    check_page(page, "local-alerts-acknowledged", axe)

    nav(page, "Bedside")
    expect(page.locator("#patient_ref")).to_be_focused()
    scanner(page, "PAT-WARD-CLOCK")
    page.get_by_label(re.compile("date of birth on the wristband")).fill("1961-05-04")
    page.locator("#barcode").focus()
    scanner(page, Din.from_value(made["din"]).barcode)
    expect(page.locator(".result .headline")).to_have_text("MATCH")
    deadline = page.locator("#infuse-by time")
    moment = dt.datetime.fromisoformat(deadline.get_attribute("datetime"))
    ward = moment.astimezone(ZoneInfo("America/New_York"))
    expect(deadline).to_have_text(f"{ward.strftime('%H:%M:%S')} EST (UTC-05:00)")
    assert ward.utcoffset() == dt.timedelta(hours=-5)
    expect(page.locator(".timer")).to_contain_text("on the ward's clock (TRT-1)")
    expect(page.locator(".timer")).not_to_contain_text(" UTC:")
    check_page(page, "local-bedside-deadline", axe)


def test_qa_closes_three_related_review_items_with_one_signature(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    bag = world.bag_at("receive", "PAT-THRICE")
    for _ in range(3):  # the receiver scanned a received bag three more times
        assert world.scan("op", bag["barcode"], "receive", "MFG-1").status_code == 409
    sign_in(page, base, world, "qa")
    nav(page, "Review")
    expect(page.locator("main h1")).to_contain_text("Review queue: 3")
    group = page.locator("section", has=page.locator("h2", has_text=bag["coi"]))
    expect(group.locator("article.review-item")).to_have_count(3)
    check_page(page, "local-review-queue", axe)
    for item in group.locator("article.review-item").all():
        item.get_by_label("Tick to close with the others").focus()
        page.keyboard.press("Space")
    page.get_by_label("Note for the ticked items").fill("one receiver rescanned a received bag")
    page.get_by_label("Your e-mail (your signature)").fill("qa@example.org")
    page.get_by_label("Your password (your signature)").fill(PASSWORD)
    page.get_by_label("Your password (your signature)").press("Enter")
    expect(page.locator(".notice")).to_contain_text("3 item(s) closed with one note")
    expect(page.locator("main h1")).to_contain_text("Review queue: 0")
    check_page(page, "local-review-closed", axe)


def test_the_scan_station_preselects_what_comes_next_on_a_phone(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    bag = world.bag_at("collected", "PAT-PHONE")
    world.label("aph", bag["din"])
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, base, world, "aph")
    page.get_by_role("link", name="Scan").click()
    expect(page.locator("#barcode")).to_be_focused()
    expect(page.locator("#scan-form")).to_have_attribute("data-ready", "true")
    expect(page.locator("#barcode")).to_have_attribute("inputmode", "none")
    expect(page.locator("#scan-form")).to_contain_text("APH-1")
    expect(page.locator("#site option")).to_have_count(0)  # its own site only: no choice
    scanner(page, bag["label_2d"])
    expect(page.locator("#result .headline")).to_have_text("NEXT: VERIFY LABEL")
    expect(page.locator("#action")).to_have_value("verify_label")
    scanner(page, bag["label_2d"])  # the same bag again: recorded
    expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
    expect(page.locator("#action")).to_have_value("")  # the next bag gets its own suggestion
    # the answer is on screen without scrolling, at phone size
    box = page.locator("#result").bounding_box()
    assert box["y"] >= 0
    assert box["y"] + box["height"] <= 844, box
    assert page.evaluate("window.scrollY") == 0 or box["y"] + box["height"] <= 844
    scanner(page, bag["barcode"])
    expect(page.locator("#result .headline")).to_have_text("NEXT: CRYOPRESERVE")
    page.locator("#action").select_option("quarantine")  # the person may choose otherwise
    page.locator("#barcode").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
    expect(page.locator("#result")).to_contain_text("quarantined")
    # a phone's keyboard only when asked for
    page.get_by_role("button", name="Type with the keyboard").click()
    expect(page.locator("#barcode")).to_have_attribute("inputmode", "text")
    expect(page.get_by_role("button", name="Type with the keyboard")).to_have_attribute(
        "aria-pressed", "true"
    )
    scanner(page, "hello world")
    expect(page.locator("#result")).to_contain_text("'hello world' is not a code of ours")
    check_page(page, "local-scan-station-phone", axe)
