"""The chain of condition through the pages, in a real browser: a shipper registered, a
logger's CSV file uploaded (a bad one refused naming its line), the alarm on the tower and the
order, and QA's signed release from /holds. Every page screenshot, at two widths, through axe."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import time_machine
from playwright.sync_api import expect

from tests.browser.conftest import check_page, sign_in
from tests.browser.test_days import nav
from tests.integration.test_condition import MINUTE, csv_file, now, packed_order


def test_a_hot_shipment_from_the_logger_file_to_qas_release(
    live: Any, page: Any, axe: Path, tmp_path: Path
) -> None:
    base, world = live
    sign_in(page, base, world, "aph")
    nav(page, "Shippers")
    page.get_by_label("Serial (scan its barcode)").fill("DS-900")
    page.get_by_label("Model").fill("Cryoport Elite Plus")
    page.get_by_label("Qualified hold time (hours)").fill("36")
    page.get_by_role("button", name="Register").click()
    expect(page.locator(".notice")).to_contain_text("DS-900 is registered and in service")
    expect(page.locator("#shipper-DS-900")).to_contain_text("in service")
    check_page(page, "shippers", axe)

    # two bags packed two days ago into DS-900, picked up and delivered
    start = now() - dt.timedelta(days=2)
    with time_machine.travel(start, tick=True):
        order, units = packed_order(world, 2)
        shipment = world.post(
            "aph",
            "/api/v1/shipments",
            {
                "origin": "APH-1",
                "destination": "MFG-1",
                "shipper_id": "DS-900",
                "units": [u["din"] for u in units],
                "carrier": "COUR-1",
            },
        ).json
        assert world.scan("courier", shipment["barcode"], "pickup", "APH-1").status_code == 201
        assert world.scan("courier", shipment["barcode"], "deliver", "MFG-1").status_code == 201
    # 36 h qualified against a 48 h leg: the shipment says so
    assert any("longer than shipper DS-900" in w for w in shipment["warnings"])
    code = shipment["barcode"]

    sign_in(page, base, world, "op")
    nav(page, "Receive")
    page.get_by_role("link", name=f"record of {code}").click()
    expect(page.locator("main h1")).to_contain_text(f"{code}: temperature record")
    # a bad timestamp on line 7: refused, naming the line, nothing stored
    lines = csv_file(start + MINUTE, 30).decode().splitlines()
    lines[6] = "not-a-time,-185.00,C"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    page.get_by_label(re.compile("Logger's CSV file")).set_input_files(str(bad))
    page.get_by_label(re.compile("Logger id")).fill("LOGGER-7")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#refused-lines")).to_contain_text("Line 7")
    expect(page.locator("#files")).to_have_count(0)
    check_page(page, "shipment-condition-refused", axe)
    # the real file: a day with 20 minutes at -140 °C
    hot = tmp_path / "logger-7.csv"
    hot.write_bytes(
        csv_file(start + MINUTE, 24 * 60, lambda i: -140.0 if 600 <= i < 620 else -186.0)
    )
    page.get_by_label(re.compile("Logger's CSV file")).set_input_files(str(hot))
    page.get_by_label(re.compile("Logger id")).fill("LOGGER-7")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".notice").first).to_contain_text("1440 readings imported")
    expect(page.locator("main")).to_contain_text("ON HOLD until QA disposes of them")
    expect(page.locator("#alarms")).to_contain_text("continuous")
    expect(page.locator("#summaries")).to_contain_text("-140.0 °C")
    expect(page.locator("figure.chart img")).to_be_visible()
    check_page(page, "shipment-condition-alarm", axe)
    # the logger's own file comes back byte for byte
    link = page.get_by_role("link", name="logger-7.csv")
    assert page.request.get(base + link.get_attribute("href")).body() == hot.read_bytes()

    sign_in(page, base, world, "qa")
    nav(page, "Control tower")
    expect(page.locator("#holds tbody tr")).to_have_count(2)
    check_page(page, "tower-holds", axe)
    page.goto(f"{base}/orders/{order['coi']}")
    expect(page.locator("main")).to_contain_text(f"Temperature of {code}")
    expect(page.locator("main")).to_contain_text("Alarm (continuous)")
    check_page(page, "order-temperature", axe)

    nav(page, "Holds")
    expect(page.locator("main h1")).to_contain_text("Bags on hold: 2")
    check_page(page, "holds", axe)
    for unit in units:
        card = page.locator(f"#hold-{unit['din']}")
        card.get_by_label("Reason").fill("logger reviewed: within the product's stability data")
        card.get_by_label("Your e-mail").fill("qa@example.org")
        card.get_by_label("Your password").fill("correct horse battery")
        card.get_by_role("button", name=re.compile("Release")).click()
        expect(page.locator(".notice")).to_contain_text(f"Bag {unit['din']} released")
    expect(page.locator("main h1")).to_contain_text("Bags on hold: 0")
    # the receipt proceeds
    for unit in units:
        assert world.scan("op", unit["barcode"], "receive", "MFG-1").status_code == 201
