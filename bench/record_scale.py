"""Costs as the record grows: a scan among 10,000 and 1,000,000 custody events, the timeline
and audit view of an order with 500 events, and turnaround over two years of closed legs.

    .venv/bin/python bench/record_scale.py [--events 10000 1000000] [--scans 200]
                                           [--order-events 500] [--legs 100000]

Each part builds a database of its own on PostgreSQL (BENCH_DATABASE_URL, default the local
server). The bulk rows (other orders' events, closed legs) are written in SQL under one
archive order, as history would be; the order and bags that are timed are made through the
real operations. Requests go through the application in-process (Flask's test client: the
same code as under gunicorn, without the network), one at a time; p50 and p95 are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scan_throughput import DEFAULT_SERVER, drop_database, fresh_database, seed
from services.config import Settings
from services.db import Database, UnitOfWork, migrate
from services.operations import admin, orders, passwords

PASSWORD = "bench-" + secrets.token_urlsafe(12)


def app_for(url: str) -> Any:
    from services.web import create_app

    settings = Settings(
        _env_file=None,
        app_env="development",  # as a server runs it (start-up frozen; see create_app)
        database_url=url,
        secret_key=secrets.token_urlsafe(32),
        var_dir=Path(tempfile.mkdtemp()),
        api_rate_limit="100000 per second",
    )
    return create_app(settings)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def timed(call: Any, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def enroll(database: Database, patient_ref: str) -> tuple[int, int, str]:
    """An order enrolled by the seeded apheresis user: its id, the user's id, its COI."""
    with UnitOfWork(database.session_factory) as uow:
        actor = admin.actor_by_email(uow.session, "s@example.org")
        order = orders.enroll_order(
            uow.session,
            actor=actor,
            patient_ref=patient_ref,
            product="axi-cel",
            collection_site="APH",
            manufacturing_site="MFG",
            treatment_site="TRT",
            now=dt.datetime.now(dt.UTC),
        )
        uow.commit()
        assert order.id is not None
        return order.id, actor.user_id, order.coi


def archive(url: str, *, events: int = 0, legs: int = 0, years: float = 2.0) -> None:
    """History under one archive order: ``events`` custody events on bags of their own, and
    ``legs`` closed legs spread over ``years`` (four per bag)."""
    database = Database.from_url(url)
    order_id, user_id, _coi = enroll(database, "ARCHIVE")
    bags = max(-(-events // 10), -(-legs // 4), 1)
    with database.engine.begin() as connection:
        aph = connection.execute(sa.text("SELECT id FROM sites WHERE code = 'APH'")).scalar_one()
        connection.execute(
            sa.text("""
            INSERT INTO units (din, kind, order_id, state, custodian_site_id, collected_at,
                               created_at)
            SELECT 'Z9999' || lpad(i::text, 8, '0'), 'apheresis', :order, 'in_manufacturing',
                   :aph, now() - interval '2 years', now()
            FROM generate_series(1, :bags) AS i
            """),
            {"order": order_id, "bags": bags, "aph": aph},
        )
        first = connection.execute(
            sa.text("SELECT min(id) FROM units WHERE order_id = :order"), {"order": order_id}
        ).scalar_one()
        if events:
            connection.execute(
                sa.text("""
                INSERT INTO custody_events (order_id, sequence, chain_position, unit_id, action,
                    from_state, to_state, site_id, actor_id, custodian_site_id, occurred_at,
                    recorded_at, needs_review, prev_hash, hash)
                SELECT :order, 1000 + n, 1000 + n, u.id, 'verify_label', 'collected',
                       'label_verified', :aph, :user, :aph,
                       now() - interval '2 years' + n * interval '1 minute',
                       now() - interval '2 years' + n * interval '1 minute', false,
                       md5(n::text) || md5(n::text), md5((n + 1)::text) || md5(n::text)
                FROM generate_series(1, :events) AS n
                CROSS JOIN LATERAL (SELECT :first + (n - 1) / 10 AS id) AS u
                """),
                {"order": order_id, "events": events, "aph": aph, "user": user_id, "first": first},
            )
        if legs:
            connection.execute(
                sa.text(
                    """
                INSERT INTO deadlines (order_id, unit_id, leg, site_id, policy_version,
                    limit_seconds, at_risk_fraction, escalate_after_seconds, started_at,
                    at_risk_at, due_at, escalate_at, closed_at, created_at)
                SELECT :order, u.id, leg.name, :aph, 0, 172800, 0.75, 43200, s.started,
                       s.started + interval '36 hours', s.started + interval '48 hours',
                       s.started + interval '60 hours',
                       s.started + (10 + (u.k * 7 + leg.ord * 13) %% 70) * interval '1 hour',
                       now()
                FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM units
                      WHERE order_id = :order) AS u
                CROSS JOIN LATERAL (
                    SELECT name, ord
                    FROM unnest(CAST(:legs AS text[])) WITH ORDINALITY AS t(name, ord)
                ) AS leg
                CROSS JOIN LATERAL (
                    SELECT now() - :years * interval '365 days'
                           + ((u.k * 4 + leg.ord) * :span) * interval '1 second' AS started
                ) AS s
                WHERE (u.k - 1) * 4 + leg.ord <= :count
                """.replace("%%", "%")
                ),
                {
                    "order": order_id,
                    "aph": aph,
                    "count": legs,
                    "years": years,
                    "span": int(years * 365 * 86400 / max(legs, 1)),
                    "legs": [
                        "collection_to_pickup",
                        "pickup_to_delivery",
                        "delivery_to_receipt",
                        "receipt_to_batch_start",
                    ],
                },
            )
    # settle the history as a database that has lived with it would be: vacuumed and analysed
    # (else autovacuum's pass over a million fresh rows runs during the timing)
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as settle:
        settle.execute(sa.text("VACUUM ANALYZE"))
    database.engine.dispose()


def scan_among(server: str, events: int, scans: int) -> list[float]:
    url = fresh_database(server)
    try:
        migrate.upgrade(url)
        token, barcodes = seed(url, scans + 10)
        archive(url, events=events)
        app = app_for(url)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        queue = list(barcodes)

        def scan() -> None:
            response = client.post(
                "/api/v1/scans",
                json={
                    "barcode": queue.pop(),
                    "action": "verify_label",
                    "site": "APH",
                    "event_id": str(uuid.uuid4()),
                },
                headers=headers,
            )
            assert response.status_code == 201, response.json

        timed(scan, 10)  # warm: caches, prepared statements
        samples = timed(scan, scans)
        app.extensions["vein2vein"].db.engine.dispose()
        return samples
    finally:
        drop_database(url)


def timeline(server: str, count: int, requests: int) -> dict[str, list[float]]:
    url = fresh_database(server)
    try:
        migrate.upgrade(url)
        token, _ = seed(url, 0)
        database = Database.from_url(url)
        _order_id, _user_id, coi = enroll(database, "BUSY")
        now = dt.datetime.now(dt.UTC)
        database.engine.dispose()
        app = app_for(url)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        made = 1  # the enrolment
        while made < count:
            response = client.post(
                f"/api/v1/orders/{coi}/collections",
                json={"collected_at": now.isoformat()},
                headers=headers,
            )
            assert response.status_code == 201, response.json
            made += 1
            if made < count:
                barcode = response.json["barcode"]
                scanned = client.post(
                    "/api/v1/scans",
                    json={"barcode": barcode, "action": "verify_label", "site": "APH"},
                    headers=headers,
                )
                assert scanned.status_code == 201, scanned.json
                made += 1
        # the pages, signed in as a person would be
        browser = app.test_client()
        with UnitOfWork(app.extensions["vein2vein"].db.session_factory) as uow:
            passwords.set_password(uow.session, email="s@example.org", password=PASSWORD)
            uow.commit()
        form = browser.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form)
        assert csrf is not None
        signed = browser.post(
            "/login",
            data={"email": "s@example.org", "password": PASSWORD, "csrf_token": csrf.group(1)},
        )
        assert signed.status_code in (302, 303), signed.status_code
        results = {}
        for name, path, via in (
            ("timeline (API)", f"/api/v1/orders/{coi}/events", client),
            ("order (API)", f"/api/v1/orders/{coi}", client),
            ("audit (API)", f"/api/v1/orders/{coi}/audit", client),
            ("timeline page", f"/orders/{coi}", browser),
            # the whole record on one page, as "Show all" draws it (not a target; for scale)
            ("page, all events", f"/orders/{coi}?events=all", browser),
        ):

            def get(path: str = path, via: Any = via) -> None:
                response = via.get(path, headers=headers if via is client else {})
                assert response.status_code == 200, response.status_code

            timed(get, 3)
            results[name] = timed(get, requests)
        events = client.get(f"/api/v1/orders/{coi}/events", headers=headers).json["events"]
        results["_events"] = [float(len(events))]
        app.extensions["vein2vein"].db.engine.dispose()
        return results
    finally:
        drop_database(url)


def turnaround(server: str, legs: int, requests: int) -> tuple[list[float], int]:
    url = fresh_database(server)
    try:
        migrate.upgrade(url)
        token, _ = seed(url, 0)
        archive(url, legs=legs)
        app = app_for(url)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        since = until - dt.timedelta(days=2 * 365 + 60)
        path = (
            f"/api/v1/turnaround?since={since:%Y-%m-%dT%H:%M:%SZ}&until={until:%Y-%m-%dT%H:%M:%SZ}"
        )
        first = client.get(path, headers=headers)
        assert first.status_code == 200, first.json
        counted = sum(item["count"] for item in first.json["items"])
        samples = timed(lambda: client.get(path, headers=headers), requests)
        app.extensions["vein2vein"].db.engine.dispose()
        return samples, counted
    finally:
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--order-events", type=int, default=500)
    parser.add_argument("--legs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--only", choices=["scan", "timeline", "turnaround"], default=None)
    args = parser.parse_args()
    server = __import__("os").environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)

    if args.only in (None, "scan"):
        medians = {}
        for events in args.events:
            samples = scan_among(server, events, args.scans)
            medians[events] = statistics.median(samples)
            print(f"scan among {events:>9,} events:  {percentiles(samples)}", flush=True)
        if len(medians) >= 2:
            small, large = min(medians), max(medians)
            print(
                f"  median with {large:,} / with {small:,}: {medians[large] / medians[small]:.2f}x"
            )
    if args.only in (None, "timeline"):
        results = timeline(server, args.order_events, args.requests)
        events = int(results.pop("_events")[0])
        for name, samples in results.items():
            print(f"{name:>16} of an order with {events} events:  {percentiles(samples)}")
    if args.only in (None, "turnaround"):
        samples, counted = turnaround(server, args.legs, args.requests)
        print(f"turnaround over {counted:,} closed legs (2 years):  {percentiles(samples)}")


if __name__ == "__main__":
    main()
