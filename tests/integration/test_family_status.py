"""The family's status page (issue 32): share links, the page through a whole loop (searched
for every identifier and person), news a clinician tells first, and the family's e-mails
through the real outbox to a real SMTP server."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from services.db import UnitOfWork
from services.db.models import (
    AdminChange,
    Notification,
    StatusDisclosure,
    StatusLink,
    StatusLinkView,
    Subscription,
)
from services.domain.local_time import next_local_time
from services.operations import family_emails, family_status, sites
from tests.integration.test_notifications import deliver_due
from tests.integration.test_vein_to_vein import STEPS, bc, status
from tests.receivers import smtp_server
from tests.world import OUTBOUND, SITES, World, csrf_token


def db(world: World) -> UnitOfWork:
    return UnitOfWork(world.app.extensions["vein2vein"].db.session_factory)


def make_link(world: World, coi: str, who: str = "care", **body: Any) -> Any:
    return world.client.post(
        f"/api/v1/orders/{coi}/status-links", json=body, headers=world.headers(who)
    )


def token_of(url: str) -> str:
    match = re.fullmatch(r"https?://[^/]+/status/([A-Za-z0-9_-]+)", url)
    assert match, url
    return match.group(1)


def page(world: World, token: str) -> Any:
    return world.app.test_client().get(f"/status/{token}")


def set_phone(world: World, phone: str, zone: str = "Europe/London") -> None:
    with db(world) as uow:
        sites.change_site(
            uow.session,
            actor=None,
            code="TRT-1",
            phone=phone,
            time_zone=zone,
            now=dt.datetime.now(dt.UTC),
        )
        uow.commit()


def test_links_are_random_hashed_expire_and_revoke_on_record(world: World) -> None:
    order = world.enroll("PAT-LINKS")
    coi = order["coi"]
    # only the treatment site's care team makes links: another site's care team does not
    # even learn the order exists; a site that sees the order may not share it
    assert make_link(world, coi, "care2").status_code == 404
    assert make_link(world, coi, "aph").status_code == 403
    assert make_link(world, coi, "admin").status_code == 403
    assert make_link(world, coi, expires_in_days=181).status_code == 422
    assert make_link(world, coi, expires_in_days=0).status_code == 422

    made = make_link(world, coi)
    assert made.status_code == 201, made.json
    other = make_link(world, coi, expires_in_days=1).json
    token = token_of(made.json["url"])
    assert len(token) * 6 >= 128  # URL-safe base64: six bits a character
    assert token != token_of(other["url"])
    expires = dt.datetime.fromisoformat(made.json["expires_at"])
    assert abs(expires - dt.datetime.now(dt.UTC) - dt.timedelta(days=60)) < dt.timedelta(minutes=5)
    with db(world) as uow:
        row = uow.session.get(StatusLink, made.json["id"])
        assert row is not None
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        stored = " ".join(str(v) for v in row.model_dump().values())
        assert token not in stored

    # viewing: the first view and a count per day are kept
    for _ in range(3):
        opened = page(world, token)
        assert opened.status_code == 200
    assert opened.headers["Cache-Control"] == "no-store"
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in opened.headers["X-Robots-Tag"]
    assert "Set-Cookie" not in opened.headers  # no session for the family
    assert "<script" not in opened.get_data(as_text=True)  # works without JavaScript
    with db(world) as uow:
        row = uow.session.get(StatusLink, made.json["id"])
        assert row is not None
        assert row.first_viewed_at is not None
        (views,) = uow.session.exec(
            select(StatusLinkView).where(StatusLinkView.link_id == row.id)
        ).all()
        assert views.views == 3

    # expired, revoked and unknown links answer the same 404, which names nothing
    gone = token_of(other["url"])
    with db(world) as uow:
        uow.session.execute(
            sa.update(StatusLink)
            .where(col(StatusLink.id) == other["id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        uow.commit()
    assert (
        world.client.delete(
            f"/api/v1/orders/{coi}/status-links/{made.json['id']}", headers=world.headers("aph")
        ).status_code
        == 403
    )
    revoked = world.client.delete(
        f"/api/v1/orders/{coi}/status-links/{made.json['id']}", headers=world.headers("care")
    )
    assert revoked.status_code == 200, revoked.json
    assert revoked.json["revoked_at"] is not None
    answers = [page(world, t) for t in (token, gone, "x" * 43, "no")]
    assert {a.status_code for a in answers} == {404}
    assert len({a.get_data(as_text=True) for a in answers}) == 1
    assert "PAT-LINKS" not in answers[0].get_data(as_text=True)
    with db(world) as uow:
        logged = [
            row.action
            for row in uow.session.exec(
                select(AdminChange).where(col(AdminChange.subject).contains("status link"))
            )
        ]
    assert logged.count("status link made") == 2
    assert logged.count("status link revoked") == 1


def test_the_page_through_a_whole_loop_names_no_identifier_or_person(world: World) -> None:
    set_phone(world, "+44 20 7946 0000")
    order = world.enroll("PAT-FAMILY-SECRET", birth_date="1990-02-03")
    coi = order["coi"]
    token = token_of(make_link(world, coi).json["url"])
    secrets = [coi, "PAT-FAMILY-SECRET", "1990-02-03", "@example.org"]
    secrets += [code for code, *_ in SITES]
    seen: list[str] = []

    def look(expected: str | None) -> str:
        response = page(world, token)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        current = re.search(r'aria-current="step">\s*<span class="stage-title">([^<]+)', html)
        assert (current.group(1) if current else None) == expected, html
        seen.append(html)
        return html

    first = look(None)
    assert "First Treatment" in first
    assert "+44 20 7946 0000" in first
    unit = world.collect(coi)
    secrets.append(unit["din"])
    look("Cells collected")
    for action, who, site in OUTBOUND:
        if action == "pickup":
            shipment = world.ship([unit["din"]])
            secrets.append(shipment["barcode"])
        if action == "verify_label":
            response = world.verify_label(who, unit, site)
        else:
            response = world.scan(who, unit["barcode"], action, site)
        assert response.status_code == 201, response.json
        if action == "pickup":
            look("Travelling to the plant")
    look("Being made")
    html = seen[-1]
    assert "Back at the hospital" in html
    assert "Treatment day" in html
    assert not re.search(r"\d\d:\d\d", html.split("Updated")[0])  # days, never minutes
    batch = world.post("op", "/api/v1/batches", {"coi": coi}).json["code"]
    secrets.append(batch)
    for step in STEPS:
        assert status(world, "op", batch, step).status_code == 200
    filled = world.post("op", f"/api/v1/batches/{batch}/products", {"count": 1}).json
    din = filled["products"][0]["din"]
    secrets.append(din)
    assert status(world, "op", batch, "cryopreservation").status_code == 200
    look("Being made")
    assert status(world, "op", batch, "qc_testing").status_code == 200
    look("Quality testing")
    assert status(world, "qa", batch, "released").status_code == 200
    look("On its way back")
    for action in ("pack",):
        assert world.scan("op", bc(din), action, "MFG-1").status_code == 201
    back = world.ship([din], origin="MFG-1", destination="TRT-1", who="op")
    secrets.append(back["barcode"])
    assert world.scan("courier", back["barcode"], "pickup", "MFG-1").status_code == 201
    assert world.scan("courier", back["barcode"], "deliver", "TRT-1").status_code == 201
    look("On its way back")
    received = world.scan("care", bc(din), "receive", "TRT-1", shipment=back["barcode"])
    assert received.status_code == 201, received.json
    look("Arrived at the hospital")
    assert world.scan("care", bc(din), "store", "TRT-1").status_code == 201
    assert world.scan("care", bc(din), "thaw", "TRT-1").status_code == 201
    infused = world.scan(
        "care", bc(din), "infuse", "TRT-1", patient_ref="PAT-FAMILY-SECRET",
        patient_birth_date="1990-02-03",
    )  # fmt: skip
    assert infused.status_code == 201, infused.json
    assert "Given on" in look("Given")
    # every page on the way, searched for every identifier, site code and person
    leaks = [(i, s) for i, html in enumerate(seen) for s in secrets if s and s in html]
    assert leaks == []
    eye = world.get("care", f"/api/v1/orders/{coi}").json["eye_readable"]
    assert not any(eye in html for html in seen)


def test_news_waits_until_the_care_team_has_discussed_it(world: World) -> None:
    # a bag held after a temperature excursion
    bag = world.bag_at("pack", "PAT-HELD")
    coi = bag["coi"]
    token = token_of(make_link(world, coi).json["url"])
    shipment = world.ship([bag["din"]])
    hot = world.post(
        "aph",
        f"/api/v1/shipments/{shipment['barcode']}/readings",
        {
            "device_id": "TAG-H",
            "readings": [{"at": dt.datetime.now(dt.UTC).isoformat(), "value": -100, "unit": "C"}],
        },
    )
    assert hot.json["held"] == [bag["din"]], hot.json
    # a failed batch of another order
    received = world.bag_at("receive", "PAT-FAILED")
    failed_token = token_of(make_link(world, received["coi"]).json["url"])
    batch = world.post("op", "/api/v1/batches", {"coi": received["coi"]}).json["code"]
    assert status(world, "op", batch, "failed", reason="no expansion").status_code == 200

    held_words = family_status.family.NEWS_WORDS["hold"]
    failed_words = family_status.family.NEWS_WORDS["batch_failed"]
    assert held_words not in page(world, token).get_data(as_text=True)
    failed_page = page(world, failed_token).get_data(as_text=True)
    assert failed_words not in failed_page
    assert "no expansion" not in failed_page
    assert 'aria-current="step">\n      <span class="stage-title">Being made' in failed_page

    # the care team sees what waits, and after 72 hours the page says they will call
    order_page = world.browser("care").get(f"/orders/{coi}").get_data(as_text=True)
    assert held_words in order_page
    with db(world) as uow:
        link = family_status.open_link(uow.session, token=token, now=dt.datetime.now(dt.UTC))
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=73)
        assert family_status.family_view(uow.session, link=link, now=later).contact_you
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=71)
        assert not family_status.family_view(uow.session, link=link, now=soon).contact_you
    sequences = {}
    for order_coi in (coi, received["coi"]):
        events = world.get("care", f"/api/v1/orders/{order_coi}/events").json["events"]
        sequences[order_coi] = next(
            e["sequence"]
            for e in events
            if e["action"] == "hold" or e.get("batch_status") == "failed"
        )
    path = f"/api/v1/orders/{coi}/status-news/{sequences[coi]}/discussed"
    assert world.post("aph", path, {"reason": "x"}).status_code == 403
    assert world.post("care2", path, {"reason": "x"}).status_code == 404
    assert world.post("care", path, {"reason": ""}).status_code == 422
    told = world.post("care", path, {"reason": "Told the mother by phone"})
    assert told.status_code == 201, told.json
    assert world.post("care", path, {"reason": "again"}).status_code == 422
    shown = page(world, token).get_data(as_text=True)
    assert held_words in shown
    assert "Told the mother" not in shown  # the reason is the record's, not the family's
    failed_path = f"/api/v1/orders/{received['coi']}/status-news/{sequences[received['coi']]}"
    assert (
        world.post("care", failed_path + "/discussed", {"reason": "In clinic"}).status_code == 201
    )
    assert failed_words in page(world, failed_token).get_data(as_text=True)
    with db(world) as uow:
        rows = uow.session.exec(select(StatusDisclosure).order_by(col(StatusDisclosure.id))).all()
        assert [r.reason for r in rows] == ["Told the mother by phone", "In clinic"]
        assert all(r.discussed_by_id for r in rows)
        logged = uow.session.exec(
            select(AdminChange).where(AdminChange.action == "status news discussed")
        ).all()
        assert sorted((c.after or {}).get("how") for c in logged) == [
            "In clinic",
            "Told the mother by phone",
        ]
    # once told, the failed batch (and the bag it used) carries the order no more: the page
    # is not left at "Being made" while a new collection is awaited
    failed_page = page(world, failed_token).get_data(as_text=True)
    current = re.search(r'aria-current="step">\s*<span class="stage-title">([^<]+)<', failed_page)
    assert current is None, current.group(1)
    # the care team's forms and the e-mail's stop link take any id without a server error
    care = world.browser("care")
    for bad in (
        f"/orders/{coi}/status-news/99999999999999999999/discussed",
        f"/orders/{coi}/status-links/99999999999999999999/revoke",
    ):
        assert care.post(bad, data={"csrf_token": csrf_token(care, "/")}).status_code == 303
    anonymous = world.app.test_client()
    assert anonymous.post("/status/stop/16/%C3%A9").status_code == 404
    assert anonymous.post("/status/stop/99999999999999999999/" + "0" * 40).status_code == 404


def test_family_emails_once_a_day_never_at_night_and_stop(app_factory: Any) -> None:
    with smtp_server() as smtp:
        app = app_factory(smtp_url=smtp.url)
        world = World.build(app)
        set_phone(world, "020 7946 0000", zone="Asia/Tokyo")
        order = world.enroll("PAT-MAIL")
        coi = order["coi"]
        unit = world.collect(coi)
        token = token_of(make_link(world, coi).json["url"])
        refused = world.app.test_client().post(
            f"/status/{token}/emails", data={"emails": "on", "email": "not an address"}
        )
        assert refused.status_code == 303
        assert "emails=invalid" in refused.headers["Location"]
        opted = world.app.test_client().post(
            f"/status/{token}/emails", data={"emails": "on", "email": "family@example.net"}
        )
        assert opted.status_code == 303
        assert "emails=on" in opted.headers["Location"]
        secret = world.app.extensions["vein2vein"].settings.secret_key

        def tell(at: dt.datetime) -> int:
            with db(world) as uow:
                made = family_emails.notify_families(
                    uow.session, now=at, public_url="https://v2v.example", secret_key=secret
                )
                uow.commit()
            return len(made)

        def advance(until: str) -> None:
            for action, who, site in OUTBOUND:
                if action in done:
                    continue
                if action == "pickup":
                    world.ship([unit["din"]])
                if action == "verify_label":
                    assert world.verify_label(who, unit, site).status_code == 201
                else:
                    assert world.scan(who, unit["barcode"], action, site).status_code == 201
                done.add(action)
                if action == until:
                    return

        done: set[str] = set()
        # times in the past, at Tokyo's wall clock, so the outbox finds them due now
        morning = next_local_time(
            dt.datetime.now(dt.UTC) - dt.timedelta(days=6), "Asia/Tokyo", hour=10
        )
        assert tell(morning) == 0  # no change since the family opted in
        advance("pickup")
        night = morning + dt.timedelta(hours=12)  # 22:00 in Tokyo
        assert tell(night) == 0  # quiet hours
        assert tell(morning + dt.timedelta(hours=1)) == 1  # travelling to the plant
        advance("start_manufacturing")
        assert tell(morning + dt.timedelta(hours=3)) == 0  # one a day
        assert tell(morning + dt.timedelta(hours=22)) == 0  # 08:00 next day, but < 24 h
        assert tell(morning + dt.timedelta(days=1, hours=2)) == 1  # being made
        assert tell(morning + dt.timedelta(days=2, hours=2)) == 0  # no new stage
        deliver_due(app)
        mails = smtp.received()
        assert [m["Subject"] for m in mails] == [
            "Update from First Treatment: Travelling to the plant",
            "Update from First Treatment: Being made",
        ]
        body = mails[0].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert "020 7946 0000" in body
        for secret_text in (coi, unit["din"], "PAT-MAIL", "TRT-1", "APH-1", "MFG-1", token):
            assert secret_text not in mails[0].as_string()
        stop = str(mails[0]["List-Unsubscribe"]).strip().strip("<>")
        assert mails[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        path = stop.removeprefix("https://v2v.example")
        assert world.app.test_client().get(path).status_code == 200  # a button, nothing done
        with db(world) as uow:
            assert all(
                s.active for s in uow.session.exec(select(Subscription)) if "family" in s.target
            )
        forged = re.sub(r"/[0-9a-f]+$", "/" + "0" * 40, path)
        assert world.app.test_client().post(forged).status_code == 404
        assert world.app.test_client().post(path).status_code == 200
        with db(world) as uow:
            family_sub = uow.session.exec(
                select(Subscription).where(Subscription.target == "family@example.net")
            ).one()
            assert not family_sub.active
            assert (
                uow.session.exec(
                    select(sa.func.count())
                    .select_from(Notification)
                    .where(Notification.subscription_id == family_sub.id)
                ).one()
                == 2
            )
