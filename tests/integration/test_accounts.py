"""Accounts as Part 11 and a hospital's IT expect, tried as an outsider would: an idle session
ends on the server; hammering someone's e-mail blocks only the hammering client, on record;
a temporary password is handed over once and never travels in a URL; a correction is signed
in the act."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import time_machine
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import AdminChange, ApiToken, CustodyEvent, Signature, User
from services.domain.errors import SignatureInvalid
from services.operations import audit, passwords, signing
from tests.processes import BIN, clean_env, free_port, running, wait_for_log
from tests.world import PASSWORD, World, csrf_token, sign_in

START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def _session(world: World) -> Any:
    return UnitOfWork(world.app.extensions["vein2vein"].db.session_factory)


def _log(world: World, action: str | None = None) -> list[AdminChange]:
    with _session(world) as uow:
        query = select(AdminChange).order_by(AdminChange.id)  # type: ignore[arg-type]
        if action is not None:
            query = query.where(AdminChange.action == action)
        return list(uow.session.exec(query).all())


def _from(world: World, address: str) -> Any:
    client = world.app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _post(browser: Any, path: str, form: dict[str, str], page: str = "/") -> Any:
    return browser.post(path, data={**form, "csrf_token": csrf_token(browser, page)})


# inactivity


def test_an_idle_session_is_signed_out_by_the_server(app_factory: Any) -> None:
    world = World.build(app_factory(session_idle_minutes=15))
    with time_machine.travel(START, tick=False) as clock:
        browser = world.browser("care")
        for _ in range(4):  # a request every 14 minutes keeps the session going for an hour
            clock.shift(dt.timedelta(minutes=14))
            assert browser.get("/").status_code == 200
        stolen = browser.get_cookie("vein2vein_session").value  # a copy, taken now
        clock.shift(dt.timedelta(minutes=15, seconds=1))
        signed_out = browser.get("/alerts?page=2")
        assert signed_out.status_code == 302
        assert signed_out.headers["Location"] == "/login?next=/alerts?page%3D2"
        login = browser.get(signed_out.headers["Location"]).get_data(as_text=True)
        assert "You were signed out after 15 minutes without activity" in login
        assert browser.get("/").status_code == 302  # and it stays signed out
        # the copied cookie carries its own last activity, signed by the server: replayed
        # later it is as stale as the session it was taken from
        replay = world.app.test_client()
        replay.set_cookie("vein2vein_session", stolen)
        assert replay.get("/").status_code == 302
        # the API authenticates by token, with no session to go idle
        assert world.get("care", "/api/v1/delays").status_code == 200


def test_a_form_sent_after_the_idle_time_does_nothing(app_factory: Any) -> None:
    world = World.build(app_factory(session_idle_minutes=15))
    with time_machine.travel(START, tick=False) as clock:
        browser = world.browser("care")
        token = csrf_token(browser, "/account")
        clock.shift(dt.timedelta(minutes=16))
        sent = browser.post("/account/tokens", data={"name": "late", "csrf_token": token})
        assert sent.status_code == 302
        assert sent.headers["Location"] == "/login"  # a POST is not sent again after sign-in
    with _session(world) as uow:
        assert uow.session.exec(select(ApiToken).where(ApiToken.name == "late")).all() == []


def test_the_scan_pages_fetch_hears_a_signed_out_session_in_json(app_factory: Any) -> None:
    """scan.js queues a scan it could not send; a signed-out answer must not look like that."""
    world = World.build(app_factory(session_idle_minutes=15))
    with time_machine.travel(START, tick=False) as clock:
        browser = world.browser("care")
        token = csrf_token(browser, "/scan")
        clock.shift(dt.timedelta(minutes=16))
        scan = browser.post(
            "/scan",
            data={"barcode": "=A10012600000189", "action": "receive", "site": "TRT-1"},
            headers={"Accept": "application/json", "X-CSRFToken": token},
        )
    assert scan.status_code == 401
    assert scan.json["code"] == "signed_out"
    assert scan.json["ok"] is False
    assert "15 minutes without activity" in scan.json["detail"]


def test_a_session_ends_session_hours_after_sign_in_however_busy(app_factory: Any) -> None:
    world = World.build(app_factory(session_idle_minutes=15, session_hours=1))
    with time_machine.travel(START, tick=False) as clock:
        browser = world.browser("op")
        for _ in range(6):
            clock.shift(dt.timedelta(minutes=10))
            assert browser.get("/").status_code == 200
        clock.shift(dt.timedelta(minutes=1))
        ended = browser.get("/")
        assert ended.status_code == 302
        page = browser.get(ended.headers["Location"]).get_data(as_text=True)
        assert "signed out 60 minutes after signing in" in page


# lock-out an outsider cannot trigger, and its record


def test_blocks_and_unblocks_are_on_record_for_the_sites_admin_only(app_factory: Any) -> None:
    world = World.build(app_factory(login_max_failures=3, login_lockout_seconds=600))
    with time_machine.travel(START, tick=False):
        admin = world.browser("admin")  # TRT-1's admin
        other_admin = world.browser("admin2")  # TRT-2's
        world.browser("care")  # care@ (TRT-1) has a password
        for _ in range(3):
            sign_in(_from(world, "203.0.113.9"), "care@example.org", "a wrong guess")
        # the right password from the attacker's client is refused; the owner's works
        assert sign_in(_from(world, "203.0.113.9"), "care@example.org", PASSWORD).status_code == 401
        assert (
            sign_in(_from(world, "198.51.100.2"), "care@example.org", PASSWORD).status_code == 302
        )
        page = admin.get("/admin").get_data(as_text=True)
        assert re.search(
            r"sign-in from 203\.0\.113\.9 paused until <time[^>]*>[0-9-]+ 08:10 UTC", page
        )
        assert re.search(r"sign-in guard</td><td>sign-in blocked</td><td[^>]*>care@example", page)
        assert "care@example.org" not in other_admin.get("/admin").get_data(as_text=True)
        with _session(world) as uow:
            care = uow.session.exec(select(User).where(User.email == "care@example.org")).one()
        assert _post(admin, f"/admin/users/{care.id}", {"change": "password"}).status_code == 303
        after_reset = admin.get("/admin")
    assert after_reset.status_code == 200
    assert "paused" not in after_reset.get_data(as_text=True)
    (unblocked,) = _log(world, "sign-in unblocked")
    assert (unblocked.actor, unblocked.subject) == ("admin@example.org", "care@example.org")
    assert unblocked.before == {"blocked_clients": ["203.0.113.9"]}
    assert unblocked.after == {"blocked_clients": []}
    assert unblocked.site_id == care.site_id


def test_a_users_own_new_password_lifts_their_blocks_on_record(app_factory: Any) -> None:
    world = World.build(app_factory(login_max_failures=2))
    browser = world.browser("op")
    for _ in range(2):
        sign_in(_from(world, "192.0.2.50"), "op@example.org", "not it at all")
    assert sign_in(_from(world, "192.0.2.50"), "op@example.org", PASSWORD).status_code == 401
    changed = _post(
        browser,
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "a brand new phrase",
            "confirm_password": "a brand new phrase",
        },
        page="/account/password",
    )
    assert changed.status_code == 303
    assert (
        sign_in(_from(world, "192.0.2.50"), "op@example.org", "a brand new phrase").status_code
        == 302
    )
    (change,) = _log(world, "password changed")
    assert (change.actor, change.subject) == ("op@example.org", "op@example.org")
    (unblocked,) = _log(world, "sign-in unblocked")
    assert unblocked.before == {"blocked_clients": ["192.0.2.50"]}


def test_a_wrong_password_at_signing_counts_for_that_client(app_factory: Any) -> None:
    """The signature path is a password oracle too: its failures block the client as sign-in
    failures do, and only that client."""
    world = World.build(app_factory(login_max_failures=3))
    bag = world.bag_at("cryopreserve", "PAT-SIGNPATH")
    world.browser("qa")
    attacker = _from(world, "203.0.113.77")
    body = {"sequence": 2, "reason": "x", "signature": {"password": "guessing the password"}}
    path = f"/api/v1/orders/{bag['coi']}/corrections"
    for _ in range(3):
        refused = attacker.post(path, json=body, headers=world.headers("qa"))
        assert refused.status_code == 403
        assert refused.json["code"] == "signature_invalid"
    right = {**body, "signature": {"password": PASSWORD}}
    # the right password from that client is refused now, at signing and at sign-in alike
    assert attacker.post(path, json=right, headers=world.headers("qa")).status_code == 403
    assert sign_in(_from(world, "203.0.113.77"), "qa@example.org", PASSWORD).status_code == 401
    assert (
        _from(world, "198.51.100.9").post(path, json=right, headers=world.headers("qa")).status_code
        == 201
    )
    (block,) = _log(world, "sign-in blocked")
    assert block.after is not None
    assert block.after["client"] == "203.0.113.77"


# temporary passwords


def test_a_temporary_password_is_shown_once_from_the_session_never_the_url(world: World) -> None:
    admin = world.browser("admin")
    added = _post(
        admin, "/admin/users", {"email": "tess@example.org", "name": "Tess", "role": "care_team"}
    )
    assert added.headers["Location"] == "/admin"
    kept = world.app.session_interface.get_signing_serializer(world.app).loads(
        admin.get_cookie("vein2vein_session").value
    )
    assert "_shown_once" in kept  # waiting in the session, as ciphertext: the cookie is
    first = admin.get("/admin").get_data(as_text=True)  # readable by whoever holds it
    found = re.search(r'id="temporary-password">([^<]+)<', first)
    assert found
    temporary = found.group(1)
    assert "Temporary password of tess@example.org" in first
    assert temporary not in repr(kept)
    assert temporary not in admin.get("/admin").get_data(as_text=True)  # once
    # a password the admin has seen signs nothing, not even as a witness, until changed
    with _session(world) as uow:
        tess = uow.session.exec(select(User).where(User.email == "tess@example.org")).one()
        with pytest.raises(SignatureInvalid, match="temporary password"):
            signing.authenticate_witness(
                uow.session,
                site_id=tess.site_id,
                email="tess@example.org",
                password=temporary,
                now=dt.datetime.now(dt.UTC),
                policy=passwords.LoginPolicy(),
            )
    assert sign_in(world.app.test_client(), "tess@example.org", temporary).status_code == 302
    # anyone's ?temporary= is no password box of ours
    forged = admin.get("/admin?temporary=tess@example.org:+Call-0800-FAKE-HELPDESK")
    page = forged.get_data(as_text=True)
    assert "FAKE-HELPDESK" not in page
    assert 'id="temporary-password"' not in page
    # no temporary password in the admin log either
    assert temporary not in repr([(c.before, c.after, c.subject) for c in _log(world)])


# corrections are e-signed


def _correct(world: World, who: str, coi: str, **body: Any) -> Any:
    return world.post(
        who, f"/api/v1/orders/{coi}/corrections", {"sequence": 2, "reason": "wrong bench", **body}
    )


def _events(world: World, coi: str) -> list[dict[str, Any]]:
    return world.get("care", f"/api/v1/orders/{coi}/events").json["events"]  # type: ignore[no-any-return]


def test_a_correction_without_its_signature_is_refused_and_nothing_is_recorded(
    world: World,
) -> None:
    bag = world.bag_at("cryopreserve", "PAT-UNSIGNED")
    world.browser("qa")
    world.browser("admin2")  # another user, with a password of their own
    before = len(_events(world, bag["coi"]))
    for body, status, code in (
        ({}, 422, "signature_required"),
        ({"signature": None}, 422, "signature_required"),
        ({"signature": {}}, 422, "signature_required"),
        ({"signature": {"password": ""}}, 422, "signature_required"),
        ({"signature": {"password": "not the password"}}, 403, "signature_invalid"),
        ({"signature": {"password": "x" * 257}}, 422, "validation_error"),
        ({"signature": {"password": "a\x00b"}}, 422, "validation_error"),
        ({"signature": "correct horse battery"}, 422, "validation_error"),
    ):
        refused = _correct(world, "qa", bag["coi"], **body)
        assert (refused.status_code, refused.json["code"]) == (status, code), body
    assert len(_events(world, bag["coi"])) == before
    with _session(world) as uow:
        assert uow.session.exec(select(Signature)).all() == []


def test_a_signed_correction_is_bound_to_the_correction_and_verifies(world: World) -> None:
    bag = world.bag_at("cryopreserve", "PAT-SIGNEDFIX")
    world.browser("qa")
    world.browser("admin")
    by_qa = _correct(world, "qa", bag["coi"], signature={"password": PASSWORD})
    assert by_qa.status_code == 201, by_qa.json
    by_admin = _correct(world, "admin", bag["coi"], signature={"password": PASSWORD})
    assert by_admin.status_code == 201, by_admin.json
    events = {e["sequence"]: e for e in _events(world, bag["coi"])}
    signed = events[by_qa.json["sequence"]]
    assert [(s["printed_name"], s["meaning"]) for s in signed["signatures"]] == [("qa", "approved")]
    assert signed["signature"] == "signed"
    admin_signed = events[by_admin.json["sequence"]]
    assert [s["meaning"] for s in admin_signed["signatures"]] == ["performed"]
    with _session(world) as uow:
        rows = uow.session.exec(select(Signature, CustodyEvent).join(CustodyEvent)).all()
        assert {(s.signer_email, e.action) for s, e in rows} == {
            ("qa@example.org", "correct"),
            ("admin@example.org", "correct"),
        }
        assert all(s.record_hash == e.hash for s, e in rows)
        report = audit.verify(uow.session)
    assert report.ok, report.finding
    assert report.signatures == 2


def test_the_correction_forms_ask_for_the_password(world: World) -> None:
    bag = world.bag_at("cryopreserve", "PAT-FORMFIX")
    qa = world.browser("qa")
    order = f"/orders/{bag['coi']}"
    assert 'name="password" type="password"' in qa.get(order).get_data(as_text=True)
    unsigned = _post(qa, f"{order}/corrections", {"sequence": "2", "reason": "wrong bench"}, order)
    assert unsigned.status_code == 303
    assert "a correction is signed" in qa.get(order).get_data(as_text=True)
    wrong = {"sequence": "2", "reason": "wrong bench", "password": "not my password"}
    _post(qa, f"{order}/corrections", wrong, order)
    assert [e["action"] for e in _events(world, bag["coi"])].count("correct") == 0
    right = {**wrong, "password": PASSWORD}
    assert _post(qa, f"{order}/corrections", right, order).status_code == 303
    assert "recorded and signed" in qa.get(order).get_data(as_text=True)
    (correction,) = [e for e in _events(world, bag["coi"]) if e["action"] == "correct"]
    assert [s["meaning"] for s in correction["signatures"]] == ["approved"]


# the admin log through the API and the pages


def test_policy_and_token_changes_through_the_api_and_pages_are_logged(world: World) -> None:
    changed = world.post(
        "qa",  # QA of MFG-1, which owns axi-cel's settings: signed, with a reason
        "/api/v1/sla-policies/axi-cel",
        {
            "limits_hours": {"collection_to_pickup": 30},
            "reason": "courier contract renewed",
            "signature": world.signature("qa"),
        },
    )
    assert changed.status_code == 201, changed.json
    (policy,) = _log(world, "turnaround policy changed")
    assert (policy.actor, policy.subject, policy.site_id) == ("qa@example.org", "axi-cel", None)
    assert policy.before is not None
    assert policy.after is not None
    assert policy.before["version"] + 1 == policy.after["version"]
    assert policy.after["limits_hours"]["collection_to_pickup"] == 30

    care = world.browser("care")
    made = _post(care, "/account/tokens", {"name": "scanner-7"}, page="/account")
    secret = re.search(r'id="new-token">([^<]+)<', made.get_data(as_text=True))
    assert secret
    (created,) = _log(world, "token created")
    assert created.actor == "care@example.org"
    assert created.after is not None
    assert created.after["name"] == "scanner-7"
    tokens = world.get("care", "/api/v1/tokens").json["tokens"]
    (mine,) = [t for t in tokens if t["name"] == "scanner-7"]
    assert (
        world.client.delete(
            f"/api/v1/tokens/{mine['id']}", headers=world.headers("care")
        ).status_code
        == 200
    )
    (revoked,) = _log(world, "token revoked")
    assert (revoked.before, revoked.after) == ({"revoked": False}, {"revoked": True})
    logged = repr([(c.subject, c.before, c.after) for c in _log(world)])
    assert secret.group(1) not in logged
    assert world.tokens["care"] not in logged


def test_no_temporary_password_reaches_the_servers_access_log(tmp_path: Path) -> None:
    """A real server (werkzeug's, as `vein2vein run` serves it) and its access log: every
    request line is there, no temporary password is."""

    def cli(*args: str, stdin: str | None = None) -> None:
        done = subprocess.run(
            [str(BIN / "vein2vein"), *args],
            cwd=tmp_path,
            env=clean_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    cli("db", "upgrade")
    cli("site", "add", "TRT-9", "--kind", "treatment", "--name", "T")
    cli(
        "user",
        "add",
        "it@example.org",
        "--role",
        "admin",
        "--site",
        "TRT-9",
        "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )
    port, log = free_port(), tmp_path / "web.log"
    shown = []
    with running(
        [str(BIN / "vein2vein"), "run", "--port", str(port)],
        cwd=tmp_path,
        env={**clean_env(), "LOG_REQUESTS": "1"},  # the access log is on, as it is to be read
        log=log,
    ) as web:
        wait_for_log(log, "Running on", web)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            def form(path: str, page: str, **data: str) -> httpx.Response:
                token = re.search(
                    r'name="csrf_token" type="hidden" value="([^"]+)"', http.get(page).text
                )
                assert token
                return http.post(path, data={**data, "csrf_token": token.group(1)})

            assert (
                form("/login", "/login", email="it@example.org", password=PASSWORD).status_code
                == 302
            )
            added = form("/admin/users", "/admin", email="ward@example.org", name="W", role="qa")
            assert added.headers["location"] == "/admin"
            shown.append(_shown(http.get("/admin").text))
            user_id = re.search(r'/admin/users/(\d+)"', http.get("/admin").text)
            assert user_id
            reset = form(f"/admin/users/{user_id.group(1)}", "/admin", change="password")
            assert reset.headers["location"] == "/admin"
            shown.append(_shown(http.get("/admin").text))
    access = log.read_text()
    assert "POST /admin/users HTTP/1.1" in access  # the access log is what was read
    assert "GET /admin HTTP/1.1" in access
    assert "temporary" not in access
    for password in shown:
        assert password not in access


def _shown(page: str) -> str:
    found = re.search(r'id="temporary-password">([^<]+)<', page)
    assert found, "no temporary password shown"
    return found.group(1)


@pytest.mark.parametrize(
    ("address", "client"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # an IPv4 client on a dual-stack socket
        (None, "unknown"),
        ("", "unknown"),
        ("not an address", "not an address"),
    ],
)
def test_failures_count_per_client_address(address: str | None, client: str) -> None:
    assert passwords.client_key(address) == client


def test_a_review_closed_with_a_correction_signs_it(world: World) -> None:
    order = world.enroll("PAT-REVIEWFIX")
    bag = world.collect(order["coi"])
    now = dt.datetime.now(dt.UTC)
    assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
    late = world.scan(
        "aph",
        bag["barcode"],
        "cryopreserve",
        "APH-1",
        occurred_at=(now - dt.timedelta(hours=1)).isoformat(),
    )
    assert late.json["needs_review"] is True
    qa = world.browser("qa")
    (item,) = re.findall(r"/review/custody_event/(\d+)", qa.get("/review").get_data(as_text=True))
    form = {"outcome": "corrected", "note": "the scanner's clock was an hour out"}
    for password in ("", "not the password"):
        _post(qa, f"/review/custody_event/{item}", {**form, "password": password}, "/review")
        assert f"/review/custody_event/{item}" in qa.get("/review").get_data(as_text=True)
    _post(qa, f"/review/custody_event/{item}", {**form, "password": PASSWORD}, "/review")
    assert f"/review/custody_event/{item}" not in qa.get("/review").get_data(as_text=True)
    (correction,) = [e for e in _events(world, order["coi"]) if e["action"] == "correct"]
    assert [(s["printed_name"], s["meaning"]) for s in correction["signatures"]] == [
        ("qa", "approved")
    ]
