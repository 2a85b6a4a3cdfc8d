"""Alert triage: a hold is critical and stays pinned until someone of the site acknowledges it
(who and when, kept); a double scan is progress and counts for nothing in the navigation; a
wrong patient is critical wherever it is read; each alert says what to do and names the
patient only for those who may see the reference; progress can be folded into one daily
digest that the outbox delivers; QA closes related review items with one note and one
signature, all or none."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from pathlib import Path
from typing import Any

from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import (
    AlertAcknowledgement,
    Notification,
    NotificationRead,
    RefusedScan,
    Review,
    Subscription,
    User,
)
from services.domain.local_time import next_local_time
from services.domain.notifications import NotificationState
from services.operations import deadlines, sites
from services.operations import notifications as outbox
from tests.world import PASSWORD, World, csrf_token
from workers.tasks import deliver_now


def _post(browser: Any, path: str, form: dict[str, Any]) -> Any:
    return browser.post(path, data={**form, "csrf_token": csrf_token(browser, "/login")})


def _rows(world: World, model: Any) -> list[Any]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return list(uow.session.exec(select(model)).all())


def hold_a_bag(world: World, patient_ref: str) -> dict[str, Any]:
    """A bag on its way whose logger read -100 °C: on hold, news for its order's sites."""
    bag = world.bag_at("pack", patient_ref)
    shipment = world.ship([bag["din"]])
    hot = world.post(
        "aph",
        f"/api/v1/shipments/{shipment['barcode']}/readings",
        {
            "device_id": "TAG-HOT",
            "readings": [{"at": dt.datetime.now(dt.UTC).isoformat(), "value": -100, "unit": "C"}],
        },
    )
    assert hot.json["held"] == [bag["din"]], hot.json
    return bag


def _count(page: str) -> int:
    found = re.search(r'id="unread-count">(\d+)', page)
    return int(found.group(1)) if found else 0


def test_a_hold_is_pinned_until_acknowledged_and_progress_is_no_alarm(world: World) -> None:
    care = world.browser("care")
    progress_only = world.bag_at("cryopreserve", "PAT-QUIET")
    # a double scan: refused, kept, worth nothing in the navigation
    assert world.scan("aph", progress_only["barcode"], "cryopreserve", "APH-1").status_code == 409
    assert _count(care.get("/alerts").get_data(as_text=True)) == 0
    bag = hold_a_bag(world, "PAT-HOT")
    page = care.get("/alerts").get_data(as_text=True)
    assert _count(page) == 1
    pinned = page[page.index('id="pinned"') : page.index('id="alerts-title"')]
    assert f"ON HOLD: bag {bag['din']} of patient PAT-HOT (order {bag['coi']})" in pinned
    assert "Do not use" in pinned
    assert "PAT-QUIET" not in pinned  # progress and a double scan stay below, folded
    progress = page[page.index('id="progress"') :]
    assert "Refused cryopreserve scan (illegal_transition)" in progress
    (held,) = [n for n in _rows(world, Notification) if n.kind == "hold" and n.target == "TRT-1"]
    # marking everything read does not unpin it: only an acknowledgement does
    _post(care, "/alerts/read", {})
    assert 'id="pinned"' in care.get("/alerts").get_data(as_text=True)
    done = _post(care, f"/alerts/{held.id}/acknowledge", {})
    assert done.status_code == 303
    after = care.get("/alerts").get_data(as_text=True)
    assert 'id="pinned"' not in after
    assert "acknowledged by care@example.org" in after
    assert _count(after) == 0
    (ack,) = _rows(world, AlertAcknowledgement)
    care_user = next(u for u in _rows(world, User) if u.email == "care@example.org")
    assert (ack.notification_id, ack.user_id) == (held.id, care_user.id)
    # once: a second acknowledgement (another colleague) finds the first
    _post(world.browser("admin"), f"/alerts/{held.id}/acknowledge", {})
    assert [(a.user_id, a.acknowledged_at) for a in _rows(world, AlertAcknowledgement)] == [
        (ack.user_id, ack.acknowledged_at)
    ]
    # progress is read, not acknowledged; another site's alert is not there at all
    quiet = next(n for n in _rows(world, Notification) if n.kind == "collect")
    refused = care.get(
        _post(care, f"/alerts/{quiet.id}/acknowledge", {}).headers["Location"]
    ).get_data(as_text=True)
    assert "only a critical alert is acknowledged" in refused
    stranger = world.browser("care2")
    other = _post(stranger, f"/alerts/{held.id}/acknowledge", {})
    assert "no alert" in stranger.get(other.headers["Location"]).get_data(as_text=True)
    assert len(_rows(world, AlertAcknowledgement)) == 1


def test_each_alert_says_what_to_do_naming_the_patient_only_where_it_may(world: World) -> None:
    bag = world.bag_at("pickup", "PAT-NAMED")  # with the courier
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        deadlines.sweep(uow.session, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
        uow.commit()
    # late past escalation reaches the ward (which sees its patient) and the courier holding
    # the bag (which sees only the COI)
    ward = world.browser("care").get("/alerts").get_data(as_text=True)
    pinned = ward[ward.index('id="pinned"') :]
    assert (
        f"LATE PAST ESCALATION: the pickup to delivery of bag {bag['din']} of patient PAT-NAMED"
        in pinned
    )
    assert "Call COUR-1, which holds" in pinned
    van = world.browser("courier").get("/alerts").get_data(as_text=True)
    assert f"of bag {bag['din']} of order {bag['coi']}" in van[van.index('id="pinned"') :]
    assert "PAT-NAMED" not in van
    feed = world.get("care", "/api/v1/notifications").json["items"]
    kinds = {(i["kind"], i["severity"]) for i in feed}
    assert {("deadline_escalated", "critical"), ("deadline_late", "warning")} <= kinds
    assert ("collect", "information") in kinds


def test_a_wrong_patient_is_critical_and_a_double_scan_is_not(world: World) -> None:
    bag = world.bag_at("cryopreserve", "PAT-ONE")
    other = world.bag_at("cryopreserve", "PAT-TWO")
    world.label("aph", bag["din"])
    wrong = world.scan(
        "aph", f"{bag['barcode']}&/{other['coi']}", "verify_label", "APH-1", label=False
    )
    assert wrong.json["code"] == "coi_mismatch"
    assert world.scan("aph", bag["barcode"], "cryopreserve", "APH-1").status_code == 409
    queue = world.browser("qa").get("/review").get_data(as_text=True)
    mismatch = queue.index("(coi_mismatch)")
    double = queue.index("(illegal_transition)")
    assert mismatch < double  # critical first
    assert re.search(
        r"severity-critical\">Critical</span> Refused verify label \(coi_mismatch", queue
    )
    assert re.search(r"severity-information\">Progress</span> Refused cryopreserve", queue)
    # at the station, the same refusal stops the person in other words
    station = world.browser("aph")
    answer = station.post(
        "/scan",
        data={
            "barcode": f"{bag['barcode']}&/{other['coi']}",
            "action": "verify_label",
            "site": "APH-1",
            "csrf_token": csrf_token(station, "/scan"),
        },
        headers={"Accept": "application/json"},
    ).json
    assert (answer["headline"], answer["severity"]) == ("STOP: WRONG PATIENT", "critical")
    # pinned for the roles it is for, and acknowledged only by them: not by the site's admin
    alarm = next(
        n
        for n in _rows(world, Notification)
        if n.kind == "refused_scan" and n.target == "TRT-1" and "coi_mismatch" in str(n.payload)
    )
    admin = world.browser("admin")
    assert f'id="alert-{alarm.id}"' not in _pinned(admin.get("/alerts").get_data(as_text=True))
    refused = _post(admin, f"/alerts/{alarm.id}/acknowledge", {})
    assert "one of them acknowledges it" in admin.get(refused.headers["Location"]).get_data(
        as_text=True
    )
    assert not _rows(world, AlertAcknowledgement)
    care = world.browser("care")
    assert f'id="alert-{alarm.id}"' in _pinned(care.get("/alerts").get_data(as_text=True))
    _post(care, f"/alerts/{alarm.id}/acknowledge", {})
    assert alarm.id in [a.notification_id for a in _rows(world, AlertAcknowledgement)]


def _pinned(page: str) -> str:
    return (
        page[page.index('id="pinned"') : page.index('id="alerts-title"')]
        if 'id="pinned"' in page
        else ""
    )


def test_progress_is_folded_into_a_daily_digest_that_the_outbox_delivers(
    world: World, tmp_path: Path
) -> None:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        sites.change_site(
            uow.session,
            actor=None,
            code="TRT-1",
            time_zone="America/New_York",
            now=dt.datetime.now(dt.UTC),
        )
        uow.commit()
    care = world.browser("care")
    subscribed = _post(
        care,
        "/subscriptions",
        {"scope": "site", "channel": "email", "target": "ward@example.org", "digest": "daily"},
    )
    assert subscribed.status_code == 200
    assert "once a day, in a digest" in subscribed.get_data(as_text=True)
    bag = world.bag_at("cryopreserve", "PAT-DIGEST")  # progress: held
    hold_a_bag(world, "PAT-URGENT")  # critical: at once
    (subscription,) = [s for s in _rows(world, Subscription) if s.target == "ward@example.org"]
    assert subscription.digest is True
    mine = [n for n in _rows(world, Notification) if n.subscription_id == subscription.id]
    held = [n for n in mine if n.state is NotificationState.HELD]
    assert {n.kind for n in held} >= {"enroll", "collect", "verify_label", "cryopreserve"}
    assert all(n.kind != "hold" for n in held)
    assert [n.state for n in mine if n.kind == "hold"] == [NotificationState.PENDING]

    # until the next 07:00 on New York's clock nothing is folded; then one digest, once
    seven = next_local_time(max(n.created_at for n in held), "America/New_York", hour=7)
    morning = seven + dt.timedelta(hours=1)
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        assert outbox.fold_digests(uow.session, now=seven - dt.timedelta(minutes=1), hour=7) == []
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        (digest_id,) = outbox.fold_digests(uow.session, now=morning, hour=7)
        assert outbox.fold_digests(uow.session, now=morning, hour=7) == []
        uow.commit()
    rows = {n.id: n for n in _rows(world, Notification)}
    digest = rows[digest_id]
    assert (digest.kind, digest.state, digest.subscription_id) == (
        "digest",
        NotificationState.PENDING,
        subscription.id,
    )
    assert digest.payload["count"] == len(held)
    assert any(item["din"] == bag["din"] for item in digest.payload["items"])
    assert all(
        rows[n.id].state is NotificationState.DELIVERED and rows[n.id].digest_id == digest_id
        for n in held
    )
    # the outbox delivers it like any other: one e-mail listing the day's progress
    state = world.app.extensions["vein2vein"]
    with UnitOfWork(state.db.session_factory) as uow:
        claims = outbox.claim_due(
            uow.session, now=morning, lease=dt.timedelta(seconds=60), limit=100
        )
        uow.commit()
    results = {i: deliver_now(i, token, state.db, state.settings) for i, token in claims}
    assert results[digest_id] == "delivered"
    mail = state.settings.mail_folder
    letters = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in Path(mail).glob("*.eml")
    ]
    (letter,) = [m for m in letters if m["X-Vein2vein-Notification"] == str(digest_id)]
    assert letter["Subject"].startswith(f"[vein2vein] Daily digest: {len(held)} progress")
    body = letter.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"Bag {bag['din']} of {bag['coi']} cryopreserved at APH-1" in body


def test_qa_closes_related_items_with_one_note_and_one_signature(world: World) -> None:
    bag = world.bag_at("receive", "PAT-RESCAN")
    for _ in range(3):
        assert world.scan("op", bag["barcode"], "receive", "MFG-1").status_code == 409
    elsewhere = world.bag_at("pack", "PAT-ELSEWHERE", manufacturing="MFG-2")
    assert world.scan("op2", elsewhere["barcode"], "receive", "MFG-2").status_code == 409
    qa = world.browser("qa")
    queue = qa.get("/review").get_data(as_text=True)
    ticks = re.findall(r'name="items" value="(refused_scan:\d+)"', queue)
    assert len(ticks) == 3  # QA of MFG-1 sees its own order's three, not MFG-2's
    theirs = next(r.id for r in _rows(world, RefusedScan) if r.site_code == "MFG-2")
    form = {"note": "the receiver rescanned received bags", "email": "qa@example.org"}
    # a wrong password closes nothing and counts
    wrong = _post(qa, "/review/many", {**form, "items": ticks, "password": "not it"})
    assert "Not signed" in qa.get(wrong.headers["Location"]).get_data(as_text=True)
    assert _rows(world, Review) == []
    # an item QA may not see spoils the lot: nothing is closed, nothing of it is told
    spoiled = _post(
        qa,
        "/review/many",
        {**form, "items": [*ticks, f"refused_scan:{theirs}"], "password": PASSWORD},
    )
    assert "Not closed" in qa.get(spoiled.headers["Location"]).get_data(as_text=True)
    assert _rows(world, Review) == []
    closed = _post(qa, "/review/many", {**form, "items": ticks, "password": PASSWORD})
    page = qa.get(closed.headers["Location"]).get_data(as_text=True)
    assert "3 item(s) closed with one note" in page
    reviews = _rows(world, Review)
    assert len(reviews) == 3
    assert {r.note for r in reviews} == {form["note"]}
    assert len({r.hash for r in reviews}) == 3  # each bound to its own record
    assert len({r.record_hash for r in reviews}) == 3
    # once: the same items again are refused, nothing doubled
    again = _post(qa, "/review/many", {**form, "items": ticks, "password": PASSWORD})
    assert "reviewed already" in qa.get(again.headers["Location"]).get_data(as_text=True)
    assert len(_rows(world, Review)) == 3
    for bad in (["custody_event:x"], ["signature:1"], [], [f"refused_scan:{2**40}"]):
        refused = _post(qa, "/review/many", {**form, "items": bad, "password": PASSWORD})
        assert refused.status_code == 303
        assert "Not closed" in qa.get(refused.headers["Location"]).get_data(as_text=True), bad
    too_many = [f"refused_scan:{n}" for n in range(1, 60)]
    refused = _post(qa, "/review/many", {**form, "items": too_many, "password": PASSWORD})
    assert "at most 50" in qa.get(refused.headers["Location"]).get_data(as_text=True)


def test_the_notification_read_rows_are_the_readers(world: World) -> None:
    """Acknowledging marks read for the one who acknowledged, not for the site."""
    hold_a_bag(world, "PAT-READS")
    care = world.browser("care")
    held = next(n for n in _rows(world, Notification) if n.kind == "hold" and n.target == "TRT-1")
    _post(care, f"/alerts/{held.id}/acknowledge", {})
    readers = {r.user_id for r in _rows(world, NotificationRead) if r.notification_id == held.id}
    care_user = next(u for u in _rows(world, User) if u.email == "care@example.org")
    assert readers == {care_user.id}
