"""A long order's timeline page: the latest events, every earlier one a person must act on, and
the whole record one link away."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import Unit
from services.domain.custody import UnitState
from services.operations import admin
from services.operations.orders import lock_order
from services.operations.record import append_event
from services.web.pages.work import TIMELINE_LATEST
from tests.world import PASSWORD, World


def shown(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)"', page)]


def sequences_of(world: World, coi: str) -> list[int]:
    return [e["sequence"] for e in world.get("op", f"/api/v1/orders/{coi}/events").json["events"]]


def legacy_receipt(world: World, din: str) -> None:
    """The bag's receipt as it was recorded before signatures came with the act (migration
    0012): its signing not fixed on it, so the site's rule asks for a signature afterwards."""
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        session = uow.session
        unit = session.exec(select(Unit).where(Unit.din == din)).one()
        order = lock_order(session, unit.order_id)
        site = admin.site_by_code(session, "MFG-1")
        now = dt.datetime.now(dt.UTC)
        unit.state = UnitState.RECEIVED
        session.add(unit)
        append_event(
            session,
            order=order,
            unit=unit,
            action="receive",
            from_state=UnitState.DELIVERED,
            site=site,
            actor=admin.actor_by_email(session, "op@example.org"),
            occurred_at=now,
            recorded_at=now,
            signing=None,  # type: ignore[arg-type]
        )
        uow.commit()


def long_order(world: World) -> tuple[dict[str, Any], int, int]:
    """An order whose receipt awaits its signature and which has a scan flagged for review
    early on, then more than a page of later events: the bag, the receipt's sequence and the
    flagged event's sequence."""
    bag = world.bag_at("deliver", "PAT-LONG")
    coi = bag["coi"]
    legacy_receipt(world, bag["din"])
    early = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    extra = world.collect(coi)
    flagged = world.scan(
        "aph", extra["barcode"], "verify_label", "APH-1", occurred_at=early.isoformat()
    )
    assert flagged.status_code == 201, flagged.json
    missing = TIMELINE_LATEST + 12 - len(sequences_of(world, coi))
    for _ in range((missing + 1) // 2):  # a collection and a scan: two events
        more = world.collect(coi)
        assert world.scan("aph", more["barcode"], "verify_label", "APH-1").status_code == 201
    events = world.get("op", f"/api/v1/orders/{coi}/events").json["events"]
    (receipt,) = [e for e in events if e["action"] == "receive"]
    (review,) = [e for e in events if e["needs_review"]]
    assert receipt["signature"] == "awaiting"
    # both are older than the latest events a page shows
    assert max(receipt["sequence"], review["sequence"]) < events[-TIMELINE_LATEST]["sequence"]
    return bag, receipt["sequence"], review["sequence"]


def test_a_long_order_shows_its_latest_events_and_every_earlier_one_to_act_on(
    world: World,
) -> None:
    bag, receipt, review = long_order(world)
    sequences = sequences_of(world, bag["coi"])
    total = len(sequences)
    page = world.browser("op").get(f"/orders/{bag['coi']}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert shown(text) == sorted({receipt, review, *sequences[-TIMELINE_LATEST:]})
    assert f"Showing {TIMELINE_LATEST + 2} of {total} events" in text
    # each run of events left out is said where it is, with a link to it in the whole record
    gaps = re.findall(
        r'<tr class="gap"><td colspan="8">Events #(\d+)(?: to #(\d+))? not shown', text
    )
    runs, run = [], []
    for sequence in sequences:
        if sequence in shown(text):
            if run:
                runs.append((str(run[0]), str(run[-1]) if len(run) > 1 else ""))
            run = []
        else:
            run.append(sequence)
    assert gaps == runs, (gaps, runs)
    assert len(runs) == 3  # before the receipt, between it and the flagged one, after that
    assert f'href="/orders/{bag["coi"]}?events=all#event-{sequences[0]}">Show them<span' in text
    assert f'href="/orders/{bag["coi"]}?events=all#timeline">Show all {total} events' in text
    # the sign form of the receipt that awaits its signature is on the page
    assert f'action="/orders/{bag["coi"]}/events/{receipt}/sign"' in text


def test_show_all_gives_the_whole_record_and_a_way_back(world: World) -> None:
    bag, _, _ = long_order(world)
    sequences = sequences_of(world, bag["coi"])
    total = len(sequences)
    text = world.browser("op").get(f"/orders/{bag['coi']}?events=all").get_data(as_text=True)
    assert shown(text) == sequences
    assert f"Showing all {total} events." in text
    assert f'href="/orders/{bag["coi"]}#timeline">Show the latest only' in text


def test_a_signed_event_stays_in_sight_after_signing(world: World) -> None:
    bag, receipt, review = long_order(world)
    browser = world.browser("op")
    page = browser.get(f"/orders/{bag['coi']}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    signed = browser.post(
        f"/orders/{bag['coi']}/events/{receipt}/sign",
        data={
            "email": "op@example.org",
            "password": PASSWORD,
            "meaning": "verified",
            "csrf_token": token.group(1),
        },
    )
    assert signed.status_code == 303
    assert signed.location.endswith(f"/orders/{bag['coi']}?event={receipt}#event-{receipt}")
    after = browser.get(signed.location).get_data(as_text=True)
    assert f"Event {receipt} signed." in after
    assert receipt in shown(after)
    # without asking for it, the signed receipt leaves the page; the flagged event stays
    plain = shown(browser.get(f"/orders/{bag['coi']}").get_data(as_text=True))
    assert receipt not in plain
    assert review in plain


def test_a_short_order_shows_everything_without_a_note(world: World) -> None:
    bag = world.bag_at("pack", "PAT-SHORT")
    text = world.browser("aph").get(f"/orders/{bag['coi']}").get_data(as_text=True)
    assert shown(text) == sequences_of(world, bag["coi"])
    assert 'id="timeline-window"' not in text


def test_a_nonsense_event_parameter_is_ignored(world: World) -> None:
    bag = world.bag_at("pack", "PAT-ODD")
    for query in ("event=abc", "event=-1", "event=99999999999999999999", "events=some"):
        response = world.browser("aph").get(f"/orders/{bag['coi']}?{query}")
        assert response.status_code == 200, query
