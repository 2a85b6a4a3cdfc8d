"""Scans through faults: web workers SIGKILLed and PostgreSQL restarted while scanners scan.
Nothing may be lost and nothing doubled.

    .venv/bin/python bench/scan_faults.py [--bags 400] [--clients 8] [--workers 4]
                                          [--kill-every 0.5] [--pg-restarts 2]

Creates a database of its own on PostgreSQL (BENCH_DATABASE_URL, default the local server),
seeds --bags orders with one collected bag each and a feed subscription to their collection
site (so every event writes its outbox row), starts gunicorn (APP_ENV=production), then has
--clients threads take bags and scan each through verify_label, cryopreserve and pack: 3 scans
a bag, 1,200 for 400 bags. A scanner does what a real one does: it keeps the scan's event_id
and sends the same scan again after a dropped connection, a 5xx or a 429, until it is answered
2xx (201 recorded, 200 already recorded). Meanwhile a random gunicorn worker is SIGKILLed every
--kill-every seconds (the master starts another) and PostgreSQL is restarted --pg-restarts
times (pg_ctlcluster; 0 where it cannot be). At the end the record is counted in SQL: each bag
has each step exactly once, each scan row its one event, each event its one outbox row (the
care team's e-mail); no scan was refused; every scan answered 2xx is in the record; and
`vein2vein audit verify` passes. Exits non-zero on any loss, double or refusal.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scan_floor import gunicorn, wait_ready
from bench.scan_throughput import (
    DEFAULT_SERVER,
    STEPS,
    drop_database,
    fresh_database,
    seed,
    server_env,
)
from services.db import Database, UnitOfWork, migrate
from services.domain.notifications import Channel
from services.operations import admin, subscriptions

RETRYABLE = (httpx.TransportError,)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: Counter[int] = Counter()
        self.retries = 0
        self.transport_errors = 0
        self.refused: list[str] = []
        self.answered: set[str] = set()

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


def scanner(base: str, token: str, bags: queue.Queue[str], tally: Tally, stop: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=15) as client:
        while True:
            try:
                barcode = bags.get_nowait()
            except queue.Empty:
                return
            for action in STEPS:
                body = {
                    "barcode": barcode,
                    "action": action,
                    "site": "APH",
                    "event_id": str(uuid.uuid4()),
                }
                while True:
                    if time.monotonic() > stop:
                        raise SystemExit("the scanners ran out of time")
                    try:
                        response = client.post("/api/v1/scans", json=body)
                    except RETRYABLE:
                        tally.add(retries=1, transport_errors=1)
                        time.sleep(0.05)
                        continue
                    with tally.lock:
                        tally.answers[response.status_code] += 1
                    if response.status_code >= 500 or response.status_code == 429:
                        tally.add(retries=1)
                        time.sleep(0.05)
                        continue
                    if response.status_code not in (200, 201):
                        with tally.lock:
                            tally.refused.append(f"{barcode} {action}: {response.text[:200]}")
                    else:
                        with tally.lock:
                            tally.answered.add(body["event_id"])
                    break


def subscribe_site(url: str) -> None:
    """The collection site's care team hears of every event of its orders: an outbox row each."""
    database = Database.from_url(url)
    with UnitOfWork(database.session_factory) as uow:
        subscriptions.subscribe(
            uow.session,
            actor=admin.actor_by_email(uow.session, "s@example.org"),
            coi=None,
            site="APH",
            channel=Channel.EMAIL,  # no worker runs here: its rows wait, counted
            target="care@example.org",
            events=None,
            allow_private=False,
        )
        uow.commit()
    database.engine.dispose()


def workers_of(master: int) -> list[int]:
    ran = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return [int(pid) for pid in ran.stdout.split()]


def restart_command() -> list[str] | None:
    versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
    if shutil.which("pg_ctlcluster") is None or len(versions) != 1:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "restart"]


def faults(
    master: int, kill_every: float, restarts: int, done: threading.Event, log: dict[str, Any]
) -> None:
    command = restart_command() if restarts else None
    if restarts and command is None:
        log["restart_skipped"] = "pg_ctlcluster or a single /etc/postgresql cluster not found"
    next_restart = time.monotonic() + 3.0
    while not done.wait(kill_every):
        pids = workers_of(master)
        if pids:
            try:
                os.kill(random.choice(pids), signal.SIGKILL)
                log["killed"] += 1
            except ProcessLookupError:
                pass
        if command and log["restarted"] < restarts and time.monotonic() >= next_restart:
            subprocess.run(command, check=True, capture_output=True)
            log["restarted"] += 1
            next_restart = time.monotonic() + 4.0


def count(url: str, bags: int) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:

        def one(sql: str) -> int:
            return int(connection.execute(sa.text(sql), {"steps": list(STEPS)}).scalar_one())

        result = {
            "events": one("SELECT count(*) FROM custody_events WHERE action = ANY(:steps)"),
            "distinct": one(
                "SELECT count(*) FROM (SELECT DISTINCT unit_id, action FROM custody_events "
                "WHERE action = ANY(:steps)) AS d"
            ),
            "scan_rows": one("SELECT count(*) FROM scans WHERE action = ANY(:steps)"),
            "scan_rows_without_event": one(
                "SELECT count(*) FROM scans s WHERE NOT EXISTS "
                "(SELECT 1 FROM custody_events e WHERE e.scan_id = s.id)"
            ),
            "outbox": one(
                "SELECT count(*) FROM notifications n JOIN custody_events e "
                "ON n.source = 'custody_event' AND n.source_id = e.id "
                "JOIN subscriptions s ON s.id = n.subscription_id "
                "WHERE e.action = ANY(:steps) AND s.channel = 'email'"
            ),
            "refused_rows": one("SELECT count(*) FROM refused_scans"),
        }
    engine.dispose()
    result["expected"] = bags * len(STEPS)
    return result


def scan_ids(url: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        ids = {row[0] for row in connection.execute(sa.text("SELECT event_id FROM scans"))}
    engine.dispose()
    return ids


def audit_verify(url: str) -> tuple[int, str]:
    binary = str(Path(sys.executable).with_name("vein2vein"))
    env = {**os.environ, "DATABASE_URL": url, "APP_ENV": "development"}
    ran = subprocess.run(
        [binary, "audit", "verify"], env=env, capture_output=True, text=True, check=False
    )
    lines = (ran.stdout or ran.stderr).strip().splitlines()
    return ran.returncode, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bags", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=0.5)
    parser.add_argument("--pg-restarts", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    url = fresh_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER))
    process = None
    try:
        migrate.upgrade(url)
        token, barcodes = seed(url, args.bags)
        subscribe_site(url)
        env = server_env(url)
        port = 19600 + os.getpid() % 300
        process = gunicorn("services.web:create_app()", port, args.workers, env)
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/api/v1/openapi.json", process)

        bags: queue.Queue[str] = queue.Queue()
        for barcode in barcodes:
            bags.put(barcode)
        tally = Tally()
        log: dict[str, Any] = {"killed": 0, "restarted": 0}
        done = threading.Event()
        stop = time.monotonic() + args.timeout
        started = time.perf_counter()
        chaos = threading.Thread(
            target=faults, args=(process.pid, args.kill_every, args.pg_restarts, done, log)
        )
        chaos.start()
        threads = [
            threading.Thread(target=scanner, args=(base, token, bags, tally, stop))
            for _ in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        chaos.join()
        elapsed = time.perf_counter() - started
        found = count(url, args.bags)
        unrecorded = tally.answered - scan_ids(url)
        verified, verdict = audit_verify(url)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        drop_database(url)

    lost = found["expected"] - found["distinct"]
    doubled = found["events"] - found["distinct"]
    answers = ", ".join(f"{code}: {n}" for code, n in sorted(tally.answers.items()))
    print(
        f"\n{found['expected']} scans ({args.bags} bags x {len(STEPS)} steps) by {args.clients} "
        f"scanners through gunicorn -w {args.workers} in {elapsed:.1f} s"
    )
    skipped = f" ({log['restart_skipped']})" if "restart_skipped" in log else ""
    print(
        f"faults: {log['killed']} web workers SIGKILLed, PostgreSQL restarted "
        f"{log['restarted']} times{skipped}"
    )
    print(
        f"answers: {answers}; {tally.transport_errors} dropped connections; "
        f"{tally.retries} scans sent again with their event_id"
    )
    print(
        f"recorded: {found['events']} events for {found['distinct']} distinct (bag, step); "
        f"scan rows {found['scan_rows']} ({found['scan_rows_without_event']} without an event); "
        f"outbox rows {found['outbox']}; refused {found['refused_rows']}"
    )
    print(f"lost {lost}, doubled {doubled}, answered but not recorded {len(unrecorded)}")
    print(f"audit verify: exit {verified}: {verdict}")
    failures = [
        lost,
        doubled,
        len(unrecorded),
        len(tally.refused),
        found["scan_rows"] - found["events"],
        found["scan_rows_without_event"],
        found["outbox"] - found["events"],
        verified,
    ]
    for refusal in tally.refused[:10]:
        print(f"  refused: {refusal}")
    if any(failures):
        raise SystemExit("FAILED: something was lost, doubled, refused or unverified")
    print("OK: nothing lost, nothing doubled, the chain verifies")


if __name__ == "__main__":
    main()
