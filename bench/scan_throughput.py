"""Scan throughput and latency: concurrent scanners against the API under gunicorn.

    .venv/bin/python bench/scan_throughput.py [--bags 300] [--clients 16] [--workers 4]

Creates a database of its own on PostgreSQL (BENCH_DATABASE_URL, default the local server),
migrates it, enrolls orders and collects one bag each, starts gunicorn with the production
entry point, then has --clients threads each take bags and scan them through verify_label,
cryopreserve and pack over HTTP. Prints throughput and latency percentiles. `--database-url
sqlite:///path` measures the embedded configuration instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from cryptography.fernet import Fernet

from services.db import Database, UnitOfWork, migrate
from services.domain.custody import Role, SiteKind
from services.operations import admin, orders

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STEPS = ("verify_label", "cryopreserve", "pack")


def server_env(url: str) -> dict[str, str]:
    """The environment of a production server on ``url``, for gunicorn."""
    return {
        **os.environ,
        "DATABASE_URL": url,
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "WEBHOOK_SECRET_KEY": Fernet.generate_key().decode(),
        "VAR_DIR": tempfile.mkdtemp(),
        # production counts API calls in Redis; one token drives every simulated scanner
        # here (a real scanner has its own), so its limit is raised out of the way
        "RATELIMIT_STORAGE_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "API_RATE_LIMIT": "100000 per second",
    }


def fresh_database(server_url: str) -> str:
    name = f"v2v_bench_{uuid.uuid4().hex[:8]}"
    libpq = sa.make_url(server_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    parsed = sa.make_url(url)
    libpq = parsed.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


def seed(url: str, bags: int) -> tuple[str, list[str]]:
    """Sites, one apheresis user with a token, and ``bags`` orders with one bag each."""
    database = Database.from_url(url)
    now = dt.datetime.now(dt.UTC)
    with UnitOfWork(database.session_factory) as uow:
        admin.add_site(uow.session, code="APH", kind=SiteKind.COLLECTION, name="A", fin="B1234")
        admin.add_site(uow.session, code="MFG", kind=SiteKind.MANUFACTURING, name="M", fin="M1234")
        admin.add_site(uow.session, code="TRT", kind=SiteKind.TREATMENT, name="T")
        admin.add_user(
            uow.session, email="s@example.org", role=Role.APHERESIS_STAFF, site_code="APH"
        )
        _row, token = admin.create_token(uow.session, email="s@example.org")
        actor = admin.actor_by_email(uow.session, "s@example.org")
        uow.commit()
    barcodes = []
    for start in range(0, bags, 100):  # short transactions: a small session flushes fast
        with UnitOfWork(database.session_factory) as uow:
            barcodes += _orders_with_a_bag(uow, actor, range(start, min(start + 100, bags)), now)
            uow.commit()
    database.engine.dispose()
    return token, barcodes


def _orders_with_a_bag(uow: UnitOfWork, actor: Any, numbers: range, now: dt.datetime) -> list[str]:
    barcodes = []
    for n in numbers:
        order = orders.enroll_order(
            uow.session,
            actor=actor,
            patient_ref=f"B-{n}",
            product="axi-cel",
            collection_site="APH",
            manufacturing_site="MFG",
            treatment_site="TRT",
            now=now,
        )
        unit, _ = orders.register_collection(
            uow.session,
            actor=actor,
            coi=order.coi,
            collected_at=now,
            volume_ml=None,
            now=now,
            max_clock_skew=dt.timedelta(minutes=5),
        )
        barcodes.append(f"={unit.din}00")
    return barcodes


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gunicorn exited during start-up")
        try:
            if httpx.get(f"{base}/api/v1/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def drive(base: str, token: str, barcodes: list[str], clients: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    queue = list(barcodes)

    def client() -> None:
        nonlocal failures
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    barcode = queue.pop()
                for action in STEPS:
                    body = {
                        "barcode": barcode,
                        "action": action,
                        "site": "APH",
                        "event_id": str(uuid.uuid4()),
                    }
                    started = time.perf_counter()
                    response = http.post("/api/v1/scans", json=body)
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                        if response.status_code != 201:
                            failures += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bags", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    own_database = args.database_url is None
    url = fresh_database(server) if own_database else args.database_url
    try:
        migrate.upgrade(url)
        token, barcodes = seed(url, args.bags)
        port = 18000 + os.getpid() % 1000
        env = server_env(url)
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        process = subprocess.Popen(
            [
                gunicorn,
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
                "services.web:create_app()",
            ],
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, process)
            started = time.perf_counter()
            latencies, failures = drive(base, token, barcodes, args.clients)
            wall = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        if own_database:
            drop_database(url)

    backend = sa.make_url(url).get_backend_name()
    print(
        f"scan throughput on {backend}: gunicorn {args.workers} workers, "
        f"{args.clients} concurrent scanners, {len(latencies)} scans "
        f"({args.bags} bags x {len(STEPS)} steps), {failures} not 201"
    )
    print(f"  throughput  {len(latencies) / wall:8.1f} scans/s  (wall {wall:.2f} s)")
    for name, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        print(f"  latency {name} {percentile(latencies, q) * 1000:8.1f} ms")
    print(f"  latency max {max(latencies) * 1000:8.1f} ms")
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
