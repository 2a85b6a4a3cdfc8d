"""The GMP gates through the pages alone, in a real browser (issue 27): QA reviews a batch and
releases it with one signature; the label is printed and then checked by its 2-D code (or both
identifiers typed); the bedside matches two identifiers and a password typo keeps the match.
Each page is screenshot at desktop and phone width and checked with axe-core."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from services.domain.identifiers import Coi, Din
from tests.browser.conftest import check_page, scanner, sign_in
from tests.integration.test_gmp_gates import _qc_batch, _thawed
from tests.world import PASSWORD


def nav(page: Any, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()


def test_qa_reviews_the_batch_record_and_releases_it_with_one_signature(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    made = _qc_batch(world, "PAT-QA-RELEASE", products=2)
    code = made["code"]
    sign_in(page, base, world, "qa")
    nav(page, "Batches")
    page.get_by_role("link", name="Review and release").click()
    expect(page.locator("h1")).to_contain_text(f"QA release of batch {code}")
    for din in made["products"]:
        expect(page.locator("main")).to_contain_text(Din.from_value(din).eye_readable)
    expect(page.locator("main")).to_contain_text("qc testing")
    check_page(page, "batch-release-review", axe)
    # a typo in the password: nothing released, the review stays
    page.get_by_label("Your password").fill("not my password")
    page.get_by_role("button", name="Sign and release").click()
    expect(page.locator("#release-error")).to_contain_text("Not released")
    assert world.get("qa", f"/api/v1/batches/{code}").json["state"] == "qc_testing"
    check_page(page, "batch-release-refused", axe)
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Sign and release").click()
    expect(page.locator(".notice")).to_contain_text(f"Batch {code} released")
    expect(page.locator("main")).to_contain_text("Released and signed")
    check_page(page, "batch-released", axe)
    batch = world.get("qa", f"/api/v1/batches/{code}").json
    assert batch["state"] == "released"
    assert {p["state"] for p in batch["products"]} == {"released"}
    events = world.get("qa", f"/api/v1/orders/{made['bag']['coi']}/events").json["events"]
    signed = [s for e in events for s in e["signatures"]]
    assert [(s["meaning"], s["signer"]) for s in signed if s["meaning"] == "approved"] == [
        ("approved", "qa@example.org")
    ]


def test_the_operator_registers_product_bags_on_the_batch_page(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    bag = world.bag_at("receive", "PAT-FILL")
    code = world.post("op", "/api/v1/batches", {"coi": bag["coi"]}).json["code"]
    for step in ("transduction", "expansion", "harvest", "formulation"):
        world.post("op", f"/api/v1/batches/{code}/status", {"status": step})
    sign_in(page, base, world, "op")
    nav(page, "Batches")
    page.get_by_role("link", name="Register product bags").click()
    page.get_by_label("How many bags were filled").fill("2")
    page.get_by_label("Volume of each bag (ml)").fill("68")
    page.get_by_role("button", name="Register, with new DINs").click()
    expect(page.locator(".notice")).to_contain_text("Registered 2 product bag(s)")
    rows = page.locator("#products tbody tr")
    expect(rows).to_have_count(2)
    check_page(page, "batch-products", axe)
    products = world.get("op", f"/api/v1/batches/{code}").json["products"]
    assert [p["volume_ml"] for p in products] == [68.0, 68.0]


def test_a_label_is_printed_then_checked_by_its_2d_code_or_both_identifiers_typed(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    page.add_init_script("window.print = function () {};")
    unit = world.bag_at("collected", "PAT-LABEL-PAGE")
    typed = world.bag_at("collected", "PAT-LABEL-TYPED")
    sign_in(page, base, world, "aph")
    # a label never printed is refused when it is checked
    nav(page, "Scan")
    page.select_option("#action", "verify_label")
    page.locator("#barcode").focus()
    scanner(page, unit["label_2d"])
    expect(page.locator("#result")).to_contain_text("label_not_printed")
    # printed from the order's page, it is checked by its 2-D code
    for bag in (unit, typed):
        page.goto(f"{base}/orders/{bag['coi']}")
        page.locator(f"#bag-{bag['din']}").get_by_role(
            "button", name=re.compile("Print label")
        ).click()
        expect(page.locator("h1")).to_contain_text(f"Print the label of bag {bag['din']}")
    check_page(page, "label-print-page", axe)
    nav(page, "Scan")
    page.select_option("#action", "verify_label")
    page.locator("#barcode").focus()
    scanner(page, unit["barcode"])  # the linear DIN alone
    expect(page.locator("#result")).to_contain_text("label_not_verified")
    scanner(page, unit["label_2d"])
    expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
    check_page(page, "label-verified", axe)
    # a label the scanner cannot read: both identifiers typed with their check characters
    page.get_by_text("The scanner cannot read the label's 2-D code?").click()
    page.get_by_label("Chain of identity, with its check character").fill(
        Coi.from_value(typed["coi"]).keyboard_entry
    )
    page.locator("#barcode").focus()
    scanner(page, Din.from_value(typed["din"]).keyboard_entry)
    expect(page.locator("#result .headline")).to_have_text("ACCEPTED")
    # the headline read ACCEPTED already (the scan before): wait for this one's record
    for _ in range(100):
        state = world.get("aph", f"/api/v1/units/{typed['din']}").json["state"]
        if state == "label_verified":
            break
        page.wait_for_timeout(100)
    assert state == "label_verified"
    page.goto(f"{base}/orders/{unit['coi']}")
    expect(page.locator("#prints")).to_contain_text("copy 1 (pdf)")


def test_the_bedside_matches_two_identifiers_and_a_password_typo_keeps_the_match(
    live: Any, page: Any, axe: Path
) -> None:
    base, world = live
    made = _thawed(world, "PAT-TWO-IDS", birth_date="1958-11-30")
    barcode = Din.from_value(made["din"]).barcode
    sign_in(page, base, world, "care")
    nav(page, "Bedside")
    page.locator("#patient_ref").fill("PAT-TWO-IDS")
    page.get_by_label(re.compile("date of birth on the wristband")).fill("1958-11-03")
    page.locator("#barcode").focus()
    scanner(page, barcode)
    expect(page.locator(".result .headline")).to_have_text("MISMATCH")
    check_page(page, "bedside-wrong-birth-date", axe)
    page.locator("#patient_ref").fill("PAT-TWO-IDS")
    page.get_by_label(re.compile("date of birth on the wristband")).fill("1958-11-30")
    page.locator("#barcode").focus()
    scanner(page, barcode)
    expect(page.locator(".result .headline")).to_have_text("MATCH")
    expect(page.locator("#match-patient")).to_have_text("PAT-TWO-IDS")
    expect(page.locator("#match-birth")).to_contain_text("30 Nov 1958")
    expect(page.locator("#match-product")).to_contain_text(made["din"])
    check_page(page, "bedside-match-two-identifiers", axe)
    page.get_by_label(re.compile("^Your password")).fill("a typo in it")
    page.get_by_role("button", name="Confirm infusion").click()
    expect(page.locator("#signature-error")).to_contain_text("The match above still stands")
    expect(page.locator(".result .headline")).to_have_text("MATCH")
    check_page(page, "bedside-password-typo", axe)
    page.get_by_label(re.compile("^Your password")).fill(PASSWORD)
    page.get_by_role("button", name="Confirm infusion").click()
    expect(page.locator(".result .headline")).to_have_text("INFUSION RECORDED")
    assert world.get("care", f"/api/v1/units/{made['din']}").json["state"] == "infused"
    refusals = world.get("care", f"/api/v1/orders/{made['coi']}").json["refusals"]
    assert [r["code"] for r in refusals if r["action"] == "infuse"] == ["coi_mismatch"]
