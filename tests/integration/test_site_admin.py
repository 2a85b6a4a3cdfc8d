"""Sites from /admin: an admin adds a site (kind, FIN, time zone), changes it, and adds its
people, every change on the admin log; a role only at a site of a kind that fits it, the same
rule on the page and at the command line; another network's admin neither sees nor changes
any of it; names are shown as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import AdminChange, Site, User
from tests.conftest import TEST_SECRET
from tests.world import World, csrf_token

VEIN2VEIN = str(Path(sys.executable).with_name("vein2vein"))


def _post(browser: Any, path: str, form: dict[str, str]) -> Any:
    return browser.post(path, data={**form, "csrf_token": csrf_token(browser, "/login")})


def _follow(browser: Any, response: Any) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    return browser.get(response.headers["Location"]).get_data(as_text=True)


def _rows(world: World, model: Any) -> list[Any]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return list(uow.session.exec(select(model)).all())


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Any:
    """The `vein2vein` command, a real process, on the test's database."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(tmp_path / "var"),
        "APP_ENV": "test",
        "SECRET_KEY": TEST_SECRET,
    }
    env.pop("FLASK_APP", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VEIN2VEIN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    return run


def test_an_admin_adds_a_site_in_another_zone_and_a_user_there(world: World) -> None:
    admin = world.browser("admin")
    page = _follow(
        admin,
        _post(
            admin,
            "/admin/sites",
            {
                "code": "TRT-TOKYO",
                "kind": "treatment",
                "name": "Tokyo Haematology",
                "time_zone": "Asia/Tokyo",
            },
        ),
    )
    assert "Site TRT-TOKYO added, on Asia/Tokyo time" in page
    assert "JST (UTC+09:00)" in page  # its clock now, on the sites table
    (site,) = [s for s in _rows(world, Site) if s.code == "TRT-TOKYO"]
    trt1 = next(s for s in _rows(world, Site) if s.code == "TRT-1")
    assert (site.time_zone, site.managed_by_site_id) == ("Asia/Tokyo", trt1.id)

    # a courier has no place at a treatment site: refused in words, nothing added
    refused = _follow(
        admin,
        _post(
            admin,
            "/admin/users",
            {"email": "van@example.org", "name": "Van", "role": "courier", "site": "TRT-TOKYO"},
        ),
    )
    assert "TRT-TOKYO is a treatment site: a courier works at a courier site" in refused
    assert "van@example.org" not in {u.email for u in _rows(world, User)}
    added = _post(
        admin,
        "/admin/users",
        {"email": "aiko@example.org", "name": "Aiko", "role": "care_team", "site": "TRT-TOKYO"},
    )
    assert "temporary" not in added.headers["Location"]  # shown once, from the session
    assert 'id="temporary-password"' in _follow(admin, added)
    (aiko,) = [u for u in _rows(world, User) if u.email == "aiko@example.org"]
    assert (aiko.site_id, aiko.must_change_password) == (site.id, True)
    # changed: its name and zone, FIN-less treatment site; signing rules; couriers
    _follow(
        admin,
        _post(
            admin,
            "/admin/sites/TRT-TOKYO",
            {"name": "Tokyo Haematology Ward 3", "time_zone": "Asia/Seoul"},
        ),
    )
    _follow(
        admin,
        _post(
            admin,
            "/admin/site",
            {"site": "TRT-TOKYO", "step": "infuse", "required": "yes", "witness": "yes"},
        ),
    )
    _follow(admin, _post(admin, "/admin/contracts", {"site": "TRT-TOKYO", "courier": "COUR-1"}))
    log = [(c.action, c.subject, c.site_id) for c in _rows(world, AdminChange)]
    for action, subject in (
        ("site added", "TRT-TOKYO"),
        ("user added", "aiko@example.org"),
        ("site changed", "TRT-TOKYO"),
        ("signing rules changed", "TRT-TOKYO"),
        ("courier contracted", "TRT-TOKYO"),
    ):
        assert (action, subject, site.id) in log, action
    (changed,) = [c for c in _rows(world, AdminChange) if c.action == "site changed"]
    assert changed.before == {"name": "Tokyo Haematology", "time_zone": "Asia/Tokyo"}
    assert changed.after == {"name": "Tokyo Haematology Ward 3", "time_zone": "Asia/Seoul"}
    assert "site added" in admin.get("/admin").get_data(as_text=True)

    # the other network's admin: none of it is there to see or change
    other = world.browser("admin2")
    assert "TRT-TOKYO" not in other.get("/admin").get_data(as_text=True)
    assert "TRT-TOKYO" not in other.get("/admin?site=TRT-TOKYO").get_data(as_text=True)
    for path, form in (
        ("/admin/sites/TRT-TOKYO", {"name": "Mine now", "time_zone": "UTC"}),
        (
            "/admin/users",
            {"email": "spy@example.org", "name": "Spy", "role": "care_team", "site": "TRT-TOKYO"},
        ),
        ("/admin/site", {"site": "TRT-TOKYO", "step": "infuse", "required": "no"}),
        ("/admin/contracts", {"site": "TRT-TOKYO", "courier": "COUR-1", "change": "end"}),
    ):
        answer = _follow(other, _post(other, path, form))
        assert "no site TRT-TOKYO you administer" in answer, path
    (site,) = [s for s in _rows(world, Site) if s.code == "TRT-TOKYO"]
    assert site.name == "Tokyo Haematology Ward 3"
    assert "spy@example.org" not in {u.email for u in _rows(world, User)}


def test_a_role_fits_its_site_at_the_command_line_and_on_a_role_change(
    world: World, cli: Any
) -> None:
    refused = cli("user", "add", "van@example.org", "--role", "courier", "--site", "TRT-1")
    assert refused.returncode != 0
    assert "TRT-1 is a treatment site: a courier works at a courier site" in refused.stderr
    fits = cli("user", "add", "ward@example.org", "--role", "care_team", "--site", "TRT-1")
    assert fits.returncode == 0, fits.stderr
    admin = world.browser("admin")
    (ward,) = [u for u in _rows(world, User) if u.email == "ward@example.org"]
    page = _follow(
        admin, _post(admin, f"/admin/users/{ward.id}", {"change": "role", "role": "courier"})
    )
    assert "a courier works at a courier site" in page
    (ward,) = [u for u in _rows(world, User) if u.email == "ward@example.org"]
    assert ward.role.value == "care_team"


def test_sites_at_the_command_line_keep_their_clock(world: World, cli: Any) -> None:
    added = cli(
        "site", "add", "APH-NYC", "--kind", "collection", "--name", "Manhattan Apheresis",
        "--fin", "C7007", "--time-zone", "America/New_York",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "on America/New_York time" in added.stdout
    bad = cli("site", "add", "APH-X", "--kind", "collection", "--name", "X",
               "--fin", "C7008", "--time-zone", "Narnia/Cair_Paravel")  # fmt: skip
    assert bad.returncode != 0
    assert "is not a time zone we know" in bad.stderr
    moved = cli("site", "set", "APH-NYC", "--time-zone", "America/Chicago")
    assert moved.returncode == 0, moved.stderr
    (site,) = [s for s in _rows(world, Site) if s.code == "APH-NYC"]
    assert site.time_zone == "America/Chicago"
    log = [(c.action, c.actor) for c in _rows(world, AdminChange) if c.subject == "APH-NYC"]
    assert [action for action, _ in log] == ["site added", "site changed"]
    assert all(actor.endswith("(command line)") for _, actor in log), log  # who, at the shell


def test_the_admin_log_shows_names_as_written(world: World) -> None:
    admin = world.browser("admin")
    _post(
        admin,
        "/admin/users",
        {"email": "zoe@example.org", "name": "Zoë Ëlberg-Øster", "role": "care_team"},
    )
    page = admin.get("/admin").get_data(as_text=True)
    log = page[page.index('id="admin-log"') :]
    assert "name: Zoë Ëlberg-Øster" in log
    assert "\\u00eb" not in log
    assert "\\u00cb" not in log
    assert "active: yes" in log
