"""The outbox and the channels, with real peers: an HTTP receiver and an SMTP server.

Delivery here runs the task bodies in-process (STYLE.md: never eager Celery); the tests with a
real worker on real Redis are in test_delivery_worker.py.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from standardwebhooks.webhooks import WebhookVerificationError

from services.db import UnitOfWork
from services.db.models import Notification, NotificationReplay, Subscription
from services.operations import notifications as outbox
from tests.receivers import Delivery, smtp_server, webhook_receiver
from tests.world import OUTBOUND, World
from workers.tasks import deliver_claims, deliver_now


def deliver_due(app: Any) -> list[str]:
    """What the dispatcher and the workers do, in this process, until nothing is due."""
    state = app.extensions["vein2vein"]
    results: list[str] = []
    while True:
        with UnitOfWork(state.db.session_factory) as uow:
            claims = outbox.claim_due(
                uow.session, now=dt.datetime.now(dt.UTC), lease=dt.timedelta(minutes=2), limit=50
            )
            uow.commit()
        if not claims:
            return results
        results += [deliver_now(i, token, state.db, state.settings) for i, token in claims]


def rows(app: Any, *conditions: Any) -> list[Notification]:
    with UnitOfWork(app.extensions["vein2vein"].db.session_factory) as uow:
        return list(
            uow.session.exec(
                select(Notification).where(*conditions).order_by(col(Notification.id))
            ).all()
        )


def subscribe(world: World, who: str = "care", **body: Any) -> dict[str, Any]:
    response = world.post(who, "/api/v1/subscriptions", body)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def walk(world: World, unit: dict[str, Any]) -> None:
    for action, who, site in OUTBOUND:
        if action == "pickup":
            world.ship([unit["din"]])
        assert world.scan(who, unit["barcode"], action, site).status_code == 201


def test_each_event_writes_one_row_per_subscription_with_it(world: World) -> None:
    order = world.enroll()
    unit = world.collect(order["coi"])
    hook = subscribe(world, coi=order["coi"], channel="webhook", target="https://example.org/h")
    mail = subscribe(
        world,
        coi=order["coi"],
        channel="email",
        target="nurse@example.org",
        events=["pickup", "receive"],
    )
    walk(world, unit)
    webhook_rows = rows(world.app, Notification.subscription_id == hook["id"])
    assert [r.kind for r in webhook_rows] == [a for a, _, _ in OUTBOUND]
    assert [r.payload["sequence"] for r in webhook_rows] == list(range(2, 9))
    assert [r.kind for r in rows(world.app, Notification.subscription_id == mail["id"])] == [
        "pickup",
        "receive",
    ]
    assert all(r.state == "pending" for r in webhook_rows)
    # the treatment site's feed heard everything, the collection included, without asking
    feed = rows(world.app, Notification.channel == "feed")
    assert [r.kind for r in feed] == ["enroll", "collect"] + [a for a, _, _ in OUTBOUND]
    assert all(r.state == "delivered" for r in feed)
    assert "PAT-0001" not in str([r.payload for r in webhook_rows + feed])  # no PHI


def test_a_refused_scan_is_news_for_the_order(world: World) -> None:
    order = world.enroll()
    unit = world.collect(order["coi"])
    subscribe(world, coi=order["coi"], channel="webhook", target="https://example.org/h")
    assert world.scan("aph", unit["barcode"], "pack", "APH-1").status_code == 409
    (refusal,) = rows(
        world.app, Notification.kind == "refused_scan", Notification.channel == "webhook"
    )
    assert refusal.payload["code"] == "illegal_transition"
    assert refusal.payload["din"] == unit["din"]


def test_a_site_subscription_hears_every_order_naming_the_site(world: World) -> None:
    sub = subscribe(world, "op", site="MFG-1", channel="email", target="plant@example.org")
    for n in range(3):
        world.bag_at("collected", f"PAT-{n}")
    world.bag_at("collected", "PAT-X", manufacturing="MFG-2")
    heard = rows(world.app, Notification.subscription_id == sub["id"])
    assert [r.kind for r in heard] == ["enroll", "collect"] * 3  # a new order, then its bag


def test_subscriptions_are_checked(app_factory: Any) -> None:
    world = World.build(app_factory(webhook_allow_private_targets=False))
    order = world.enroll()
    cases = [
        ("care2", {"coi": order["coi"], "channel": "email", "target": "a@b.org"}, 404),
        ("care", {"site": "TRT-2", "channel": "email", "target": "a@b.org"}, 403),
        ("care", {"coi": order["coi"], "channel": "email", "target": "not-mail"}, 422),
        ("care", {"coi": order["coi"], "channel": "webhook", "target": "https://127.0.0.1/h"}, 422),
        ("care", {"coi": order["coi"], "channel": "webhook", "target": "https://10.1.2.3/h"}, 422),
        (
            "care",
            {"coi": order["coi"], "channel": "webhook", "target": "http://example.org/h"},
            422,
        ),
        (
            "care",
            {"coi": order["coi"], "channel": "email", "target": "a@b.org", "events": ["teleport"]},
            422,
        ),
        (
            "care",
            {"coi": order["coi"], "site": "TRT-1", "channel": "email", "target": "a@b.org"},
            422,
        ),
        ("care", {"coi": order["coi"], "channel": "sms", "target": "a@b.org"}, 422),
    ]
    for who, body, status in cases:
        assert world.post(who, "/api/v1/subscriptions", body).status_code == status, body
    ok = world.post(
        "care",
        "/api/v1/subscriptions",
        {"coi": order["coi"], "channel": "webhook", "target": "https://example.org/hook"},
    )
    assert ok.status_code == 201
    assert ok.json["secret"].startswith("whsec_")
    listed = world.get("care", "/api/v1/subscriptions").json["subscriptions"]
    assert [s["id"] for s in listed] == [ok.json["id"]]
    assert listed[0]["secret"] is None  # shown once
    gone = world.client.delete(
        f"/api/v1/subscriptions/{ok.json['id']}", headers=world.headers("care")
    )
    assert gone.status_code == 200
    assert gone.json["active"] is False


def test_the_feed_with_read_and_unread(world: World) -> None:
    bag = world.bag_at("pickup")
    feed = world.get("care", "/api/v1/notifications").json
    assert feed["site"] == "TRT-1"
    kinds = [item["kind"] for item in feed["items"]]
    assert kinds == ["pickup", "pack", "cryopreserve", "verify_label", "collect", "enroll"]
    first = feed["items"][0]
    assert first["din"] == bag["din"]
    assert "picked up" in first["summary"]
    read = world.client.post(
        f"/api/v1/notifications/{first['id']}/read", headers=world.headers("care")
    )
    assert read.status_code == 204
    unread = world.get("care", "/api/v1/notifications?unread=true").json["items"]
    assert first["id"] not in [item["id"] for item in unread]
    assert len(unread) == 5
    # another site's user has another feed and cannot touch this one
    assert world.get("care2", "/api/v1/notifications").json["items"] == []
    other = world.client.post(
        f"/api/v1/notifications/{first['id']}/read", headers=world.headers("care2")
    )
    assert other.status_code == 404


def test_signed_webhooks_reach_a_real_receiver_once_in_order(world: World) -> None:
    with webhook_receiver() as receiver:
        order = world.enroll()
        unit = world.collect(order["coi"])
        hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        walk(world, unit)
        results = deliver_due(world.app)
        assert Counter(results) == {"delivered": 7}
        received = receiver.accepted()
    assert len(received) == 7
    bodies = [delivery.verify(hook["secret"]) for delivery in received]  # raises if forged
    assert [b["data"]["kind"] for b in bodies] == [a for a, _, _ in OUTBOUND]
    assert [b["data"]["sequence"] for b in bodies] == list(range(2, 9))
    assert all(b["data"]["coi"] == order["coi"] for b in bodies)
    assert len({d.headers["webhook-id"] for d in received}) == 7
    assert deliver_due(world.app) == []  # nothing left, nothing sent twice


def test_a_forged_or_tampered_webhook_fails_verification(world: World) -> None:
    with webhook_receiver() as receiver:
        order = world.enroll()
        bag = world.collect(order["coi"])
        hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        assert deliver_due(world.app) == ["delivered"]
        (delivery,) = receiver.accepted()
    assert delivery.verify(hook["secret"])["data"]["kind"] == "verify_label"
    with pytest.raises(WebhookVerificationError):
        delivery.verify("whsec_" + base64.b64encode(b"x" * 32).decode())
    tampered = Delivery(delivery.headers, delivery.body.replace(b"verify_label", b"receive"))
    with pytest.raises(WebhookVerificationError):
        tampered.verify(hook["secret"])


def test_a_failing_receiver_is_retried_with_the_same_webhook_id(world: World) -> None:
    with webhook_receiver() as receiver:
        receiver.script = [500, 503]
        order = world.enroll()
        subscribe(
            world, coi=order["coi"], channel="webhook", target=receiver.url, events=["verify_label"]
        )
        bag = world.collect(order["coi"])
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        assert deliver_due(world.app) == ["pending", "pending", "delivered"]
        (row,) = rows(world.app, Notification.channel == "webhook")
        assert (row.attempts, row.state, row.last_error) == (3, "delivered", None)
        assert len(receiver.accepted()) == 1


def test_dead_letter_after_the_limit_then_an_audited_replay(world: World) -> None:
    with webhook_receiver() as receiver:
        receiver.script = [500] * 4  # notify_max_attempts is 4 in the tests
        order = world.enroll()
        subscribe(
            world, coi=order["coi"], channel="webhook", target=receiver.url, events=["verify_label"]
        )
        bag = world.collect(order["coi"])
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        assert deliver_due(world.app) == ["pending", "pending", "pending", "dead"]
        (row,) = rows(world.app, Notification.channel == "webhook")
        assert row.state == "dead"
        assert "HTTP 500" in (row.last_error or "")
        assert receiver.accepted() == []
        with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
            replayed = outbox.replay_dead(
                uow.session,
                ids=None,
                email="qa@example.org",
                reason="receiver fixed",
                now=dt.datetime.now(dt.UTC),
            )
            uow.commit()
            (audit,) = uow.session.exec(select(NotificationReplay)).all()
        assert replayed == [row.id]
        assert (audit.reason, audit.previous_state, audit.previous_attempts) == (
            "receiver fixed",
            "dead",
            4,
        )
        assert deliver_due(world.app) == ["delivered"]
        assert len(receiver.accepted()) == 1


def test_410_gone_disables_the_subscription(world: World) -> None:
    with webhook_receiver() as receiver:
        receiver.script = [410]
        order = world.enroll()
        bag = world.collect(order["coi"])
        hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        assert deliver_due(world.app) == ["dead"]
        assert world.scan("aph", bag["barcode"], "cryopreserve", "APH-1").status_code == 201
        assert deliver_due(world.app) == []  # nothing more is written for it
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        subscription = uow.session.get(Subscription, hook["id"])
    assert subscription is not None
    assert subscription.active is False
    assert "410" in (subscription.disabled_reason or "")


def test_a_task_run_twice_delivers_once(world: World) -> None:
    with webhook_receiver() as receiver:
        order = world.enroll()
        bag = world.collect(order["coi"])
        subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        state = world.app.extensions["vein2vein"]
        with UnitOfWork(state.db.session_factory) as uow:
            ((notification_id, token),) = outbox.claim_due(
                uow.session, now=dt.datetime.now(dt.UTC), lease=dt.timedelta(minutes=2), limit=10
            )
            uow.commit()
        first = deliver_now(notification_id, token, state.db, state.settings)
        again = deliver_now(notification_id, token, state.db, state.settings)  # redelivered
        assert (first, again) == ("delivered", "skipped")
        assert len(receiver.accepted()) == 1


def test_a_claim_whose_task_was_lost_is_offered_again_after_its_lease(world: World) -> None:
    order = world.enroll()
    bag = world.collect(order["coi"])
    subscribe(world, coi=order["coi"], channel="webhook", target="https://example.org/h")
    assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
    state = world.app.extensions["vein2vein"]
    now = dt.datetime.now(dt.UTC)
    lease = dt.timedelta(seconds=30)
    with UnitOfWork(state.db.session_factory) as uow:
        first = outbox.claim_due(uow.session, now=now, lease=lease, limit=10)
        assert outbox.claim_due(uow.session, now=now, lease=lease, limit=10) == []
        later = outbox.claim_due(uow.session, now=now + lease, lease=lease, limit=10)
        uow.commit()
    assert [i for i, _ in first] == [i for i, _ in later]
    assert first[0][1] != later[0][1]  # a new token: the lost task's token is worthless now


def test_email_over_smtp_with_a_stable_message_id(app_factory: Any) -> None:
    with smtp_server() as smtp:
        app = app_factory(smtp_url=smtp.url)
        world = World.build(app)
        order = world.enroll()
        bag = world.collect(order["coi"])
        subscribe(world, coi=order["coi"], channel="email", target="nurse@example.org")
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        assert deliver_due(app) == ["delivered"]
        (message,) = smtp.received()
    (row,) = rows(app, Notification.channel == "email")
    assert message["Message-ID"] == f"<notification-{row.id}@vein2vein.invalid>"
    assert message["To"] == "nurse@example.org"
    assert bag["din"] in message["Subject"]
    assert "label verified" in message["Subject"]
    plain = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert plain is not None
    assert html_part is not None
    assert order["coi"] in plain.get_content()
    assert order["coi"] in html_part.get_content()


def test_email_goes_to_files_in_the_embedded_default(app_factory: Any, tmp_path: Path) -> None:
    app = app_factory(smtp_url="")
    world = World.build(app)
    order = world.enroll()
    bag = world.collect(order["coi"])
    subscribe(world, coi=order["coi"], channel="email", target="nurse@example.org")
    assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
    assert deliver_due(app) == ["delivered"]
    (mail,) = (tmp_path / "var" / "mail").glob("*.eml")
    assert "Message-ID: <notification-" in mail.read_text()


def test_a_private_target_is_refused_at_delivery_outside_development(app_factory: Any) -> None:
    permissive = app_factory()
    world = World.build(permissive)
    order = world.enroll()
    bag = world.collect(order["coi"])
    subscribe(world, coi=order["coi"], channel="webhook", target="http://127.0.0.1:9/hook")
    assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
    strict = app_factory(webhook_allow_private_targets=False)
    assert deliver_due(strict) == ["dead"]
    (row,) = rows(strict, Notification.channel == "webhook")
    assert "not a public address" in (row.last_error or "")


def test_each_stream_is_delivered_in_order_and_a_failing_head_holds_only_its_own(
    world: World,
) -> None:
    with webhook_receiver() as receiver:
        receiver.script = [500]  # the first attempt fails
        first, second = world.enroll("PAT-1"), world.enroll("PAT-2")
        bags = [world.collect(order["coi"]) for order in (first, second)]
        for order in (first, second):
            subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        for action in ("verify_label", "cryopreserve"):
            for bag in bags:
                assert world.scan("aph", bag["barcode"], action, "APH-1").status_code == 201
        state = world.app.extensions["vein2vein"]
        now = dt.datetime.now(dt.UTC)
        with UnitOfWork(state.db.session_factory) as uow:
            streams = outbox.claim_streams(
                uow.session, now=now, lease=dt.timedelta(seconds=60), limit=10
            )
            uow.commit()
        assert [len(stream) for stream in streams] == [2, 2]  # both events of each order
        assert deliver_due(world.app) == []  # all claimed: nothing else may go meanwhile
        results = [deliver_claims(stream, state.db, state.settings) for stream in streams]
        # the first stream's head failed, so its second was given back unsent; the other went
        assert results == [["pending", "pending"], ["delivered", "delivered"]]
        # by id: PAT-1 label check (failed), PAT-2 label check, PAT-1 freeze (given back, not
        # counted), PAT-2 freeze
        attempts = [r.attempts for r in rows(world.app, Notification.channel == "webhook")]
        assert attempts == [1, 1, 0, 1]
        assert Counter(deliver_due(world.app)) == {"delivered": 2}
        kinds: dict[str, list[str]] = {}
        for delivery in receiver.accepted():
            data = delivery.json["data"]
            kinds.setdefault(data["coi"], []).append(data["kind"])
    assert kinds == {
        first["coi"]: ["verify_label", "cryopreserve"],
        second["coi"]: ["verify_label", "cryopreserve"],
    }
