"""The rules behind the new pages, through the pages themselves (a signed-in test client): an
admin manages their own site only and every change is logged; a temporary password is changed
first; signing out everywhere ends other sessions; a reprint needs its reason; a QA review is
bound to what it reviewed."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import AdminChange, LabelPrint, Review, User
from tests.integration.test_audit import _verify, tamper
from tests.world import PASSWORD, World, csrf_token, sign_in


def _post(browser: Any, path: str, form: dict[str, str], page: str = "/") -> Any:
    return browser.post(path, data={**form, "csrf_token": csrf_token(browser, page)})


def _temporary_password(browser: Any) -> str:
    page = browser.get("/admin").get_data(as_text=True)
    found = re.search(r'id="temporary-password">([^<]+)<', page)
    assert found, "no temporary password on the page"
    return found.group(1)


def _rows(world: World, model: Any) -> list[Any]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return list(uow.session.exec(select(model)).all())


def test_an_admin_manages_their_site_and_every_change_is_logged(world: World) -> None:
    admin = world.browser("admin")
    added = _post(
        admin, "/admin/users", {"email": "nia@example.org", "name": "Nia", "role": "care_team"}
    )
    assert added.status_code == 303
    assert added.headers["Location"] == "/admin"  # the password is not in the URL ...
    assert len(_temporary_password(admin)) == 16  # ... but on the page, from the session
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        nia = uow.session.exec(select(User).where(User.email == "nia@example.org")).one()
        other = uow.session.exec(select(User).where(User.email == "care2@example.org")).one()
    assert nia.must_change_password is True
    assert nia.role.value == "care_team"
    # another site's user is not this admin's to touch
    refused = _post(admin, f"/admin/users/{other.id}", {"change": "deactivate"})
    assert refused.status_code == 303
    assert _rows(world, User)[[u.id for u in _rows(world, User)].index(other.id)].active is True
    _post(admin, f"/admin/users/{nia.id}", {"change": "role", "role": "qa"})
    log = [(c.action, c.subject, c.actor) for c in _rows(world, AdminChange)]
    assert ("user added", "nia@example.org", "admin@example.org") in log
    assert ("role changed", "nia@example.org", "admin@example.org") in log
    (role_change,) = [c for c in _rows(world, AdminChange) if c.action == "role changed"]
    assert (role_change.before["role"], role_change.after["role"]) == ("care_team", "qa")
    # only admins read the log
    care = world.browser("care")
    assert care.get("/admin").status_code == 403


def test_a_temporary_password_is_changed_before_anything_else(world: World) -> None:
    admin = world.browser("admin")
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        care = uow.session.exec(select(User).where(User.email == "care@example.org")).one()
    reset = _post(admin, f"/admin/users/{care.id}", {"change": "password"})
    assert reset.headers["Location"] == "/admin"
    temporary = _temporary_password(admin)
    client = world.app.test_client()
    assert (
        sign_in(client, "care@example.org", temporary)
        .headers["Location"]
        .endswith("/account/password")
    )
    assert client.get("/").headers["Location"].endswith("/account/password")
    assert client.get("/scan").status_code == 302
    changed = _post(
        client,
        "/account/password",
        {
            "current_password": temporary,
            "new_password": "my own long phrase",
            "confirm_password": "my own long phrase",
        },
        page="/account/password",
    )
    assert changed.status_code == 303
    assert client.get("/").status_code == 200


def test_signing_out_everywhere_ends_the_other_sessions(world: World) -> None:
    first = world.browser("care")
    second = world.app.test_client()
    assert sign_in(second, "care@example.org", PASSWORD).status_code == 302
    assert second.get("/").status_code == 200
    assert _post(first, "/account/sign-out-everywhere", {}).status_code == 303
    assert first.get("/").status_code == 200  # this one goes on
    assert second.get("/").status_code == 302  # the other is signed out


def test_a_reprint_needs_its_reason_and_every_print_is_on_record(world: World) -> None:
    bag = world.bag_at("collected", "PAT-PRINT")
    aph = world.browser("aph")
    assert _post(aph, f"/units/{bag['din']}/print", {"target": "pdf"}).status_code == 200
    refused = _post(aph, f"/units/{bag['din']}/print", {"target": "pdf"})
    assert refused.status_code == 303  # back to the order, with the refusal
    assert (
        _post(aph, f"/units/{bag['din']}/print", {"target": "pdf", "reason": "torn"}).status_code
        == 200
    )
    prints = [(p.copy_number, p.reason) for p in _rows(world, LabelPrint)]
    assert prints == [(1, None), (2, "torn")]
    # the courier may look at a bag but not print its label
    courier = world.browser("courier")
    assert (
        _post(courier, f"/units/{bag['din']}/print", {"target": "pdf", "reason": "x"}).status_code
        == 303
    )
    assert len(_rows(world, LabelPrint)) == 2


def test_a_review_is_bound_to_what_it_reviewed(world: World) -> None:
    bag = world.bag_at("receive", "PAT-REVIEWED")
    assert world.scan("op", bag["barcode"], "verify_label", "MFG-1").status_code == 409
    qa = world.browser("qa")
    (item,) = re.findall(r"/review/refused_scan/(\d+)", qa.get("/review").get_data(as_text=True))
    wrong = _post(
        qa,
        f"/review/refused_scan/{item}",
        {"outcome": "no_action", "note": "checked", "email": "qa@example.org", "password": "no"},
    )
    assert wrong.status_code == 303
    assert _rows(world, Review) == []
    _post(
        qa,
        f"/review/refused_scan/{item}",
        {
            "outcome": "no_action",
            "note": "checked",
            "email": "qa@example.org",
            "password": PASSWORD,
        },
    )
    (review,) = _rows(world, Review)
    assert (review.outcome, review.reviewer_email) == ("no_action", "qa@example.org")
    assert _verify(world).ok
    tamper(world, f"UPDATE reviews SET note = 'nothing to see' WHERE id = {review.id}")
    finding = _verify(world).finding
    assert finding is not None
    assert (finding.table, finding.id) == ("reviews", review.id)
