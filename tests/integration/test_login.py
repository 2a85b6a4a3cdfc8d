"""Web login: argon2 passwords, sessions, CSRF, lock-out, rate limits, cookie flags."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import redis
import sqlalchemy as sa
import time_machine
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlmodel import SQLModel, select

from services.config import Settings
from services.db import UnitOfWork
from services.db.models import AdminChange, User
from services.db.privileges import PrivilegedRole
from services.domain.errors import InvalidRequest
from services.operations import passwords
from tests.world import PASSWORD, World, csrf_token, sign_in


def _set_password(world: World, who: str, password: str = PASSWORD) -> None:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        passwords.set_password(uow.session, email=f"{who}@example.org", password=password)
        uow.commit()


def _user(world: World, who: str) -> User:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return uow.session.exec(select(User).where(User.email == f"{who}@example.org")).one()


def test_sign_in_shows_the_sites_orders_and_sign_out_ends_the_session(world: World) -> None:
    mine = world.enroll("PAT-MINE")
    theirs = world.enroll(
        "PAT-THEIRS", who="care2", collection="APH-2", manufacturing="MFG-2", treatment="TRT-2"
    )
    browser = world.browser("care")

    home = browser.get("/")
    page = home.get_data(as_text=True)
    assert home.status_code == 200
    assert "care@example.org" in page
    assert "TRT-1" in page
    assert mine["coi"] in page
    assert "PAT-MINE" in page
    assert theirs["coi"] not in page
    assert "PAT-THEIRS" not in page

    signed_out = browser.post("/logout", data={"csrf_token": csrf_token(browser, "/")})
    assert signed_out.status_code == 302
    assert browser.get("/").headers["Location"].startswith("/login?next=")


def test_the_manufacturing_site_sees_the_order_but_not_the_patient(world: World) -> None:
    order = world.enroll("PAT-PRIVATE")
    page = world.browser("op").get("/").get_data(as_text=True)
    assert order["coi"] in page
    assert "PAT-PRIVATE" not in page


def test_pages_need_a_session_and_the_api_ignores_one(world: World) -> None:
    assert world.client.get("/").status_code == 302
    browser = world.browser("care")
    # the API authenticates by bearer token only: a session cookie opens nothing there, which
    # is also why API calls need no CSRF token
    response = browser.get("/api/v1/delays")
    assert response.status_code == 401
    assert response.json["code"] == "unauthorized"


def test_wrong_password_and_unknown_email_get_the_same_answer(world: World) -> None:
    _set_password(world, "care")
    wrong = sign_in(world.app.test_client(), "care@example.org", "not the password at all")
    unknown = sign_in(world.app.test_client(), "nobody@example.org", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert _refusal(wrong) == _refusal(unknown)
    assert "wrong" in _refusal(wrong)


def _refusal(response: Any) -> str:
    page = response.get_data(as_text=True)
    start = page.index('class="refused"')
    return page[start : page.index("</p>", start)]


def _from(world: World, address: str) -> Any:
    """A browser of its own at ``address`` (what request.remote_addr says)."""
    client = world.app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _log(world: World, action: str) -> list[AdminChange]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return list(
            uow.session.exec(
                select(AdminChange).where(AdminChange.action == action).order_by(AdminChange.id)
            ).all()
        )


def test_an_outsider_hammering_an_account_blocks_only_their_own_client(app_factory: Any) -> None:
    world = World.build(app_factory(login_max_failures=3, login_lockout_seconds=600))
    _set_password(world, "aph")
    attacker, owner = "203.0.113.66", "198.51.100.7"
    start = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(3):
            assert (
                sign_in(_from(world, attacker), "aph@example.org", "guess guess").status_code == 401
            )
        # the attacker's client waits, even with the right password, and hears the same answer
        # as for a wrong one ...
        blocked = sign_in(_from(world, attacker), "aph@example.org", PASSWORD)
        wrong = sign_in(_from(world, "192.0.2.1"), "aph@example.org", "guess guess")
        assert blocked.status_code == wrong.status_code == 401
        assert _refusal(blocked) == _refusal(wrong)
        # ... while the owner signs in from their own, as often as they like
        for _ in range(5):
            assert sign_in(_from(world, owner), "aph@example.org", PASSWORD).status_code == 302
        (first,) = _log(world, "sign-in blocked")
        assert (first.actor, first.subject, first.actor_id) == (
            "sign-in guard",
            "aph@example.org",
            None,
        )
        assert first.after == {
            "client": attacker,
            "failed_attempts": 3,
            "blocked_until": (start + dt.timedelta(minutes=10)).isoformat(),
            "block": 1,
        }
        # the next block of the same client lasts twice as long
        clock.shift(dt.timedelta(minutes=11))
        for _ in range(3):
            assert (
                sign_in(_from(world, attacker), "aph@example.org", "guess again").status_code == 401
            )
        second = _log(world, "sign-in blocked")[-1]
        assert second.after is not None
        assert second.after["block"] == 2
        assert second.after["blocked_until"] == (start + dt.timedelta(minutes=11 + 20)).isoformat()
        clock.shift(dt.timedelta(minutes=19))
        assert sign_in(_from(world, attacker), "aph@example.org", PASSWORD).status_code == 401
        clock.shift(dt.timedelta(minutes=2))
        assert sign_in(_from(world, attacker), "aph@example.org", PASSWORD).status_code == 302


def test_an_ipv6_client_is_counted_by_its_64(app_factory: Any) -> None:
    """One host is handed a whole /64: rotating through it is the same client."""
    world = World.build(app_factory(login_max_failures=3))
    _set_password(world, "aph")
    for n in range(3):
        client = _from(world, f"2001:db8:1:2::{n + 1:x}")
        assert sign_in(client, "aph@example.org", "guess guess").status_code == 401
    assert (
        sign_in(_from(world, "2001:db8:1:2:ffff::9"), "aph@example.org", PASSWORD).status_code
        == 401
    )
    assert sign_in(_from(world, "2001:db8:1:3::1"), "aph@example.org", PASSWORD).status_code == 302
    (block,) = _log(world, "sign-in blocked")
    assert block.after is not None
    assert block.after["client"] == "2001:db8:1:2::/64"


def test_a_new_password_ends_open_sessions(world: World) -> None:
    browser = world.browser("op")
    assert browser.get("/").status_code == 200
    _set_password(world, "op", "another long password")
    assert browser.get("/").status_code == 302


def test_a_deactivated_user_cannot_sign_in_and_is_signed_out(world: World) -> None:
    browser = world.browser("op")
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        user = uow.session.exec(select(User).where(User.email == "op@example.org")).one()
        user.active = False
        uow.session.add(user)
        uow.commit()
    assert browser.get("/").status_code == 302
    assert sign_in(world.app.test_client(), "op@example.org", PASSWORD).status_code == 401


def test_forms_without_a_csrf_token_are_refused(world: World) -> None:
    _set_password(world, "care")
    client = world.app.test_client()
    response = client.post("/login", data={"email": "care@example.org", "password": PASSWORD})
    assert response.status_code == 400
    assert "csrf_failed" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not signed in

    browser = world.browser("care")
    refused = browser.post("/logout", data={"csrf_token": "forged"})
    assert refused.status_code == 400
    assert browser.get("/").status_code == 200  # still signed in


def test_next_only_leads_to_this_site(world: World) -> None:
    _set_password(world, "care")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = sign_in(world.app.test_client(), "care@example.org", PASSWORD, next=target)
        assert response.headers["Location"] == "/"
    inside = sign_in(world.app.test_client(), "care@example.org", PASSWORD, next="/?page=2")
    assert inside.headers["Location"] == "/?page=2"


def test_weak_passwords_are_refused(world: World) -> None:
    for weak in ("short", "aaaaaaaaaaaaaaaa"):
        with (
            UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow,
            pytest.raises(InvalidRequest),
        ):
            passwords.set_password(uow.session, email="op@example.org", password=weak)


def test_no_password_or_token_is_stored_in_clear(world: World) -> None:
    _set_password(world, "care")
    world.browser("care", PASSWORD)
    secrets = [PASSWORD, *world.tokens.values()]
    engine = world.app.extensions["vein2vein"].db.engine
    dump = []
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for row in connection.execute(sa.select(table)):
                dump.append(repr(tuple(row)))
    text = "\n".join(dump)
    assert "$argon2id$" in text  # the hash is there ...
    assert [s for s in secrets if s in text] == []  # ... and nothing it could be read from


def test_login_attempts_are_rate_limited_per_address(app_factory: Any) -> None:
    world = World.build(app_factory(login_rate_limit="3 per minute"))
    for _ in range(3):
        assert (
            sign_in(world.app.test_client(), "x@example.org", "wrong password!").status_code == 401
        )
    # the fourth is refused before the password is even looked at, with a page that says why
    response = sign_in(world.app.test_client(), "x@example.org", "wrong password!")
    assert response.status_code == 429
    assert "rate_limited" in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0


def test_api_calls_are_rate_limited_per_token(app_factory: Any) -> None:
    world = World.build(app_factory(api_rate_limit="2 per minute"))
    assert world.get("care", "/api/v1/delays").status_code == 200
    assert world.get("care", "/api/v1/delays").status_code == 200
    third = world.get("care", "/api/v1/delays")
    assert third.status_code == 429
    assert third.mimetype == "application/problem+json"
    assert third.json["code"] == "rate_limited"
    assert int(third.headers["Retry-After"]) > 0
    assert world.get("op", "/api/v1/delays").status_code == 200  # another token, its own count


def test_an_api_limit_switched_off_counts_no_call_and_keeps_the_sign_in_limit(
    app_factory: Any,
) -> None:
    """API_RATE_LIMIT=off is for a deployment whose reverse proxy limits the API."""
    world = World.build(app_factory(api_rate_limit="1000 per minute"))
    off = app_factory(api_rate_limit="off", login_rate_limit="1 per minute")
    headers = world.headers("care")
    for app in (world.app, off):
        for _ in range(30):
            assert app.test_client().get("/api/v1/delays", headers=headers).status_code == 200

    # the limited app kept a count for the token; the app without a limit has no counter at all
    assert any("token:" in key for key in world.app.extensions["vein2vein_api_limit"]._shares)
    assert off.extensions["vein2vein_api_limit"] is None
    _set_password(world, "care")
    assert sign_in(off.test_client(), "care@example.org", "wrong password!").status_code == 401
    assert sign_in(off.test_client(), "care@example.org", "wrong password!").status_code == 429


@pytest.mark.parametrize("limit", ["lots", "100 per fortnight", "per second", ""])
def test_a_rate_limit_that_is_not_one_is_refused_at_start_up(limit: str) -> None:
    with pytest.raises(ValidationError, match="is not a rate limit"):
        Settings(_env_file=None, api_rate_limit=limit)
    with pytest.raises(ValidationError, match="is not a rate limit"):
        Settings(_env_file=None, login_rate_limit="off")


@pytest.mark.redis
def test_with_redis_every_process_counts_together(app_factory: Any, redis_url: str) -> None:
    """Two apps stand for two gunicorn workers: with Redis storage their counts add up."""
    redis.Redis.from_url(redis_url).flushdb()
    settings = {"api_rate_limit": "3 per minute", "ratelimit_storage_url": redis_url}
    first = World.build(app_factory(**settings))
    second_app = app_factory(**settings)
    headers = first.headers("care")
    assert first.client.get("/api/v1/delays", headers=headers).status_code == 200
    assert second_app.test_client().get("/api/v1/delays", headers=headers).status_code == 200
    assert first.client.get("/api/v1/delays", headers=headers).status_code == 200
    assert second_app.test_client().get("/api/v1/delays", headers=headers).status_code == 429


@pytest.mark.redis
def test_production_cookies_are_secure(app_factory: Any, redis_url: str, backend: str) -> None:
    if backend == "postgresql":
        # the tests connect as a superuser, which production refuses (test_app_role.py runs
        # production as the application's role, secure cookies and all)
        with pytest.raises(PrivilegedRole, match="vein2vein db app-role"):
            app_factory(
                app_env="production",
                ratelimit_storage_url=redis_url,
                webhook_secret_key=Fernet.generate_key().decode(),
            )
        return
    world = World.build(
        app_factory(
            app_env="production",
            ratelimit_storage_url=redis_url,
            webhook_secret_key=Fernet.generate_key().decode(),
        )
    )
    redis.Redis.from_url(redis_url).flushdb()
    _set_password(world, "care")
    client = world.app.test_client()
    response = sign_in(client, "care@example.org", PASSWORD)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "vein2vein_session=" in cookie
    for flag in ("Secure", "HttpOnly", "SameSite=Lax"):
        assert flag in cookie
    assert response.headers["X-Frame-Options"] == "DENY"
