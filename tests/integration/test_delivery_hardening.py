"""No alert stalls: whatever a channel does, its row records it and the rest keep moving.

Real peers throughout (an HTTP receiver, an SMTP server, the machine's own resolver); the task
bodies run in this process, as in test_notifications.py. The same with a real Celery worker is
in test_delivery_worker.py.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo
from sqlmodel import select

from services import cli
from services.db import UnitOfWork
from services.db.models import Notification, Order, Subscription, User
from services.domain.notifications import Channel
from services.operations import notifications as outbox
from tests.integration.test_notifications import deliver_due, rows, subscribe
from tests.receivers import smtp_server, webhook_receiver
from tests.world import World
from workers.tasks import deliver_claims


def _legacy_subscription(world: World, coi: str, channel: str, target: str) -> int:
    """A subscription stored before targets were checked: the rows it makes are poison."""
    state = world.app.extensions["vein2vein"]
    with UnitOfWork(state.db.session_factory) as uow:
        order_id = uow.session.exec(select(Order.id).where(Order.coi == coi)).one()
        care = uow.session.exec(select(User).where(User.email == "care@example.org")).one()
        row = Subscription(
            created_by_id=care.id,  # type: ignore[arg-type]
            order_id=order_id,
            channel=Channel(channel),
            target=target,
            secret="whsec_" + "A" * 43 + "=",
        )
        uow.session.add(row)
        uow.session.commit()
        assert row.id is not None
        return row.id


def deliver_once(world: World) -> list[str]:
    """One dispatch and one delivery task, so that a test can look at the row in between."""
    state = world.app.extensions["vein2vein"]
    with UnitOfWork(state.db.session_factory) as uow:
        claims = outbox.claim_due(
            uow.session, now=dt.datetime.now(dt.UTC), lease=dt.timedelta(minutes=2), limit=50
        )
        uow.commit()
    return deliver_claims(claims, state.db, state.settings)


def _two_scans(world: World, bag: dict[str, Any]) -> None:
    for action in ("verify_label", "cryopreserve"):
        assert world.scan("aph", bag["barcode"], action, "APH-1").status_code == 201


@pytest.mark.parametrize(
    ("channel", "target", "error"),
    [
        ("webhook", "https://example.com:abc/h", "not a valid URL"),
        ("webhook", "https://[x/", "not a valid URL"),
        ("email", "nurse@example.org\r\nBcc: everyone@example.org", "line breaks"),
        ("email", "Nurse <nurse@example.org>", "not an e-mail address"),
    ],
)
def test_a_poisoned_row_is_a_dead_letter_with_its_error_and_holds_nothing_back(
    app_factory: Any, channel: str, target: str, error: str
) -> None:
    with smtp_server() as smtp, webhook_receiver() as receiver:
        world = World.build(app_factory(smtp_url=smtp.url))
        order = world.enroll()
        bag = world.collect(order["coi"])
        hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        subscribe(world, coi=order["coi"], channel="email", target="nurse@example.org")
        poisoned = _legacy_subscription(world, order["coi"], channel, target)
        _two_scans(world, bag)
        results = deliver_due(world.app)
        assert Counter(results) == {"delivered": 4, "dead": 2}
        (poison_one, poison_two) = rows(world.app, Notification.subscription_id == poisoned)
        assert {poison_one.state, poison_two.state} == {"dead"}
        assert error in (poison_one.last_error or "")
        assert poison_one.claim_token is None
        # the healthy subscriptions of the same order heard everything, in order
        kinds = [d.verify(hook["secret"])["data"]["kind"] for d in receiver.accepted()]
        assert kinds == ["verify_label", "cryopreserve"]
        subjects = [" ".join(str(m["Subject"]).split()) for m in smtp.received()]
        assert len(subjects) == 2
        assert "label verified" in subjects[0]
        assert "cryopreserved" in subjects[1]
        assert deliver_due(world.app) == []


def test_notifications_deliver_finishes_past_a_poisoned_row(app_factory: Any) -> None:
    with smtp_server() as smtp:
        app = app_factory(smtp_url=smtp.url)
        world = World.build(app)
        order = world.enroll()
        bag = world.collect(order["coi"])
        subscribe(world, coi=order["coi"], channel="email", target="nurse@example.org")
        _legacy_subscription(world, order["coi"], "webhook", "https://example.com:abc/h")
        _two_scans(world, bag)
        result = CliRunner().invoke(
            cli.main, ["notifications", "deliver"], obj=ScriptInfo(create_app=lambda: app)
        )
        assert result.exit_code == 0, result.output
        assert "nothing more is due" in result.output
        assert len(smtp.received()) == 2
    states = Counter(r.state.value for r in rows(app, Notification.channel != "feed"))
    assert states == {"delivered": 2, "dead": 2}


def test_an_unresolvable_host_is_retried_then_dead_with_the_resolver_error(world: World) -> None:
    order = world.enroll()
    bag = world.collect(order["coi"])
    subscribe(world, coi=order["coi"], channel="webhook", target="https://nowhere.invalid/h")
    assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
    assert deliver_due(world.app) == ["pending", "pending", "pending", "dead"]
    (row,) = rows(world.app, Notification.channel == "webhook")
    assert row.attempts == 4
    assert "cannot resolve nowhere.invalid" in (row.last_error or "")


def test_a_slow_receiver_times_out_and_the_attempt_is_recorded(app_factory: Any) -> None:
    world = World.build(app_factory(webhook_timeout_seconds=1.5))
    with webhook_receiver() as receiver:
        receiver.delay = 2.0
        order = world.enroll()
        bag = world.collect(order["coi"])
        subscribe(
            world, coi=order["coi"], channel="webhook", target=receiver.url, events=["verify_label"]
        )
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        started = dt.datetime.now(dt.UTC)
        assert deliver_once(world) == ["pending"]
        took = (dt.datetime.now(dt.UTC) - started).total_seconds()
    (row,) = rows(world.app, Notification.channel == "webhook")
    assert "Timeout" in (row.last_error or "")
    assert row.attempts == 1
    assert took < 2.0  # the receiver's 2 s were not waited out


def test_a_huge_error_answer_is_read_only_in_part(world: World) -> None:
    with webhook_receiver() as receiver:
        receiver.script = [500]
        receiver.answer_body = b"x" * 5_000_000
        order = world.enroll()
        bag = world.collect(order["coi"])
        subscribe(
            world, coi=order["coi"], channel="webhook", target=receiver.url, events=["verify_label"]
        )
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        assert deliver_once(world) == ["pending"]
    (row,) = rows(world.app, Notification.channel == "webhook")
    assert (row.last_error or "").startswith("HTTP 500: xxx")
    assert len(row.last_error or "") < 300


def test_a_webhook_connects_to_the_address_it_checked(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One resolution per delivery, by us; the connection goes to that address while the
    receiver still sees its own host name."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(host))
        return real(host, *args, **kwargs)

    with webhook_receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        order = world.enroll()
        bag = world.collect(order["coi"])
        subscribe(
            world,
            coi=order["coi"],
            channel="webhook",
            target=f"http://localhost:{port}/hooks",
            events=["verify_label"],
        )
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        monkeypatch.setattr(socket, "getaddrinfo", recording)
        assert deliver_due(world.app) == ["delivered"]
        (delivery,) = receiver.accepted()
    assert asked.count("localhost") == 1
    assert delivery.headers["host"] == f"localhost:{port}"


@pytest.mark.parametrize(
    "target",
    [
        "https://example.com:abc/h",
        "https://[x/",
        "https://example.com:0/h",
        "https://example.com:70000/h",
        "https://user:secret@example.com/h",
        "https://example.com/h#top",
        "https://exa mple.com/h",
        "https://example.com/h\r\nX-Injected: 1",
        "ftp://example.com/h",
        "https:///h",
        "https://-bad-.example.com/h",
        "https://" + "a" * 64 + ".example.com/h",
        "https://example.com/" + "x" * 2100,
    ],
)
def test_a_webhook_target_that_cannot_be_sent_to_is_refused_when_subscribing(
    world: World, target: str
) -> None:
    order = world.enroll()
    response = world.post(
        "care",
        "/api/v1/subscriptions",
        {"coi": order["coi"], "channel": "webhook", "target": target},
    )
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["code"] in ("invalid_request", "validation_error")


@pytest.mark.parametrize(
    "target",
    [
        "nurse@example.org\r\nBcc: everyone@example.org",
        "nurse@example.org\nSubject: hello",
        "Nurse <nurse@example.org>",
        "nurse@example.org, other@example.org",
        "nurse@",
        "nurse@[127.0.0.1]",
        "nürse@example.org",
    ],
)
def test_an_email_target_is_checked_by_a_real_validator(world: World, target: str) -> None:
    order = world.enroll()
    response = world.post(
        "care", "/api/v1/subscriptions", {"coi": order["coi"], "channel": "email", "target": target}
    )
    assert response.status_code == 422, response.json
    assert response.json["code"] == "invalid_request"


def test_an_international_domain_is_stored_as_the_mail_server_will_take_it(world: World) -> None:
    order = world.enroll()
    made = subscribe(world, coi=order["coi"], channel="email", target="pflege@münchen.example")
    assert made["target"] == "pflege@xn--mnchen-3ya.example"


def _deliver_after(world: World, change: Any) -> list[Notification]:
    with webhook_receiver() as receiver:
        order = world.enroll()
        bag = world.collect(order["coi"])
        hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
            change(uow.session)
            uow.commit()
        assert deliver_due(world.app) == ["skipped"]
        assert receiver.accepted() == []
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        subscription = uow.session.get(Subscription, hook["id"])
        assert subscription is not None
        assert subscription.active is False
        assert "subscriber" in (subscription.disabled_reason or "")
    return rows(world.app, Notification.subscription_id == hook["id"])


def test_a_deactivated_subscriber_hears_nothing_more(world: World) -> None:
    def deactivate(session: Any) -> None:
        care = session.exec(select(User).where(User.email == "care@example.org")).one()
        care.active = False
        session.add(care)

    (row,) = _deliver_after(world, deactivate)
    assert row.state == "dead"
    assert "deactivated" in (row.last_error or "")


def test_a_subscriber_moved_to_another_site_hears_nothing_of_the_old_sites_orders(
    world: World,
) -> None:
    def move(session: Any) -> None:
        from services.db.models import Site

        care = session.exec(select(User).where(User.email == "care@example.org")).one()
        care.site_id = session.exec(select(Site.id).where(Site.code == "TRT-2")).one()
        session.add(care)

    (row,) = _deliver_after(world, move)
    assert row.state == "dead"
    assert "may no longer see this order" in (row.last_error or "")


def test_a_row_whose_worker_dies_every_time_ends_as_a_dead_letter(world: World) -> None:
    """Each claim is spent and then nothing reports back (the worker was killed mid-send):
    after the last attempt the row gives up instead of being offered for ever."""
    order = world.enroll()
    bag = world.collect(order["coi"])
    subscribe(world, coi=order["coi"], channel="webhook", target="https://example.org/h")
    assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
    state = world.app.extensions["vein2vein"]
    now = dt.datetime.now(dt.UTC)
    lease = dt.timedelta(seconds=30)
    spent = []
    for round_ in range(6):
        with UnitOfWork(state.db.session_factory) as uow:
            claims = outbox.claim_due(uow.session, now=now + round_ * lease, lease=lease, limit=9)
            for notification_id, token in claims:
                spent.append(
                    outbox.begin_attempt(
                        uow.session,
                        notification_id=notification_id,
                        token=token,
                        now=now + round_ * lease,
                        lease=lease,
                        max_attempts=state.settings.notify_max_attempts,
                    )
                )
            uow.commit()
    assert [a is not None for a in spent] == [True, True, True, True, False]
    (row,) = rows(world.app, Notification.channel == "webhook")
    assert row.state == "dead"
    assert "never reported an outcome" in (row.last_error or "")
