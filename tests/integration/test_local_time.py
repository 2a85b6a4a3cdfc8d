"""Local time: each site reads times on its own clock, with the offset said; a timeline shows
each event on the clock of the site where it happened (and says whose), and on the reader's
own beside it; stored times and the API stay UTC, ISO 8601 with the offset."""

from __future__ import annotations

import datetime as dt
import html
import re

from services.db import UnitOfWork
from services.operations import sites
from tests.world import World

UTC = dt.UTC
# the United Kingdom's clocks go forward at 01:00 UTC on Sunday 29 March 2026 (GMT -> BST);
# New York's went forward on 8 March, so there the same night is one plain hour
BEFORE = dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 00:30 GMT, 20:30 EDT the day before
AFTER = dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 02:30 BST, 21:30 EDT the day before


def set_zone(world: World, code: str, zone: str) -> None:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        sites.change_site(
            uow.session, actor=None, code=code, time_zone=zone, now=dt.datetime.now(UTC)
        )
        uow.commit()


def _row(page: str, sequence: int) -> str:
    match = re.search(rf'<tr id="event-{sequence}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no event #{sequence} on the page"
    return html.unescape(re.sub(r"\s+", " ", match.group(1)))


def _cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row)]


def test_an_event_reads_on_each_sites_clock_across_a_daylight_saving_change(
    world: World,
) -> None:
    set_zone(world, "APH-1", "Europe/London")
    set_zone(world, "TRT-1", "America/New_York")
    coi = world.enroll("PAT-CLOCKS")["coi"]
    bag = world.collect(coi, collected_at=(BEFORE - dt.timedelta(hours=1)).isoformat())
    world.label("aph", bag["din"])
    assert (
        world.scan(
            "aph", bag["label_2d"], "verify_label", "APH-1", occurred_at=BEFORE.isoformat()
        ).status_code
        == 201
    )
    assert (
        world.scan(
            "aph", bag["barcode"], "cryopreserve", "APH-1", occurred_at=AFTER.isoformat()
        ).status_code
        == 201
    )
    events = world.get("care", f"/api/v1/orders/{coi}/events").json["events"]
    checked, frozen = (
        next(e for e in events if e["action"] == a) for a in ("verify_label", "cryopreserve")
    )
    # stored and exchanged in UTC, with the offset
    assert (checked["occurred_at"], frozen["occurred_at"]) == (
        "2026-03-29T00:30:00Z",
        "2026-03-29T01:30:00Z",
    )

    # read in New York (the treatment site): each event on London's clock, where it happened,
    # which jumps from GMT to BST between them, and on New York's, where an hour passes
    care = world.browser("care").get(f"/orders/{coi}").get_data(as_text=True)
    before = _row(care, checked["sequence"])
    after = _row(care, frozen["sequence"])
    assert "2026-03-29 00:30:00 GMT (UTC) (APH-1 time, Europe/London)" in _cells(before)[1]
    assert "2026-03-28 20:30:00 EDT (UTC-04:00) here" in _cells(before)[1]
    assert "2026-03-29 02:30:00 BST (UTC+01:00) (APH-1 time, Europe/London)" in _cells(after)[1]
    assert "2026-03-28 21:30:00 EDT (UTC-04:00) here" in _cells(after)[1]
    # the same instants underneath, for machines
    assert 'datetime="2026-03-29T00:30:00+00:00"' in before
    assert 'datetime="2026-03-29T01:30:00+00:00"' in after
    assert "America/New_York" in care  # the page says whose clock "here" is

    # read in London (where it happened): its own clock only, no second reading
    aph = world.browser("aph").get(f"/orders/{coi}").get_data(as_text=True)
    assert (
        "2026-03-29 02:30:00 BST (UTC+01:00) (APH-1 time, Europe/London)"
        in _cells(_row(aph, frozen["sequence"]))[1]
    )
    assert " here" not in _cells(_row(aph, frozen["sequence"]))[1]


def test_a_sites_zone_is_an_iana_name_checked_when_set(world: World) -> None:
    admin = world.browser("admin")
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', admin.get("/login").get_data(True)
    )
    assert token
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "", "x" * 80):
        response = admin.post(
            "/admin/sites/TRT-1",
            data={"name": "First Treatment", "time_zone": bad, "csrf_token": token.group(1)},
        )
        assert response.status_code == 303
        page = admin.get(response.headers["Location"]).get_data(as_text=True)
        assert "Not changed:" in page, bad
        assert "Traceback" not in page
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        assert sites.zones_by_code(uow.session)["TRT-1"] == "UTC"


def test_every_page_time_is_on_the_viewers_clock_with_its_offset(world: World) -> None:
    """A time on a page of a New York site reads on New York's clock (in winter, EST), with
    the offset; the API keeps UTC."""
    set_zone(world, "TRT-1", "America/New_York")
    coi = world.enroll("PAT-WINTER")["coi"]
    care = world.browser("care")
    home = care.get("/").get_data(as_text=True)
    created = world.get("care", f"/api/v1/orders/{coi}").json["created_at"]
    moment = dt.datetime.fromisoformat(created)
    shown = moment.astimezone(dt.timezone(dt.timedelta(hours=-5))).strftime("%Y-%m-%d %H:%M")
    assert f"{shown} EST (UTC-05:00)" in html.unescape(home)
    assert created.endswith(("Z", "+00:00"))
