"""The EPCIS query (GET /api/v1/epcis/events) over 1,000 and 100,000 events: p50/p95 per page.

    .venv/bin/python bench/epcis_query.py [--events 1000 100000] [--requests 50] [--before]

For each size, a PostgreSQL database of its own (BENCH_DATABASE_URL, default the local server),
with orders of five records each (enrolment, collection, label check, freezing, packing) written
in SQL, as history would be: every order is seen by the apheresis site APH (whose user asks),
one in a hundred by a second treatment site TRT2. Requests go through the application
in-process (Flask's test client: the same code as under gunicorn, without the network), one
at a time; p50 and p95 over --requests each:
- the first page (perPage=100);
- a page anywhere in the record (a nextPageToken at a random order);
- EQ_bizStep=packing (one record in five), a page of 100;
- MATCH_epc of one random bag (its three events);
- GE_eventTime over the last tenth of the record's time, a page of 100;
- the first page for TRT2's user, who sees one order in a hundred.
--before: also one first page the way the query ran before it moved into SQL (every event of
every visible order rebuilt, then filtered), timed once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scan_throughput import DEFAULT_SERVER, drop_database, fresh_database
from services.config import Settings
from services.db import Database, UnitOfWork, migrate
from services.domain.custody import Role, SiteKind
from services.domain.epcis import Uris
from services.operations import access, admin, epcis, epcis_query

BASE = "https://vein2vein.example/id"


def seed(url: str, events: int) -> dict[str, str]:
    """Sites, two users with tokens, and ``events`` / 5 orders of five records each."""
    database = Database.from_url(url)
    tokens = {}
    with UnitOfWork(database.session_factory) as uow:
        session = uow.session
        admin.add_site(session, code="APH", kind=SiteKind.COLLECTION, name="A", fin="B1234")
        admin.add_site(session, code="MFG", kind=SiteKind.MANUFACTURING, name="M", fin="M1234")
        admin.add_site(session, code="TRT", kind=SiteKind.TREATMENT, name="T")
        admin.add_site(session, code="TRT2", kind=SiteKind.TREATMENT, name="T2")
        for email, role, site in (
            ("s@example.org", Role.APHERESIS_STAFF, "APH"),
            ("t2@example.org", Role.CARE_TEAM, "TRT2"),
        ):
            admin.add_user(session, email=email, role=role, site_code=site)
            tokens[email] = admin.create_token(session, email=email)[1]
        uow.commit()
    orders = max(1, events // 5)
    with database.engine.begin() as connection:
        site = dict(connection.execute(sa.text("SELECT code, id FROM sites")).all())
        user = connection.execute(
            sa.text("SELECT id FROM users WHERE email = 's@example.org'")
        ).scalar_one()
        values = {
            "n": orders,
            "aph": site["APH"],
            "mfg": site["MFG"],
            "trt": site["TRT"],
            "trt2": site["TRT2"],
            "user": user,
        }
        connection.execute(
            sa.text("""
            INSERT INTO orders (coi, patient_ref, product, collection_site_id,
                manufacturing_site_id, treatment_site_id, state, last_sequence, created_by_id,
                created_at)
            SELECT 'Z' || lpad(i::text, 14, '0'), 'P-' || i, 'axi-cel', :aph, :mfg,
                   CASE WHEN i % 100 = 0 THEN :trt2 ELSE :trt END, 'in_progress', 4, :user,
                   now() - (:n - i) * interval '1 minute'
            FROM generate_series(1, :n) AS i
            """),
            values,
        )
        connection.execute(
            sa.text("""
            INSERT INTO units (din, kind, order_id, state, custodian_site_id, collected_at,
                               created_at)
            SELECT 'Z' || lpad(o.id::text, 12, '0'), 'apheresis', o.id, 'packed', :aph,
                   o.created_at, o.created_at
            FROM orders o
            """),
            values,
        )
        connection.execute(
            sa.text("""
            INSERT INTO custody_events (order_id, sequence, chain_position, unit_id, action,
                from_state, to_state, site_id, actor_id, custodian_site_id, occurred_at,
                recorded_at, needs_review, prev_hash, hash)
            SELECT o.id, s.seq, s.seq + 1, CASE WHEN s.seq = 0 THEN NULL ELSE u.id END,
                   s.action, s.from_state, s.to_state, :aph, :user, :aph,
                   o.created_at + s.seq * interval '1 second',
                   o.created_at + s.seq * interval '1 second', false,
                   md5(o.id || '/' || s.seq) || md5(s.seq || '/' || o.id),
                   md5(o.id || '-' || s.seq) || md5(s.seq || '-' || o.id)
            FROM orders o
            JOIN units u ON u.order_id = o.id
            CROSS JOIN (VALUES
                (0, 'enroll', NULL, NULL),
                (1, 'collect', NULL, 'collected'),
                (2, 'verify_label', 'collected', 'label_verified'),
                (3, 'cryopreserve', 'label_verified', 'cryopreserved'),
                (4, 'pack', 'cryopreserved', 'packed')
            ) AS s(seq, action, from_state, to_state)
            """),
            values,
        )
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as settle:
        settle.execute(sa.text("VACUUM ANALYZE"))
    database.engine.dispose()
    return tokens


def app_for(url: str) -> Any:
    from services.web import create_app

    return create_app(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            app_env="development",  # as a server runs it (start-up frozen; see create_app)
            database_url=url,
            secret_key=secrets.token_urlsafe(32),
            var_dir=Path(tempfile.mkdtemp()),
            api_rate_limit="100000 per second",
        )
    )


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]
    return f"p50 {statistics.median(ordered) * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms"


def run(server: str, events: int, requests: int, before: bool) -> None:
    url = fresh_database(server)
    try:
        migrate.upgrade(url)
        began = time.perf_counter()
        tokens = seed(url, events)
        print(
            f"{events:,} events in {events // 5:,} orders, written in "
            f"{time.perf_counter() - began:.1f} s"
        )
        app = app_for(url)
        client = app.test_client()
        aph = {"Authorization": f"Bearer {tokens['s@example.org']}"}
        trt2 = {"Authorization": f"Bearer {tokens['t2@example.org']}"}
        orders = events // 5
        rng = random.Random(7)
        window = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=orders // 10)).isoformat()

        def get(path: str, headers: dict[str, str], expect: int) -> None:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            found = response.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
            assert len(found) == expect, (path, len(found), expect)

        cases = {
            "first page (perPage=100)": lambda: get(
                "/api/v1/epcis/events?perPage=100", aph, min(100, events)
            ),
            "a page anywhere (nextPageToken)": lambda: get(
                "/api/v1/epcis/events?perPage=100&nextPageToken="
                + epcis_query.page_token((rng.randrange(1, max(2, orders - 25)), 4)),
                aph,
                100 if orders > 25 else min(100, events),
            ),
            "EQ_bizStep=packing (perPage=100)": lambda: get(
                "/api/v1/epcis/events?perPage=100&EQ_bizStep=packing", aph, min(100, orders)
            ),
            "MATCH_epc of one bag": lambda: get(
                "/api/v1/epcis/events?MATCH_epc="
                + quote(f"{BASE}/din/Z{rng.randrange(1, orders + 1):012d}", safe=""),
                aph,
                4,
            ),
            "GE_eventTime, last tenth (perPage=100)": lambda: get(
                "/api/v1/epcis/events?perPage=100&GE_eventTime=" + quote(window, safe=""),
                aph,
                min(100, 5 * (orders // 10)),
            ),
            "TRT2's first page (sees 1 order in 100)": lambda: get(
                "/api/v1/epcis/events?perPage=100", trt2, min(100, 5 * (orders // 100))
            ),
        }
        for name, call in cases.items():
            call()  # warm: the first request of a kind loads and plans
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                call()
                samples.append(time.perf_counter() - started)
            print(f"  {name:<42} {percentiles(samples)}")
        if before:
            with UnitOfWork(app.extensions["vein2vein"].db.session_factory) as uow:
                actor = admin.actor_by_email(uow.session, "s@example.org")
                started = time.perf_counter()
                query = epcis_query.parse_query({"perPage": "100"})
                page = []
                for order in uow.session.exec(
                    sa.select(epcis.Order)
                    .where(access.order_condition(actor))
                    .order_by(epcis.Order.id)
                ).scalars():
                    page += [
                        e
                        for e in epcis.order_events(uow.session, order, Uris(BASE))
                        if query.wants(e)
                    ]
                took = time.perf_counter() - started
            print(f"  {'before: first page, every event rebuilt':<42} {took * 1000:8.1f} ms (once)")
        app.extensions["vein2vein"].db.engine.dispose()
    finally:
        drop_database(url)


def main() -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # each size migrates a database
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--before", action="store_true")
    args = parser.parse_args()
    import os

    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    for events in args.events:
        run(server, events, args.requests, args.before)


if __name__ == "__main__":
    main()
