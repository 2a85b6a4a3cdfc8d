"""Event-to-delivery latency of webhooks under a load of scans, with one Celery worker.

    .venv/bin/python bench/notification_latency.py [--bags 200] [--clients 8] [--concurrency 2]

Builds a database of its own on PostgreSQL (BENCH_DATABASE_URL, default the local server),
starts gunicorn, one `celery worker` and the beat on Redis (BENCH_REDIS_URL, default database 14
of the local server), subscribes a webhook to the collection site, and drives --clients
scanners through verify_label, cryopreserve and pack for --bags bags. Latency is the time from
an event's recorded_at (server clock) to its arrival at the receiver, on the same machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import redis
from cryptography.fernet import Fernet

# the receiver and process helpers are the test suite's own: this script reuses them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scan_throughput import DEFAULT_SERVER, drop_database, fresh_database, seed, wait_ready

from services.db import Database, UnitOfWork, migrate
from services.domain.notifications import Channel
from services.operations import admin, subscriptions
from tests.processes import clean_env, free_port, start, stop, wait_for_log
from tests.receivers import webhook_receiver

BIN = Path(sys.executable).parent
STEPS = ("verify_label", "cryopreserve", "pack")


def subscribe_site(url: str, target: str) -> None:
    database = Database.from_url(url)
    with UnitOfWork(database.session_factory) as uow:
        actor = admin.actor_by_email(uow.session, "s@example.org")
        subscriptions.subscribe(
            uow.session,
            actor=actor,
            coi=None,
            site="APH",
            channel=Channel.WEBHOOK,
            target=target,
            events=None,
            allow_private=True,
        )
        uow.commit()
    database.engine.dispose()


def scan_all(base: str, token: str, barcodes: list[str], clients: int) -> float:
    queue = list(barcodes)
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    barcode = queue.pop()
                for action in STEPS:
                    response = http.post(
                        "/api/v1/scans",
                        json={
                            "barcode": barcode,
                            "action": action,
                            "site": "APH",
                            "event_id": str(uuid.uuid4()),
                        },
                    )
                    if response.status_code != 201:
                        raise SystemExit(f"scan failed: {response.status_code} {response.text}")

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bags", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's pool size")
    args = parser.parse_args()

    broker = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(broker).flushdb()
    url = fresh_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER))
    work = Path(tempfile.mkdtemp(prefix="v2v-bench-"))
    processes = []
    try:
        migrate.upgrade(url)
        token, barcodes = seed(url, args.bags)
        env = clean_env(
            DATABASE_URL=url,
            BROKER_URL=broker,
            APP_ENV="production",
            SECRET_KEY=secrets.token_urlsafe(32),
            WEBHOOK_SECRET_KEY=Fernet.generate_key().decode(),
            VAR_DIR=str(work / "var"),
            WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
            DISPATCH_INTERVAL_SECONDS="1",
            API_RATE_LIMIT="100000 per second",  # one token stands for every scanner here
        )
        with webhook_receiver() as receiver:
            subscribe_site(url, receiver.url)
            port = free_port()
            web = start(
                [
                    str(BIN / "gunicorn"),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "4",
                    "--log-level",
                    "warning",
                    "services.web:create_app()",
                ],
                cwd=work,
                env=env,
                log=work / "web.log",
            )
            worker = start(
                [
                    str(BIN / "celery"),
                    "-A",
                    "workers.celery_app",
                    "worker",
                    f"--concurrency={args.concurrency}",
                    "--loglevel=INFO",
                    "-n",
                    "bench@%h",
                ],
                cwd=work,
                env=env,
                log=work / "worker.log",
            )
            beat = start(
                [str(BIN / "celery"), "-A", "workers.celery_app", "beat", "--loglevel=INFO"],
                cwd=work,
                env=env,
                log=work / "beat.log",
            )
            processes = [web, worker, beat]
            wait_ready(f"http://127.0.0.1:{port}", web)
            wait_for_log(work / "beat.log", "beat: Starting", beat)
            wait_for_log(work / "worker.log", "ready.", worker)

            expected = len(barcodes) * len(STEPS)
            wall = scan_all(f"http://127.0.0.1:{port}", token, barcodes, args.clients)
            deadline = time.monotonic() + 300
            while len(receiver.accepted()) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            received = receiver.accepted()
    finally:
        for process in processes:
            stop(process)
        drop_database(url)

    latencies = sorted(
        d.arrived - dt.datetime.fromisoformat(d.json["data"]["recorded_at"]).timestamp()
        for d in received
    )
    by_time = sorted(received, key=lambda d: d.json["data"]["recorded_at"])
    if os.environ.get("BENCH_TRACE"):
        for d in by_time[:: max(1, len(by_time) // 15)]:
            recorded = dt.datetime.fromisoformat(d.json["data"]["recorded_at"]).timestamp()
            print(
                f"  recorded {recorded % 100:7.2f}  arrived {d.arrived % 100:7.2f}  "
                f"latency {d.arrived - recorded:.3f}"
            )
    ids = {d.headers["webhook-id"] for d in received}
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"webhook delivery under load: {len(barcodes)} bags x {len(STEPS)} scans by "
        f"{args.clients} scanners over {wall:.1f} s ({expected / wall:.0f} scans/s); "
        f"one worker, pool {args.concurrency}"
    )
    print(f"  delivered {len(ids)} of {expected} ({len(received) - len(ids)} repeats)")
    print(
        f"  event-to-delivery p50 {quantiles[49]:.3f} s   p95 {quantiles[94]:.3f} s   "
        f"p99 {quantiles[98]:.3f} s   max {latencies[-1]:.3f} s"
    )
    if len(ids) != expected:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
