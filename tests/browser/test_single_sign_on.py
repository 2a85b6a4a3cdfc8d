"""Single sign-on in a real browser: "Sign in with Test Hospital" on the login page, the
provider's own sign-in page (npm oidc-provider), and the bedside's signature given at the
provider again, its match kept across the round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import check_page
from tests.integration.test_vein_to_vein import _thawed_product, bc


def provider_sign_in(page: Any, login: str) -> None:
    """The provider's development sign-in page: any password, the login names the person."""
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any")
    page.locator("button[type=submit]").click()


def test_a_nurse_signs_in_and_signs_the_infusion_at_the_hospitals_provider(
    live_factory: Any, openid_provider: Any, page: Any, axe: Path
) -> None:
    base, world = live_factory(**openid_provider.settings())
    din = _thawed_product(world, "PAT-SSO-WALK")
    page.goto(f"{base}/login")
    check_page(page, "login-single-sign-on", axe)
    page.get_by_role("link", name="Sign in with Test Hospital").click()
    provider_sign_in(page, "care@example.org")
    expect(page.locator("main h1")).to_contain_text("what waits for you")

    page.get_by_role("link", name="Bedside").click()
    page.locator("#patient_ref").fill("PAT-SSO-WALK")
    page.locator("#patient_ref").press("Enter")
    page.locator("#barcode").fill(bc(din))
    page.locator("#barcode").press("Enter")
    expect(page.locator(".result .headline")).to_have_text("MATCH")
    expect(page.locator("#sso-signatures")).to_contain_text("sign at Test Hospital below first")
    check_page(page, "bedside-single-sign-on", axe)
    page.wait_for_timeout(1100)  # auth_time counts whole seconds: a request after the sign-in
    page.get_by_role("button", name="Sign at Test Hospital").click()
    provider_sign_in(page, "care@example.org")  # prompt=login: the provider asks again
    expect(page.locator(".result .headline")).to_have_text("MATCH")
    expect(page.locator("#sso-signatures")).to_contain_text("authenticated again at Test Hospital")
    check_page(page, "bedside-single-sign-on-signed", axe)
    page.get_by_role("button", name="Confirm infusion").click()
    expect(page.locator(".result .headline")).to_have_text("INFUSION RECORDED")
    expect(page.locator(".result")).to_contain_text("(performed)")
    assert world.get("care", f"/api/v1/units/{din}").json["state"] == "infused"
