"""`vein2vein audit verify` throughput: records verified per second on a large record.

    .venv/bin/python bench/audit_verify.py [--orders 2000] [--scans 10]

Creates a database of its own on PostgreSQL (BENCH_DATABASE_URL, default the local server),
enrolls --orders orders with one bag each and scans each bag --scans times (alternating
quarantine-free steps through the real operations, so every record is sealed into its chain as
in production; refused scans are added too), takes a checkpoint, then times a full verify
(every chain, head, checkpoint and signature) and prints records per second: in-process, and
through the command with one process and with one per core, wall and after the command's
start-up (about a second, paid once whatever the size: at the default size it is most of the
wall time). Seeding runs at about 20 orders a second; ``--database-url`` reuses a database
seeded before (kept), e.g. one made with ``--orders 8000 --keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scan_throughput import DEFAULT_SERVER, drop_database, fresh_database
from services.db import Database, UnitOfWork, migrate
from services.domain.custody import Action, Role, SiteKind
from services.domain.errors import DomainError
from services.operations import admin, audit, orders, scans

STEPS = (Action.VERIFY_LABEL, Action.CRYOPRESERVE, Action.PACK)


def seed(url: str, count: int, per_bag: int) -> int:
    database = Database.from_url(url)
    now = dt.datetime.now(dt.UTC)
    skew = dt.timedelta(minutes=5)
    with UnitOfWork(database.session_factory) as uow:
        admin.add_site(uow.session, code="APH", kind=SiteKind.COLLECTION, name="A", fin="B1234")
        admin.add_site(uow.session, code="MFG", kind=SiteKind.MANUFACTURING, name="M", fin="M1234")
        admin.add_site(uow.session, code="TRT", kind=SiteKind.TREATMENT, name="T")
        admin.add_user(
            uow.session, email="s@example.org", role=Role.APHERESIS_STAFF, site_code="APH"
        )
        actor = admin.actor_by_email(uow.session, "s@example.org")
        uow.commit()
    started = time.perf_counter()
    for n in range(count):
        with UnitOfWork(database.session_factory) as uow:
            session = uow.session
            order = orders.enroll_order(
                session,
                actor=actor,
                patient_ref=f"B-{n}",
                product="axi-cel",
                collection_site="APH",
                manufacturing_site="MFG",
                treatment_site="TRT",
                now=now,
            )
            unit, _ = orders.register_collection(
                session,
                actor=actor,
                coi=order.coi,
                collected_at=now,
                volume_ml=None,
                now=now,
                max_clock_skew=skew,
            )
            for step in range(per_bag - 1):
                scan = scans.ScanInput(
                    barcode=f"={unit.din}00",
                    action=STEPS[step % len(STEPS)],
                    site="APH",
                    event_id=str(uuid.uuid4()),
                )
                if step < len(STEPS):
                    scans.record_scan(session, actor=actor, scan=scan, now=now, max_clock_skew=skew)
                else:  # the bag is packed: the rest are refused scans, sealed all the same
                    try:
                        scans.record_scan(
                            session, actor=actor, scan=scan, now=now, max_clock_skew=skew
                        )
                    except DomainError as error:
                        scans.record_refusal(session, actor=actor, scan=scan, error=error, now=now)
            uow.commit()
        if n % 200 == 199:
            rate = (n + 1) / (time.perf_counter() - started)
            print(f"  seeded {n + 1}/{count} orders ({rate:.0f} orders/s)", file=sys.stderr)
    with UnitOfWork(database.session_factory) as uow:
        audit.checkpoint(uow.session, now=now)
        uow.commit()
        total = audit.record_count(uow.session)
    database.engine.dispose()
    return total


def cli_verify(url: str, *arguments: str) -> tuple[float, str]:
    """`vein2vein audit verify ...` as a person runs it: wall time, start-up included."""
    env = {**os.environ, "DATABASE_URL": url, "APP_ENV": "development"}
    binary = str(Path(sys.executable).with_name("vein2vein"))
    started = time.perf_counter()
    ran = subprocess.run(
        [binary, "audit", "verify", *arguments],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if ran.returncode != 0:
        raise SystemExit(f"audit verify failed: {ran.stderr[-500:]}")
    return elapsed, ran.stdout.strip().splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--scans", type=int, default=10, help="records per order")
    parser.add_argument(
        "--database-url", default=None, help="an existing bench database to reuse (kept)"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--keep", action="store_true", help="keep the database it seeds, and print its URL"
    )
    args = parser.parse_args()
    own = args.database_url is None
    url = (
        fresh_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER))
        if own
        else args.database_url
    )
    try:
        if own:
            migrate.upgrade(url)
            seed(url, args.orders, args.scans)
        database = Database.from_url(url)
        with UnitOfWork(database.session_factory) as uow:
            total = audit.record_count(uow.session)
            started = time.perf_counter()
            report = audit.verify(uow.session)
            elapsed = time.perf_counter() - started
        database.engine.dispose()
        assert report.ok, report.finding
        print(f"records:   {total} in {report.chains} chains, {report.checkpoints} checkpoint(s)")
        rate = report.records / elapsed
        print(f"verify (one pass, in-process):  {elapsed:.2f} s, {rate:,.0f} records/s")
        # the command's start-up (imports, settings, the app without routes), which a verify
        # of any size pays once: `--help` pays it and reads nothing
        start_up = min(cli_verify(url, "--help")[0] for _ in range(3))
        print(f"vein2vein start-up (audit verify --help):  {start_up:.2f} s")
        for jobs in sorted({1, args.jobs}):
            wall, said = cli_verify(url, "--jobs", str(jobs))
            print(
                f"vein2vein audit verify --jobs {jobs}:  {wall:.2f} s wall, "
                f"{total / wall:,.0f} records/s, {total / (wall - start_up):,.0f} records/s "
                f"after start-up ({said})"
            )
    finally:
        if own and not args.keep:
            drop_database(url)
        elif own:
            print(f"kept: --database-url {url}")


if __name__ == "__main__":
    main()
