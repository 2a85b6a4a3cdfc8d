"""Single sign-on against a real OpenID provider (npm oidc-provider, started by the tests):
sign-in by a provisioned user, refusals (nobody provisioned, a tampered ID token, a site's
passwords turned off), and Part 11 signatures at the provider: a stale authentication refused,
a fresh one accepted, a witness signing through the provider at the bedside."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import AdminChange, ApiToken, Signature, SigningTicket, Site, User
from services.domain.errors import SsoRefused
from services.operations import signing
from services.operations.access import actor_for
from services.operations.admin import site_by_code
from services.web.oidc import new_pending
from tests.integration.test_vein_to_vein import _thawed_product, bc
from tests.oidc import ProviderBrowser, wait_a_second
from tests.world import World, csrf_token
from tests.world import sign_in as password_sign_in

pytestmark = pytest.mark.usefixtures("openid_provider")


@pytest.fixture
def world(sso_app: Any) -> World:
    return World.build(sso_app)


def sso_sign_in(world: World, browser: ProviderBrowser, login: str) -> Any:
    """A page client signed in (or refused) through the provider; returns (client, answer)."""
    client = world.app.test_client()
    start = client.get("/sso/login")
    assert start.status_code == 303
    back = browser.authorize(start.headers["Location"], login)
    return client, client.get(back)


def start_signing(
    client: Any,
    browser: ProviderBrowser,
    *,
    role: str,
    purpose: str,
    return_to: str,
    login: str | None,
    strip: bool = False,
    **keep: str,
) -> Any:
    """Re-authenticate for one signature: our POST, the provider's page, back to us."""
    token = csrf_token(client, return_to)
    start = client.post(
        "/sso/sign",
        data={
            "csrf_token": token,
            "role": role,
            "purpose": purpose,
            "return_to": return_to,
            **{f"keep_{k}": v for k, v in keep.items()},
        },
    )
    assert start.status_code == 303, start.get_data(as_text=True)
    target = start.headers["Location"]
    assert "prompt=login" in target
    assert "max_age=0" in target
    if strip:  # a browser that skips the provider's prompt: the provider's session answers
        target = target.replace("prompt=login", "prompt=none").replace("&max_age=0", "")
    return client.get(browser.authorize(target, login))


def tickets(world: World) -> list[SigningTicket]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return list(uow.session.exec(select(SigningTicket)).all())


# the database does not matter here (the signature test runs on both)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sign_in_at_the_provider_binds_the_provisioned_user_and_refuses_everyone_else(
    world: World,
) -> None:
    login = world.client.get("/login").get_data(as_text=True)
    assert "Sign in with Test Hospital" in login
    browser = ProviderBrowser()
    client, answer = sso_sign_in(world, browser, "care@example.org")
    assert answer.status_code == 303, answer.get_data(as_text=True)[-1200:]
    assert answer.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        care = uow.session.exec(select(User).where(User.email == "care@example.org")).one()
        care_id = care.id
        assert (care.oidc_issuer, care.oidc_subject) == (
            world.app.extensions["vein2vein"].settings.oidc_issuer,
            "care@example.org",
        )
        bound = uow.session.exec(
            select(AdminChange).where(AdminChange.action == "single sign-on bound")
        ).one()
        assert bound.subject == "care@example.org"

    # an admin of the site unbinds her (the hospital bound the wrong person): on record, and
    # the next sign-in binds again by verified e-mail
    admin = world.browser("admin")
    unbound = admin.post(
        f"/admin/users/{care_id}",
        data={"csrf_token": csrf_token(admin, "/admin"), "change": "unbind_sso"},
    )
    assert "bound to nobody" in admin.get(unbound.headers["Location"]).get_data(as_text=True)
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        assert uow.session.get(User, care_id).oidc_subject is None  # type: ignore[union-attr]
        change = uow.session.exec(
            select(AdminChange).where(AdminChange.action == "single sign-on unbound")
        ).one()
        assert change.before["subject"] == "care@example.org"  # type: ignore[index]
    assert sso_sign_in(world, ProviderBrowser(), "care@example.org")[1].status_code == 303

    # nobody provisioned, an unverified e-mail, a user of a site the provider does not vouch
    # for (a manufacturer's QA, a courier: OIDC_SITES by default the hospital's treatment and
    # collection sites): refused, nobody signed in, nobody bound
    for who, why in (
        ("stranger@example.org", "no vein2vein account"),
        ("unverified-aph@example.org", "no verified e-mail"),
        ("qa@example.org", "does not vouch"),
        ("courier2@example.org", "does not vouch"),
    ):
        other, refused = sso_sign_in(world, ProviderBrowser(), who)
        assert refused.status_code == 403
        assert why in refused.get_data(as_text=True)
        assert other.get("/").status_code == 302
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        bound = uow.session.exec(select(User.email).where(User.oidc_subject.is_not(None))).all()  # type: ignore[union-attr]
        assert bound == ["care@example.org"]
    # an answer replayed (its state was used once) is refused
    again = client.get("/sso/callback?state=anything&code=x")
    assert again.status_code == 403

    # a tampered ID token: a real one, its payload changed, is not the provider's
    provider = world.app.extensions["vein2vein_oidc"]
    pending = sso_pending_token(world, ProviderBrowser())
    header, payload, signature = pending["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = claims["email"] = "admin@example.org"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(SsoRefused, match="signature"):
        provider.verify(f"{header}.{forged}.{signature}", nonce=pending["nonce"])
    with pytest.raises(SsoRefused, match="nonce"):
        provider.verify(pending["id_token"], nonce="another sign-in")
    with pytest.raises(SsoRefused, match="expired"):
        provider.verify(pending["id_token"], nonce=pending["nonce"], now=time.time() + 4000)
    assert provider.verify(pending["id_token"], nonce=pending["nonce"]).subject == "qa@example.org"

    # the site turns its own passwords off: the password session ends, the password is refused
    world.password("care")
    password_client = world.browser("care")
    admin_page = admin.get("/admin").get_data(as_text=True)
    assert "TRT-1: Test Hospital only" in admin_page
    turned = admin.post(
        "/admin/sites/TRT-1/passwords",
        data={"csrf_token": csrf_token(admin, "/admin"), "local_passwords": "off"},
    )
    assert turned.status_code == 303
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        change = uow.session.exec(
            select(AdminChange).where(AdminChange.action == "site passwords")
        ).one()
        assert change.after == {"local_passwords": False}
        assert change.actor == "admin@example.org"
    assert password_client.get("/").status_code == 302
    # and the site's API tokens are revoked, each on record; nobody there mints a new one
    assert world.get("care", "/api/v1/tokens").status_code == 401
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        revoked = uow.session.exec(
            select(AdminChange.subject).where(AdminChange.action == "token revoked")
        ).all()
        assert sorted(s.split(":")[0] for s in revoked) == ["admin@example.org", "care@example.org"]
    refused = world.app.test_client()
    assert password_sign_in(refused, "care@example.org", world.password("care")).status_code == 401
    # (the new password ended every session of care's); single sign-on goes on
    client, answer = sso_sign_in(world, ProviderBrowser(), "care@example.org")
    assert answer.status_code == 303
    assert client.get("/").status_code == 200
    minted = client.post(
        "/account/tokens", data={"csrf_token": csrf_token(client, "/account"), "name": "mine"}
    )
    assert "identity provider only" in client.get(minted.headers["Location"]).get_data(as_text=True)
    assert world.get("care", "/api/v1/tokens").status_code == 401
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        assert not uow.session.exec(select(ApiToken).where(ApiToken.name == "mine")).all()


def sso_pending_token(world: World, browser: ProviderBrowser) -> dict[str, str]:
    """A genuine ID token for a request of our own (the code exchanged here, as the app does)."""
    provider = world.app.extensions["vein2vein_oidc"]
    pending = new_pending()
    url = provider.authorization_url(
        "http://localhost/sso/callback", pending, signing=False, login_hint=None
    )
    back = browser.authorize(url, "qa@example.org")
    code = back.split("code=")[1].split("&")[0]
    token = provider._client("http://localhost/sso/callback").fetch_token(
        provider.metadata()["token_endpoint"], code=code, code_verifier=pending.verifier
    )
    return {"id_token": token["id_token"], "nonce": pending.nonce}


def world_actor(uow: Any, who: str) -> Any:
    user = uow.session.exec(select(User).where(User.email == f"{who}@example.org")).one()
    return actor_for(user, uow.session.get(Site, user.site_id))


def now() -> Any:
    return dt.datetime.now(dt.UTC)


def test_a_signature_at_the_provider_needs_a_fresh_authentication_and_a_witness_signs_there(
    world: World,
) -> None:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        site = sso_site(uow, "TRT-1")
        signing.set_critical_step(
            uow.session, site=site, step="infuse", witness=True, required=True
        )
        uow.commit()
    din = _thawed_product(world, "PAT-SSO")
    nurse, witness = ProviderBrowser(), ProviderBrowser()
    client, _ = sso_sign_in(world, nurse, "care@example.org")
    sso_sign_in(world, witness, "admin@example.org")  # the witness's own provider session
    wait_a_second()
    checked = client.post(
        "/bedside",
        data={
            "csrf_token": csrf_token(client, "/bedside"),
            "patient_ref": "PAT-SSO",
            "barcode": bc(din),
        },
    )
    assert checked.status_code == 200
    assert "MATCH" in checked.get_data(as_text=True)
    page = checked.get_data(as_text=True)
    assert "Sign at Test Hospital" in page
    assert 'name="password"' not in page
    event_id = page.split('name="event_id" value="')[1].split('"')[0]
    keep = {"patient_ref": "PAT-SSO", "barcode": bc(din), "event_id": event_id}

    # the browser skips the provider's prompt: its session (older than the request) answers,
    # and the server refuses it on auth_time
    stale = start_signing(
        client,
        nurse,
        role="performer",
        purpose="/bedside/infuse",
        return_to="/bedside?resume=1",
        login=None,
        strip=True,
        **keep,
    )
    assert stale.status_code == 303
    assert tickets(world) == []
    shown = client.get(stale.headers["Location"]).get_data(as_text=True)
    assert "did not authenticate you again" in shown

    # signed at the provider again, then the witness there too: the infusion is recorded
    fresh = start_signing(
        client,
        nurse,
        role="performer",
        purpose="/bedside/infuse",
        return_to="/bedside?resume=1",
        login="care@example.org",
        **keep,
    )
    resumed = client.get(fresh.headers["Location"]).get_data(as_text=True)
    assert "authenticated again at Test Hospital" in resumed
    assert "PAT-SSO" in resumed
    # the witness cannot be the nurse herself
    same = start_signing(
        client,
        ProviderBrowser(),
        role="witness",
        purpose="/bedside/infuse",
        return_to="/bedside?resume=1",
        login="care@example.org",
        **keep,
    )
    assert "second person" in client.get(same.headers["Location"]).get_data(as_text=True)
    start_signing(
        client,
        witness,
        role="witness",
        purpose="/bedside/infuse",
        return_to="/bedside?resume=1",
        login="admin@example.org",
        **keep,
    )
    # the tickets sign what the screen showed (bag, patient, event): not another patient's bag
    din_b = _thawed_product(world, "PAT-OTHER")
    other = {"patient_ref": "PAT-OTHER", "barcode": bc(din_b), "event_id": str(uuid.uuid4())}
    swapped = client.post(
        "/bedside/infuse", data={"csrf_token": csrf_token(client, "/bedside"), **other}
    )
    assert swapped.status_code == 403
    assert "not for this signature" in swapped.get_data(as_text=True)
    waiting = tickets(world)  # unused: the act was refused before it
    assert len(waiting) == 2
    assert all(t.consumed_at is None for t in waiting)
    for role, who, browser in (
        ("performer", "care@example.org", nurse),
        ("witness", "admin@example.org", witness),
    ):
        start_signing(
            client,
            browser,
            role=role,
            purpose="/bedside/infuse",
            return_to="/bedside?resume=1",
            login=who,
            **keep,
        )
    done = client.post(
        "/bedside/infuse", data={"csrf_token": csrf_token(client, "/bedside"), **keep}
    )
    assert done.status_code == 200, done.get_data(as_text=True)
    assert "INFUSION RECORDED" in done.get_data(as_text=True)
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        everything = uow.session.exec(select(Signature)).all()
        infusion = max(s.event_id for s in everything)
        signed = [s for s in everything if s.event_id == infusion]
        assert sorted((s.signer_email, s.meaning) for s in signed) == [
            ("admin@example.org", "witness"),
            ("care@example.org", "performed"),
        ]
        used = uow.session.exec(
            select(SigningTicket).where(SigningTicket.consumed_at.is_not(None))  # type: ignore[union-attr]
        ).all()
        assert len(used) == 2
        assert all(t.authenticated_at >= t.requested_at.replace(microsecond=0) for t in used)
    # the act took the session's tickets: the same form again carries no signature
    again = client.post(
        "/bedside/infuse",
        data={"csrf_token": csrf_token(client, "/bedside"), **keep, "event_id": str(uuid.uuid4())},
    )
    assert again.status_code == 422


def sso_site(uow: Any, code: str) -> Any:
    return site_by_code(uow.session, code)


# the database does not matter here (the signature test runs on both)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_correction_by_a_single_sign_on_user_is_signed_at_the_provider(world: World) -> None:
    coi = world.bag_at("receive", "PAT-CORR")["coi"]
    browser = ProviderBrowser()
    client, _ = sso_sign_in(world, browser, "admin@example.org")
    timeline = client.get(f"/orders/{coi}").get_data(as_text=True)
    assert "Sign at Test Hospital" in timeline
    assert 'id="correct-password"' not in timeline
    path = f"/orders/{coi}/corrections"
    correction = {"sequence": "2", "reason": "scanned at the wrong bench"}
    unsigned = client.post(
        path, data={"csrf_token": csrf_token(client, f"/orders/{coi}"), **correction}
    )
    assert "Not recorded" in client.get(unsigned.headers["Location"]).get_data(as_text=True)
    wait_a_second()
    # the re-authentication signs this event and this reason: not another event
    for attempt in (1, 2):
        start_signing(
            client,
            browser,
            role="performer",
            purpose=path,
            return_to=f"/orders/{coi}",
            login="admin@example.org",
            **correction,
        )
        shown = client.get(f"/orders/{coi}").get_data(as_text=True)
        assert "authenticated again at Test Hospital" in shown
        assert 'value="scanned at the wrong bench"' in shown
        if attempt == 1:
            other = client.post(
                path,
                data={
                    "csrf_token": csrf_token(client, f"/orders/{coi}"),
                    **correction,
                    "sequence": "1",
                },
            )
            refused = client.get(other.headers["Location"]).get_data(as_text=True)
            assert "not for this signature" in refused
    signed = client.post(
        path, data={"csrf_token": csrf_token(client, f"/orders/{coi}"), **correction}
    )
    assert "recorded and signed" in client.get(signed.headers["Location"]).get_data(as_text=True)
    events = world.get("qa", f"/api/v1/orders/{coi}/events").json["events"]
    (corrected,) = [e for e in events if e["action"] == "correct"]
    assert [(s["signer"], s["meaning"]) for s in corrected["signatures"]] == [
        ("admin@example.org", "performed")
    ]
