"""The chain of condition with real files: shippers, a logger's readings, alarms, holds and QA's
signed disposition; notifications through a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner
from flask.cli import ScriptInfo
from sqlmodel import select

from services import cli
from services.db import UnitOfWork
from services.db.models import AdminChange, CustodyEvent, TemperatureReading
from services.operations import passwords
from tests.integration.test_notifications import deliver_due, subscribe
from tests.receivers import smtp_server, webhook_receiver
from tests.world import PASSWORD, World

MINUTE = dt.timedelta(minutes=1)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)


def csv_file(
    start: dt.datetime,
    count: int,
    value: Callable[[int], float] = lambda i: -185.0,
    unit: str = "C",
) -> bytes:
    lines = ["at,value,unit"]
    lines += [
        f"{(start + i * MINUTE).isoformat().replace('+00:00', 'Z')},{value(i):.2f},{unit}"
        for i in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


def register(world: World, serial: str = "DS-100", who: str = "aph", **body: Any) -> Any:
    payload = {
        "serial": serial,
        "model": "Cryoport Elite",
        "hold_time_hours": 240,
        "qualified_until": (now() + dt.timedelta(days=90)).isoformat(),
        **body,
    }
    return world.post(who, "/api/v1/shippers", payload)


def packed_order(world: World, bags: int = 2) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    order = world.enroll()
    units = [world.collect(order["coi"]) for _ in range(bags)]
    for unit in units:
        for action in ("verify_label", "cryopreserve", "pack"):
            assert world.scan("aph", unit["barcode"], action, "APH-1").status_code == 201
    return order, units


def shipped(world: World, serial: str = "DS-100", bags: int = 2) -> tuple[Any, Any, Any]:
    """An order's bags packed into a registered shipper, picked up and delivered."""
    assert register(world, serial).status_code == 201
    order, units = packed_order(world, bags)
    response = world.post(
        "aph",
        "/api/v1/shipments",
        {
            "origin": "APH-1",
            "destination": "MFG-1",
            "shipper_id": serial,
            "units": [u["din"] for u in units],
            "carrier": "COUR-1",
        },
    )
    assert response.status_code == 201, response.json
    shipment = response.json
    assert world.scan("courier", shipment["barcode"], "pickup", "APH-1").status_code == 201
    assert world.scan("courier", shipment["barcode"], "deliver", "MFG-1").status_code == 201
    return order, units, shipment


def upload(
    world: World, shipment: dict[str, Any], data: bytes, who: str = "op", **query: str
) -> Any:
    return world.client.post(
        f"/api/v1/shipments/{shipment['id']}/readings/csv",
        data=data,
        headers={**world.headers(who), "Content-Type": "text/csv"},
        query_string={"device_id": "LOGGER-9", **query},
    )


def states(world: World, units: list[dict[str, Any]]) -> list[str]:
    return [world.get("op", f"/api/v1/units/{u['din']}").json["state"] for u in units]


def test_a_clean_month_of_readings_leaves_the_bags_untouched(world: World) -> None:
    start = now() - dt.timedelta(days=31)
    with time_machine.travel(start, tick=True):
        order, units, shipment = shipped(world)
    data = csv_file(start + MINUTE, 43_200, lambda i: -185.0 + (i % 7) * 0.5)
    response = upload(world, shipment, data, filename="logger-9.csv")
    assert response.status_code == 201, response.json
    assert response.json["alarms"] == []
    assert response.json["held"] == []
    assert response.json["file"]["readings"] == 43_200
    assert response.json["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert states(world, units) == ["delivered", "delivered"]
    readings = world.get("op", f"/api/v1/shipments/{shipment['id']}/readings").json
    (summary,) = readings["summaries"]
    assert summary["count"] == 43_200
    assert (summary["min_c"], summary["max_c"]) == (-185.0, -182.0)
    # the file is kept byte for byte, and its SHA-256 sealed in the order's chain
    sha = response.json["file"]["sha256"]
    download = world.get("op", f"/api/v1/shipments/{shipment['id']}/readings/files/{sha}")
    assert download.status_code == 200
    assert download.data == data
    timeline = world.get("op", f"/api/v1/orders/{order['coi']}/events").json["events"]
    (record,) = [e for e in timeline if e["action"] == "readings"]
    assert record["details"]["sha256"] == sha
    assert record["shipment"] == shipment["barcode"]
    assert world.get("op", f"/api/v1/orders/{order['coi']}/audit").json["verified"] is True
    # the receipt proceeds, and the shipper is back in service
    for unit in units:
        assert world.scan("op", unit["barcode"], "receive", "MFG-1").status_code == 201
    assert world.get("aph", "/api/v1/shippers/DS-100").json["status"] == "in_service"


def _hot_day(start: dt.datetime) -> bytes:
    """A day of one-minute readings with 20 minutes at -140 °C (above -150, below -135)."""
    return csv_file(start, 24 * 60, lambda i: -140.0 if 600 <= i < 620 else -186.0)


def test_twenty_minutes_above_the_limit_hold_both_bags_until_qa_releases_them(
    app_factory: Any,
) -> None:
    with smtp_server() as smtp, webhook_receiver() as receiver:
        world = World.build(app_factory(smtp_url=smtp.url))
        start = now() - dt.timedelta(days=2)
        with time_machine.travel(start, tick=True):
            order, units, shipment = shipped(world)
        hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        subscribe(world, coi=order["coi"], channel="email", target="ward@example.org")
        subscribe(world, who="qa", site="MFG-1", channel="email", target="qa@example.org")

        response = upload(world, shipment, _hot_day(start + MINUTE))
        assert response.status_code == 201, response.json
        kinds = {alarm["kind"] for alarm in response.json["alarms"]}
        assert kinds == {"continuous"}
        (alarm,) = response.json["alarms"]
        assert alarm["minutes"] == 20
        assert alarm["peak_c"] == -140.0
        assert sorted(response.json["held"]) == sorted(u["din"] for u in units)
        assert states(world, units) == ["on_hold", "on_hold"]

        # the bags refuse every scan; the shipper is quarantined
        refused = world.scan("op", units[0]["barcode"], "receive", "MFG-1")
        assert refused.status_code == 409
        assert refused.json["code"] == "on_hold"
        assert world.get("aph", "/api/v1/shippers/DS-100").json["status"] == "quarantined"

        # the news went out: to the order's webhook and e-mail, and to the site's QA
        deliver_due(world.app)
        holds = [d.verify(hook["secret"]) for d in receiver.accepted()]
        held = [b["data"] for b in holds if b["data"]["kind"] == "hold"]
        assert sorted(h["din"] for h in held) == sorted(u["din"] for u in units)
        assert all("20 min" in h["reason"] for h in held)
        subjects = [m["Subject"] for m in smtp.received()]
        on_hold = [s for s in subjects if s.startswith("[vein2vein] ON HOLD")]
        assert len(on_hold) == 4  # both bags, to the ward and to QA

        # QA releases each bag, signing: a wrong password is refused and nothing changes
        with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
            passwords.set_password(uow.session, email="qa@example.org", password=PASSWORD)
            uow.commit()
        body = {"decision": "release", "reason": "logger checked: excursion within stability data"}
        wrong = world.post(
            "qa",
            f"/api/v1/units/{units[0]['din']}/disposition",
            {**body, "email": "qa@example.org", "password": "not it at all"},
        )
        assert wrong.status_code == 403
        assert wrong.json["code"] == "signature_refused"
        not_qa = world.post(
            "op",
            f"/api/v1/units/{units[0]['din']}/disposition",
            {**body, "email": "op@example.org", "password": PASSWORD},
        )
        assert not_qa.status_code == 403
        assert states(world, units) == ["on_hold", "on_hold"]
        for unit in units:
            released = world.post(
                "qa",
                f"/api/v1/units/{unit['din']}/disposition",
                {**body, "email": "qa@example.org", "password": PASSWORD},
            )
            assert released.status_code == 201, released.json
            assert (released.json["from_state"], released.json["to_state"]) == (
                "on_hold",
                "delivered",
            )
        for unit in units:
            assert world.scan("op", unit["barcode"], "receive", "MFG-1").status_code == 201
        timeline = world.get("qa", f"/api/v1/orders/{order['coi']}/events").json["events"]
        releases = [e for e in timeline if e["action"] == "release_hold"]
        assert len(releases) == 2
        assert all(e["signature"] == "signed" for e in releases)
        assert {s["meaning"] for e in releases for s in e["signatures"]} == {"approved"}
        assert world.get("qa", f"/api/v1/orders/{order['coi']}/audit").json["verified"] is True
        # an alarm travelled in the shipper: it stays quarantined after the receipt
        assert world.get("aph", "/api/v1/shippers/DS-100").json["status"] == "quarantined"


def test_a_bad_timestamp_on_line_7_refuses_the_file_and_stores_nothing(world: World) -> None:
    start = now() - dt.timedelta(days=1)
    with time_machine.travel(start, tick=True):
        _order, units, shipment = shipped(world)
    lines = csv_file(start + MINUTE, 20).decode().splitlines()
    lines[6] = "2026-13-45T99:00:00Z,-180.0,C"  # line 7 of the file
    response = upload(world, shipment, ("\n".join(lines) + "\n").encode())
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "invalid_readings"
    assert [e["line"] for e in response.json["errors"]] == [7]
    assert "line 7" in response.json["detail"]
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        assert uow.session.exec(select(TemperatureReading)).all() == []
        assert (
            uow.session.exec(select(CustodyEvent).where(CustodyEvent.action == "readings")).all()
            == []
        )
    assert states(world, units) == ["delivered", "delivered"]


def test_the_same_file_twice_imports_once_and_the_same_reading_twice_is_one(world: World) -> None:
    start = now() - dt.timedelta(days=1)
    with time_machine.travel(start, tick=True):
        order, _units, shipment = shipped(world)
    data = csv_file(start + MINUTE, 120)
    first = upload(world, shipment, data)
    again = upload(world, shipment, data)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["duplicate"] is True
    # an overlapping file: its first hour is stored already, its second hour is new
    overlap = upload(world, shipment, csv_file(start + 61 * MINUTE, 120))
    assert overlap.status_code == 201
    assert (overlap.json["file"]["readings"], overlap.json["file"]["new_readings"]) == (120, 60)
    readings = world.get("op", f"/api/v1/shipments/{shipment['id']}/readings").json
    assert len(readings["readings"]) == 180
    assert len(readings["files"]) == 2
    # the same moment with another value is kept, not refused: a conflict, held for QA
    clash = upload(world, shipment, csv_file(start + MINUTE, 3, lambda i: -170.0))
    assert clash.status_code == 201, clash.json
    assert [a["kind"] for a in clash.json["alarms"]] == ["conflict"]
    assert sorted(clash.json["held"]) == sorted(u["din"] for u in _units)
    timeline = world.get("op", f"/api/v1/orders/{order['coi']}/events").json["events"]
    assert len([e for e in timeline if e["action"] == "readings"]) == 3


def test_json_readings_in_three_units_and_each_bad_one_named(world: World) -> None:
    start = now() - dt.timedelta(hours=3)
    with time_machine.travel(start, tick=True):
        _order, _units, shipment = shipped(world)
    at = (start + MINUTE).isoformat()
    good = world.post(
        "courier",
        f"/api/v1/shipments/{shipment['id']}/readings",
        {
            "device_id": "TAG-1",
            "readings": [
                {"at": at, "value": -185, "unit": "C"},
                {"at": (start + 2 * MINUTE).isoformat(), "value": -301, "unit": "F"},
                {"at": (start + 3 * MINUTE).isoformat(), "value": 88.15, "unit": "K"},
            ],
        },
    )
    assert good.status_code == 201, good.json
    values = [
        r["value_c"]
        for r in world.get("op", f"/api/v1/shipments/{shipment['id']}/readings").json["readings"]
    ]
    assert values == [-185.0, -185.0, -185.0]
    bad = world.post(
        "courier",
        f"/api/v1/shipments/{shipment['id']}/readings",
        {
            "device_id": "TAG-1",
            "readings": [
                {"at": "yesterday", "value": -185, "unit": "C"},
                {"at": "2026-12-01T10:00:00", "value": -185, "unit": "C"},
                {"at": at, "value": -185, "unit": "C"},
                {"at": at, "value": 400, "unit": "C"},
            ],
        },
    )
    assert bad.status_code == 422
    assert [e["reading"] for e in bad.json["errors"]] == [1, 2, 4]
    # readings come from the shipment's origin, destination and courier only
    assert (
        world.post(
            "care",
            f"/api/v1/shipments/{shipment['id']}/readings",
            {"device_id": "T", "readings": [{"at": at, "value": 1, "unit": "C"}]},
        ).status_code
        == 404
    )


def test_a_shipper_past_its_qualification_or_in_use_is_refused_at_packing(world: World) -> None:
    with time_machine.travel(now() - dt.timedelta(days=100), tick=True):
        assert register(world, "DS-OLD").status_code == 201  # qualified for 90 days, then
    _order, units = packed_order(world, 1)
    body = {"origin": "APH-1", "destination": "MFG-1", "units": [units[0]["din"]]}
    old = world.post("aph", "/api/v1/shipments", {**body, "shipper_id": "DS-OLD"})
    assert old.status_code == 422
    assert old.json["code"] == "shipper_unavailable"
    assert "qualification ran out" in old.json["detail"]
    assert register(world, "DS-NEW", hold_time_hours=24).status_code == 201
    opened = world.post("aph", "/api/v1/shipments", {**body, "shipper_id": "DS-NEW"})
    assert opened.status_code == 201
    # a leg allowed 48 h in a shipper qualified for 24 h: a warning to act on
    assert any("longer than shipper DS-NEW" in w for w in opened.json["warnings"])
    assert world.get("aph", "/api/v1/shippers/DS-NEW").json["status"] == "in_use"
    _order, more = packed_order(world, 1)
    again = world.post(
        "aph", "/api/v1/shipments", {**body, "units": [more[0]["din"]], "shipper_id": "DS-NEW"}
    )
    assert again.status_code == 422
    assert "in use" in again.json["detail"]


def test_shippers_are_managed_by_their_home_site_and_every_change_is_logged(world: World) -> None:
    assert register(world, "DS-7").status_code == 201
    assert register(world, "DS-7").status_code == 409
    assert register(world, "DS-8", who="care").status_code == 403
    # its network sees it; another network does not
    assert world.get("op", "/api/v1/shippers/DS-7").status_code == 404  # no shared order yet
    world.enroll()  # APH-1, MFG-1, TRT-1 now share an order
    assert world.get("op", "/api/v1/shippers/DS-7").status_code == 200
    assert world.get("op2", "/api/v1/shippers/DS-7").status_code == 404
    assert [s["serial"] for s in world.get("op2", "/api/v1/shippers").json["shippers"]] == []
    change = {"status": "quarantined", "reason": "dropped on the dock"}
    assert world.post("op", "/api/v1/shippers/DS-7/changes", change).status_code == 403
    changed = world.post("aph", "/api/v1/shippers/DS-7/changes", change)
    assert changed.status_code == 200
    assert changed.json["usable"] is False
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        log = uow.session.exec(select(AdminChange).where(AdminChange.subject == "DS-7")).all()
    assert [row.action for row in log] == ["shipper.register", "shipper.change"]
    assert log[1].before["status"] == "in_service"
    assert log[1].after["status"] == "quarantined"


def test_a_quarantined_bag_gains_the_way_back_through_qa(world: World) -> None:
    unit = world.bag_at("receive")
    assert world.scan("op", unit["barcode"], "quarantine", "MFG-1").status_code == 201
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        passwords.set_password(uow.session, email="qa@example.org", password=PASSWORD)
        uow.commit()
    released = world.post(
        "qa",
        f"/api/v1/units/{unit['din']}/disposition",
        {
            "decision": "release",
            "reason": "seal intact on inspection",
            "email": "qa@example.org",
            "password": PASSWORD,
        },
    )
    assert released.status_code == 201, released.json
    assert released.json["to_state"] == "received"
    assert world.scan("op", unit["barcode"], "start_manufacturing", "MFG-1").status_code == 201


def test_alarm_rules_are_versioned_and_bounded(world: World) -> None:
    rule = world.get("op", "/api/v1/alarm-rules/axi-cel").json
    assert (rule["version"], rule["limit_c"]) == (0, -150.0)
    signed = {"reason": "requalified loggers", "signature": world.signature("qa")}
    refused = world.post("op", "/api/v1/alarm-rules/axi-cel", {"gap_minutes": 30, **signed})
    assert refused.status_code == 403  # only QA of the owning site (MFG-1 owns axi-cel)
    too_warm = world.post("qa", "/api/v1/alarm-rules/axi-cel", {"limit_c": 20, **signed})
    assert too_warm.status_code == 422
    changed = world.post("qa", "/api/v1/alarm-rules/axi-cel", {"gap_minutes": 30, **signed})
    assert changed.status_code == 201, changed.json
    assert (changed.json["version"], changed.json["gap_minutes"]) == (1, 30.0)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_cli_imports_a_loggers_csv(app: Any, world: World, tmp_path: Path) -> None:
    start = now() - dt.timedelta(days=1)
    with time_machine.travel(start, tick=True):
        order, _units, shipment = shipped(world)
    path = tmp_path / "logger.csv"
    path.write_bytes(_hot_day(start + MINUTE))
    runner = CliRunner()
    result = runner.invoke(
        cli.main,
        ["readings", "import", str(path), "--shipment", str(shipment["id"]), "--device", "L-1"],
        obj=ScriptInfo(create_app=lambda: app),
    )
    assert result.exit_code == 0, result.output
    assert "1440 readings" in result.output
    assert "ON HOLD" in result.output
    again = runner.invoke(
        cli.main,
        ["readings", "import", str(path), "--shipment", str(shipment["id"]), "--device", "L-1"],
        obj=ScriptInfo(create_app=lambda: app),
    )
    assert again.exit_code == 0
    assert "imported before" in again.output
    timeline = world.get("op", f"/api/v1/orders/{order['coi']}/events").json["events"]
    (record,) = [e for e in timeline if e["action"] == "readings"]
    assert record["details"]["entered"] == "command line"
