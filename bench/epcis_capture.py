"""EPCIS capture of a 3 MB body: how long until it is answered.

    .venv/bin/python bench/epcis_capture.py [--megabytes 3] [--repeat 5]

In-process (Flask's test client) on a SQLite file of its own, as a courier with a token:
- over the cap: a capture of as many small departures as fit in the size (16,500 in 3 MB),
  refused for its count (422 invalid_request) before GS1's schema is asked;
- over the values' cap: 500 departures padded to the size (each with a long epcList), refused
  for the values its events hold (25,000 at most) before the schema is asked;
- within both caps: 500 departures of 48 values each (the most a capture may hold), their EPCs
  long enough to fill the size, checked against the schema and read event by event (each
  event names EPCs that are not ours, so each is answered "refused" without a scan: what is
  timed is the reading);
- before: the over-the-cap events given to the reference schema checker (Python jsonschema)
  alone, as every capture was checked before the count came first (once: tens of seconds).
Prints the body's size and the best and median time of the request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services import epcis_schema
from services.config import Settings
from services.db import UnitOfWork, migrate
from services.domain.custody import Role, SiteKind
from services.operations import admin
from services.web import create_app


def build(var: Path) -> tuple[Any, dict[str, str]]:
    url = f"sqlite:///{var / 'bench.db'}"
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
        admin.add_site(uow.session, code="COUR", kind=SiteKind.COURIER, name="C")
        admin.add_user(uow.session, email="c@example.org", role=Role.COURIER, site_code="COUR")
        _row, token = admin.create_token(uow.session, email="c@example.org")
        uow.commit()
    return app, {"Authorization": f"Bearer {token}", "Content-Type": "application/ld+json"}


def document(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "epcisBody": {"eventList": events},
    }


def departure(n: int, epcs: int = 1, pad: int = 0) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventTime": "2026-12-01T10:00:00.000Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": [f"urn:epc:id:sscc:0614141.{n:05d}{k:05d}{'0' * pad}" for k in range(epcs)],
        "action": "OBSERVE",
        "bizStep": "departing",
    }


def timed(
    client: Any, headers: dict[str, str], body: bytes, repeat: int, status: int
) -> list[float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.post("/api/v1/epcis/capture", data=body, headers=headers)
        times.append(time.perf_counter() - began)
        assert response.status_code == status, response.get_data(as_text=True)[:300]
    return times


def report(label: str, body: bytes, times: list[float]) -> None:
    print(
        f"{label:<44} {len(body) / 1e6:5.2f} MB   best {min(times) * 1000:8.1f} ms   "
        f"median {statistics.median(times) * 1000:8.1f} ms   ({len(times)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-before", action="store_true", help="skip the schema-alone run")
    args = parser.parse_args()
    compact: dict[str, Any] = {"separators": (",", ":")}
    size = int(args.megabytes * 1e6)
    with tempfile.TemporaryDirectory() as var:
        app, headers = build(Path(var))
        client = app.test_client()
        each = len(json.dumps(departure(0), **compact)) + 1
        many = size // each
        over = json.dumps(document([departure(n) for n in range(many)]), **compact).encode()
        report(
            f"over the cap: {many:,} events, 422",
            over,
            timed(client, headers, over, args.repeat, 422),
        )
        epcs = size // 500 // 35
        padded = json.dumps(document([departure(n, epcs) for n in range(500)]), **compact).encode()
        report(
            f"over the values' cap: 500 events of {epcs} EPCs, 422",
            padded,
            timed(client, headers, padded, args.repeat, 422),
        )
        most = 48 - 6  # six members and the epcList's EPCs: 48 values an event
        pad = max(0, size // 500 // most - 40)  # each EPC this much longer: the size in all
        events = [departure(n, most, pad) for n in range(500)]
        full = json.dumps(document(events), **compact).encode()
        report(
            f"within the caps: 500 events of {most} long EPCs, 200",
            full,
            timed(client, headers, full, args.repeat, 200),
        )
        if not args.skip_before:
            doc = json.loads(over)
            began = time.perf_counter()
            errors = list(epcis_schema.validator().iter_errors(doc))
            took = time.perf_counter() - began
            assert not errors, errors[:1]
            report(f"before: the reference schema alone, {many:,} events", over, [took])


if __name__ == "__main__":
    main()
