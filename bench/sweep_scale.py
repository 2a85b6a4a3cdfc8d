"""How the deadline sweep scales with legs in flight: 1,000,000 open legs, 1,000 of them due.

    .venv/bin/python bench/sweep_scale.py [--open 1000000 10000] [--due 1000]

For each size, builds a database of its own on PostgreSQL (BENCH_DATABASE_URL, default the local
server) with that many open legs, of which --due are past due, and times one sweep (flags, order
events and the care team's notifications included, committed). The sweep's cost should follow
the due legs, not the open ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time

import sqlalchemy as sa
from scan_throughput import DEFAULT_SERVER, drop_database, fresh_database

from services.db import Database, UnitOfWork, migrate
from services.domain.custody import Role, SiteKind
from services.operations import admin, deadlines, orders

LEGS = (
    "collection_to_pickup",
    "pickup_to_delivery",
    "delivery_to_receipt",
    "receipt_to_batch_start",
)


def fill(url: str, open_legs: int, due: int) -> None:
    """One order with open_legs / 4 bags, four open legs each; the first ``due`` are late."""
    database = Database.from_url(url)
    now = dt.datetime.now(dt.UTC)
    with UnitOfWork(database.session_factory) as uow:
        for code, kind, fin in (
            ("APH", SiteKind.COLLECTION, "B1234"),
            ("MFG", SiteKind.MANUFACTURING, "M1234"),
            ("TRT", SiteKind.TREATMENT, None),
        ):
            admin.add_site(uow.session, code=code, kind=kind, name=code, fin=fin)
        admin.add_user(uow.session, email="care@example.org", role=Role.CARE_TEAM, site_code="TRT")
        actor = admin.actor_by_email(uow.session, "care@example.org")
        order = orders.enroll_order(
            uow.session,
            actor=actor,
            patient_ref="B",
            product="axi-cel",
            collection_site="APH",
            manufacturing_site="MFG",
            treatment_site="TRT",
            now=now,
        )
        uow.commit()
        order_id = order.id
    bags = -(-open_legs // len(LEGS))
    with database.engine.begin() as connection:
        connection.execute(
            sa.text("""
            INSERT INTO units (din, kind, order_id, state, custodian_site_id, collected_at,
                               created_at)
            SELECT 'B1234' || lpad(i::text, 8, '0'), 'apheresis', :order, 'in_transit',
                   (SELECT id FROM sites WHERE code = 'APH'), now(), now()
            FROM generate_series(1, :bags) AS i
        """),
            {"order": order_id, "bags": bags},
        )
        connection.execute(
            sa.text("""
            INSERT INTO deadlines (order_id, unit_id, leg, site_id, policy_version, limit_seconds,
                                   at_risk_fraction, escalate_after_seconds, started_at,
                                   at_risk_at, due_at, escalate_at, created_at)
            SELECT :order, u.id, leg.name, u.custodian_site_id, 0, 172800, 0.75, 43200,
                   CASE WHEN n <= :due THEN now() - interval '49 hours' ELSE now() END,
                   CASE WHEN n <= :due THEN now() - interval '13 hours'
                        ELSE now() + interval '36 hours' END,
                   CASE WHEN n <= :due THEN now() - interval '1 hour'
                        ELSE now() + interval '48 hours' END,
                   CASE WHEN n <= :due THEN now() + interval '11 hours'
                        ELSE now() + interval '60 hours' END,
                   now()
            FROM (SELECT u.*, row_number() OVER (ORDER BY u.id) AS k FROM units u) AS u
            CROSS JOIN LATERAL (
                SELECT name, ord, (u.k - 1) * 4 + ord AS n
                FROM unnest(CAST(:legs AS text[])) WITH ORDINALITY AS t(name, ord)
            ) AS leg
            WHERE (u.k - 1) * 4 + leg.ord <= :open
        """),
            {"order": order_id, "due": due, "open": open_legs, "legs": list(LEGS)},
        )
        connection.execute(sa.text("ANALYZE"))
    database.engine.dispose()


def time_sweep(url: str) -> tuple[float, deadlines.SweepResult, str]:
    database = Database.from_url(url)
    with database.engine.connect() as connection:
        plan = "\n".join(
            connection.execute(
                sa.text(
                    "EXPLAIN SELECT * FROM deadlines WHERE closed_at IS NULL "
                    "AND late_flagged_at IS NULL AND due_at <= now() ORDER BY due_at LIMIT 5000"
                )
            ).scalars()
        )
    started = time.perf_counter()
    with UnitOfWork(database.session_factory) as uow:
        result = deadlines.sweep(uow.session, now=dt.datetime.now(dt.UTC))
        uow.commit()
    elapsed = time.perf_counter() - started
    database.engine.dispose()
    return elapsed, result, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--open", type=int, nargs="+", default=[1_000_000, 10_000])
    parser.add_argument("--due", type=int, default=1000)
    args = parser.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    figures = []
    for open_legs in args.open:
        url = fresh_database(server)
        try:
            migrate.upgrade(url)
            started = time.perf_counter()
            fill(url, open_legs, args.due)
            filled = time.perf_counter() - started
            elapsed, result, plan = time_sweep(url)
        finally:
            drop_database(url)
        figures.append(elapsed)
        print(
            f"{open_legs:>9,} open legs, {args.due} due: one sweep {elapsed * 1000:7.1f} ms "
            f"({result}; filled in {filled:.0f} s)"
        )
        print(
            "  late-leg query plan: "
            + plan.splitlines()[0].strip()
            + " / "
            + " ".join(line.strip() for line in plan.splitlines()[1:3])
        )
    if len(figures) == 2:
        print(f"ratio {figures[0] / figures[1]:.2f}x")


if __name__ == "__main__":
    main()
