"""The beat's re-plan (plans.replan_due, what the application runs) over 5,000 plans in flight.

    .venv/bin/python bench/replan.py [--orders 5000] [--repeat 3]

Creates a database of its own on PostgreSQL (BENCH_DATABASE_URL, default the local server),
writes --orders orders with their plans (confirmed on a week of slots, with two more weeks of
free slots published) and their enrolment and collection records in bulk SQL, then times
services.operations.plans.replan_due, the function the beat task (workers.tasks.expire_plans)
calls after a capacity publication or as the days go by:

1. the first look: every plan's chain is new, so all are re-planned, one order at a time under
   its lock (--orders as the limit);
2. the beat after a capacity publication (no slot moves a plan: publishing fewer slots than
   are booked is refused), or any beat with nothing late: the bulk read and the arithmetic,
   nothing written; the median of --repeat;
3. four days on, nobody picked up: every plan is late. Each beat re-plans at most 500 (its
   default limit), one order at a time with its locks, a missed slot rebooked (the plans on
   the first day: their material now arrives a day after it), its plan_move event and its
   slip news through the outbox; beats run until none is left. Reported: the time of one
   beat and of them all.
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
from services.db.models import CapacityDay, ChainHead, CustodyEvent, Order, Plan, Unit
from services.domain.audit import chain_key
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
            for n in range(21)  # a week booked, two weeks free for the plans that miss a slot
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
        # each order's chain head: its collect event (the plan's events append to it)
        connection.execute(
            sa.insert(ChainHead.__table__),  # type: ignore[attr-defined]
            [
                {"key": chain_key(e["order_id"], None), "length": 2, "head": e["hash"]}
                for e in events
                if e["action"] == "collect"
            ],
        )
        connection.execute(sa.insert(Plan.__table__), rows)  # type: ignore[attr-defined]
    return today


def beat(database: Database, now: dt.datetime, limit: int = 500) -> tuple[float, int]:
    """One call of plans.replan_due in its own unit of work, as the beat task makes it."""
    with UnitOfWork(database.session_factory) as uow:
        started = time.perf_counter()
        moved = plans.replan_due(uow.session, now=now, limit=limit)
        uow.commit()
        return time.perf_counter() - started, len(moved)


def booked_counts(database: Database) -> None:
    """Each day's booked count from the plans holding its slots (the bulk seed wrote 0)."""
    with database.engine.begin() as connection:
        plans_t, days_t = Plan.__table__, CapacityDay.__table__  # type: ignore[attr-defined]
        counts = sa.select(sa.func.count()).where(plans_t.c.capacity_day_id == days_t.c.id)
        connection.execute(sa.update(days_t).values(booked=counts.scalar_subquery()))


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
        seed(database, args.orders)
        booked_counts(database)
        print(f"seeded {args.orders} orders with plans in {time.perf_counter() - started:.1f} s")
        now = dt.datetime.now(dt.UTC)
        seconds, moved = beat(database, now, limit=args.orders)
        print(
            f"first look (every chain new): {seconds:.1f} s for {moved} plans re-planned one at "
            f"a time ({1000 * seconds / max(moved, 1):.1f} ms a plan)"
        )
        idle = [beat(database, now) for _ in range(args.repeat)]
        print(
            f"beat with nothing late (e.g. after a capacity publication): median "
            f"{statistics.median(s for s, _ in idle):.2f} s for {args.orders} plans in flight "
            f"({idle[0][1]} re-planned)"
        )
        later = now + dt.timedelta(days=4)
        beats: list[tuple[float, int]] = []
        while True:
            seconds, moved = beat(database, later)
            if not moved:
                break
            beats.append((seconds, moved))
        total = sum(s for s, _ in beats)
        count = sum(m for _, m in beats)
        print(
            f"four days on, every leg late: {len(beats)} beat(s) of at most 500 re-planned "
            f"{count} plans in {total:.1f} s (median beat "
            f"{statistics.median(s for s, _ in beats):.1f} s, "
            f"{1000 * total / max(count, 1):.1f} ms a plan, moves, slot rebookings and slip news "
            "included)"
        )
        with database.engine.begin() as connection:
            moves = connection.execute(
                sa.select(sa.func.count()).where(CustodyEvent.__table__.c.action == "plan_move")  # type: ignore[attr-defined]
            ).scalar()
        print(f"({moves} plans moved to a later slot)")
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
