"""Re-planning every plan in flight after a capacity change: seconds for 5,000 orders.

    .venv/bin/python bench/replan.py [--orders 5000] [--repeat 3]

Creates a database of its own on PostgreSQL (BENCH_DATABASE_URL, default the local server),
writes --orders orders with their plans (booked on a week of slots) and their enrolment and
collection records in bulk SQL, settles the plans once, then:

1. re-plans them all with nothing changed (every chain read and recomputed, nothing written);
2. changes the capacity: the manufacturing site moves a day's slots a day later, and the plans
   booked on it move with them; then re-plans them all (only the plans whose chain moved are
   written, in one executemany).

services.operations.plans.replan_in_flight does the work: one read of the plans with their
orders and treatment sites, one of the profiles, one of the milestones, the arithmetic of
services.domain.plans in Python, one UPDATE ... executemany. The aim: under 2 s for 5,000.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scan_throughput import DEFAULT_SERVER, drop_database, fresh_database
from services.db import Database, UnitOfWork, migrate
from services.db.models import CapacityDay, CustodyEvent, Order, Plan, Unit
from services.domain.custody import Role, SiteKind
from services.operations import admin, plans


def seed(database: Database, count: int) -> dt.date:
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    with UnitOfWork(database.session_factory) as uow:
        admin.add_site(uow.session, code="APH", kind=SiteKind.COLLECTION, name="A", fin="B1234")
        admin.add_site(uow.session, code="MFG", kind=SiteKind.MANUFACTURING, name="M", fin="M1234")
        trt = admin.add_site(uow.session, code="TRT", kind=SiteKind.TREATMENT, name="T")
        trt.jurisdiction = "US"
        uow.session.add(trt)
        admin.add_user(uow.session, email="c@example.org", role=Role.CARE_TEAM, site_code="TRT")
        user = admin.user_by_email(uow.session, "c@example.org")
        sites = {code: admin.site_by_code(uow.session, code).id for code in ("APH", "MFG", "TRT")}
        uow.commit()
    per_day = count // 7 + 1
    with database.engine.begin() as connection:
        days = [
            {
                "site_id": sites["MFG"],
                "product": "axi-cel",
                "day": today + dt.timedelta(days=5 + n),
                "slots": per_day,
                "booked": 0,
                "updated_at": now,
            }
            for n in range(7)
        ]
        connection.execute(sa.insert(CapacityDay.__table__), days)  # type: ignore[attr-defined]
        day_ids = {
            row.day: row.id
            for row in connection.execute(sa.select(CapacityDay.__table__))  # type: ignore[attr-defined]
        }
        orders = [
            {
                "coi": f"B1234{n:010}"[:15],
                "patient_ref": f"P-{n}",
                "product": "axi-cel",
                "collection_site_id": sites["APH"],
                "manufacturing_site_id": sites["MFG"],
                "treatment_site_id": sites["TRT"],
                "state": "in_progress",
                "last_sequence": 1,
                "created_by_id": user.id,
                "created_at": now,
                "has_plan": True,
            }
            for n in range(count)
        ]
        connection.execute(sa.insert(Order.__table__), orders)  # type: ignore[attr-defined]
        ids = [
            row.id
            for row in connection.execute(
                sa.select(Order.__table__.c.id).order_by(Order.__table__.c.id)  # type: ignore[attr-defined]
            )
        ]
        units = [
            {
                "din": f"B1234{n:08}",
                "kind": "apheresis",
                "order_id": order_id,
                "state": "collected",
                "custodian_site_id": sites["APH"],
                "collected_at": now,
                "created_at": now,
            }
            for n, order_id in enumerate(ids)
        ]
        connection.execute(sa.insert(Unit.__table__), units)  # type: ignore[attr-defined]
        unit_of = {
            row.order_id: row.id
            for row in connection.execute(sa.select(Unit.__table__))  # type: ignore[attr-defined]
        }
        events, rows = [], []
        for n, order_id in enumerate(ids):
            for sequence, action in ((0, "enroll"), (1, "collect")):
                events.append(
                    {
                        "order_id": order_id,
                        "unit_id": unit_of[order_id] if sequence else None,
                        "to_state": "collected" if sequence else None,
                        "sequence": sequence,
                        "action": action,
                        "site_id": sites["APH"],
                        "actor_id": user.id,
                        "custodian_site_id": sites["APH"],
                        "occurred_at": now,
                        "recorded_at": now,
                        "needs_review": False,
                        "chain_position": sequence + 1,
                        "prev_hash": "",
                        "hash": uuid.uuid4().hex + uuid.uuid4().hex,
                        "signing": "none",
                    }
                )
            slot = today + dt.timedelta(days=5 + n % 7)
            rows.append(
                {
                    "order_id": order_id,
                    "state": "confirmed",
                    "capacity_day_id": day_ids[slot],
                    "manufacturing_start_on": slot,
                    "apheresis_on": today,
                    "booked_by_id": user.id,
                    "booked_at": now,
                    "profile_version": 1,
                    "planned": {},
                    "expected": {},
                    "past_window": False,
                    "repeat_ld": False,
                    "reminders": [],
                    "moves": 0,
                    "updated_at": now,
                }
            )
        connection.execute(sa.insert(CustodyEvent.__table__), events)  # type: ignore[attr-defined]
        connection.execute(sa.insert(Plan.__table__), rows)  # type: ignore[attr-defined]
    return today


def timed(database: Database, now: dt.datetime) -> tuple[float, int]:
    with UnitOfWork(database.session_factory) as uow:
        started = time.perf_counter()
        moved = plans.replan_in_flight(uow.session, now=now)
        uow.commit()
        return time.perf_counter() - started, moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    url = fresh_database(server)
    try:
        migrate.upgrade(url)
        database = Database.from_url(url)
        started = time.perf_counter()
        today = seed(database, args.orders)
        print(f"seeded {args.orders} orders with plans in {time.perf_counter() - started:.1f} s")
        now = dt.datetime.now(dt.UTC)
        seconds, moved = timed(database, now)
        print(f"first re-plan (every chain written): {seconds:.2f} s, {moved} plans written")
        idle = [timed(database, now) for _ in range(args.repeat)]
        print(
            f"re-plan with nothing changed: median {statistics.median(s for s, _ in idle):.2f} s "
            f"({idle[0][1]} written)"
        )
        changes = []
        for n in range(args.repeat):
            # the capacity change: day 5+n's slots move a day later, with the plans on it
            day = today + dt.timedelta(days=5 + n)
            with database.engine.begin() as connection:
                plans_t = Plan.__table__  # type: ignore[attr-defined]
                connection.execute(
                    sa.update(plans_t)
                    .where(plans_t.c.manufacturing_start_on == day)
                    .values(manufacturing_start_on=day + dt.timedelta(days=1))
                )
            changes.append(timed(database, now))
        median = statistics.median(s for s, _ in changes)
        moved_counts = ", ".join(str(m) for _, m in changes)
        print(
            f"re-plan after a capacity change: median {median:.2f} s for {args.orders} plans "
            f"in flight ({moved_counts} moved and written)"
        )
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
