"""The inactivity sign-out in a real browser: a page left alone past SESSION_IDLE_MINUTES is
the login page on the next click, saying why, and the work goes on after signing in again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import check_page, sign_in, type_credentials
from tests.world import PASSWORD

IDLE_SECONDS = 3


def test_a_page_left_alone_signs_out_and_says_why(live_factory: Any, page: Any, axe: Path) -> None:
    base, world = live_factory(session_idle_minutes=IDLE_SECONDS / 60)
    sign_in(page, base, world, "care")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    expect(page.locator("main h1")).to_contain_text("Alerts")
    page.wait_for_timeout(IDLE_SECONDS * 1000 + 500)
    page.get_by_role("link", name="Subscriptions").click()
    expect(page.locator("h1")).to_contain_text("Sign in")
    expect(page.locator(".notice")).to_contain_text(
        f"You were signed out after {IDLE_SECONDS} seconds without activity"
    )
    assert "/login?next=/subscriptions" in page.url
    check_page(page, "signed-out-idle", axe)
    type_credentials(page, base, "care@example.org", PASSWORD)
    expect(page.locator("main h1")).to_contain_text("what waits for you")
