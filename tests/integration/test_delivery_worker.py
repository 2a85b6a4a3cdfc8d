"""Delivery by a real Celery worker on real Redis, to a real HTTP receiver and SMTP server.

These start `celery worker` (and `celery beat`) as processes against this run's PostgreSQL
database; the app under test kicks them after each commit, as in production.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlmodel import col, select

from services.db import UnitOfWork
from services.db.models import Notification, Order, Subscription, User
from services.domain.notifications import Channel
from tests.conftest import TEST_SECRET
from tests.processes import BIN, clean_env, free_port, start, stop, wait_for_log
from tests.receivers import smtp_server, webhook_receiver
from tests.world import OUTBOUND, World

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def worker_env(database_url: str, broker_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        BROKER_URL=broker_url,
        APP_ENV="test",
        SECRET_KEY=TEST_SECRET,
        VAR_DIR=str(tmp_path / "worker-var"),
        WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        NOTIFY_BACKOFF_SECONDS="0.2",
        NOTIFY_CLAIM_SECONDS="4",
        DISPATCH_INTERVAL_SECONDS="1",
        **extra,
    )


def start_worker(env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    log = tmp_path / f"{name}.log"
    process = start(
        [
            str(BIN / "celery"),
            "-A",
            "workers.celery_app",
            "worker",
            "--concurrency=2",
            "--loglevel=INFO",
            "--hostname",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
        ],
        cwd=tmp_path,
        env=env,
        log=log,
    )
    wait_for_log(log, "ready.", process)
    return process


def start_beat(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    log = tmp_path / "beat.log"
    process = start(
        [str(BIN / "celery"), "-A", "workers.celery_app", "beat", "--loglevel=INFO"],
        cwd=tmp_path,
        env=env,
        log=log,
    )
    wait_for_log(log, "beat: Starting", process)
    return process


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    redis.Redis.from_url(redis_url).flushdb()  # this run's own database number only
    return redis_url


@pytest.fixture
def pg_world(app_factory: Any) -> Callable[..., World]:
    """Builds the app (on this run's PostgreSQL database) with the given settings, and a world."""
    return lambda **overrides: World.build(app_factory(**overrides))


@pytest.fixture
def database_url(pg_url: str) -> str:
    from tests.conftest import _truncate_all

    _truncate_all(pg_url)
    return pg_url


def delivered_states(world: World) -> Counter[str]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        rows = uow.session.exec(
            select(Notification).where(col(Notification.channel) != "feed")
        ).all()
        return Counter(row.state.value for row in rows)


def undelivered(world: World) -> list[str]:
    """The rows still waiting, for the failure message."""
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        rows = uow.session.exec(
            select(Notification).where(
                col(Notification.channel) != "feed", col(Notification.state) != "delivered"
            )
        ).all()
        return [
            f"{r.id}: {r.state} attempts={r.attempts} next={r.next_attempt_at.isoformat()} "
            f"claim={r.claim_token} error={r.last_error}"
            for r in rows
        ]


def subscribe(world: World, **body: Any) -> dict[str, Any]:
    response = world.post("care", "/api/v1/subscriptions", body)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def test_a_new_user_hears_each_milestone_once_signed_in_order(
    pg_world: Any, clean_redis: str, pg_url: str, tmp_path: Path
) -> None:
    with webhook_receiver() as receiver, smtp_server() as smtp:
        env = worker_env(pg_url, clean_redis, tmp_path, SMTP_URL=smtp.url)
        worker = start_worker(env, tmp_path, "worker")
        try:
            world = pg_world(broker_url=clean_redis, smtp_url=smtp.url)
            order = world.enroll()
            unit = world.collect(order["coi"])
            hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
            subscribe(world, coi=order["coi"], channel="email", target="nurse@example.org")
            for action, who, site in OUTBOUND:
                if action == "pickup":
                    world.ship([unit["din"]])
                assert world.scan(who, unit["barcode"], action, site).status_code == 201
            # no beat runs here: the kick after each commit is what wakes the worker
            wait_until(
                lambda: len(receiver.accepted()) >= 7 and len(smtp.received()) >= 7,
                30,
                "7 webhooks and 7 e-mails",
            )
            time.sleep(1)  # anything extra would arrive now
        finally:
            stop(worker)
    received = receiver.accepted()
    assert len(received) == 7
    bodies = [delivery.verify(hook["secret"]) for delivery in received]
    assert [b["data"]["kind"] for b in bodies] == [a for a, _, _ in OUTBOUND]
    assert [b["data"]["sequence"] for b in bodies] == sorted(b["data"]["sequence"] for b in bodies)
    mails = smtp.received()
    assert len(mails) == 7
    assert len({m["Message-ID"] for m in mails}) == 7
    assert delivered_states(world) == {"delivered": 14}


def _own_redis(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed: cannot stop and restart a broker here")
    process = start(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        env=clean_env(),
        log=tmp_path / "redis.log",
    )
    client = redis.Redis(port=port)
    wait_until(lambda: _pings(client), 10, "our redis-server to start")
    return process


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_scans_succeed_while_the_broker_is_down_and_their_news_follows(
    pg_world: Any, pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    redis_server = _own_redis(port, tmp_path)
    with webhook_receiver() as receiver:
        env = worker_env(pg_url, broker, tmp_path)
        worker = start_worker(env, tmp_path, "worker")
        beat = start_beat(env, tmp_path)
        try:
            world = pg_world(broker_url=broker)
            order = world.enroll()
            bags = [world.collect(order["coi"]) for _ in range(3)]
            hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)

            stop(redis_server)  # the broker goes away
            for bag in bags:
                for action in ("verify_label", "cryopreserve"):
                    response = world.scan("aph", bag["barcode"], action, "APH-1")
                    assert response.status_code == 201, response.json  # scans keep working
            time.sleep(2)
            assert receiver.accepted() == []  # nothing could be sent: late, not lost

            redis_server = _own_redis(port, tmp_path)  # the broker comes back, empty
            wait_until(
                lambda: len(receiver.accepted()) >= 6,
                90,
                "the six notifications after the broker came back",
            )
            time.sleep(2)
        finally:
            stop(beat)
            stop(worker)
            stop(redis_server)
    received = receiver.accepted()
    assert len(received) == 6
    assert len({d.headers["webhook-id"] for d in received}) == 6
    for delivery in received:
        delivery.verify(hook["secret"])


def test_no_notification_is_lost_when_the_worker_is_killed_again_and_again(
    pg_world: Any, clean_redis: str, pg_url: str, tmp_path: Path
) -> None:
    """SIGKILL the whole worker (master and pool) several times while it delivers; restart it.

    Every notification arrives; a repeat (a send whose result was never recorded) carries the
    webhook-id it had the first time, so the receiver can drop it.
    """
    with webhook_receiver() as receiver:
        receiver.delay = 0.05
        env = worker_env(pg_url, clean_redis, tmp_path)
        world = pg_world(broker_url=clean_redis)
        order = world.enroll()
        bags = [world.collect(order["coi"]) for _ in range(40)]
        subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        worker = start_worker(env, tmp_path, "worker-0")
        beat = start_beat(env, tmp_path)
        kills = 0
        stop_killing = threading.Event()

        def killer() -> None:
            nonlocal worker, kills
            while kills < 4 and not stop_killing.wait(2.5):
                stop(worker, signal.SIGKILL)
                kills += 1
                worker = start_worker(env, tmp_path, f"worker-{kills}")

        thread = threading.Thread(target=killer)
        try:
            thread.start()
            for bag in bags:  # 40 bags x 3 scans = 120 notifications, during the kills
                for action in ("verify_label", "cryopreserve", "pack"):
                    assert world.scan("aph", bag["barcode"], action, "APH-1").status_code == 201
            thread.join(timeout=60)
            wait_until(
                lambda: delivered_states(world) == {"delivered": 120},
                120,
                f"120 delivered; still waiting: {undelivered(world)}",
            )
        finally:
            stop_killing.set()
            thread.join(timeout=60)
            stop(beat)
            stop(worker)
    assert kills == 4
    ids = Counter(d.headers["webhook-id"] for d in receiver.accepted())
    assert len(ids) == 120  # none lost
    repeats = sum(ids.values()) - len(ids)
    print(f"\nworker killed {kills} times; receiver saw {repeats} repeated deliveries")


def test_a_poisoned_subscription_is_a_dead_letter_while_the_orders_others_deliver_in_order(
    pg_world: Any, clean_redis: str, pg_url: str, tmp_path: Path
) -> None:
    """A subscription stored before targets were checked (the URL httpx cannot even parse) and
    one whose host does not resolve: both end as dead letters with their errors, and the
    order's healthy webhook and e-mail subscribers hear every milestone, in order."""
    with webhook_receiver() as receiver, smtp_server() as smtp:
        env = worker_env(pg_url, clean_redis, tmp_path, SMTP_URL=smtp.url, NOTIFY_MAX_ATTEMPTS="3")
        worker = start_worker(env, tmp_path, "worker")
        beat = start_beat(env, tmp_path)  # retries after a back-off are the dispatcher's
        try:
            world = pg_world(broker_url=clean_redis, smtp_url=smtp.url)
            order = world.enroll()
            unit = world.collect(order["coi"])
            hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
            subscribe(world, coi=order["coi"], channel="email", target="nurse@example.org")
            subscribe(
                world, coi=order["coi"], channel="webhook", target="https://nowhere.invalid/h"
            )
            with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
                order_id = uow.session.exec(select(Order.id).where(Order.coi == order["coi"])).one()
                care = uow.session.exec(select(User).where(User.email == "care@example.org")).one()
                poisoned = Subscription(
                    created_by_id=care.id,  # type: ignore[arg-type]
                    order_id=order_id,
                    channel=Channel.WEBHOOK,
                    target="https://example.com:abc/h",
                    secret="whsec_" + "A" * 43 + "=",
                )
                uow.session.add(poisoned)
                uow.commit()
            for action, who, site in OUTBOUND:
                if action == "pickup":
                    world.ship([unit["din"]])
                assert world.scan(who, unit["barcode"], action, site).status_code == 201
            wait_until(
                lambda: delivered_states(world) == {"delivered": 14, "dead": 14},
                60,
                "14 delivered and 14 dead",
            )
        finally:
            stop(beat)
            stop(worker)
    kinds = [d.verify(hook["secret"])["data"]["kind"] for d in receiver.accepted()]
    assert kinds == [a for a, _, _ in OUTBOUND]
    assert len(smtp.received()) == 7
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        dead = uow.session.exec(select(Notification).where(col(Notification.state) == "dead")).all()
    errors = Counter(
        "unparsable" if "not a valid URL" in (r.last_error or "") else "unresolvable"
        for r in dead
        if r.last_error and ("not a valid URL" in r.last_error or "nowhere.invalid" in r.last_error)
    )
    assert errors == {"unparsable": 7, "unresolvable": 7}
