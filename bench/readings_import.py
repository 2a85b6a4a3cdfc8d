"""A month of one-minute logger readings (43,200) imported into one shipment: readings per second.

    .venv/bin/python bench/readings_import.py [--readings 43200] [--repeat 3]

For each backend (SQLite in a temporary file, and PostgreSQL when reachable: BENCH_DATABASE_URL
or the local server, in a database of its own), builds a shipment through the real operations,
then times, from a fresh shipment each round:
- the API: POST /api/v1/shipments/{id}/readings with the readings as JSON (request parsing,
  validation, the checks of every reading, storing them, sealing the file, the alarm check);
- the CSV route: POST .../readings/csv with the same month as a logger's CSV file.
Prints the best and median wall time per import and readings per second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.scan_throughput import DEFAULT_SERVER, drop_database, fresh_database
from services.config import Settings
from services.db import UnitOfWork, migrate
from services.domain.custody import Action, Role, SiteKind
from services.operations import admin, orders, scans, shipments
from services.web import create_app


def build(url: str, var: Path) -> tuple[Any, dict[str, str], Any]:
    migrate.upgrade(url)
    app = create_app(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            app_env="test",
            database_url=url,
            var_dir=var,
            secret_key="bench-" + uuid.uuid4().hex,
            api_rate_limit="1000000 per minute",
        )
    )
    with UnitOfWork(app.extensions["vein2vein"].db.session_factory) as uow:
        session = uow.session
        admin.add_site(session, code="APH", kind=SiteKind.COLLECTION, name="A", fin="B1234")
        admin.add_site(session, code="MFG", kind=SiteKind.MANUFACTURING, name="M", fin="M1234")
        admin.add_site(session, code="TRT", kind=SiteKind.TREATMENT, name="T")
        admin.add_site(session, code="COUR", kind=SiteKind.COURIER, name="C")
        admin.add_user(session, email="aph@example.org", role=Role.APHERESIS_STAFF, site_code="APH")
        _row, token = admin.create_token(session, email="aph@example.org")
        uow.commit()
    return app, {"Authorization": f"Bearer {token}"}, app.test_client()


def fresh_shipment(app: Any, start: dt.datetime) -> int:
    """An order's bag, packed and in a shipment opened at ``start``."""
    skew = dt.timedelta(minutes=5)
    with UnitOfWork(app.extensions["vein2vein"].db.session_factory) as uow:
        session = uow.session
        actor = admin.actor_by_email(session, "aph@example.org")
        order = orders.enroll_order(
            session,
            actor=actor,
            patient_ref=f"B-{uuid.uuid4().hex[:8]}",
            product="axi-cel",
            collection_site="APH",
            manufacturing_site="MFG",
            treatment_site="TRT",
            now=start,
        )
        unit, _ = orders.register_collection(
            session,
            actor=actor,
            coi=order.coi,
            collected_at=start,
            volume_ml=None,
            now=start,
            max_clock_skew=skew,
        )
        for action in (Action.VERIFY_LABEL, Action.CRYOPRESERVE, Action.PACK):
            scan = scans.ScanInput(
                barcode=f"={unit.din}00", action=action, site="APH", event_id=str(uuid.uuid4())
            )
            scans.record_scan(session, actor=actor, scan=scan, now=start, max_clock_skew=skew)
        shipment = shipments.create_shipment(
            session,
            actor=actor,
            origin="APH",
            destination="MFG",
            shipper_id=f"DS-{uuid.uuid4().hex[:6]}",
            units=[unit.din],
            carrier="COUR",
            now=start,
        )
        uow.commit()
        assert shipment.id is not None
        return shipment.id


def month(start: dt.datetime, count: int) -> tuple[bytes, bytes]:
    moments = [(start + dt.timedelta(minutes=1 + i)).isoformat() for i in range(count)]
    values = [-185.0 + (i % 11) * 0.3 for i in range(count)]
    body = {
        "device_id": "LOGGER-1",
        "readings": [
            {"at": at, "value": round(v, 2), "unit": "C"}
            for at, v in zip(moments, values, strict=True)
        ],
    }
    csv = "at,value,unit\n" + "".join(
        f"{at},{v:.2f},C\n" for at, v in zip(moments, values, strict=True)
    )
    return json.dumps(body).encode(), csv.encode()


def run(name: str, url: str, count: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as var:
        app, headers, client = build(url, Path(var))
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=count + 10)
        as_json, as_csv = month(start, count)
        for label, data, route, kind in (
            ("JSON", as_json, "readings", "application/json"),
            ("CSV", as_csv, "readings/csv?device_id=LOGGER-1", "text/csv"),
        ):
            times = []
            for _ in range(repeat):
                shipment = fresh_shipment(app, start)
                began = time.perf_counter()
                response = client.post(
                    f"/api/v1/shipments/{shipment}/{route}",
                    data=data,
                    headers={**headers, "Content-Type": kind},
                )
                times.append(time.perf_counter() - began)
                assert response.status_code == 201, response.get_data(as_text=True)[:300]
                assert response.json["file"]["new_readings"] == count
            best, median = min(times), statistics.median(times)
            print(
                f"{name:10} {label:4} {count} readings ({len(data) / 1e6:.1f} MB): best "
                f"{best:.2f} s, median {median:.2f} s -> {count / best:,.0f} readings/s",
                flush=True,
            )
        app.extensions["vein2vein"].db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=43_200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run("sqlite", f"sqlite:///{folder}/bench.db", args.readings, args.repeat)
    try:
        url = fresh_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER))
    except psycopg.Error as error:
        print(f"postgresql not reachable ({error}); set BENCH_DATABASE_URL", file=sys.stderr)
        return
    try:
        run("postgresql", url, args.readings, args.repeat)
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
