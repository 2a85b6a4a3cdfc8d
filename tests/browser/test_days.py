"""Each role's working day, through the pages alone, in a real browser: a keyboard for
everything and a barcode scanner that types fast and presses Enter. Every page on the way is
screenshot at desktop and phone width, must not scroll sideways, and must pass axe-core with no
serious or critical violation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pypdfium2
import zxingcpp
from playwright.sync_api import expect

import labels
from services.db import UnitOfWork
from services.domain.identifiers import Din
from services.operations import admin, signing
from services.operations.labels import label_spec
from services.operations.queries import bag_by_din
from tests.browser.conftest import (
    LabelPrinter,
    check_page,
    scanner,
    sign_in,
    type_credentials,
)
from tests.integration.test_vein_to_vein import bc, released_batch, ship_back
from tests.world import PASSWORD, World


def decoded_pdf(content: bytes) -> dict[str, str]:
    (page,) = pypdfium2.PdfDocument(content)
    image = page.render(scale=300 / 72).to_pil()
    return {str(r.format): r.text for r in zxingcpp.read_barcodes(image)}


def nav(page: Any, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()


def test_apheresis_staff_enroll_collect_print_and_pack(
    live_factory: Any, label_printer: LabelPrinter, page: Any, axe: Path
) -> None:
    base, world = live_factory(label_printer_url=label_printer.url)
    # The print dialog itself is the operating system's: headless chromium has none and can
    # crash the tab opening one, so each frame's print() only counts that it was asked for.
    page.add_init_script(
        "window.print = function () { window.top.__prints = (window.top.__prints || 0) + 1; };"
    )
    other = world.bag_at("cryopreserve", "PAT-SOMEONE-ELSE")
    elsewhere = world.bag_at("cryopreserve", "PAT-PLANT-2", manufacturing="MFG-2")
    sign_in(page, base, world, "aph")
    check_page(page, "home-apheresis", axe)

    nav(page, "New order")
    check_page(page, "order-new", axe)
    page.get_by_label("Patient reference").fill("PAT-ANNA-2026")
    page.get_by_label(re.compile("^Date of birth")).fill("1969-07-20")
    page.get_by_label("Product").select_option("axi-cel")
    page.get_by_label("Manufacturing site").select_option("MFG-1")
    page.get_by_label("Treatment site", exact=True).select_option("TRT-1")
    page.get_by_role("button", name="Enrol order").click()
    banner = page.locator(".coi-banner")
    expect(banner).to_contain_text("Order enrolled")
    coi_text = page.locator("#new-coi").inner_text()
    assert re.fullmatch(r"CH [A-Z0-9]{5} \d{2} [A-Z0-9]{6} [0-9A-Z*]", coi_text.strip())
    check_page(page, "order-enrolled", axe)

    page.get_by_label("Volume (ml)").fill("240")
    page.get_by_role("button", name="Register bag").click()
    expect(page.locator(".notice")).to_contain_text("registered: print its label now")
    din = page.locator("#bags tbody tr").first.get_attribute("id").removeprefix("bag-")

    # the label printer receives exactly the ZPL of this bag's label
    page.locator(f"#bag-{din}").get_by_role("button", name=re.compile("To label printer")).click()
    expect(page.locator(".notice")).to_contain_text("sent to the label printer (copy 1)")
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        unit, order = bag_by_din(uow.session, din)
        zpl = labels.render(label_spec(uow.session, unit, order), "zpl", dpi=203)
    assert label_printer.received() == [zpl]
    # a reprint needs its reason; the PDF goes to the browser's print dialog and reads back
    row = page.locator(f"#bag-{din}")
    row.get_by_label("Reprint: why?").fill("label smudged by condensation")
    row.get_by_role("button", name=re.compile("Reprint")).click()
    expect(page.locator("h1")).to_contain_text(f"Print the label of bag {din}")
    check_page(page, "label-print", axe)
    page.wait_for_function("() => window.__prints >= 1")  # the page handed the label to print
    pdf = page.request.get(f"{base}/units/{din}/label.pdf").body()
    assert decoded_pdf(pdf) == {
        "Code 128": Din.from_value(din).barcode,
        "QR Code": f"{Din.from_value(din).barcode}&/{order.coi}",
    }
    page.goto(f"{base}/orders/{order.coi}")
    expect(page.locator("#prints")).to_contain_text("copy 1 (printer)")
    expect(page.locator("#prints")).to_contain_text("copy 2 (pdf)")
    expect(page.locator("#prints")).to_contain_text("label smudged by condensation")

    nav(page, "Scan")
    # the label is checked by its 2-D code (the DIN and the COI); the linear DIN is not enough
    page.select_option("#action", "verify_label")
    page.locator("#barcode").focus()
    scanner(page, Din.from_value(din).barcode)
    expect(page.locator("#result .headline")).to_have_text("REFUSED")
    expect(page.locator("#result")).to_contain_text("label_not_verified")
    for action, scanned in (
        ("verify_label", f"{Din.from_value(din).barcode}&/{order.coi}"),
        ("cryopreserve", Din.from_value(din).barcode),
    ):
        page.select_option("#action", action)
        page.locator("#barcode").focus()
        scanner(page, scanned)
        expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
    check_page(page, "scan-station", axe)

    nav(page, "Ship bags")
    check_page(page, "shipment-new", axe)
    page.get_by_label("Destination").select_option("MFG-1")
    page.get_by_label("Dry shipper's serial").fill("LN2-0042")
    page.get_by_label("Courier").select_option("COUR-1")
    page.get_by_role("button", name="Open shipment").click()
    expect(page.locator("#barcode")).to_be_focused()
    # each bag is checked as it is scanned: a bag bound for another plant, then ours, then a
    # bag of another order (the manifest is this order's now), then one not ready to pack
    scanner(page, elsewhere["barcode"])
    expect(page.locator("#result .headline")).to_have_text("REFUSED")
    expect(page.locator("#result")).to_contain_text("wrong_site")
    scanner(page, Din.from_value(din).barcode)
    expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
    scanner(page, other["barcode"])
    expect(page.locator("#result .headline")).to_have_text("REFUSED")
    expect(page.locator("#result")).to_contain_text("coi_mismatch")
    unlabelled = world.collect(order.coi)  # a second bag of this order, not frozen yet
    scanner(page, unlabelled["barcode"])
    expect(page.locator("#result")).to_contain_text("illegal_transition")
    expect(page.locator("#manifest-title")).to_contain_text("1 bag(s)")
    check_page(page, "shipment-pack", axe)
    page.get_by_role("button", name="Print label (PDF)").click()
    code = page.locator("h1").inner_text().removeprefix("Print the label of shipment ").strip()
    shipper_pdf = page.request.get(f"{base}/shipments/{code}/label.pdf").body()
    assert decoded_pdf(shipper_pdf) == {"Code 128": code, "QR Code": code}
    assert world.get("aph", f"/api/v1/units/{din}").json["state"] == "packed"


def _packed_shipment(world: World, bags: int = 1) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    packed = [world.bag_at("pack", f"PAT-SHIP-{n}") for n in range(bags)]
    return packed, world.ship([bag["din"] for bag in packed])


def test_the_courier_picks_up_and_delivers_each_shipment_in_one_scan(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    (bag,), shipment = _packed_shipment(world)
    sign_in(page, base, world, "courier")
    check_page(page, "home-courier", axe)
    nav(page, "My shipments")
    expect(page.locator("main")).to_contain_text(shipment["barcode"])
    page.locator("#barcode").focus()
    scanner(page, shipment["barcode"])
    expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
    expect(page.locator("#result .detail")).to_contain_text("in transit")
    check_page(page, "shipments-courier", axe)
    scanner(page, shipment["barcode"])
    expect(page.locator("#result .detail")).to_contain_text("delivered")
    assert world.get("courier", f"/api/v1/units/{bag['din']}").json["state"] == "delivered"


def test_the_operator_receives_with_a_bag_missing_reconciles_and_opens_the_batch(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    coi = world.enroll("PAT-RECEIVE")["coi"]
    bags = [world.collect(coi) for _ in range(2)]
    for bag in bags:
        assert world.verify_label("aph", bag).status_code == 201
        for action in ("cryopreserve", "pack"):
            assert world.scan("aph", bag["barcode"], action, "APH-1").status_code == 201
    shipment = world.ship([bag["din"] for bag in bags])
    for action, site in (("pickup", "APH-1"), ("deliver", "MFG-1")):
        assert world.scan("courier", shipment["barcode"], action, site).status_code == 201
    stray = world.bag_at("cryopreserve", "PAT-STRAY")
    sign_in(page, base, world, "op")
    check_page(page, "home-operator", axe)
    nav(page, "Receive")
    check_page(page, "shipments-site", axe)
    page.get_by_role("link", name=shipment["barcode"], exact=True).click()
    expect(page.locator("#barcode")).to_be_focused()
    # MFG-1 signs its receipts: the password first, then the bag, each time
    page.get_by_label(re.compile("^Your password")).fill(PASSWORD)
    page.locator("#barcode").focus()
    scanner(page, bags[0]["barcode"])
    expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
    page.get_by_label(re.compile("^Your password")).fill(PASSWORD)
    page.locator("#barcode").focus()
    scanner(page, stray["barcode"])
    expect(page.locator("#result .headline")).to_have_text("REFUSED")
    expect(page.locator("#expected-title")).to_contain_text("Expected 2, received 1")
    expect(page.locator("#missing")).to_contain_text(bags[1]["din"])
    check_page(page, "shipment-receive", axe)
    # a bag is missing: closing asks first, naming it
    expect(page.locator("#missing-warning")).to_contain_text(bags[1]["din"])
    page.get_by_role("button", name="Close receipt with 1 missing").click()
    expect(page.get_by_label("Report 1 bag(s) missing to their orders")).to_be_focused()
    page.get_by_label("Report 1 bag(s) missing to their orders").check()
    page.get_by_role("button", name="Close receipt with 1 missing").click()
    expect(page.locator(".notice")).to_contain_text("1 bag(s) missing")
    assert world.get("op", f"/api/v1/shipments/{shipment['barcode']}").json["missing"] == [
        bags[1]["din"]
    ]
    page.goto(f"{base}/orders/{coi}")
    page.get_by_role("button", name="Open the batch from the received bags").click()
    expect(page.locator(".notice")).to_contain_text("Batch opened")
    check_page(page, "order-batch-opened", axe)
    nav(page, "Batches")
    check_page(page, "batch-board", axe)


def test_the_care_team_hears_of_a_refusal_and_the_bedside_stops_the_wrong_patient(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        site = admin.site_by_code(uow.session, "TRT-1")
        signing.set_critical_step(
            uow.session, site=site, step="infuse", witness=True, required=True
        )
        uow.commit()
    made = released_batch(world, "PAT-BEDSIDE")
    (product,) = made["batch"]["products"]
    din = product["din"]
    shipment = ship_back(world, [din])
    for action, extra in (
        ("receive", {"shipment": shipment["barcode"]}),
        ("store", {}),
        ("thaw", {}),
    ):
        assert world.scan("care", bc(din), action, "TRT-1", **extra).status_code == 201
    # a refused scan of this order is news at the treatment site
    assert world.scan("aph", made["bag"]["barcode"], "pack", "APH-1").status_code == 409
    world.browser("admin")  # the witness's password
    sign_in(page, base, world, "care")
    check_page(page, "home-care", axe)
    nav(page, "Alerts")
    page.get_by_label("Kind").select_option("refused_scan")
    page.get_by_role("button", name="Filter").click()
    # a double scan is progress, not an alarm: it waits, folded, with nothing to do
    progress = page.locator("#progress")
    expect(progress).to_contain_text("Refused pack scan (illegal_transition)")
    expect(progress).to_contain_text("Nothing to do unless you made the scan")
    check_page(page, "alerts", axe)
    progress.locator("li").first.get_by_role("button", name=re.compile("Mark read")).click()
    expect(page.locator(".notice")).to_have_count(0)
    page.get_by_label("Kind").select_option("refused_scan")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#progress li").first).to_contain_text("read ")

    nav(page, "Bedside")
    expect(page.locator("#patient_ref")).to_be_focused()
    scanner(page, "PAT-SOMEONE-ELSE")
    expect(page.locator("#barcode")).to_be_focused()
    scanner(page, bc(din))
    expect(page.locator(".result .headline")).to_have_text("MISMATCH")
    expect(page.locator(".result")).to_contain_text("NOT for this patient")
    check_page(page, "bedside-mismatch", axe)
    page.locator("#patient_ref").fill("")
    page.locator("#patient_ref").focus()
    scanner(page, "PAT-BEDSIDE")
    expect(page.locator("#barcode")).to_be_focused()
    scanner(page, bc(din))
    expect(page.locator(".result .headline")).to_have_text("MATCH")
    expect(page.locator("#thaw-timer")).to_contain_text("min")
    check_page(page, "bedside-match", axe)
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label("Witness's e-mail").fill("admin@example.org")
    page.get_by_label("Witness's password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm infusion").click()
    expect(page.locator(".result .headline")).to_have_text("INFUSION RECORDED")
    expect(page.locator(".result")).to_contain_text("(witness)")
    check_page(page, "bedside-recorded", axe)
    assert world.get("care", f"/api/v1/units/{din}").json["state"] == "infused"
    timeline = world.get("care", f"/api/v1/orders/{made['bag']['coi']}/events").json["events"]
    (infusion,) = [e for e in timeline if e["action"] == "infuse"]
    assert infusion["signature"] == "signed"
    assert [s["meaning"] for s in infusion["signatures"]] == ["performed", "witness"]
    refusals = world.get("care", f"/api/v1/orders/{made['bag']['coi']}").json["refusals"]
    assert [r["code"] for r in refusals if r["action"] == "infuse"] == ["coi_mismatch"]

    page.goto(f"{base}/orders/{made['bag']['coi']}")
    page.get_by_role("button", name="Notify me").click()
    expect(page.locator(".notice")).to_contain_text("by e-mail, at care@example.org")
    check_page(page, "order-timeline", axe)
    nav(page, "Subscriptions")
    expect(page.locator("#subscriptions")).to_contain_text(made["bag"]["coi"])
    check_page(page, "subscriptions", axe)


def test_qa_reviews_a_refused_scan_with_a_signed_note(live: Any, page: Any, axe: Path) -> None:
    base, world = live
    bag = world.bag_at("receive", "PAT-REVIEW")
    assert world.scan("op", bag["barcode"], "verify_label", "MFG-1").status_code == 409
    sign_in(page, base, world, "qa")
    check_page(page, "home-qa", axe)
    nav(page, "Review")
    item = page.locator("article.review-item").first
    expect(item).to_contain_text("Refused verify label")
    check_page(page, "review", axe)
    item.get_by_text("Close this one alone").click()
    item.get_by_label(re.compile("Note")).fill("the operator rescanned a received bag by mistake")
    item.get_by_label("Your e-mail").fill("qa@example.org")
    item.get_by_label("Your password").fill(PASSWORD)
    item.get_by_role("button", name=re.compile("Reviewed, no action")).click()
    expect(page.locator(".notice")).to_contain_text("signed and on record")
    expect(page.locator("main h1")).to_contain_text("Review queue: 0")
    nav(page, "Control tower")
    check_page(page, "control-tower", axe)

    # the order's record as documents, from its timeline
    page.goto(f"{base}/orders/{bag['coi']}")
    report = page.get_by_role("link", name="Chain-of-custody report (PDF)")
    bundle = page.get_by_role("link", name="Evidence bundle (JSON)")
    pdf = page.request.get(base + report.get_attribute("href"))
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF-")
    evidence = page.request.get(base + bundle.get_attribute("href")).json()
    assert evidence["format"] == "vein2vein-evidence/2"
    assert evidence["order"]["coi"] == bag["coi"]
    # QA keeps a witness copy of every signed checkpoint in its mailbox
    nav(page, "Subscriptions")
    page.get_by_label("For", exact=True).select_option("checkpoints")
    page.get_by_label(re.compile("^To")).fill("qa-witness@example.org")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator(".notice")).to_contain_text("Subscribed: email to qa-witness@example.org")
    expect(page.locator("#subscriptions")).to_contain_text("audit checkpoints (witness)")
    check_page(page, "subscriptions-witness", axe)


def test_an_admin_adds_a_user_who_must_change_the_temporary_password(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    sign_in(page, base, world, "admin")
    check_page(page, "home-admin", axe)
    nav(page, "Admin")
    page.get_by_label("E-mail", exact=True).fill("new.nurse@example.org")
    page.get_by_label("Printed name").fill("Nia Nurse")
    page.get_by_label("Role", exact=True).select_option("care_team")
    page.get_by_role("button", name="Add user").click()
    temporary = page.locator("#temporary-password").inner_text().strip()
    assert "temporary" not in page.url  # shown from the session, never carried in the URL
    assert len(temporary) == 16
    expect(page.locator("#users")).to_contain_text("new.nurse@example.org")
    expect(page.locator("#admin-log")).to_contain_text("user added")
    check_page(page, "admin", axe)
    nav(page, "Alerts")
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("h1")).to_contain_text("Sign in")
    check_page(page, "login", axe)
    type_credentials(page, base, "new.nurse@example.org", temporary)
    expect(page.locator("h1")).to_contain_text("Change your password")
    page.goto(f"{base}/")  # anything else leads back here until it is changed
    expect(page.locator("h1")).to_contain_text("Change your password")
    check_page(page, "change-password", axe)
    page.get_by_label("Current password").fill(temporary)
    page.get_by_label("New password (at least 12 characters)").fill("a new nurse's own phrase")
    page.get_by_label("New password again").fill("a new nurse's own phrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".notice")).to_contain_text("Your password is changed")
    check_page(page, "account", axe)
    page.goto(f"{base}/")
    expect(page.locator("main h1")).to_contain_text("what waits for you")
